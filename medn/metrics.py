"""MER metrics (paper eq. 17-18) via scikit-learn, on all LOSO folds' predictions pooled.

UF1 = macro F1 over classes (eq. 17), UAR = macro recall (eq. 18). A class in ``labels`` that is
never predicted contributes F1 = 0 (and recall 0 if it has samples); a class with neither samples
nor predictions also counts as 0 (scikit-learn ``zero_division=0``), so pass ``labels`` = every
class of the protocol to average over exactly C classes, as eq. 17-18 do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

ArrayLike = Sequence[int] | np.ndarray


def _labels(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[int] | None) -> list[int]:
    if labels is not None:
        return list(labels)
    return sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()))


def _check(y_true: ArrayLike, y_pred: ArrayLike) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} entries but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError("no predictions to score (y_true is empty)")


def uf1(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[int] | None = None) -> float:
    """Unweighted F1 (eq. 17): the mean over classes of 2TP / (2TP + FP + FN).

    ``labels`` default: every class seen in ``y_true`` or ``y_pred``.
    """
    _check(y_true, y_pred)
    return float(f1_score(y_true, y_pred, labels=_labels(y_true, y_pred, labels),
                          average="macro", zero_division=0))


def uar(y_true: ArrayLike, y_pred: ArrayLike, labels: Sequence[int] | None = None) -> float:
    """Unweighted average recall (eq. 18): the mean over classes of TP / N_class."""
    _check(y_true, y_pred)
    return float(recall_score(y_true, y_pred, labels=_labels(y_true, y_pred, labels),
                              average="macro", zero_division=0))


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """The fraction of correct predictions."""
    _check(y_true, y_pred)
    return float(accuracy_score(y_true, y_pred))


def confusion(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """(C, C) counts; row = true class, column = predicted class."""
    _check(y_true, y_pred)
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def per_au_f1(au_true: np.ndarray, au_scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """F1 of each AU (A,) from 0/1 targets (N, A) and probabilities (N, A) thresholded at
    ``threshold``; an AU with neither positives nor positive predictions scores 0."""
    au_true, au_scores = np.asarray(au_true), np.asarray(au_scores)
    if au_true.shape != au_scores.shape or au_true.ndim != 2:
        raise ValueError(f"au_true {au_true.shape} and au_scores {au_scores.shape} must both "
                         "be (N clips, A AUs)")
    if au_true.shape[1] == 0:
        return np.zeros(0)
    predicted = (au_scores >= threshold).astype(int)
    # One binary F1 per column: with a single AU, sklearn would read an (N, 1) matrix as a binary
    # target and return one F1 per class (two values) instead of one per AU.
    return np.asarray([f1_score(au_true[:, a].astype(int), predicted[:, a], zero_division=0)
                       for a in range(au_true.shape[1])], dtype=float)


def pooled_metrics(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> dict[str, float]:
    """``{"uf1", "uar", "accuracy"}`` over ALL folds' predictions pooled (paper §IV-C), averaged
    over all ``num_classes`` classes of the protocol."""
    labels = list(range(num_classes))
    return {"uf1": uf1(y_true, y_pred, labels), "uar": uar(y_true, y_pred, labels),
            "accuracy": accuracy(y_true, y_pred)}


def fold_scores(y_true: ArrayLike, y_pred: ArrayLike) -> dict[str, float]:
    """THE per-fold score of one held-out subject: ``{"uf1", "uar", "accuracy"}`` with UF1/UAR
    averaged over the classes PRESENT in that subject's labels or predictions.

    One subject rarely shows every class; averaging over all C classes would cap a subject that
    shows one class at 1/C and make fold scores of different subjects incomparable. Pooled
    metrics (``pooled_metrics``) average over all C. This one definition is used for the
    per-epoch ``val/*`` history of ``medn.train``, the search's pruner and objective, and the
    paired tests of reports.
    """
    return {"uf1": uf1(y_true, y_pred), "uar": uar(y_true, y_pred),
            "accuracy": accuracy(y_true, y_pred)}
