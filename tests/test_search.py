"""The search's pieces on real Optuna studies: the shuffled fold order, the reporter that feeds
the WilcoxonPruner, pruned trials told their estimate, and resuming a killed trial through
Optuna's public API."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import optuna
import pytest

from medn.config import load_config
from orchestrator.execution.search import (
    ATTR_RESUMES,
    ATTR_VARIANT,
    _FoldReporter,
    fold_order,
    fold_score,
    resume_killed_trials,
    trials_used,
)
from orchestrator.execution.units import VariantState

SUBJECTS = [f"s{i:02d}" for i in range(1, 13)]


def _state() -> VariantState:
    return VariantState(task=3, name="trial-0001", label="trial 1",
                        config=load_config(profile="smoke"), experiment="e", data_key="k",
                        subjects=list(SUBJECTS))


def _wilcoxon_study(storage: str | None = None) -> optuna.Study:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        pruner = optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    return optuna.create_study(direction="maximize", pruner=pruner, storage=storage,
                               study_name="s" if storage else None)


def _complete(study: optuna.Study, value: float) -> None:
    trial = study.ask()
    for step in range(len(SUBJECTS)):
        trial.report(value, step)
    study.tell(trial, value)


def test_fold_order_is_shuffled_per_trial_and_reproducible() -> None:
    orders = [fold_order(SUBJECTS, seed=0, trial_number=n) for n in range(6)]
    assert all(sorted(order) == SUBJECTS for order in orders)
    assert len({tuple(order) for order in orders}) == 6        # a different order per trial
    assert fold_order(SUBJECTS, 0, 3) == orders[3]             # the same on a re-run
    assert fold_order(SUBJECTS, 1, 3) != orders[3]             # and per search seed


def test_fold_score_is_the_per_fold_score_of_medn_metrics() -> None:
    fold = {"y_true": [2, 2, 2, 1], "y_pred": [2, 2, 1, 1], "num_classes": 3}
    # over the classes present (1 and 2), not over all three
    assert fold_score(fold, "uf1") == pytest.approx((0.8 + 2 / 3) / 2)
    assert fold_score(fold, "accuracy") == pytest.approx(0.75)


def test_reporter_reports_a_prefix_of_the_order_and_prunes_a_poor_trial() -> None:
    study = _wilcoxon_study()
    _complete(study, 0.9)
    poor = study.ask()
    state = _state()
    order = fold_order(SUBJECTS, 0, poor.number)
    reporter = _FoldReporter(poor, state, order, "uf1")
    # a fold that arrives early waits until the folds before it in the order are in
    assert reporter.add(order[1], 0.1) is False
    assert study.trials[-1].intermediate_values == {}
    # a fold that failed for good is passed over: the ones after it still count
    assert reporter.add(order[0], None) is False
    assert reporter.skipped == [order[0]] and reporter.reported == [0.1]
    pruned_at = next(i for i, subject in enumerate(order[2:], start=2)
                     if reporter.add(subject, 0.1))
    assert state.pruned
    reported = study.trials[-1].intermediate_values
    assert set(reported) == {SUBJECTS.index(s) for s in order[1:pruned_at + 1]}
    # four pairs, all worse: the one-sided Wilcoxon p is 1/16 < 0.1
    assert len(reported) == 4 and reporter.mean() == pytest.approx(0.1)


def test_pruned_trial_told_its_estimate_never_becomes_the_best() -> None:
    study = _wilcoxon_study()
    _complete(study, 0.6)
    best = study.best_trial.number
    for value in (0.1, 0.5, 0.55):
        trial = study.ask()
        reporter = _FoldReporter(trial, _state(), SUBJECTS, "uf1")
        pruned = any(reporter.add(s, value) for s in SUBJECTS)
        if pruned:  # as search.py does: the estimate, not the PRUNED state
            trial.set_user_attr("pruned", True)
        study.tell(trial, reporter.mean())
        assert pruned == (value < 0.6)
        assert study.best_trial.number == best     # below the best's average: never best
    assert [t.user_attrs.get("pruned", False) for t in study.trials] == [False, True, True, True]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_a_killed_trial_is_taken_over_through_the_public_api(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = _wilcoxon_study(storage)
    _complete(study, 0.5)
    killed = study.ask()
    lr = killed.suggest_float("optim.lr", 1e-5, 1e-2, log=True)
    killed.set_user_attr(ATTR_VARIANT, "trial-0001")
    killed.report(0.4, 3)
    # the driver is gone; a new one opens the study
    again = optuna.load_study(study_name="s", storage=storage)
    assert resume_killed_trials(again) == [killed.number]
    states = [t.state for t in again.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.WAITING]
    assert trials_used(again) == 1                 # the superseded trial does not count
    taken = again.ask()
    assert taken.suggest_float("optim.lr", 1e-5, 1e-2, log=True) == lr
    assert taken.user_attrs[ATTR_RESUMES] == killed.number
    assert taken.user_attrs[ATTR_VARIANT] == "trial-0001"
    again.tell(taken, 0.45)
    assert trials_used(again) == 2
    assert resume_killed_trials(again) == []       # nothing left RUNNING


def test_sampler_keeps_parallel_trials_apart() -> None:
    from orchestrator.studies import find_study

    spec = find_study("tune", check_model=False)
    assert spec.search is not None and spec.search.parallel_trials >= 2
    sampler = spec.search.make_sampler()
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._constant_liar
    assert np.isfinite(spec.search.p_threshold)
