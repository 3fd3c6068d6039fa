"""UF1 / UAR / accuracy / confusion / per-AU F1 against hand-built confusion matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medn.metrics import accuracy, confusion, per_au_f1, pooled_metrics, uar, uf1

# Class 2 is never predicted. Confusion (row = true, column = predicted):
#   [[2, 1, 0],
#    [0, 2, 0],
#    [2, 2, 0]]
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 0, 0, 1, 1]


def test_confusion_matrix_is_the_hand_built_one():
    expected = np.array([[2, 1, 0], [0, 2, 0], [2, 2, 0]])
    np.testing.assert_array_equal(confusion(Y_TRUE, Y_PRED, 3), expected)
    assert confusion(Y_TRUE, Y_PRED, 4).shape == (4, 4)


def test_uf1_counts_a_never_predicted_class_as_zero():
    # class 0: 2TP / (2TP + FP + FN) = 4 / (4 + 2 + 1); class 1: 4 / (4 + 3 + 0); class 2: 0
    assert math.isclose(uf1(Y_TRUE, Y_PRED), (4 / 7 + 4 / 7 + 0) / 3)


def test_uar_is_the_mean_of_per_class_recall():
    assert math.isclose(uar(Y_TRUE, Y_PRED), (2 / 3 + 2 / 2 + 0 / 4) / 3)


def test_accuracy():
    assert math.isclose(accuracy(Y_TRUE, Y_PRED), 4 / 9)


def test_perfect_and_label_list():
    assert uf1([0, 1, 2], [0, 1, 2]) == 1.0
    assert uar([0, 1, 2], [0, 1, 2]) == 1.0
    # a protocol class absent from both counts as 0 when named in labels (C = 4 classes)
    assert math.isclose(uf1([0, 1, 2], [0, 1, 2], labels=[0, 1, 2, 3]), 3 / 4)


def test_pooled_metrics_use_all_classes_of_the_protocol():
    got = pooled_metrics(Y_TRUE, Y_PRED, num_classes=3)
    assert set(got) == {"uf1", "uar", "accuracy"}
    assert math.isclose(got["uf1"], 8 / 21)
    assert math.isclose(got["uar"], 5 / 9)
    assert math.isclose(got["accuracy"], 4 / 9)
    # pooled is not the mean of per-"fold" scores: split the same predictions in two folds
    fold_a, fold_b = slice(0, 5), slice(5, 9)
    per_fold = np.mean([uf1(Y_TRUE[s], Y_PRED[s], labels=[0, 1, 2]) for s in (fold_a, fold_b)])
    assert not math.isclose(per_fold, got["uf1"])


def test_per_au_f1_hand_computed():
    au_true = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    scores = np.array([[0.9, 0.2, 0.1], [0.4, 0.6, 0.2], [0.7, 0.1, 0.3], [0.1, 0.2, 0.4]])
    # AU0: TP 1, FP 1, FN 1 -> 2/4; AU1: TP 1, FN 1 -> 2/3; AU2: never present nor predicted -> 0
    np.testing.assert_allclose(per_au_f1(au_true, scores), [0.5, 2 / 3, 0.0])
    np.testing.assert_allclose(per_au_f1(au_true, scores, threshold=0.35)[2], 0.0)
    np.testing.assert_allclose(per_au_f1(au_true, scores, threshold=0.35)[0], 4 / 5)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="y_true has 2 entries but y_pred has 1"):
        uf1([0, 1], [0])
    with pytest.raises(ValueError, match="empty"):
        uar([], [])
    with pytest.raises(ValueError, match=r"\(N clips, A AUs\)"):
        per_au_f1(np.zeros((3, 2)), np.zeros((3, 3)))
