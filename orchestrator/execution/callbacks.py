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

from orchestrator.execution.recorder import StudyRecorder
from orchestrator.tracking import DiskFull, SpoolError, TrackingStoreError

# Errors after which no result could be kept: they stop the study instead of being noted.
FATAL_ERRORS = (DiskFull, SpoolError, TrackingStoreError)


def _unit_of(trial: Any) -> tuple[int, str, str]:
    task, variant, subject = str(trial.config["unit"]).split("|", 2)
    return int(task), variant, subject


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
        """A trial (one fold) was scheduled on a worker."""
        self._safely(self.recorder.started, *_unit_of(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict,
                        **info: Any) -> None:
        """A fold reported its one result: persist and log it."""
        if "fold" in result:
            self._safely(self.recorder.received, *_unit_of(trial), result["fold"])

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """An attempt failed and Tune will retry the fold."""
        self._safely(self.recorder.failed, *_unit_of(trial), trial_error_text(trial),
                     trial.num_failures, final=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """The last allowed attempt failed: the fold will not finish in this run."""
        self._safely(self.recorder.failed, *_unit_of(trial), trial_error_text(trial),
                     trial.num_failures, final=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial ended; when it was stopped before reporting (pruned), it runs no more."""
        self._safely(self.recorder.stopped, *_unit_of(trial))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Between scheduling steps: retry MLflow writes that are waiting (with backoff)."""
        if self.recorder.tracking_down:
            self._safely(self.recorder.flush)
