"""The raylet watcher on a real child process standing in for the raylet: a death is reported
once, by the watcher or by the block's own exception, and a living raylet never is."""

from __future__ import annotations

import signal
import subprocess
import threading
import time

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
