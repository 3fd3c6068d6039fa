"""Paired comparisons on constructed predictions: the numbers agree with scikit-learn and scipy,
a real difference is found, and no difference is invented."""

from __future__ import annotations

import numpy as np
import pytest

from medn import metrics as mm
from orchestrator.stats import (
    bootstrap_diff,
    mean_std,
    metric_from_confusion,
    paired_comparison,
    subject_differences,
    wilcoxon_p,
)

C = 3


def make_predictions(rng: np.random.Generator, subjects: int, accuracy: float,
                     seeds: tuple[int, ...] = (0, 1, 2), clips: int = 10) -> dict:
    """seed -> subject -> (y_true, y_pred): each clip right with probability ``accuracy``,
    otherwise a wrong class drawn at random. The labels are the same for every seed."""
    truths = {f"s{i:02d}": rng.integers(0, C, clips) for i in range(subjects)}
    out: dict[int, dict] = {}
    for seed in seeds:
        out[seed] = {}
        for subject, y_true in truths.items():
            right = rng.random(clips) < accuracy
            wrong = (y_true + rng.integers(1, C, clips)) % C
            out[seed][subject] = (y_true, np.where(right, y_true, wrong))
    return out


def with_labels_of(source: dict, rng: np.random.Generator, accuracy: float) -> dict:
    """Predictions on the same clips as ``source`` (paired), right with ``accuracy``."""
    out: dict[int, dict] = {}
    for seed, by_subject in source.items():
        out[seed] = {}
        for subject, (y_true, _) in by_subject.items():
            right = rng.random(len(y_true)) < accuracy
            wrong = (y_true + rng.integers(1, C, len(y_true))) % C
            out[seed][subject] = (y_true, np.where(right, y_true, wrong))
    return out


def pooled(predictions: dict, seed: int, metric: str) -> float:
    y_true = np.concatenate([t for t, _ in predictions[seed].values()])
    y_pred = np.concatenate([p for _, p in predictions[seed].values()])
    return mm.pooled_metrics(y_true, y_pred, C)[metric]


@pytest.mark.parametrize("metric", ["uf1", "uar", "accuracy"])
def test_metric_from_confusion_matches_scikit_learn(metric: str) -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        y_true = rng.integers(0, C, 30)
        y_pred = rng.integers(0, C - 1, 30)  # one class never predicted: F1 0, as sklearn
        conf = mm.confusion(y_true, y_pred, C)
        assert metric_from_confusion(conf, metric) == pytest.approx(
            mm.pooled_metrics(y_true, y_pred, C)[metric])
    # a class with neither samples nor predictions counts as 0 in the average over C
    assert metric_from_confusion(mm.confusion([0, 1], [0, 1], C), "uf1") == pytest.approx(2 / 3)


def test_observed_difference_is_the_seed_averaged_pooled_difference() -> None:
    rng = np.random.default_rng(2)
    reference = make_predictions(rng, subjects=8, accuracy=0.5)
    variant = with_labels_of(reference, rng, accuracy=0.6)
    diff, low, high = bootstrap_diff(variant, reference, C, "uf1", n_boot=500)
    expected = np.mean([pooled(variant, s, "uf1") - pooled(reference, s, "uf1")
                        for s in (0, 1, 2)])
    assert diff == pytest.approx(expected)
    assert low <= diff <= high
    # reproducible: the bootstrap's generator is seeded
    assert bootstrap_diff(variant, reference, C, "uf1", n_boot=500) == (diff, low, high)


def test_a_real_difference_is_significant() -> None:
    rng = np.random.default_rng(3)
    reference = make_predictions(rng, subjects=10, accuracy=0.35)
    better = with_labels_of(reference, rng, accuracy=0.85)
    result = paired_comparison(better, reference, C, "uf1")
    assert result.diff > 0.3
    assert 0.0 < result.ci_low < result.diff < result.ci_high
    # every subject is better: the exact two-sided Wilcoxon p-value for 10 pairs is 2 / 2**10
    assert result.p_value == pytest.approx(2 / 2 ** 10)
    assert result.significant and result.n_subjects == 10 and result.n_seeds == 3
    worse = paired_comparison(reference, better, C, "uf1")
    assert worse.diff == pytest.approx(-result.diff) and worse.ci_high < 0 and worse.significant


def test_no_difference_is_not_significant() -> None:
    rng = np.random.default_rng(4)
    reference = make_predictions(rng, subjects=8, accuracy=0.5)
    same = paired_comparison(reference, reference, C, "uf1")
    assert same.diff == 0.0 and same.ci_low == 0.0 and same.ci_high == 0.0
    assert same.p_value == 1.0 and not same.significant
    # two equally good variants whose predictions differ by chance: no mark of significance
    flagged = 0
    for trial in range(20):
        other = with_labels_of(reference, np.random.default_rng(100 + trial), accuracy=0.5)
        result = paired_comparison(other, reference, C, "uf1", n_boot=400)
        assert result.ci_low <= result.diff <= result.ci_high
        flagged += result.significant
    assert flagged <= 3  # about 5 % expected; 3 of 20 is already unlikely (p < 0.08)


def test_subject_differences_use_the_per_fold_score_averaged_over_seeds() -> None:
    y = np.array([0, 0, 1, 1])
    reference = {0: {"a": (y, np.array([0, 0, 0, 0])), "b": (y, y)},
                 1: {"a": (y, np.array([0, 0, 1, 0])), "b": (y, y)}}
    variant = {0: {"a": (y, y), "b": (y, y)}, 1: {"a": (y, y), "b": (y, np.array([1, 1, 1, 1]))}}
    diffs = subject_differences(variant, reference, "uf1")
    ref_a0 = mm.fold_scores(y, [0, 0, 0, 0])["uf1"]
    ref_a1 = mm.fold_scores(y, [0, 0, 1, 0])["uf1"]
    var_b1 = mm.fold_scores(y, [1, 1, 1, 1])["uf1"]
    assert diffs[0] == pytest.approx(((1 - ref_a0) + (1 - ref_a1)) / 2)
    assert diffs[1] == pytest.approx((0 + (var_b1 - 1)) / 2)


def test_fold_score_averages_over_classes_present() -> None:
    # a subject showing one class, predicted perfectly, scores 1 (not 1/C)
    assert mm.fold_scores([2, 2, 2], [2, 2, 2])["uf1"] == 1.0
    # a false alarm of another class counts: classes {0, 1}, F1 = (2/3 + 0) / 2
    assert mm.fold_scores([0, 0], [0, 1])["uf1"] == pytest.approx(1 / 3)


def test_comparison_needs_common_seeds_and_subjects() -> None:
    y = np.array([0, 1])
    a = {0: {"s1": (y, y), "s2": (y, y)}}
    with pytest.raises(ValueError, match="no seed in common"):
        paired_comparison(a, {1: a[0]}, 2)
    with pytest.raises(ValueError, match="at least 2 subjects"):
        paired_comparison(a, {0: {"s1": (y, y)}}, 2)


def test_wilcoxon_and_mean_std() -> None:
    assert wilcoxon_p(np.zeros(5)) == 1.0
    assert wilcoxon_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])) == pytest.approx(2 / 2 ** 6)
    mean, std = mean_std([0.4, 0.5, 0.6])
    assert mean == pytest.approx(0.5) and std == pytest.approx(0.1)
    mean, std = mean_std([0.4])
    assert mean == pytest.approx(0.4) and np.isnan(std)
