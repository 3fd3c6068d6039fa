"""What both Tune drivers (the study grid and the search) put around ``Tuner.fit``: the stop
flag Tune polls, and medn's own end when the local raylet dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape

from orchestrator.execution.context import StudyContext
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
    its own text only, or none. Say what happened, have the parents it leaves RUNNING ended as
    KILLED (by a process of their own, once this one is gone), stop what is left of the local
    Ray, and exit 1."""
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
    # for the same reason the parents are ended KILLED by a process of their own, once this
    # one is gone (it may still be creating one). Results received wait in the spool (every
    # result is spooled before it is logged): the re-run logs them.
    job = {"tracking_uri": ctx.tracking_uri, "driver_pid": os.getpid(),
           "experiments": {w.experiment_id: str(w.lock_path) for w in ctx.writers.values()},
           "variants": sorted({state.name for state in recorder.states.values()})}
    try:
        subprocess.Popen([sys.executable, "-m", "orchestrator.tracking.end_runs",
                          json.dumps(job)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    except OSError:  # the re-run resumes the parents anyway
        pass
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        stop_local_ray()  # GCS and agents would outlive this process
        os._exit(1)
