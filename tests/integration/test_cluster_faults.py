"""A study on the cluster topology of docker/compose.yaml, with faults: a killed worker node,
a restarted tracking server and a killed driver.

``medn study`` runs as a user runs it (a subprocess, ``--address`` of the two-node Ray cluster,
``--tracking-uri`` of the MLflow server on PostgreSQL) and the run tree is read back through the
server with MLflow's own client. Faults: the second Ray node is killed while a fold trains on
it, the MLflow server is stopped for a few seconds mid-study and started again on the same port
and database, and the driver is killed with SIGKILL and run again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from mlflow import MlflowClient
from topology import Topology, TopologyError, _alive

VENV_BIN = Path(sys.executable).parent
SUBJECTS = ["s01", "s02", "s03", "s04"]  # the smoke profile of synth
STUDY_YAML = """\
name: {name}
description: "integration test: two MEDN variants on the smoke synth set"
tasks: [3]
metric: uf1
base: {{optim.epochs: {epochs}}}  # a fold trains for a few seconds: time to hit it
variants:
  - name: full
    set: {{model.emotion.sparsity_rates: [1, 2]}}
  - name: no-orth
    set: {{model.emotion.sparsity_rates: [1, 2], loss.lambda_orth: 0.0}}
"""
VARIANTS = ["full", "no-orth"]


def _workdir(tmp_path: Path, name: str, epochs: int) -> Path:
    (tmp_path / "studies").mkdir(parents=True)
    (tmp_path / "studies" / f"{name}.yaml").write_text(
        STUDY_YAML.format(name=name, epochs=epochs))
    return tmp_path


def _study_cmd(topo: Topology, name: str, cwd: Path) -> list[str]:
    return [str(VENV_BIN / "medn"), "study", name, "--profile", "smoke",
            "--address", topo.ray.address, "--tracking-uri", topo.mlflow.uri,
            "--cache-dir", str(cwd / "cache"), "--max-failures", "3"]


def _env(topo: Topology) -> dict[str, str]:
    env = {**os.environ, **topo.ray.env(), "COLUMNS": "120"}
    for key in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(key, None)  # only the flags say where to go
    return env


def _start(topo: Topology, name: str, cwd: Path) -> subprocess.Popen:
    log_path = cwd / f"driver-{time.monotonic_ns()}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(_study_cmd(topo, name, cwd), cwd=cwd, env=_env(topo),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def _run(topo: Topology, name: str, cwd: Path, timeout_s: float = 240) -> str:
    done = subprocess.run(_study_cmd(topo, name, cwd), cwd=cwd, env=_env(topo),
                          capture_output=True, text=True, timeout=timeout_s)
    out = done.stdout + done.stderr
    assert done.returncode == 0, f"medn study {name} failed ({done.returncode}):\n{out[-6000:]}"
    return out


def _log_of(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text(errors="replace")[-6000:]  # type: ignore[attr-defined]


def _fold_runs(client: MlflowClient, name: str) -> list:
    exp = client.get_experiment_by_name(f"{name}/synth-3class")
    assert exp is not None, f"no MLflow experiment {name}/synth-3class on the server"
    return client.search_runs([exp.experiment_id], "tags.`medn.role` = 'fold'",
                              max_results=1000)


def _check_run_tree(client: MlflowClient, name: str) -> dict[tuple[str, str], str]:
    """Every (variant, fold) exactly once FINISHED, pooled metrics on every parent, a summary.
    Returns {(variant, fold): the FINISHED run's id}."""
    exp = client.get_experiment_by_name(f"{name}/synth-3class")
    folds = _fold_runs(client, name)
    finished = Counter((r.data.tags["medn.variant"], r.data.tags["medn.fold"])
                       for r in folds if r.info.status == "FINISHED")
    expected = {(v, s) for v in VARIANTS for s in SUBJECTS}
    assert set(finished) == expected, f"missing FINISHED folds: {expected - set(finished)}"
    twice = {k: n for k, n in finished.items() if n != 1}
    assert not twice, f"(variant, fold) with more than one FINISHED run: {twice}"
    for run in folds:
        # KILLED: a fold run the driver was writing when it died; the next driver marks it so
        # and logs the spooled result again, as the one FINISHED run checked above.
        assert run.info.status in ("FINISHED", "FAILED", "KILLED"), (run.info.run_name,
                                                                     run.info.status)
        assert run.data.tags.get("mlflow.parentRunId"), f"fold run {run.info.run_id} has no parent"
    parents = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'parent'")
    by_variant = Counter(p.data.tags["medn.variant"] for p in parents)
    assert by_variant == Counter(VARIANTS), f"parent runs per variant: {dict(by_variant)}"
    for parent in parents:
        assert parent.info.status == "FINISHED", (parent.info.run_name, parent.info.status)
        for metric in ("uf1", "uar"):
            assert 0.0 <= parent.data.metrics[metric] <= 1.0, (parent.info.run_name, metric)
        artifacts = [a.path for a in client.list_artifacts(parent.info.run_id)]
        assert artifacts, f"parent {parent.info.run_name} has no artifacts on the server"
    return {(r.data.tags["medn.variant"], r.data.tags["medn.fold"]): r.info.run_id
            for r in folds if r.info.status == "FINISHED"}


def _training_pids_on(topo: Topology, node: str) -> list[int]:
    """Ray worker processes of ``node`` that are running a trial right now."""
    out = []
    for pid in topo.ray.nodes[node].pids():
        with contextlib.suppress(OSError):
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            if title.startswith(b"ray::") and title.endswith(b".train"):
                out.append(pid)
    return out


def _ensure_node2(topo: Topology) -> None:
    if "node2" not in topo.ray.nodes:
        topo.ray.start_node2()


def test_node_loss_and_tracking_outage(topology: Topology, tmp_path: Path) -> None:
    """Kill node2's raylet while it trains a fold, then stop MLflow for a few seconds: the
    study still finishes with every fold exactly once FINISHED, the lost attempt FAILED; run
    again, it trains nothing."""
    name = "it-faults"
    cwd = _workdir(tmp_path, name, epochs=30)
    _ensure_node2(topology)
    client = MlflowClient(topology.mlflow.uri)
    started = time.monotonic()
    driver = _start(topology, name, cwd)
    try:
        # (a) the second node dies while one of its trials trains
        deadline = time.monotonic() + 180
        while not _training_pids_on(topology, "node2"):
            assert driver.poll() is None, (
                f"the study ended before node2 trained:\n{_log_of(driver)}")
            assert time.monotonic() < deadline, "no trial ever ran on node2"
            time.sleep(0.1)
        victims = _training_pids_on(topology, "node2")
        raylet = topology.ray.nodes["node2"].raylet_pid()
        os.kill(raylet, signal.SIGKILL)
        t_node_killed = time.monotonic() - started
        topology.ray.kill_node("node2")  # the rest of the node: its `ray start` group
        assert not [p for p in (raylet, *victims) if _alive(p)], "node2 survived its kill"

        # (b) the tracking server goes away for a few seconds, then comes back (same port + DB)
        time.sleep(2)
        if driver.poll() is None:
            topology.mlflow.stop()
            t_mlflow_stopped = time.monotonic() - started
            time.sleep(6)
            # before the start: the driver's retries may log the instant the server answers
            back_wall_ms = time.time() * 1000
            topology.mlflow.start()
            t_mlflow_back = time.monotonic() - started
        else:
            t_mlflow_stopped = t_mlflow_back = back_wall_ms = float("nan")
        rc = driver.wait(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
        if topology.mlflow.proc is None:
            topology.mlflow.start()
    out = _log_of(driver)
    assert rc == 0, f"medn study {name} exited {rc}:\n{out}"
    elapsed = time.monotonic() - started
    print(f"\n[faults] node2 raylet {raylet} SIGKILLed at {t_node_killed:.1f}s while trial "
          f"worker(s) {victims} trained; MLflow down {t_mlflow_stopped:.1f}s -> "
          f"{t_mlflow_back:.1f}s; study done at {elapsed:.1f}s")

    finished = _check_run_tree(client, name)
    failed = [r for r in _fold_runs(client, name) if r.info.status == "FAILED"]
    assert failed, "the attempt lost with node2 is not visible as a FAILED run"
    for run in failed:
        key = (run.data.tags["medn.variant"], run.data.tags["medn.fold"])
        assert key in finished, f"failed attempt {key} was never retried to FINISHED"
    after_outage = [r for r in _fold_runs(client, name)
                    if r.info.status == "FINISHED" and r.info.start_time > back_wall_ms]
    assert after_outage, "no fold was logged after the MLflow server came back"
    print(f"[faults] {len(after_outage)} FINISHED fold runs were written after the restart")
    print(f"[faults] FAILED attempts kept: "
          f"{sorted((r.data.tags['medn.variant'], r.data.tags['medn.fold']) for r in failed)}")

    # the same command again: everything is in MLflow, nothing is trained again
    runs_before = {r.info.run_id for r in _fold_runs(client, name)}
    again = time.monotonic()
    _run(topology, name, cwd)
    assert {r.info.run_id for r in _fold_runs(client, name)} == runs_before, (
        "re-running a finished study created fold runs")
    assert _check_run_tree(client, name) == finished
    print(f"[faults] re-run trained nothing, took {time.monotonic() - again:.1f}s")


def test_killed_driver_resumes_against_the_same_server(topology: Topology,
                                                      tmp_path: Path) -> None:
    """SIGKILL the driver once a fold is in MLflow; the same command finishes the study without
    retraining the folds already FINISHED."""
    name = "it-resume"
    cwd = _workdir(tmp_path, name, epochs=20)
    with contextlib.suppress(TopologyError):
        _ensure_node2(topology)  # the study does not need it: trials fit on the head alone
    client = MlflowClient(topology.mlflow.uri)
    started = time.monotonic()
    driver = _start(topology, name, cwd)
    try:
        deadline = time.monotonic() + 180
        done_before: dict[tuple[str, str], str] = {}
        while not done_before:
            assert driver.poll() is None, f"the study ended before the kill:\n{_log_of(driver)}"
            assert time.monotonic() < deadline, "no fold FINISHED within 180 s"
            time.sleep(0.5)
            with contextlib.suppress(Exception):
                done_before = {
                    (r.data.tags["medn.variant"], r.data.tags["medn.fold"]): r.info.run_id
                    for r in _fold_runs(client, name) if r.info.status == "FINISHED"}
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        t_killed = time.monotonic() - started
    finally:
        if driver.poll() is None:
            driver.kill()
    assert len(done_before) < len(VARIANTS) * len(SUBJECTS), "the study finished before the kill"

    again = time.monotonic()
    _run(topology, name, cwd)
    finished = _check_run_tree(client, name)
    for key, run_id in done_before.items():
        assert finished[key] == run_id, f"{key} was FINISHED before the kill and trained again"
    print(f"\n[resume] driver SIGKILLed at {t_killed:.1f}s with {len(done_before)} of "
          f"{len(finished)} folds FINISHED; the re-run finished the rest in "
          f"{time.monotonic() - again:.1f}s")
