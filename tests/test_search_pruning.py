"""Pruning fires on real trainings: on synth (smoke, 8 subjects) a configuration that cannot
learn (lr = 1, the largest the configuration allows: its loss diverges) is pruned after at
most half its folds, and configurations that train are not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

MEDN = str(Path(sys.executable).with_name("medn"))
SPEC = """\
name: prune-check
description: "a configuration that cannot learn is pruned early"
tasks: [3]
metric: uf1
base: {data.synth_subjects: 8, optim.epochs: 2, optim.batch_size: 4}
search:
  trials: 3
  startup_trials: 10
  pruner: wilcoxon
  p_threshold: 0.1
  pruner_startup_steps: 2
  parallel_trials: 1
  seed: 0
  space:
    optim.lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
"""


@pytest.mark.slow
def test_a_configuration_that_cannot_learn_is_pruned_early(tmp_path: Path,
                                                           smoke_cache: Path) -> None:
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "prune-check.yaml").write_text(SPEC)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name = "prune-check/synth-3class"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for lr in (3e-3, 1.0, 1e-3):  # trained in this order: a good one, the bad one, another
        study.enqueue_trial({"optim.lr": lr})
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDN_FAULT")}
    # one fold at a time, so that the bad trial starts once the first one is told
    run = subprocess.run([MEDN, "study", "prune-check", "--profile", "smoke",
                          "--max-concurrent", "1", "--tracking-uri", uri,
                          "--cache-dir", str(smoke_cache)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    good, bad, other = optuna.load_study(study_name=name, storage=storage).trials
    for trial in (good, other):
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert "pruned" not in trial.user_attrs and len(trial.intermediate_values) == 8
    # told its estimate (the mean of the fold scores it reported: every fold diverged, 0)
    assert bad.state == optuna.trial.TrialState.COMPLETE and bad.user_attrs["pruned"] is True
    assert 2 <= len(bad.intermediate_values) <= 4 == 8 // 2
    assert bad.user_attrs["folds_scored"] == len(bad.intermediate_values)
    assert bad.value == 0.0 and set(bad.intermediate_values.values()) == {0.0}
    saved = 8 - len(bad.intermediate_values)
    assert f"pruning saved {saved} fold trainings" in run.stdout

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    parents = {p.data.tags["medn.variant"]: p for p in
               client.search_runs([exp.experiment_id], "tags.`medn.role` = 'parent'")}
    pruned = parents["trial-0001"]
    assert pruned.data.tags["medn.pruned"] == "true" and pruned.info.status == "KILLED"
    folds = client.search_runs([exp.experiment_id],
                               f"tags.`mlflow.parentRunId` = '{pruned.info.run_id}'")
    # each trained fold of the bad trial is a FAILED run saying why; nothing more was trained
    assert len(folds) == len(bad.intermediate_values)
    assert all(f.info.status == "FAILED" and "non-finite" in f.data.tags["medn.error"]
               for f in folds)
    assert parents["trial-0000"].data.metrics["uf1"] == pytest.approx(
        good.user_attrs["pooled_uf1"])
