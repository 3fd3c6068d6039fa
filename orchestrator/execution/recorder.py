"""The study's single writer: every fold result goes outbox -> MLflow -> pooled parent.

The recorder lives in the driver process. The Tune callback hands it each event (a fold started,
a fold's result arrived, an attempt failed); it persists results to the outbox first, then logs
them through the experiment's ``RunTreeWriter``, and finalizes a variant's parent run once every
fold has a FINISHED child. While MLflow is unreachable it keeps results in the outbox, keeps the
study running, and retries with backoff; ``finish`` makes a last bounded attempt and raises
``ResultsNotLogged`` telling the user to re-run (which logs the outbox before training).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from medn.data.prepared import PreparedDataset
from medn.train import FoldResult
from orchestrator.execution.outbox import Outbox, OutboxItem
from orchestrator.execution.units import VariantState
from orchestrator.tracking import RunTreeWriter, TrackingUnavailable


class ResultsNotLogged(RuntimeError):
    """Fold results are safe in the outbox but could not be written to MLflow."""


class StudyRecorder:
    """Feeds fold results of one study run to MLflow through one writer per experiment.

    ``tags(state)`` gives the tags of a variant's runs (study, variant, dataset, task, ...);
    ``on_fold(state, subject, result)`` is called once a fold's result is received (the search
    uses it to report fold scores to Optuna); ``on_change()`` after every state change (the live
    table refreshes from it).
    """

    def __init__(self, states: list[VariantState], writers: dict[str, RunTreeWriter],
                 outboxes: dict[str, Outbox], datasets: dict[str, PreparedDataset],
                 tags: Callable[[VariantState], dict[str, str]],
                 on_fold: Callable[[VariantState, str, dict[str, Any]], None] | None = None,
                 on_change: Callable[[], None] | None = None,
                 backoff_s: tuple[float, ...] = (2.0, 5.0, 10.0, 20.0, 30.0)) -> None:
        self.states = {s.key: s for s in states}
        self.writers = writers
        self.outboxes = outboxes
        self.datasets = datasets
        self.tags = tags
        self.on_fold = on_fold
        self.on_change = on_change or (lambda: None)
        self.backoff_s = backoff_s
        self._failures_in_row = 0
        self._retry_at = 0.0
        self.last_error: str = ""
        self.problems: list[str] = []
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
        item = self.outboxes[state.experiment].put({
            "kind": "fold", "task": task, "variant": variant, "subject": subject,
            "parent_id": state.parent_id, "tags": self.tags(state), "result": fold})
        state.received.add(subject)
        state.running.discard(subject)
        self.fold_seconds.append(float(fold.get("seconds", 0.0)))
        if self.on_fold is not None:
            self.on_fold(state, subject, fold)
        self._log_or_keep(item)
        self.on_change()

    def failed(self, task: int, variant: str, subject: str, error: str, attempt: int,
               final: bool) -> None:
        """An attempt of a fold failed; ``final`` when no retry is left."""
        state = self.state_of(task, variant)
        state.running.discard(subject)
        state.failed_attempts += 1
        if final and subject not in state.received:
            state.gave_up.add(subject)
        item = self.outboxes[state.experiment].put({
            "kind": "failed", "task": task, "variant": variant, "subject": subject,
            "parent_id": state.parent_id, "tags": self.tags(state), "error": error,
            "attempt": attempt})
        self._log_or_keep(item)
        self.on_change()

    def stopped(self, task: int, variant: str, subject: str) -> None:
        """A fold's trial was stopped without a result (a pruned configuration)."""
        self.state_of(task, variant).running.discard(subject)
        self.on_change()

    # -- logging ------------------------------------------------------------------------------
    @property
    def tracking_down(self) -> bool:
        """Whether the last write to MLflow failed (results wait in the outbox)."""
        return self._failures_in_row > 0

    def _log_or_keep(self, item: OutboxItem) -> None:
        if self.tracking_down and time.monotonic() < self._retry_at:
            return  # MLflow is down: the item waits in the outbox for the next flush
        if self.tracking_down:
            self.flush()
            return
        try:
            self._log(item)
        except TrackingUnavailable as err:
            self._note_failure(err)
            return
        self._tracking_ok()

    def _log(self, item: OutboxItem) -> None:
        record = item.record
        writer = self.writers[record["experiment"]]
        if record["kind"] == "fold":
            result = FoldResult.from_dict(record["result"])
            writer.log_fold(record["parent_id"], result, record["tags"])
        else:
            writer.log_failed_fold(record["parent_id"], record["subject"], record["error"],
                                   int(record["attempt"]), record["tags"])
        self.outboxes[record["experiment"]].remove(item)
        state = self.states.get((int(record["task"]), record["variant"]))
        if state is None or state.parent_id != record["parent_id"]:
            return
        if record["kind"] == "fold":
            state.finished.add(record["subject"])
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

    def pending_items(self) -> list[OutboxItem]:
        """Every record of this study's experiments still waiting in the outboxes."""
        return [item for outbox in self.outboxes.values() for item in outbox.pending()]

    def flush(self, force: bool = False) -> bool:
        """Log what waits in the outboxes, then finalize variants that became complete.

        Skipped while backing off after a failure unless ``force``. Returns True when nothing is
        left to write.
        """
        if not force and self.tracking_down and time.monotonic() < self._retry_at:
            return False
        try:
            for item in self.pending_items():
                self._log(item)
            for state in self.states.values():
                self._maybe_finalize(state)
        except TrackingUnavailable as err:
            self._note_failure(err)
            return False
        self._tracking_ok()
        return True

    def finish(self, attempts: int = 4) -> None:
        """The end of the run: flush with a few retries; raise ``ResultsNotLogged`` when MLflow
        still cannot be reached (the results stay in the outbox for the next run)."""
        for attempt in range(attempts):
            if self.flush(force=True):
                return
            if attempt < attempts - 1:
                time.sleep(self.backoff_s[min(attempt, len(self.backoff_s) - 1)])
        waiting = self.pending_items()
        folders = sorted({str(item.path.parent) for item in waiting})
        raise ResultsNotLogged(
            f"MLflow could not be reached ({self.last_error}); {len(waiting)} result(s) are kept "
            f"in {', '.join(folders) or 'the outbox'}. Start the tracking server (or fix "
            "--tracking-uri) and re-run the same command: it logs them first and trains only "
            "the folds that are still missing.")
