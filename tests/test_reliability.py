"""The fault catalogue (docs/reliability.md) as tests: hostile input, broken study files, bad
stores, signals. Each case runs the real ``medn`` command (a subprocess, as a user would) or the
real Typer app, and asserts a clean ``error:`` line, the exit code, and what is left in MLflow.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers_astronaut import casme2_record, write_casme2_clip
from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
MEDN = str(Path(sys.executable).with_name("medn"))
SHEET_COLUMNS = ("Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                 "Action Units", "Estimated Emotion")


def medn(*args: str, cwd: Path, timeout: float = 120, env: dict | None = None,
         user: int | None = None) -> subprocess.CompletedProcess:
    """Run ``medn ARGS`` as a user would (its own process, no terminal); ``user``: as that uid."""
    cmd = [MEDN, *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("MEDN_FAULT_INJECT", None)
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def cli(*args: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> subprocess.CompletedProcess:
    """``medn ARGS`` through the real Typer app in this process (quicker than a subprocess)."""
    from typer.testing import CliRunner

    from orchestrator.cli.app import app

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def assert_clean_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """The command failed with ``code`` and one ``error:`` line holding ``needles``, no
    traceback."""
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == code, text[-3000:]
    assert "error:" in result.stderr, text[-3000:]
    assert "Traceback" not in text and "╭─" not in result.stderr, text[-3000:]
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text[-3000:]}"
    return text


# -- --set cannot change what a flag owns -----------------------------------------------------
@pytest.mark.parametrize(("item", "flag"), [("data.task=4", "--task"),
                                            ("data.dataset=samm", "--dataset"),
                                            ("profile=paper", "--profile")])
def test_set_refuses_keys_a_flag_owns(tmp_path: Path, item: str, flag: str,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    for command in (["train"], ["study", "ablation-components"]):
        result = cli(*command, "--profile", "smoke", "--tracking-uri", uri, "--set", item,
                     cwd=tmp_path, monkeypatch=monkeypatch)
        assert_clean_error(result, 2, f"--set {item}", f"set by {flag}")
    assert not (tmp_path / "mlruns").exists()  # refused before anything was created


# -- one broken study file breaks nothing else ------------------------------------------------
ALIAS_BOMB = "\n".join(["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
                       + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
                       + ["variants: *a8"]) + "\n"
BIG_GRID = ("name: big-grid\nvariants:\n  grid:\n" + "".join(
    f"    {key}: [{', '.join(str(v) for v in values)}]\n" for key, values in [
        ("optim.lr", [i / 1000 for i in range(1, 11)]),
        ("loss.lambda_au", [i / 10 for i in range(10)]),
        ("loss.lambda_orth", [i / 10 for i in range(10)]),
        ("model.dim", list(range(8, 18))),
        ("model.dropout", [i / 20 for i in range(10)]),
        ("optim.epochs", list(range(1, 11)))]))


@pytest.fixture
def hostile_studies(tmp_path: Path) -> Path:
    """A working directory whose ./studies holds every kind of unusable spec file."""
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "not-utf8.yaml").write_bytes(b"name: not-utf8\ndescription: \xff\xfe\xfa\n")
    (folder / "a-dir.yaml").mkdir()
    (folder / "loop.yaml").symlink_to("loop.yaml")
    (folder / "bomb.yaml").write_text(ALIAS_BOMB)
    (folder / "big-grid.yaml").write_text(BIG_GRID)
    os.mkfifo(folder / "fifo.yaml")  # reading it would block forever
    (folder / "fine.yaml").write_text(
        "name: fine\ndescription: a good one\nvariants:\n  - {name: a, set: {optim.lr: 0.01}}\n")
    return tmp_path


def test_broken_study_files_do_not_break_other_commands(hostile_studies: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(ALIAS_BOMB.encode()) < 1000 and len(BIG_GRID.encode()) < 1000
    result = medn("train", "--help", cwd=hostile_studies, timeout=180)  # the real command
    assert result.returncode == 0 and "--allow-missing" in result.stdout, result.stderr
    for args in (["--help"], ["study", "--help"], ["study", "show", "ablation-components"],
                 ["study", "fine", "--help"]):
        result = cli(*args, cwd=hostile_studies, monkeypatch=monkeypatch)
        assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-2000:])
    listing = cli("study", "list", cwd=hostile_studies, monkeypatch=monkeypatch)
    assert listing.returncode == 0, listing.stderr
    text = " ".join(listing.stdout.split())
    for name, reason in [("not-utf8", "not UTF-8 text"), ("a-dir", "is a directory"),
                         ("loop", "cannot be read"), ("bomb", "aliases"),
                         ("big-grid", "1000000 variants"), ("fifo", "not a regular file")]:
        assert name in text and reason in text, (name, reason, text[-4000:])
    assert "fine" in text and "a good one" in text


def test_running_a_broken_study_is_a_clean_error(hostile_studies: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name, reason in [("bomb", "YAML aliases (*a0) are not allowed"),
                         ("big-grid", "grid 10 x 10 x 10 x 10 x 10 x 10 = 1000000 variants"),
                         ("not-utf8", "byte 0xff at offset"), ("fifo", "not a regular file"),
                         ("a-dir", "is a directory"), ("loop", "cannot be read")]:
        result = cli("study", name, "--profile", "smoke", cwd=hostile_studies,
                     monkeypatch=monkeypatch)
        assert_clean_error(result, 2, f"{name}.yaml", reason)


def test_study_list_keeps_names_whole_in_a_pipe_and_has_json(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a pipe, no COLUMNS: rich lays the table out in 80 columns
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run([MEDN, "study", "list"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    lines = [line for line in result.stdout.splitlines() if "ablation-components" in line]
    assert lines, result.stdout  # `medn study list | grep ablation-components` finds it
    # too narrow for a description column: the descriptions follow the table, whole
    assert "ablation-components: Table V: ablation of SEVit" in " ".join(result.stdout.split())
    listed = json.loads(cli("study", "list", "--json", cwd=tmp_path,
                            monkeypatch=monkeypatch).stdout)
    by_name = {item["name"]: item for item in listed}
    assert by_name["ablation-components"]["variants"] == 5
    assert by_name["ablation-components"]["valid"] is True
    assert by_name["tune"]["kind"] == "search"


# -- bad data input: clean errors, exit 2 ------------------------------------------------------
def _casme2_sheet(path: Path, records: list) -> Path:
    rows = [{"Subject": int(r.subject), "Filename": r.video, "OnsetFrame": r.onset,
             "ApexFrame": r.apex, "OffsetFrame": r.offset,
             "Action Units": "+".join(str(au.number) for au in sorted(r.aus)),
             "Estimated Emotion": r.emotion} for r in records]
    pd.DataFrame(rows, columns=list(SHEET_COLUMNS)).to_excel(path, index=False)
    return path


def test_real_dataset_input_errors_are_clean(tmp_path: Path, shared_annotations: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt.xlsx"
    corrupt.write_bytes(os.urandom(2000))
    sheet = shared_annotations / "CASME2-coding-20140508.xlsx"
    frames = tmp_path / "frames"
    (frames / "sub01").mkdir(parents=True)
    study = ["study", "ablation-components", "--profile", "smoke", "--tracking-uri", uri,
             "--dataset", "casme2"]
    cases = [
        ([], ["--annotations and --data-root"]),
        (["--annotations", str(tmp_path / "missing.xlsx"), "--data-root", str(frames)],
         ["--annotations", "missing.xlsx: no such file"]),
        (["--annotations", str(corrupt), "--data-root", str(frames)],
         ["corrupt.xlsx", "Excel"]),
        (["--annotations", str(sheet), "--data-root", str(empty)],
         ["--data-root", "the folder is empty"]),
    ]
    for extra, needles in cases:
        assert_clean_error(cli(*study, *extra, cwd=tmp_path, monkeypatch=monkeypatch), 2,
                           *needles)


@pytest.fixture
def casme2_three(tmp_path: Path):
    """A three-subject CASME II copy: frames in the release layout, and its sheet."""
    root = tmp_path / "CASME2"
    records = [casme2_record("01", "EP01_01", onset=10, emotion="happiness", aus=(12,), row=2),
               casme2_record("02", "EP03_02", onset=1, emotion="disgust", aus=(4, 12), row=3),
               casme2_record("03", "EP09_05", onset=5, emotion="surprise", aus=(12,), row=4)]
    paths = {r.subject: write_casme2_clip(root, r) for r in records}
    return root, records, paths


def _train_casme2(tmp_path: Path, sheet: Path, root: Path, *extra: str):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    result = medn("train", "--profile", "smoke", "--tracking-uri", uri, "--dataset", "casme2",
                  "--annotations", str(sheet), "--data-root", str(root), "--cache-dir",
                  str(tmp_path / "cache"), "--set", "data.au_min_count=1", *extra,
                  cwd=tmp_path, timeout=600)
    return result, uri


def test_unreadable_frame_fails_with_its_clip_unless_allow_missing(tmp_path: Path,
                                                                   casme2_three) -> None:
    root, records, paths = casme2_three
    sheet = _casme2_sheet(tmp_path / "sheet.xlsx", records)
    paths["03"][2].write_bytes(b"not a jpeg at all")
    refused, uri = _train_casme2(tmp_path, sheet, root)
    assert_clean_error(refused, 2, "03/EP09_05", "sheet row 4", "--allow-missing")
    kept, uri = _train_casme2(tmp_path, sheet, root, "--allow-missing")
    assert kept.returncode == 0, kept.stdout[-3000:] + kept.stderr[-3000:]
    text = " ".join(kept.stdout.split())
    assert "1 clip(s) missing" in text and "03/EP09_05 (sheet row 4)" in text
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train/casme2-3class")
    runs = client.search_runs([exp.experiment_id])
    assert {r.data.tags.get("medn.role") for r in runs} == {"parent", "fold"}
    assert all(r.data.tags.get("medn.missing_clips") == "1" for r in runs)
    folds = sorted(r.data.tags["medn.fold"] for r in runs if r.data.tags["medn.role"] == "fold")
    assert folds == ["01", "02"]


def test_one_subject_sheet_is_a_clean_error(tmp_path: Path, casme2_three) -> None:
    root, records, _ = casme2_three
    sheet = _casme2_sheet(tmp_path / "one.xlsx", records[:1])
    result, _ = _train_casme2(tmp_path, sheet, root)
    assert_clean_error(result, 2, "at least 2 subjects", "01")


# -- bad tracking stores -----------------------------------------------------------------------
def test_unknown_tracking_scheme_is_a_clean_error(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for command in (["train"], ["study", "ablation-components"]):
        result = cli(*command, "--profile", "smoke", "--tracking-uri", "foo://bar",
                     cwd=tmp_path, monkeypatch=monkeypatch)
        assert_clean_error(result, 2, "--tracking-uri foo://bar", "unsupported scheme")


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="needs POSIX users")
def test_read_only_store_fails_at_once() -> None:
    # a folder every user can enter (pytest's tmp_path is private to its owner)
    tmp_path = Path(tempfile.mkdtemp(prefix="medn-readonly-"))
    tmp_path.chmod(0o755)
    store = tmp_path / "mlruns"
    store.mkdir()
    MlflowClient(f"sqlite:///{store}/mlflow.db").search_experiments()  # the schema exists
    store.chmod(0o555)
    (store / "mlflow.db").chmod(0o444)
    # as an unprivileged user: root may write anywhere, so it would not see "read-only"
    user = 65534 if os.geteuid() == 0 else None
    if user is not None and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux) to drop to another user")
    result = medn("train", "--profile", "smoke", "--tracking-uri",
                  f"sqlite:///{store}/mlflow.db", cwd=tmp_path, timeout=300, user=user,
                  env={"HOME": str(tmp_path), "MEDN_CACHE_DIR": str(tmp_path / "cache")})
    assert_clean_error(result, 2, "cannot be written")
    # at once: the store was judged read-only, not retried as if MLflow were unreachable
    assert "retrying" not in result.stderr.lower() and "unreachable" not in result.stderr
    store.chmod(0o755)
    shutil.rmtree(tmp_path)


def test_deleted_experiment_is_a_clean_error(tmp_path: Path, smoke_cache: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    client = MlflowClient(uri)
    client.delete_experiment(client.create_experiment("train/synth-3class"))
    result = medn("train", "--profile", "smoke", "--tracking-uri", uri, "--cache-dir",
                  str(smoke_cache), cwd=tmp_path)
    assert_clean_error(result, 2, "train/synth-3class", "deleted", "restore")


# -- signals and a dying Ray ---------------------------------------------------------------------
def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    env.pop("MEDN_FAULT_INJECT", None)
    return subprocess.Popen([MEDN, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)


def _wait_for_parents(client: MlflowClient, experiment: str, count: int,
                      proc: subprocess.Popen, timeout_s: float = 300) -> list:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        exp = client.get_experiment_by_name(experiment)
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if len(runs) >= count:
            return runs
        time.sleep(0.5)
    out, err = proc.communicate(timeout=60) if proc.poll() is not None else ("", "")
    raise AssertionError(f"no {count} runs in {experiment} before the deadline:\n{out}\n{err}")


def _session_processes(sid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def _name(pid: int) -> str:
    """The process's name ('' once it has exited)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _finish(proc: subprocess.Popen, timeout_s: float = 120) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
    deadline = time.monotonic() + 30  # Ray's agents notice their raylet is gone and exit
    while _session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {pid: _comm(pid) for pid in _session_processes(proc.pid)}
    for pid in left:  # whatever the run left behind, by process id
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes left running after the driver ended: {left}"
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_ends_a_train_cleanly(tmp_path: Path, smoke_cache: Path, sig: int) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    MlflowClient(uri).search_experiments()  # the schema exists before the driver starts
    proc = _start(["train", "--profile", "smoke", "--set", "optim.epochs=50", "--tracking-uri",
                   uri, "--cache-dir", str(smoke_cache)], tmp_path)
    client = MlflowClient(uri)
    _wait_for_parents(client, "train/synth-3class", 1, proc)
    proc.send_signal(sig)
    code, _, err = _finish(proc)
    name = signal.Signals(sig).name
    assert code == 128 + sig, err[-3000:]
    assert f"error: interrupted by {name}" in " ".join(err.split()) and "Traceback" not in err
    exp = client.get_experiment_by_name("train/synth-3class")
    statuses = [r.info.status for r in client.search_runs([exp.experiment_id])]
    assert "RUNNING" not in statuses and "KILLED" in statuses, statuses


ONE_STUDY = ("name: one\nvariants:\n  - {name: a, set: {optim.epochs: 40}}\n"
             "  - {name: b, set: {optim.epochs: 41}}\n")


@pytest.fixture
def one_study(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "one.yaml").write_text(ONE_STUDY)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    MlflowClient(uri).search_experiments()
    return tmp_path, uri


@pytest.mark.slow
def test_sigterm_ends_a_ray_study_like_sigint(one_study, smoke_cache: Path) -> None:
    cwd, uri = one_study
    proc = _start(["study", "one", "--profile", "smoke", "--tracking-uri", uri, "--cache-dir",
                   str(smoke_cache)], cwd)
    client = MlflowClient(uri)
    _wait_for_parents(client, "one/synth-3class", 2, proc)  # Ray is up, folds are training
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    code, _, err = _finish(proc)
    assert code == 128 + signal.SIGTERM, err[-3000:]  # SIGINT gives 130 the same way
    assert "error: interrupted by SIGTERM" in " ".join(err.split()), err[-3000:]
    exp = client.get_experiment_by_name("one/synth-3class")
    parents = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'parent'")
    assert sorted(p.info.status for p in parents) == ["KILLED", "KILLED"]


@pytest.mark.slow
def test_killed_raylet_gives_a_medn_error(one_study, smoke_cache: Path) -> None:
    cwd, uri = one_study
    proc = _start(["study", "one", "--profile", "smoke", "--tracking-uri", uri, "--cache-dir",
                   str(smoke_cache), "--max-failures", "0"], cwd)
    client = MlflowClient(uri)
    _wait_for_parents(client, "one/synth-3class", 2, proc)
    raylets = [pid for pid in _session_processes(proc.pid) if _name(pid) == "raylet"]
    assert len(raylets) == 1
    os.kill(raylets[0], signal.SIGKILL)
    code, _, err = _finish(proc)
    text = " ".join(err.split())
    assert code == 1, text[-3000:]
    assert f"error: Ray's raylet (pid {raylets[0]}) died" in text and "re-run" in text
    exp = client.get_experiment_by_name("one/synth-3class")
    parents = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'parent'")
    assert "RUNNING" not in [p.info.status for p in parents]


def test_wrong_shape_cache_file_is_a_clean_error(tmp_path: Path, smoke_dataset,
                                                  smoke_cache: Path) -> None:
    import numpy as np

    cache = tmp_path / "cache"
    shutil.copytree(smoke_cache, cache)
    entry = sorted(cache.rglob("*.npz"))[0]
    arrays = dict(np.load(entry))
    arrays["flow"] = arrays["flow"][:, :, :5]  # a file of the right name and the wrong shape
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    result = medn("train", "--profile", "smoke", "--tracking-uri",
                  f"sqlite:///{tmp_path}/mlruns/mlflow.db", "--cache-dir", str(cache),
                  cwd=tmp_path)
    assert_clean_error(result, 2, entry.name, "shape")


@pytest.mark.slow
def test_a_refused_fresh_run_leaves_no_parent(one_study, smoke_cache: Path) -> None:
    cwd, uri = one_study
    result = medn("study", "one", "--profile", "smoke", "--tracking-uri", uri, "--cache-dir",
                  str(smoke_cache), "--fresh", "--cpus-per-trial", "512", cwd=cwd, timeout=300)
    assert_clean_error(result, 2, "--cpus-per-trial 512", "CPUs")
    exp = MlflowClient(uri).get_experiment_by_name("one/synth-3class")
    runs = MlflowClient(uri).search_runs([exp.experiment_id]) if exp else []
    assert runs == []  # the check came before any parent run was created


# -- the catalogue itself ------------------------------------------------------------------------
def test_the_catalogue_names_only_tests_that_exist() -> None:
    import ast

    catalogue = (REPO / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(tests/[\w/]+\.py)::(\w+)", catalogue))
    assert len(named) > 30
    defined: dict[str, set[str]] = {}
    for path, name in sorted(named):
        if path not in defined:
            source = REPO / path
            assert source.is_file(), f"docs/reliability.md names {path}, which does not exist"
            defined[path] = {node.name for node in ast.walk(ast.parse(source.read_text()))
                             if isinstance(node, ast.FunctionDef)}
        assert name in defined[path], f"docs/reliability.md names {path}::{name}: no such test"
    mine = {node.name for node in ast.parse(Path(__file__).read_text()).body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    unlisted = mine - {name for path, name in named if path == "tests/test_reliability.py"}
    assert not unlisted, f"tests of this module missing from docs/reliability.md: {unlisted}"
