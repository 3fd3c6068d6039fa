"""Paired comparisons of two study variants: is a difference in pooled UF1 real or noise?

A study trains every variant on the same LOSO folds (one held-out subject each) with the same
seeds, so two variants can be compared pair by pair. The unit of independence is the SUBJECT:
the clips of one subject are correlated, and the seeds of one subject share that subject's data.
Hence both statistics below resample or pair over subjects:

- the **difference** is the variant's pooled metric minus the reference's (pooled over all
  folds' predictions, as the paper computes UF1 / UAR), averaged over the seeds both have;
- the **95 % interval** is a percentile bootstrap over subjects: subjects are drawn with
  replacement (``n_boot`` times, a fixed generator seed, so a report is reproducible), each
  draw's predictions of both variants are pooled per seed (a subject drawn twice counts twice),
  and the seed-averaged difference of the pooled metric is taken; the 2.5 % and 97.5 %
  quantiles bound the interval. This keeps the metric itself (a pooled macro score, not a mean
  of per-subject scores) and its sampling unit;
- the **p-value** is a two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  ``zero_method="zsplit"`` as in Optuna's WilcoxonPruner) over subjects, on the per-subject
  difference of the per-fold score (``medn.metrics.fold_scores``, averaged over seeds first:
  pairs from the same subject under different seeds are not independent, so they are not
  counted as separate pairs).

A difference is marked significant only when both agree: ``p < alpha`` and the interval
excludes 0 (they answer slightly different questions; requiring both is the conservative
reading).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from medn import metrics as mm

ALPHA = 0.05
N_BOOT = 2000
BOOT_SEED = 0
METRIC_NAMES = ("uf1", "uar", "accuracy")

# Predictions of one variant: seed -> subject -> (y_true, y_pred) as class indices.
Predictions = Mapping[int, Mapping[str, tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class PairedComparison:
    """A variant against the reference variant on the seeds and subjects both have."""

    metric: str
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n_subjects: int
    n_seeds: int
    alpha: float = ALPHA

    @property
    def significant(self) -> bool:
        """``p < alpha`` and the interval excludes 0 (see the module doc)."""
        excludes_zero = self.ci_low > 0.0 or self.ci_high < 0.0
        return bool(self.p_value < self.alpha and excludes_zero)


def confusions(predictions: Mapping[str, tuple[np.ndarray, np.ndarray]], subjects: list[str],
               num_classes: int) -> np.ndarray:
    """One (C, C) confusion matrix per subject, stacked in the order of ``subjects``."""
    out = np.zeros((len(subjects), num_classes, num_classes), dtype=np.int64)
    for i, subject in enumerate(subjects):
        y_true, y_pred = predictions[subject]
        np.add.at(out[i], (np.asarray(y_true, dtype=np.int64),
                           np.asarray(y_pred, dtype=np.int64)), 1)
    return out


def metric_from_confusion(conf: np.ndarray, metric: str) -> np.ndarray:
    """UF1, UAR or accuracy of confusion matrices ``(..., C, C)`` (row = true class), averaged
    over all C classes with 0 for a class that has neither samples nor predictions, exactly as
    ``medn.metrics.pooled_metrics`` (scikit-learn, ``zero_division=0``)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    actual = conf.sum(axis=-1)
    predicted = conf.sum(axis=-2)
    if metric == "accuracy":
        total = actual.sum(axis=-1)
        return np.divide(tp.sum(axis=-1), total, out=np.zeros_like(total), where=total > 0)
    if metric == "uar":
        recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
        return recall.mean(axis=-1)
    if metric == "uf1":
        denom = actual + predicted
        f1 = np.divide(2.0 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        return f1.mean(axis=-1)
    raise ValueError(f"metric {metric!r}: expected one of {', '.join(METRIC_NAMES)}")


def _common(variant: Predictions, reference: Predictions) -> tuple[list[int], list[str]]:
    seeds = sorted(set(variant) & set(reference))
    if not seeds:
        raise ValueError("the variant and the reference have no seed in common")
    subjects = sorted(set.intersection(*(set(variant[s]) & set(reference[s]) for s in seeds)))
    if len(subjects) < 2:
        raise ValueError(f"a paired comparison needs at least 2 subjects in common "
                         f"(got {len(subjects)})")
    return seeds, subjects


def bootstrap_diff(variant: Predictions, reference: Predictions, num_classes: int,
                   metric: str = "uf1", n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                   level: float = 0.95) -> tuple[float, float, float]:
    """``(difference, low, high)``: the seed-averaged difference of the pooled ``metric``
    (variant minus reference) and its percentile bootstrap interval over subjects."""
    seeds, subjects = _common(variant, reference)
    conf_v = np.stack([confusions(variant[s], subjects, num_classes) for s in seeds])
    conf_r = np.stack([confusions(reference[s], subjects, num_classes) for s in seeds])

    def diff(weights: np.ndarray) -> np.ndarray:
        # weights (B, S): how often each subject is drawn; pooled confusion per (draw, seed)
        pooled_v = np.einsum("bs,ksij->bkij", weights, conf_v)
        pooled_r = np.einsum("bs,ksij->bkij", weights, conf_r)
        return (metric_from_confusion(pooled_v, metric)
                - metric_from_confusion(pooled_r, metric)).mean(axis=1)

    observed = float(diff(np.ones((1, len(subjects))))[0])
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(subjects), np.full(len(subjects), 1.0 / len(subjects)),
                            size=n_boot).astype(np.float64)
    values = diff(draws)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return observed, float(low), float(high)


def subject_differences(variant: Predictions, reference: Predictions,
                        metric: str = "uf1") -> np.ndarray:
    """Per subject (sorted), the per-fold score difference (variant minus reference) averaged
    over the seeds both have; the per-fold score is ``medn.metrics.fold_scores``."""
    seeds, subjects = _common(variant, reference)
    out = np.zeros(len(subjects))
    for i, subject in enumerate(subjects):
        out[i] = np.mean([mm.fold_scores(*variant[s][subject])[metric]
                          - mm.fold_scores(*reference[s][subject])[metric] for s in seeds])
    return out


def wilcoxon_p(differences: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; 1.0 when all are 0."""
    from scipy.stats import wilcoxon

    differences = np.asarray(differences, dtype=np.float64)
    if not np.any(differences != 0.0):
        return 1.0
    return float(wilcoxon(differences, zero_method="zsplit", alternative="two-sided").pvalue)


def paired_comparison(variant: Predictions, reference: Predictions, num_classes: int,
                      metric: str = "uf1", n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                      alpha: float = ALPHA) -> PairedComparison:
    """The variant against the reference on the seeds and subjects both have (module doc)."""
    seeds, subjects = _common(variant, reference)
    diff, low, high = bootstrap_diff(variant, reference, num_classes, metric, n_boot, seed)
    p_value = wilcoxon_p(subject_differences(variant, reference, metric))
    return PairedComparison(metric=metric, diff=diff, ci_low=low, ci_high=high,
                            p_value=p_value, n_subjects=len(subjects), n_seeds=len(seeds),
                            alpha=alpha)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; NaN for fewer than two values)."""
    array = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if array.size == 0:
        return float("nan"), float("nan")
    std = float(array.std(ddof=1)) if array.size > 1 else float("nan")
    return float(array.mean()), std
