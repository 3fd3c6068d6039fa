"""Tracking faults, each reproduced for real: two drivers, a fresh store opened twice at once, a
full disk (spool and store), credentials in the URI, a read-only store, a deleted experiment, an
unsupported URI. The second processes run ``tracking_fault_child.py``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from mlflow import MlflowClient
from train_helpers import fake_result, random_dataset, tiny_config

from orchestrator.tracking import (
    DiskFull,
    ExperimentBusy,
    RunTreeWriter,
    TrackingStoreError,
    TrackingUnavailable,
    classify,
    default_spool_dir,
    redact_uri,
    resolve_tracking_uri,
    retry_call,
    store_slug,
    ui_link,
)

CHILD = Path(__file__).with_name("tracking_fault_child.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(CHILD.parents[1])}


def _child(*args: str, timeout: float = 120, **kwargs) -> dict:
    proc = subprocess.run([sys.executable, str(CHILD), *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout, **kwargs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(
    not _unshare_works(),
    reason="a tiny tmpfs needs `unshare -rm` (user + mount namespaces), not allowed here")


def _on_tiny_disk(mode: str, folder: Path, size: str, *args: str) -> dict:
    """Run the child in its own mount namespace with a ``size`` tmpfs mounted on ``folder``:
    a real, small disk that fills up (the mount vanishes with the process)."""
    script = (f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "{sys.executable}" '
              f'"{CHILD}" {mode} "$0" "$@"')
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script, str(folder), *args],
                          capture_output=True, text=True, env=ENV, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- two drivers ----------------------------------------------------------------------------------
def test_a_second_driver_of_the_same_experiment_is_refused_with_who_runs_it(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    resolve_tracking_uri(uri)
    holder = subprocess.Popen([sys.executable, str(CHILD), "hold", uri, "study/synth-3class"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert json.loads(holder.stdout.readline()) == {"ready": True}
        with pytest.raises(ExperimentBusy) as info:
            RunTreeWriter(uri, "study/synth-3class", spool_dir=tmp_path / "spool")
        message = str(info.value)
        assert "'study/synth-3class' is already being run by another medn process" in message
        assert f"pid {holder.pid}" in message and f"host {socket.gethostname()}" in message
        # another experiment of the same store is free
        RunTreeWriter(uri, "study/synth-4class", spool_dir=tmp_path / "spool").close()
    finally:
        holder.kill()  # kill -9: the kernel drops the lock with the process
        holder.wait()
    writer = RunTreeWriter(uri, "study/synth-3class", spool_dir=tmp_path / "spool")
    writer.close()


def test_drivers_the_lock_cannot_see_still_leave_one_finished_run_per_fold(tmp_path):
    # Two processes without the claim (what two machines sharing one tracking server are)
    # open the variant's parent and log every fold at the same moment.
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=3, clips_per_subject=4)
    writer = RunTreeWriter(uri, "shared", claim=False, spool_dir=tmp_path / "spool")
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(CHILD), "log_folds", uri, "shared", str(go),
                               str(tmp_path / f"spool-{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for i in range(2)]
    go.write_text("go")
    kept, parents = [], set()
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
        kept.append(result["kept"])
        parents.add(result["parent"])
    (parent,) = parents  # both drivers ended up on one parent ...
    live = MlflowClient(uri).search_runs([writer.experiment_id], "tags.`medn.role` = 'parent'")
    assert [r.info.run_id for r in live] == [parent]  # ... and no other is left
    finished = writer.finished_folds(parent)
    runs = writer.children(parent)
    assert sorted(finished) == list(data.subject_ids)
    for subject in data.subject_ids:
        mine = [r for r in runs if r.data.tags["medn.fold"] == subject]
        assert [r.info.status for r in mine].count("FINISHED") == 1
        # both drivers report the run that was kept, never their own duplicate
        assert kept[0][subject] == kept[1][subject] == finished[subject]
    assert writer.finalize_parent(parent, data) is not None


def test_a_duplicate_finished_fold_run_is_reconciled_to_the_oldest(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=2, clips_per_subject=4)
    writer = RunTreeWriter(uri, "dup", claim=False, spool_dir=tmp_path / "spool")
    parent = writer.parent_run("v", cfg, data, {})
    first = writer.log_fold(parent, fake_result(data, "s01"), {})
    # another driver that checked before ``first`` was written finishes its own run of s01
    client = MlflowClient(uri)
    other = client.create_run(writer.experiment_id, tags={
        "mlflow.parentRunId": parent, "medn.fold": "s01", "medn.role": "fold"}).info.run_id
    client.set_terminated(other, "FINISHED")
    assert writer._keep_one_finished(parent, "s01", other) == first  # noqa: SLF001
    assert client.get_run(other).info.status == "KILLED"
    assert client.get_run(other).data.tags["medn.duplicate_of"] == first
    assert writer.finished_folds(parent) == {"s01": first}


def test_a_rival_new_parent_is_reconciled_to_the_oldest(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=2, clips_per_subject=4)
    writer = RunTreeWriter(uri, "rival", claim=False, spool_dir=tmp_path / "spool")
    first = writer.parent_run("v", cfg, data, {"medn.study": "s"})
    # another driver that looked before ``first`` existed made its own parent of the same key
    client = MlflowClient(uri)
    tags = {k: v for k, v in client.get_run(first).data.tags.items()
            if k.startswith("medn.")}
    rival = client.create_run(writer.experiment_id, tags=tags).info.run_id
    since = client.get_run(first).info.start_time - 1
    parent_filter = writer._parent_filter("v", cfg, data, {"medn.study": "s"})  # noqa: SLF001
    assert writer._keep_one_parent(parent_filter, rival, since) == first  # noqa: SLF001
    assert client.get_run(rival).info.lifecycle_stage == "deleted"
    assert writer.find_parent("v", cfg, data, {"medn.study": "s"}) == first


def test_two_processes_open_a_fresh_sqlite_store_at_the_same_moment(tmp_path):
    uri = f"sqlite:///{tmp_path}/fresh/mlflow.db"
    resolve_tracking_uri(uri)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, str(CHILD), "open", uri, f"exp-{i}", str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
             for i in range(2)]
    go.write_text("go")  # both are waiting: they start at once
    outs = [p.communicate(timeout=180) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-2000:]
        assert "error" not in json.loads(out.strip().splitlines()[-1])
    names = {e.name for e in MlflowClient(uri).search_experiments()}
    assert {"exp-0", "exp-1"} <= names


# -- a full disk ----------------------------------------------------------------------------------
@needs_tmpfs
def test_a_full_disk_stops_the_study_at_once_and_keeps_what_was_spooled(tmp_path):
    (tmp_path / "disk").mkdir()
    (tmp_path / "store").mkdir()
    out = _on_tiny_disk("full_spool", tmp_path / "disk", "256k", str(tmp_path / "store"))
    assert out["error"] == "DiskFull"
    assert out["message"].startswith(f"disk full at {out['spool']}")
    assert "unreachable" not in out["message"]
    assert out["kept"] == ["s01"]  # spooled before the disk filled: still there, readable
    assert out["received"] == ["s01"]  # s02 is not counted as received: it was not kept
    assert out["problems"] == []  # raised through the Tune callback, not swallowed
    assert out["temp_files"] == []


@needs_tmpfs
def test_a_full_disk_under_a_sqlite_store_is_not_unreachable(tmp_path):
    (tmp_path / "disk").mkdir()
    out = _on_tiny_disk("full_store", tmp_path / "disk", "4m", str(tmp_path / "spool"))
    assert out["error"] == "DiskFull" and out["retry_warnings"] == []
    assert out["message"].startswith(f"disk full at {tmp_path / 'disk' / 'mlflow.db'}")
    assert out["kept"] == ["s01"]  # the result waits in the spool (on another disk)


def test_sqlite_full_and_enospc_are_disk_full_not_transient(tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/small.db")
    with engine.begin() as conn:
        conn.exec_driver_sql("create table t (x text)")
    with pytest.raises(sqlalchemy.exc.OperationalError) as info, engine.begin() as conn:
        conn.exec_driver_sql("pragma max_page_count = 4")
        for _ in range(200):
            conn.exec_driver_sql("insert into t values (?)", ("x" * 4000,))
    assert info.value.orig.sqlite_errorname == "SQLITE_FULL"
    assert classify(info.value) == "disk_full"
    calls = []

    def full() -> None:
        calls.append(1)
        raise info.value

    with pytest.raises(DiskFull, match="disk full at"):
        retry_call(full, retries=5, backoff_s=0.0, sleep=lambda s: None)
    assert calls == [1]
    with pytest.raises(OSError) as enospc, open("/dev/full", "w") as handle:  # noqa: PTH123
        handle.write("x")
        handle.flush()
    assert classify(enospc.value) == "disk_full"
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"
    assert classify(locked) == "transient"


# -- credentials ----------------------------------------------------------------------------------
def test_credentials_never_reach_the_console_files_or_logs(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MEDN_SPOOL_DIR", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    raw = f"http://alice:s3cret-pw@127.0.0.1:{port}"
    assert redact_uri(raw) == f"http://alice:***@127.0.0.1:{port}"
    uri = resolve_tracking_uri(raw)
    assert uri == f"http://127.0.0.1:{port}"  # MLflow gets them from its own variables
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s3cret-pw"
    for name in (store_slug(raw), str(default_spool_dir(raw)), store_slug(uri)):
        assert "s3cret" not in name and "alice" not in name
    assert store_slug(raw) != store_slug(f"http://bob:other@127.0.0.1:{port}")
    caplog.set_level(logging.DEBUG)
    for target in (raw, uri):
        with pytest.raises(TrackingUnavailable) as info:
            RunTreeWriter(target, "x", retries=1, backoff_s=0.01, spool_dir=tmp_path / "s")
        assert "s3cret" not in str(info.value) and "127.0.0.1" in str(info.value)
    assert not [r for r in caplog.records if "s3cret" in r.getMessage()]


# -- bad stores -----------------------------------------------------------------------------------
def test_an_unsupported_uri_is_a_clean_error():
    with pytest.raises(TrackingStoreError, match=r"--tracking-uri foo://bar: unsupported scheme"):
        resolve_tracking_uri("foo://bar")
    with pytest.raises(TrackingStoreError, match="--tracking-uri foo://bar"):
        RunTreeWriter("foo://bar", "x")


def test_a_deleted_experiment_is_a_clean_error(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(TrackingStoreError, match="'gone' .* is deleted; restore it"):
        RunTreeWriter(uri, "gone", spool_dir=tmp_path / "spool")


def _read_only_child(target: Path, *args: str) -> dict:
    """Run the child with ``target`` (a folder or a file) read-only. Root ignores file modes,
    so for root ``target`` is bind-mounted read-only in a private mount namespace (writes fail
    with EROFS, as on a read-only filesystem); anyone else gets the file modes removed."""
    if os.geteuid() != 0:
        paths = [target, *target.rglob("*")] if target.is_dir() else [target]
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            return _child(*args)
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)
    script = (f'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec '
              f'"{sys.executable}" "{CHILD}" "$@"')
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script, str(target), *args],
                          capture_output=True, text=True, env=ENV, timeout=180)
    if proc.returncode != 0 and "mount" in proc.stderr and "{" not in proc.stdout:
        pytest.skip(f"cannot make a read-only bind mount here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("read_only", "experiment"), [
    ("folder", "new-one"), ("database", "existing")])
def test_a_read_only_store_fails_at_once_without_retries(tmp_path, read_only, experiment):
    store = tmp_path / "mlruns"
    uri = f"sqlite:///{store}/mlflow.db"
    RunTreeWriter(uri, "existing", spool_dir=tmp_path / "spool").close()
    target = store if read_only == "folder" else store / "mlflow.db"
    out = _read_only_child(target, "open_parent", uri, experiment)
    assert out["error"] == "TrackingStoreError", out
    assert out["retry_warnings"] == []  # not retried as "unreachable": no 112 s of backoff
    assert "unreachable" not in out["message"]
    assert str(store) in out["message"]


def test_experiments_open_in_the_classic_view_and_the_link_says_so(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    old = MlflowClient(uri).create_experiment("made-before")  # without the tag
    writer = RunTreeWriter(uri, "made-before", spool_dir=tmp_path / "spool")
    fresh = RunTreeWriter(uri, "made-now", spool_dir=tmp_path / "spool")
    client = MlflowClient(uri)
    for experiment_id in (old, fresh.experiment_id):
        tags = client.get_experiment(experiment_id).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development"
    assert writer.ui_link(5123) == ui_link(old, port=5123) == (
        f"http://127.0.0.1:5123/#/experiments/{old}/runs?workflowType=machine_learning")


def _report_then_wait(config: dict) -> None:
    """A trial that delivers its fold's result, then would train on for a minute."""
    import time

    from ray import tune

    tune.report({"fold": config["fold"]})
    time.sleep(60)


def test_a_spool_that_cannot_be_written_ends_tune_at_once(tmp_path):
    # Real Ray Tune and the real recorder; the spool cannot be written for a real reason (a
    # file stands where the experiment's spool folder must be): Tune stops, no other trial starts.
    import ray
    from ray import tune

    from orchestrator.execution.callbacks import StudyCallback
    from orchestrator.execution.recorder import StudyRecorder
    from orchestrator.execution.units import VariantState
    from orchestrator.tracking import SpoolError

    cfg = tiny_config()
    data = random_dataset(cfg, subjects=3, clips_per_subject=4)
    writer = RunTreeWriter(f"sqlite:///{tmp_path}/mlflow.db", "x/synth-3class",
                           spool_dir=tmp_path / "spool")
    parent = writer.parent_run("v", cfg, data, {})
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / writer.experiment_id).write_text("a file, not a folder")
    state = VariantState(task=3, name="v", label="v", config=cfg, experiment="x/synth-3class",
                         data_key="k", subjects=list(data.subject_ids), parent_id=parent)
    recorder = StudyRecorder([state], {"x/synth-3class": writer}, {"k": data},
                             tags=lambda s: {})
    folds = {s: fake_result(data, s).to_dict() for s in data.subject_ids}
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers lack tests/ on path
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        tuner = tune.Tuner(
            _report_then_wait,
            param_space={"unit": tune.grid_search([f"3|v|{s}" for s in data.subject_ids]),
                         "fold": tune.sample_from(lambda spec: folds[
                             spec.config.unit.rsplit("|", 1)[1]])},
            tune_config=tune.TuneConfig(max_concurrent_trials=1),
            run_config=tune.RunConfig(verbose=0, callbacks=[StudyCallback(recorder)],
                                      storage_path=str(tmp_path / "tune")))
        with pytest.raises(Exception) as info:  # noqa: PT011 - a TuneError: checked below
            tuner.fit()
    finally:
        ray.shutdown()
    # Tune re-raises it as a TuneError with its text; the executor raises recorder.fatal
    fatal = recorder.fatal
    assert isinstance(fatal, SpoolError) and "SpoolError" in str(info.value)
    assert "cannot write the spool record" in str(fatal) and "Not a directory" in str(fatal)
    assert state.running == {data.subject_ids[0]}  # the others never started
    assert state.received == set() and recorder.problems == []
