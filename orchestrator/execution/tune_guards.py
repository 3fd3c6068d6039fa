"""What both Tune drivers (the study grid and the search) put around ``Tuner.fit``: the stop
flag Tune polls, and medn's own end when the local raylet dies."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape

from orchestrator.execution.context import StudyContext, end_interrupted
from orchestrator.execution.ray_setup import raylet_watchdog, stop_local_ray
from orchestrator.execution.recorder import StudyRecorder


def stop_flag(event: threading.Event) -> Any:
    """A Tune stopper whose ``stop_all`` follows ``event`` (a pruned configuration, Ctrl-C)."""
    from ray import tune

    class StopFlag(tune.Stopper):
        # the event is an argument, not a closure cell: cloudpickle would pickle the cell
        def __init__(self, flag: threading.Event) -> None:
            self.event: threading.Event | None = flag

        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return self.event is not None and self.event.is_set()

        def __getstate__(self) -> dict:  # Tune pickles it for Tuner.restore, unused here
            return {"event": None}

    return StopFlag(event)


@contextmanager
def watch_raylet(ctx: StudyContext, recorder: StudyRecorder) -> Iterator[None]:
    """While open, a death of the local raylet ends this study medn's way (``raylet_lost``).

    Enter it right after Ray starts: a put into a dead raylet's object store ends the driver
    at once (exit 1, nothing printed), so the watcher has to see the death before the first
    put, not only during ``Tuner.fit``.
    """
    with raylet_watchdog(lambda pid, code: raylet_lost(ctx, recorder, pid, code)):
        yield


def raylet_lost(ctx: StudyContext, recorder: StudyRecorder, pid: int, code: int | None) -> None:
    """The local raylet died (killed, out of memory): Ray is about to end this process with
    its own text only. Say what happened, keep what can be kept, end the open parents as
    KILLED, and exit 1 before it does."""
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    ctx.console.line()
    ctx.console.file.flush()
    message = (f"Ray's raylet (pid {pid}) died ({how}; killed, or out of memory?) and Ray "
               "cannot go on: the study stopped. Folds already FINISHED are kept in MLflow; "
               f"re-run the same command to resume. Ray's log: {ctx.ray_log_file}")
    # the message first: the main thread may still call into Ray, which ends the process
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                               soft_wrap=True)
    sys.stderr.flush()
    try:
        recorder.flush(force=True)
        end_interrupted(ctx, list(recorder.states.values()))
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        stop_local_ray()  # GCS and agents would outlive this process
        os._exit(1)
