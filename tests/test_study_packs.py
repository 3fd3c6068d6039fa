"""Studies train packs of folds: pack formation, and a tiny study with ``--pack 2`` on a real
local Ray and a real sqlite MLflow store (one child run per fold, a failing fold retried alone
while its pack-mates' results are kept, resume trains nothing twice)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from medn.packing import CPU_PACK_LIMIT
from orchestrator.execution.packs import (
    AUTO,
    AUTO_LIMIT,
    PACK_ON_CPU,
    make_packs,
    pack_of,
    pack_size,
    parse_pack,
    trial_slots,
)
from orchestrator.execution.units import Unit

MEDN = str(Path(sys.executable).with_name("medn"))


def _units(variants: dict[str, int]) -> list[Unit]:
    return [Unit(3, name, f"s{i:02d}", i, "data", {}) for name, n in variants.items()
            for i in range(1, n + 1)]


def test_parse_pack():
    assert parse_pack("auto") == AUTO and parse_pack("AUTO") == AUTO
    assert parse_pack("4") == 4 and parse_pack(1) == 1
    for bad in ("0", "-2", "two", "1.5", ""):
        with pytest.raises(ValueError, match="--pack"):
            parse_pack(bad)


def test_pack_size():
    assert pack_size(3, pending=100, slots=2) == 3
    assert pack_size(AUTO, pending=20, slots=4) == 5           # every slot busy
    assert pack_size(AUTO, pending=3, slots=8) == 1
    assert pack_size(AUTO, pending=1000, slots=2) == AUTO_LIMIT
    cpu_limit = CPU_PACK_LIMIT if PACK_ON_CPU else 1
    assert pack_size(AUTO, pending=1000, slots=2, on_gpu=False) == cpu_limit
    assert pack_size(5, pending=1000, slots=2, on_gpu=False) == 5   # asked for: as asked


def test_trial_slots():
    assert trial_slots(16, 1, 1, 0.25, None) == 4        # four quarter-GPU trials
    assert trial_slots(16, 2, 1, 0.25, None) == 8
    assert trial_slots(16, 0, 2, 0, None) == 8           # CPU only
    assert trial_slots(16, 0, 1, 0, 3) == 3              # --max-concurrent
    assert trial_slots(1, 0, 4, 0, None) == 1


def test_packs_hold_consecutive_folds_of_one_variant():
    packs = make_packs(_units({"a": 5, "b": 2}), 2, slots=1)
    assert [p.uid for p in packs] == ["3|a|s01+s02", "3|a|s03+s04", "3|a|s05", "3|b|s01+s02"]
    assert pack_of("3|a|s01+s02") == (3, "a", ["s01", "s02"])
    assert pack_of("3|a|s05") == (3, "a", ["s05"])
    ones = make_packs(_units({"a": 3}), 1, slots=4)
    assert [p.subjects for p in ones] == [("s01",), ("s02",), ("s03",)]


def _fold_runs(client: MlflowClient, experiment_id: str) -> list:
    return client.search_runs([experiment_id], "tags.`medn.role` = 'fold'", max_results=1000)


@pytest.mark.slow
def test_a_packed_study_logs_one_run_per_fold_and_retries_only_the_failed_fold(
        tmp_path: Path, smoke_cache: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(uri).search_experiments()  # the schema, created before the driver starts
    cmd = [MEDN, "study", "ablation-components", "--profile", "smoke", "--tracking-uri", uri,
           "--cache-dir", str(smoke_cache), "--pack", "2", "--max-concurrent", "2"]
    env = {**os.environ, "MEDN_FAULT_INJECT": "no5-full:s02:1",
           "MEDN_FAULT_DIR": str(tmp_path / "faults"), "COLUMNS": "120"}
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "20 folds in 10 packed trials (up to 2 folds each)" in first.stdout

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("ablation-components/synth-3class")
    runs = _fold_runs(client, experiment.experiment_id)
    finished = [r for r in runs if r.info.status == "FINISHED"]
    failed = [r for r in runs if r.info.status == "FAILED"]
    parents = {r.data.tags["mlflow.parentRunId"] for r in finished}
    by_fold = {}
    for run in finished:
        key = (run.data.tags["mlflow.parentRunId"], run.data.tags["medn.fold"])
        by_fold[key] = by_fold.get(key, 0) + 1
    # 5 variants x 4 folds, each fold exactly ONE finished child run
    assert len(parents) == 5 and len(by_fold) == 20 and set(by_fold.values()) == {1}
    # the injected fault: one FAILED attempt of no5-full's s02, nothing else failed
    assert [r.data.tags["medn.fold"] for r in failed] == ["s02"]
    assert "injected fault" in failed[0].data.tags.get("medn.error", "")
    for parent in parents:
        assert client.get_run(parent).data.metrics.get("uf1") is not None

    again = subprocess.run(cmd, cwd=tmp_path, env={**env, "MEDN_FAULT_INJECT": ""},
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert len(_fold_runs(client, experiment.experiment_id)) == len(runs)  # nothing retrained


@pytest.mark.slow
def test_a_retried_pack_trains_only_its_unfinished_folds(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    # the real pack trainable on a real local Ray Tune: s02 fails on its first attempt; the
    # retry must train s02 alone (s01's result came with the failed attempt)
    import ray
    from ray import tune
    from train_helpers import random_dataset, tiny_config

    from orchestrator.execution.packs import PackUnit, train_pack

    cfg = tiny_config("optim.epochs=1")
    data = random_dataset(cfg, subjects=3, clips_per_subject=4)
    pack = PackUnit(3, "v", ("s01", "s02"), "data", cfg.model_dump(mode="json"))
    reported: list[str] = []

    class Count(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            reported.append(result["subject"])

    # monkeypatch: the fault never outlives this test, even if Ray fails to start
    monkeypatch.setenv("MEDN_FAULT_INJECT", "v:s02:1")
    monkeypatch.setenv("MEDN_FAULT_DIR", str(tmp_path / "faults"))
    try:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"MEDN_FAULT_INJECT": "v:s02:1",
                                           "MEDN_FAULT_DIR": str(tmp_path / "faults")}})
        trainable = tune.with_parameters(train_pack, packs={pack.uid: pack},
                                         datasets={"data": data}, threads=1)
        tuner = tune.Tuner(
            trainable, param_space={"unit": tune.grid_search([pack.uid])},
            run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0,
                                      callbacks=[Count()],
                                      failure_config=tune.FailureConfig(max_failures=1)))
        grid = tuner.fit()
    finally:
        ray.shutdown()
    assert not grid.errors
    assert reported == ["s01", "s02"]
