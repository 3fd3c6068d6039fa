"""Tracking stores medn cannot use, given to the commands that read or write them: an in-memory
or blank URI, a file that is not MLflow's sqlite database, a database driver that is not
installed, a tracking server that is not there, a study that does not exist. Each is one
``error:`` line (exit 2 for bad input, 1 for a store that cannot be reached), never a traceback
or a hang, and never a password."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from orchestrator.tracking import TrackingStoreError, resolve_tracking_uri
from orchestrator.tracking.store import check_sqlite_store

MEDN = Path(sys.executable).with_name("medn")
# a hang guard only (before: minutes of retries), never a speed goal
HANG_GUARD_S = 180


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "MEDN_", "RAY_ADDRESS"))}
    return {**env, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _medn_process(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command in a process of its own (where a hang is the risk)."""
    return subprocess.run([str(MEDN), *args], cwd=cwd, capture_output=True, text=True,
                          env=_env(), timeout=HANG_GUARD_S)


def _medn(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The command in this process (Typer's runner: a CLI start costs seconds per process);
    an exception escaping it fails the test as a traceback would."""
    from typer.testing import CliRunner

    from orchestrator.cli.app import app

    unset = {k: None for k in os.environ if k.startswith(("MLFLOW_", "MEDN_", "RAY_ADDRESS"))}
    saved = dict(os.environ)  # what the command sets for itself stays out of later tests
    try:
        with contextlib.chdir(cwd):
            result = CliRunner().invoke(app, list(args), env={**unset, "COLUMNS": "200"})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def _one_clean_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The command's ``error:`` line, after checking its exit code, that it is one line with no
    traceback, and that it holds every needle."""
    output = proc.stdout + proc.stderr
    assert proc.returncode == code, output
    assert "Traceback" not in output and "File \"" not in output, output
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:", "sqlite:///",
                                 "sqlite:///file::memory:?cache=shared"])
def test_an_in_memory_sqlite_uri_is_refused(uri, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrackingStoreError, match="in-memory sqlite database; every result "
                                                 "would vanish when the process ends"):
        resolve_tracking_uri(uri)
    assert not list(tmp_path.iterdir()), "nothing is created for a refused URI"


def test_a_blank_tracking_uri_is_refused_and_an_unset_variable_is_the_default(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for flag in ("", " ", "\t"):
        with pytest.raises(TrackingStoreError, match=r"^--tracking-uri .*: empty; expected"):
            resolve_tracking_uri(flag)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "  ")
    with pytest.raises(TrackingStoreError, match=r"^MLFLOW_TRACKING_URI '  ': empty"):
        resolve_tracking_uri(None)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # exported empty: unset, as in the shell
    assert resolve_tracking_uri(None) == "sqlite:///mlruns/mlflow.db"


def test_commands_refuse_an_in_memory_or_blank_store_before_anything_starts(tmp_path):
    study = _medn(tmp_path, "study", "ablation-components", "--profile", "smoke",
                  "--tracking-uri", "sqlite://")
    _one_clean_error(study, 2, "--tracking-uri sqlite://", "would vanish")
    report = _medn(tmp_path, "report", "ablation-components", "--tracking-uri", " ")
    _one_clean_error(report, 2, "--tracking-uri ' ': empty")
    assert not (tmp_path / "mlflow.db").exists()


def test_a_file_that_is_not_an_mlflow_sqlite_store_is_a_clean_error(tmp_path):
    db = tmp_path / "mlruns" / "mlflow.db"
    db.parent.mkdir()
    db.write_bytes(b"garbage\n")
    for args in (["report", "ablation-components"],
                 ["study", "ablation-components", "--profile", "smoke"],
                 ["train", "--profile", "smoke"]):
        line = _one_clean_error(_medn(tmp_path, *args), 2,
                                "mlruns/mlflow.db is not an MLflow sqlite store (")
        assert "not a sqlite database" in line
    assert db.read_bytes() == b"garbage\n", "the file is left as it was"


def test_a_sqlite_database_of_something_else_is_refused_and_mlflows_is_accepted(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as con:
        con.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(TrackingStoreError, match=r"other.db is not an MLflow sqlite store "
                                                 r"\(a sqlite database of something else, "
                                                 r"with tables invoices\)"):
        check_sqlite_store(other)
    with sqlite3.connect(other) as con:
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["invoices"]
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 200)
    with pytest.raises(TrackingStoreError, match="damaged.db is not an MLflow sqlite store"):
        check_sqlite_store(damaged)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    with pytest.raises(TrackingStoreError, match="not a regular file"):
        check_sqlite_store(folder)
    empty = tmp_path / "empty.db"
    empty.touch()
    check_sqlite_store(empty)  # sqlite's empty database: MLflow makes its tables in it
    check_sqlite_store(tmp_path / "missing.db")  # created on first use
    real = tmp_path / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{real}").search_experiments()
    check_sqlite_store(real)


def test_a_database_uri_without_its_driver_names_it_and_never_the_password(tmp_path):
    uri = "postgresql://u:s3cretpw@127.0.0.1:1/db"
    for args in (["report", "ablation-components"],
                 ["study", "ablation-components", "--profile", "smoke"]):
        proc = _medn(tmp_path, *args, "--tracking-uri", uri)
        line = _one_clean_error(proc, 2, "postgresql://u:***@127.0.0.1:1/db",
                                "the database driver 'psycopg'", "pip install 'psycopg[binary]'",
                                "postgresql+psycopg2://u:***@127.0.0.1:1/db")
        assert "s3cretpw" not in proc.stdout + proc.stderr, line
    # the installed driver passes this check (the server is then simply not there)
    assert resolve_tracking_uri("postgresql+psycopg2://u:pw@127.0.0.1:1/db").startswith(
        "postgresql+psycopg2://")


def test_report_fails_fast_when_the_tracking_server_cannot_be_reached(tmp_path):
    proc = _medn_process(tmp_path, "report", "ablation-components", "--tracking-uri",
                         "http://127.0.0.1:1")
    _one_clean_error(proc, 1, "cannot reach the MLflow tracking server at http://127.0.0.1:1")


def test_report_of_an_unknown_study_says_so_first(tmp_path):
    unknown = _medn(tmp_path, "report", "nosuch-study")
    _one_clean_error(unknown, 2, "no study named 'nosuch-study' (known: ",
                     "ablation-components")
    known = _medn(tmp_path, "report", "ablation-components")  # no store yet: as before
    _one_clean_error(known, 1, "no MLflow store at mlruns/mlflow.db",
                     "run `medn study ablation-components` first")
    # a study whose spec is gone but whose runs are in the store is still reported
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    client.create_experiment("gone-study/synth-3class")
    gone = _medn(tmp_path, "report", "gone-study", "--format", "csv")
    assert gone.returncode == 0 and "no study named" not in gone.stderr, gone.stderr
    assert gone.stdout.startswith("label,variant,"), gone.stdout
