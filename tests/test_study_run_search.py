"""The `tune` study: Optuna drives, folds run on Ray, the Wilcoxon pruner stops bad trials,
and a re-run resumes from the Optuna storage and MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from medn.config import load_config
from orchestrator.execution.search import _FoldReporter, fold_order, fold_score
from orchestrator.execution.units import VariantState

MEDN = str(Path(sys.executable).with_name("medn"))


def _state(subjects: list[str]) -> VariantState:
    return VariantState(task=3, name="trial-0001", label="trial 1",
                        config=load_config(profile="smoke"), experiment="e", data_key="k",
                        subjects=subjects)


def test_fold_scores_reported_in_fixed_order_and_poor_trial_pruned() -> None:
    subjects = [f"s{i:02d}" for i in range(1, 13)]
    order = fold_order(subjects, seed=0)
    assert order == fold_order(subjects, seed=0) and sorted(order) == subjects
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.WilcoxonPruner(
        p_threshold=0.1, n_startup_steps=2))
    good = study.ask()
    for step in range(len(subjects)):
        good.report(0.9, step)
    study.tell(good, 0.9)

    poor = study.ask()
    state = _state(subjects)
    reporter = _FoldReporter(poor, state, order, "uf1")
    # out-of-order arrivals wait until the folds before them in the fixed order are in
    assert reporter.add(order[1], 0.1) is False
    frozen = study.get_trials(deepcopy=False)[-1]
    assert frozen.intermediate_values == {}
    pruned_after = None
    for i, subject in enumerate([order[0], *order[2:]]):
        if reporter.add(subject, 0.1):
            pruned_after = i
            break
    assert pruned_after is not None and state.pruned
    reported = study.get_trials(deepcopy=False)[-1].intermediate_values
    expected_steps = {subjects.index(s) for s in order[:len(reported)]}
    assert set(reported) == expected_steps  # a prefix of the fixed order


def test_fold_score_uses_the_spec_metric() -> None:
    fold = {"y_true": [0, 1, 2, 2], "y_pred": [0, 1, 1, 2], "num_classes": 3}
    assert fold_score(fold, "accuracy") == pytest.approx(0.75)
    assert 0.0 < fold_score(fold, "uf1") < 1.0
    assert fold_score(fold, "uar") == pytest.approx((1 + 1 + 0.5) / 3)


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
        assert trial.value == pytest.approx(parent.data.metrics["uf1"])
    # the same command again: the budget is spent, nothing is trained again
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=400)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "fold trainings to run" not in again.stdout
    folds = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'fold'")
    assert len(folds) == 2 * 4
