"""The study's single writer: every fold result goes spool -> MLflow -> pooled parent.

The recorder lives in the driver process. The Tune callback hands it each event (a fold started,
a fold's result arrived, an attempt failed); it persists results and failed attempts to the
experiment's ``RunTreeWriter`` spool first (``spool_fold`` / ``spool_failed``, no MLflow call),
then logs them (``log_spooled``), and finalizes a variant's parent run once every fold has a
FINISHED child. While MLflow is unreachable it keeps them in the spool, keeps the study running,
and retries with backoff; ``finish`` makes a last bounded attempt and raises
``ResultsNotLogged`` telling the user to re-run (which logs the spool before training).

A result that cannot even be spooled (``DiskFull``: "disk full at <folder>", or ``SpoolError``)
is never swallowed: the error propagates and the study stops at once, keeping what was spooled
before, because every fold trained from then on would be lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from medn.data.prepared import PreparedDataset
from medn.train import FoldResult
from orchestrator.execution.units import VariantState
from orchestrator.tracking import RunTreeWriter, SpoolEntry, TrackingUnavailable


class ResultsNotLogged(RuntimeError):
    """Fold results are safe in the spool but could not be written to MLflow."""


class StudyRecorder:
    """Feeds fold results of one study run to MLflow through one writer per experiment.

    ``tags(state)`` gives the tags of a variant's runs (study, variant, dataset, task, ...);
    ``on_fold(state, subject, result)`` is called once a fold's result is received (the search
    uses it to report fold scores to Optuna); ``on_change()`` after every state change (the live
    table refreshes from it).
    """

    def __init__(self, states: list[VariantState], writers: dict[str, RunTreeWriter],
                 datasets: dict[str, PreparedDataset],
                 tags: Callable[[VariantState], dict[str, str]],
                 on_fold: Callable[[VariantState, str, dict[str, Any]], None] | None = None,
                 on_change: Callable[[], None] | None = None,
                 backoff_s: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 30.0)) -> None:
        self.states = {s.key: s for s in states}
        self.writers = writers
        self.datasets = datasets
        self.tags = tags
        self.on_fold = on_fold
        self.on_change = on_change or (lambda: None)
        self.backoff_s = backoff_s
        self._failures_in_row = 0
        self._retry_at = 0.0
        self.last_error: str = ""
        self.problems: list[str] = []
        self.fatal: Exception | None = None  # what stopped the study (a full disk, ...)
        self.fold_seconds: list[float] = []

    # -- events from the Tune callback -------------------------------------------------------
    def state_of(self, task: int, variant: str) -> VariantState:
        """The state of ``(task, variant)``."""
        return self.states[(task, variant)]

    def started(self, task: int, variant: str, subject: str) -> None:
        """A fold's trial started (or restarted after a failure)."""
        self.state_of(task, variant).running.add(subject)
        self.on_change()

    def received(self, task: int, variant: str, subject: str, fold: dict[str, Any]) -> None:
        """A fold's result reached the driver: persist it, then try to log it."""
        state = self.state_of(task, variant)
        if subject in state.received or subject in state.finished:
            return  # the same result delivered twice (e.g. result + completion): keep one
        writer = self.writers[state.experiment]
        entry = writer.spool_fold(state.parent_id, FoldResult.from_dict(fold), self.tags(state))
        state.received.add(subject)
        state.running.discard(subject)
        self.fold_seconds.append(float(fold.get("seconds", 0.0)))
        if self.on_fold is not None:
            self.on_fold(state, subject, fold)
        self._log_or_keep(writer, entry)
        self.on_change()

    def failed(self, task: int, variant: str, subject: str, error: str, attempt: int,
               final: bool) -> None:
        """An attempt of a fold failed; ``final`` when no retry is left."""
        state = self.state_of(task, variant)
        state.running.discard(subject)
        state.failed_attempts += 1
        if final and subject not in state.received:
            state.gave_up.add(subject)
        writer = self.writers[state.experiment]
        entry = writer.spool_failed(state.parent_id, subject, error, attempt, self.tags(state))
        self._log_or_keep(writer, entry)
        self.on_change()

    def stopped(self, task: int, variant: str, subject: str) -> None:
        """A fold's trial was stopped without a result (a pruned configuration)."""
        self.state_of(task, variant).running.discard(subject)
        self.on_change()

    # -- logging ------------------------------------------------------------------------------
    @property
    def tracking_down(self) -> bool:
        """Whether the last write to MLflow failed (results wait in the spool)."""
        return self._failures_in_row > 0

    def _log_or_keep(self, writer: RunTreeWriter, entry: SpoolEntry) -> None:
        if self.tracking_down and time.monotonic() < self._retry_at:
            return  # MLflow is down: the entry waits in the spool for the next flush
        if self.tracking_down:
            self.flush()
            return
        try:
            self._log(writer, entry)
        except TrackingUnavailable as err:
            self._note_failure(err)
            return
        self._tracking_ok()

    def _log(self, writer: RunTreeWriter, entry: SpoolEntry) -> None:
        writer.log_spooled(entry)
        if entry.kind != "fold":
            return
        for state in self.states.values():
            if state.parent_id == entry.parent_id and state.experiment == writer.experiment_name:
                state.finished.add(entry.subject)
                self._maybe_finalize(state)

    def _maybe_finalize(self, state: VariantState) -> None:
        if state.finalized or state.pruned or not state.all_finished:
            return
        state.pooled = self.writers[state.experiment].finalize_parent(
            state.parent_id, self.datasets[state.data_key])
        state.finalized = True

    def _note_failure(self, err: Exception) -> None:
        delay = self.backoff_s[min(self._failures_in_row, len(self.backoff_s) - 1)]
        self._failures_in_row += 1
        self._retry_at = time.monotonic() + delay
        self.last_error = str(err)
        self.on_change()

    def _tracking_ok(self) -> None:
        if self._failures_in_row:
            self._failures_in_row = 0
            self.last_error = ""
            self.on_change()

    def pending_items(self) -> list[tuple[RunTreeWriter, SpoolEntry]]:
        """Every entry of this study's experiments still waiting in the spool, with the writer
        of its experiment."""
        return [(writer, entry) for writer in self.writers.values()
                for entry in writer.spooled()]

    def flush(self, force: bool = False) -> bool:
        """Log what waits in the spool, then finalize variants that became complete.

        Skipped while backing off after a failure unless ``force``. Returns True when nothing is
        left to write.
        """
        if not force and self.tracking_down and time.monotonic() < self._retry_at:
            return False
        try:
            for writer, entry in self.pending_items():
                self._log(writer, entry)
            for state in self.states.values():
                self._maybe_finalize(state)
        except TrackingUnavailable as err:
            self._note_failure(err)
            return False
        self._tracking_ok()
        return True

    def finish(self, attempts: int = 4) -> None:
        """The end of the run: flush with a few retries; raise ``ResultsNotLogged`` when MLflow
        still cannot be reached (the results stay in the spool for the next run)."""
        for attempt in range(attempts):
            if self.flush(force=True):
                return
            if attempt < attempts - 1:
                time.sleep(self.backoff_s[min(attempt, len(self.backoff_s) - 1)])
        waiting = self.pending_items()
        folders = sorted({str(entry.path.parent) for _, entry in waiting})
        raise ResultsNotLogged(
            f"MLflow could not be reached ({self.last_error}); {len(waiting)} result(s) are kept "
            f"in {', '.join(folders) or 'the spool'}. Start the tracking server (or fix "
            "--tracking-uri) and re-run the same command: it logs them first and trains only "
            "the folds that are still missing.")
