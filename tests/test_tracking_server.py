"""RunTreeWriter against a real ``mlflow server`` that comes up late and then goes away."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from train_helpers import fake_result, random_dataset, tiny_config

from orchestrator.tracking import RunTreeWriter, TrackingUnavailable
from tests.ports import free_port


def _stop(proc: subprocess.Popen | None) -> None:
    """Stop the server by its process group (it starts worker processes of its own)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    # its worker processes may still serve for a moment after the parent is gone: wait until
    # the whole group has exited, so that "the server is gone" is true when this returns
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_writer_waits_for_a_late_server_and_keeps_results_when_it_goes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    # Keep the writer's HTTP settings local to this test (it sets them with setdefault).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    port = free_port()
    db = tmp_path / "server.db"
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "1", "--backend-store-uri", f"sqlite:///{db}",
               "--artifacts-destination", str(tmp_path / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server: dict[str, subprocess.Popen] = {}

    def start_late() -> None:
        time.sleep(1.0)  # the writer's first calls find nothing listening
        server["proc"] = subprocess.Popen(command, env=env, start_new_session=True,
                                          stdout=(tmp_path / "server.log").open("w"),
                                          stderr=subprocess.STDOUT)

    starter = threading.Thread(target=start_late)
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=2, clips_per_subject=4)
    caplog.set_level(logging.WARNING, logger="orchestrator.tracking")
    try:
        starter.start()
        writer = RunTreeWriter(f"http://127.0.0.1:{port}", "late-server", retries=12,
                               backoff_s=0.5, spool_dir=tmp_path / "spool")
        starter.join()
        assert any("retrying" in r.getMessage() for r in caplog.records), \
            "the server was not up yet: the writer must have retried"
        parent = writer.parent_run("v", cfg, data, {})
        first = writer.log_fold(parent, fake_result(data, "s01"), {})
        assert writer.finished_folds(parent) == {"s01": first}

        _stop(server["proc"])  # the tracking server goes away
        writer.retries, writer.backoff_s = 1, 0.05
        with pytest.raises(TrackingUnavailable, match="re-run the same command"):
            writer.log_fold(parent, fake_result(data, "s02"), {})
        # The result that could not be written is kept for the next run to log.
        assert [r.subject for r in writer.spooled_results(parent)] == ["s02"]
    finally:
        starter.join()
        _stop(server.get("proc"))

    # What the server wrote before it went away is in its database.
    store = MlflowClient(f"sqlite:///{db}")
    run = store.get_run(first)
    assert run.info.status == "FINISHED" and run.data.tags["medn.fold"] == "s01"
    assert run.data.tags["mlflow.parentRunId"] == parent
