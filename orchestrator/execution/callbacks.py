"""The driver-side Tune callback: turns trial events into recorder calls.

Tune calls these hooks in the process that runs ``Tuner.fit`` (the driver), between scheduling
steps; so every MLflow write happens in that one process, never in a worker.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from orchestrator.execution.packs import pack_of
from orchestrator.execution.recorder import StudyRecorder
from orchestrator.tracking import DiskFull, SpoolError, TrackingStoreError

# Errors after which no result could be kept: they stop the study instead of being noted.
FATAL_ERRORS = (DiskFull, SpoolError, TrackingStoreError)


def _unit_of(trial: Any) -> tuple[int, str, list[str]]:
    """``(task, variant, subjects)`` of a trial: one fold, or a pack of folds."""
    return pack_of(str(trial.config["unit"]))


def trial_error_text(trial: Any) -> str:
    """The last failure Tune wrote to the trial's ``error.txt`` (the worker's traceback)."""
    path = trial.error_file
    text = Path(path).read_text() if path and Path(path).is_file() else ""
    if "Failure # " in text:
        text = text.rsplit("Failure # ", 1)[1].split("\n", 1)[-1]
    return text.strip() or "the trial failed without an error message (worker or node lost?)"


log = logging.getLogger(__name__)


class StudyCallback(tune.Callback):
    """Forwards trial starts, results, failures and retries to a ``StudyRecorder``; retries
    writes to MLflow that failed earlier, between steps, with the recorder's backoff."""

    def __init__(self, recorder: StudyRecorder) -> None:
        self.recorder = recorder

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config for ``Tuner.restore``; a study resumes from MLflow
        # instead, so the driver-only recorder (locks, clients, the live table) is left out.
        return {"recorder": None}

    def _safely(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Run a recorder call; an unexpected error is recorded as a problem of the study
        (shown at the end; the result stays in the spool) instead of aborting every trial.

        An error that leaves nowhere to keep results (a full disk, an unwritable spool, a
        store that refuses writes) is raised instead: it ends ``Tuner.fit`` at once, because
        every fold trained from then on would be thrown away.
        """
        try:
            fn(*args, **kwargs)
        except FATAL_ERRORS as err:
            # Tune re-raises a callback's error as a TuneError holding only its text: the
            # executor reads the error itself from the recorder
            self.recorder.fatal = err
            raise
        except Exception as err:  # noqa: BLE001 - kept and reported by the runner
            log.error("study recorder failed: %s", traceback.format_exc())
            self.recorder.problems.append(f"{type(err).__name__}: {err}")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial (one fold, or a pack of folds) was scheduled on a worker."""
        task, variant, subjects = _unit_of(trial)
        for subject in subjects:
            self._safely(self.recorder.started, task, variant, subject)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """A fold reported its result (a pack reports one per fold): persist and log it."""
        if "fold" in result:
            task, variant, _ = _unit_of(trial)
            self._safely(self.recorder.received, task, variant, str(result["fold"]["subject"]),
                         result["fold"])

    def _failed(self, trial: Any, final: bool) -> None:
        """Record a failed attempt for each fold of the trial that has no result yet (a pack's
        folds reported before the failure are kept)."""
        task, variant, subjects = _unit_of(trial)
        state = self.recorder.state_of(task, variant)
        text = trial_error_text(trial)
        for subject in subjects:
            if subject not in state.received and subject not in state.finished:
                self._safely(self.recorder.failed, task, variant, subject, text,
                             trial.num_failures, final=final)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """An attempt failed and Tune will retry the fold (a pack: its unfinished folds)."""
        self._failed(trial, final=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The last allowed attempt failed: the fold(s) will not finish in this run."""
        self._failed(trial, final=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial ended; when it was stopped before reporting (pruned), it runs no more."""
        task, variant, subjects = _unit_of(trial)
        for subject in subjects:
            self._safely(self.recorder.stopped, task, variant, subject)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Between scheduling steps: retry MLflow writes that are waiting (with backoff)."""
        if self.recorder.tracking_down:
            self._safely(self.recorder.flush)
