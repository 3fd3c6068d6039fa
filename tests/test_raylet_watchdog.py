"""The raylet watcher on a real child process standing in for the raylet: a death is reported
once, by the watcher or by the block's own exception, and a living raylet never is."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from orchestrator.execution import ray_setup


@pytest.fixture
def child(monkeypatch: pytest.MonkeyPatch):
    proc = subprocess.Popen(["sleep", "60"])
    monkeypatch.setattr(ray_setup, "local_raylet", lambda: proc)
    yield proc
    proc.kill()
    proc.wait()


def test_a_death_during_the_block_is_reported_once_by_the_watcher(child) -> None:
    calls: list[tuple[int, int | None]] = []
    seen = threading.Event()

    def on_lost(pid: int, code: int | None) -> None:
        calls.append((pid, code))
        seen.set()

    with ray_setup.raylet_watchdog(on_lost, interval_s=0.01):
        child.send_signal(signal.SIGKILL)
        assert seen.wait(10)
        time.sleep(0.1)  # more polls: still reported once
    assert calls == [(child.pid, -signal.SIGKILL)]


def test_an_error_leaving_the_block_after_the_death_is_reported_as_the_death(child) -> None:
    calls: list[tuple[int, int | None]] = []
    # a poll interval far longer than the block: the exception reaches the check first
    with pytest.raises(RuntimeError, match="ray's own error"), ray_setup.raylet_watchdog(
            lambda pid, code: calls.append((pid, code)), interval_s=30):
        child.send_signal(signal.SIGKILL)
        child.wait()
        raise RuntimeError("ray's own error")
    assert calls == [(child.pid, -signal.SIGKILL)]


def test_a_living_raylet_is_never_reported(child) -> None:
    calls: list[tuple[int, int | None]] = []
    with pytest.raises(ValueError), ray_setup.raylet_watchdog(
            lambda pid, code: calls.append((pid, code)), interval_s=0.01):
        time.sleep(0.05)
        raise ValueError("an ordinary error")
    with ray_setup.raylet_watchdog(lambda pid, code: calls.append((pid, code)),
                                   interval_s=0.01):
        time.sleep(0.05)
    assert calls == [] and child.poll() is None


def test_the_parents_left_running_are_ended_once_the_driver_is_gone(tmp_path) -> None:
    import json
    import sys

    from mlflow import MlflowClient

    from orchestrator.tracking import locks

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("x", artifact_location=(tmp_path / "a").as_uri())

    def parent(variant: str) -> str:
        return client.create_run(exp, tags={"medn.role": "parent",
                                            "medn.variant": variant}).info.run_id

    mine, done, other = parent("a"), parent("b"), parent("not-this-run")
    client.set_terminated(done, "FINISHED")
    driver = subprocess.Popen(["sleep", "2"])  # stands for the dying driver
    job = {"tracking_uri": uri, "driver_pid": driver.pid, "variants": ["a", "b"],
           "experiments": {exp: str(tmp_path / "locks" / f"experiment-{exp}.lock")}}
    ender = subprocess.Popen([sys.executable, "-m", "orchestrator.tracking.end_runs",
                              json.dumps(job)], stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    late = parent("a")  # the driver was still creating a parent when its raylet died
    driver.wait()
    assert ender.wait(timeout=120) == 0, ender.stderr.read()
    status = {run: client.get_run(run).info.status for run in (mine, done, other, late)}
    assert status == {mine: "KILLED", done: "FINISHED", other: "RUNNING", late: "KILLED"}

    # a driver re-run at once holds the experiment: its RUNNING parents are its own
    again = parent("a")
    assert locks.try_claim(Path(job["experiments"][exp])) is None
    job["driver_pid"] = subprocess.Popen(["true"]).pid
    ended = subprocess.run([sys.executable, "-m", "orchestrator.tracking.end_runs",
                            json.dumps(job)], timeout=120)
    locks.release(Path(job["experiments"][exp]))
    assert ended.returncode == 0 and client.get_run(again).info.status == "RUNNING"
