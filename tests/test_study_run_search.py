"""The `tune` study: Optuna drives, folds run on Ray, the Wilcoxon pruner stops bad trials,
and a re-run resumes from the Optuna storage and MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

MEDN = str(Path(sys.executable).with_name("medn"))


@pytest.mark.slow
def test_tune_study_runs_budget_and_resumes(tmp_path: Path, smoke_cache: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cmd = [MEDN, "study", "tune", "--profile", "smoke", "--trials", "2", "--tracking-uri", uri,
           "--cache-dir", str(smoke_cache)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDN_FAULT")}
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=400)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    study = optuna.load_study(study_name="tune/synth-3class",
                              storage=f"sqlite:///{tmp_path}/optuna.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(len(t.intermediate_values) == 4 for t in study.trials)  # 4 folds reported
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("tune/synth-3class")
    parents = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'parent'")
    assert sorted(p.data.tags["medn.optuna_trial"] for p in parents) == ["0", "1"]
    for parent in parents:
        trial = study.trials[int(parent.data.tags["medn.optuna_trial"])]
        # one quantity: the objective is the mean of the fold scores the pruner saw, each the
        # fold's last-epoch val/uf1; the pooled UF1 stays in MLflow and in a user attribute
        assert trial.value == pytest.approx(np.mean(list(trial.intermediate_values.values())))
        assert trial.user_attrs["pooled_uf1"] == pytest.approx(parent.data.metrics["uf1"])
        folds = client.search_runs([exp.experiment_id],
                                   f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        subjects = sorted(f.data.tags["medn.fold"] for f in folds)
        for fold in folds:
            step = subjects.index(fold.data.tags["medn.fold"])
            assert trial.intermediate_values[step] == pytest.approx(
                fold.data.metrics["val/uf1"])
    # the same command again: the budget is spent, nothing is trained again
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "fold trainings to run" not in again.stdout
    folds = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'fold'")
    assert len(folds) == 2 * 4
