"""`medn study ablation-components` end to end on synth (smoke profile), real local Ray and a
real sqlite MLflow store, checked with MLflow's own client.

One shared scenario (Ray start-up is slow): the study is started as a subprocess and killed
with SIGKILL once at least one fold is FINISHED in MLflow; the same command is run again with
one fold made to fail once (MEDN_FAULT_INJECT) and must finish. The tests then check the run
tree, the resume (no fold trained twice into FINISHED, none missing) and the retried fault.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

STUDY = "ablation-components"
EXPERIMENT = "ablation-components/synth-3class"
VARIANTS = ["no1-plain-vit", "no2-single-rate", "no3-weighted-sum", "no4-no-orth", "no5-full"]
MEDN = str(Path(sys.executable).with_name("medn"))

pytestmark = pytest.mark.slow


def _session_pids(sid: int) -> list[int]:
    """Processes still alive in session ``sid`` (the killed driver's Ray processes)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields: state ppid pgrp session
            pids.append(int(stat.parent.name))
    return pids


def _end_session(sid: int) -> None:
    """Stop what the killed driver left behind (Ray's agents), by process id."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_pids(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(1.0)


def _fold_runs(client: MlflowClient, experiment_id: str, status: str | None = None) -> list:
    filt = "tags.`medn.role` = 'fold'"
    if status:
        filt += f" and attributes.status = '{status}'"
    return client.search_runs([experiment_id], filt, max_results=1000)


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory, smoke_cache: Path) -> dict:
    root = tmp_path_factory.mktemp("study_run")
    uri = f"sqlite:///{root}/mlflow.db"
    cmd = [MEDN, "study", STUDY, "--profile", "smoke", "--tracking-uri", uri,
           "--cache-dir", str(smoke_cache)]
    env = {**os.environ, "MEDN_FAULT_DIR": str(root / "faults"), "COLUMNS": "120"}
    env.pop("MEDN_FAULT_INJECT", None)

    # the store's schema is created here, before the driver starts: two processes creating it
    # at once fail ("table ... already exists")
    client = MlflowClient(uri)
    client.search_experiments()

    # 1. start, and kill -9 the driver once a fold is FINISHED in MLflow
    # one fold at a time (an execution option: the resume below still matches these runs), so
    # that the kill leaves later variants with nothing finished however slow this machine is
    with open(root / "first.log", "w") as log:
        first = subprocess.Popen([*cmd, "--max-concurrent", "1"], cwd=root, stdout=log,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 300
    finished_at_kill: list = []
    try:
        while time.monotonic() < deadline and first.poll() is None:
            # the driver has created the experiment once it starts training
            started = "fold trainings to run" in (root / "first.log").read_text()
            exp = client.get_experiment_by_name(EXPERIMENT) if started else None
            if exp is not None:
                finished_at_kill = _fold_runs(client, exp.experiment_id, "FINISHED")
                if finished_at_kill:
                    break
            time.sleep(0.5)
    finally:
        if first.poll() is None:
            os.kill(first.pid, signal.SIGKILL)
        first.wait()
        _end_session(first.pid)
    assert finished_at_kill, (f"no fold finished before the deadline; first run's log:\n"
                              f"{(root / 'first.log').read_text()[-3000:]}")
    assert first.returncode == -signal.SIGKILL, "the first run ended before it was killed"

    # 2. the fault: a fold of a variant that had nothing finished when the driver was killed
    exp = client.get_experiment_by_name(EXPERIMENT)
    done_before = {(r.data.tags["medn.variant"], r.data.tags["medn.fold"]): r.info.run_id
                   for r in _fold_runs(client, exp.experiment_id, "FINISHED")}
    fault_variant = next((v for v in reversed(VARIANTS) if all(d[0] != v for d in done_before)),
                         None)
    assert fault_variant is not None, f"every variant had a finished fold: {sorted(done_before)}"
    fault_subject = "s02"
    env2 = {**env, "MEDN_FAULT_INJECT": f"{fault_variant}:{fault_subject}:1"}
    proc = subprocess.Popen(cmd, cwd=root, env=env2, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=420)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        _end_session(proc.pid)
    second = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    return {"uri": uri, "root": root, "client": client, "experiment_id": exp.experiment_id,
            "second": second, "done_before": done_before,
            "fault": (fault_variant, fault_subject)}


def test_resumed_study_finishes_and_prints_where_to_look(study_run: dict) -> None:
    second = study_run["second"]
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    out = second.stdout
    assert EXPERIMENT in out and "medn ui" in out
    assert "Ray's log:" in out
    assert "Traceback" not in out + second.stderr  # no raw Ray/Tune stream on the console


def test_run_tree_has_five_parents_with_one_finished_child_per_fold(study_run: dict) -> None:
    client, exp_id = study_run["client"], study_run["experiment_id"]
    parents = client.search_runs([exp_id], "tags.`medn.role` = 'parent'")
    assert sorted(p.data.tags["medn.variant"] for p in parents) == sorted(VARIANTS)
    finished = _fold_runs(client, exp_id, "FINISHED")
    for parent in parents:
        pid = parent.info.run_id
        assert parent.info.status == "FINISHED"
        assert parent.data.tags["medn.study"] == STUDY
        assert parent.data.tags["medn.label"].startswith("No.")
        for key in ("uf1", "uar", "accuracy"):
            assert 0.0 <= parent.data.metrics[key] <= 1.0
        artifacts = {a.path for a in client.list_artifacts(pid)}
        assert {"config.yaml", "predictions.csv", "confusion_matrix.png"} <= artifacts
        # the per-clip QC table travels with the dataset input: a header and one row per clip
        where = tempfile.mkdtemp()
        with open(client.download_artifacts(pid, "data/qc.csv", where), encoding="utf-8") as fh:
            qc_rows = list(csv.DictReader(fh))
        with open(client.download_artifacts(pid, "predictions.csv", where),
                  encoding="utf-8") as fh:
            predicted = {row["clip"] for row in csv.DictReader(fh)}
        assert {row["clip"] for row in qc_rows} == predicted
        assert {row["status"] for row in qc_rows} == {"prepared"}
        folds = [r.data.tags["medn.fold"] for r in finished
                 if r.data.tags.get("mlflow.parentRunId") == pid]
        n_folds = int(parent.data.tags["medn.folds"])
        assert sorted(folds) == sorted(set(folds)), f"{parent.info.run_name}: a fold twice"
        assert len(folds) == n_folds, f"{parent.info.run_name}: {folds} of {n_folds} folds"
    for run in finished:
        for tag in ("medn.study", "medn.variant", "medn.fold", "medn.dataset", "medn.task",
                    "medn.dataset_digest"):
            assert run.data.tags.get(tag), f"fold run {run.info.run_id} lacks tag {tag}"
        assert "val/uf1" in run.data.metrics


def test_summary_run_holds_the_table(study_run: dict) -> None:
    client, exp_id = study_run["client"], study_run["experiment_id"]
    summaries = client.search_runs([exp_id], "tags.`medn.summary` = 'true'")
    assert len(summaries) == 1
    paths = {a.path for a in client.list_artifacts(summaries[0].info.run_id, "summary")}
    assert {"summary/table.csv", "summary/table.md", "summary/plot.png"} <= paths


def test_resume_trained_only_the_missing_folds(study_run: dict) -> None:
    client, exp_id = study_run["client"], study_run["experiment_id"]
    finished = _fold_runs(client, exp_id, "FINISHED")
    keys = [(r.data.tags["medn.variant"], r.data.tags["medn.fold"]) for r in finished]
    assert len(keys) == len(set(keys)), "a (variant, fold) has two FINISHED runs"
    before = study_run["done_before"]
    by_key = {(r.data.tags["medn.variant"], r.data.tags["medn.fold"]): r.info.run_id
              for r in finished}
    assert len(by_key) == 5 * 4  # 5 variants x 4 LOSO folds, none missing
    for key, run_id in before.items():  # finished before the kill: kept, not retrained
        assert by_key[key] == run_id
    match = re.search(r"(\d+) fold trainings to run", study_run["second"].stdout)
    assert match, study_run["second"].stdout[-2000:]
    assert int(match.group(1)) <= len(by_key) - len(before)


def test_failed_attempt_is_visible_and_the_fold_was_retried(study_run: dict) -> None:
    client, exp_id = study_run["client"], study_run["experiment_id"]
    variant, subject = study_run["fault"]
    failed = _fold_runs(client, exp_id, "FAILED")
    mine = [r for r in failed if r.data.tags.get("medn.variant") == variant
            and r.data.tags.get("medn.fold") == subject]
    assert len(mine) == 1
    assert "injected fault" in mine[0].data.tags["medn.error"]
    assert mine[0].data.tags["medn.attempt"] == "1"
    assert {a.path for a in client.list_artifacts(mine[0].info.run_id)} >= {"error.txt"}
    ok = [r for r in _fold_runs(client, exp_id, "FINISHED")
          if r.data.tags.get("medn.variant") == variant and r.data.tags.get("medn.fold") == subject]
    assert len(ok) == 1
