"""The science of a finished parent: pool every fold's predictions into one set of metrics,
tables and figures. No MLflow call here: ``RunTreeWriter.finalize_parent`` reads the fold
results back, calls ``pool`` and logs what ``parent_metrics``, ``parent_tables`` and
``parent_figures`` return.

Adding a figure, table or metric to every finished parent is one entry in the matching
function below (the hook); the writer logs whatever they return.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from medn.data.prepared import PreparedDataset
from medn.train import FoldResult


@dataclass(frozen=True)
class PooledFolds:
    """Every fold's predictions of one parent, concatenated in LOSO order, and the pooled
    numbers: ``metrics`` (``uf1``, ``uar``, ``accuracy``, ``au_f1``) and ``au_f1`` per AU."""

    variant: str
    data: PreparedDataset
    results: tuple[FoldResult, ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    au_true: np.ndarray
    au_scores: np.ndarray
    metrics: dict[str, float]
    au_f1: dict[str, float]


def pool(results: Sequence[FoldResult], data: PreparedDataset, variant: str = "") -> PooledFolds:
    """Pool ``results`` (one per fold of ``data``): UF1 / UAR / accuracy over the concatenated
    predictions (never a mean of per-fold scores), and the per-AU F1."""
    from medn import metrics as mm

    y_true = np.concatenate([r.y_true for r in results])
    y_pred = np.concatenate([r.y_pred for r in results])
    au_true = np.concatenate([r.au_true for r in results])
    au_scores = np.concatenate([r.au_scores for r in results])
    pooled = {k: float(v) for k, v in
              mm.pooled_metrics(y_true, y_pred, data.num_classes).items()}
    au_f1: dict[str, float] = {}
    if len(data.au_names):
        values = np.asarray(mm.per_au_f1(au_true, au_scores))
        au_f1 = {str(n): float(v) for n, v in zip(data.au_names, values, strict=True)}
        pooled["au_f1"] = float(np.mean(list(au_f1.values())))
    return PooledFolds(variant=variant, data=data, results=tuple(results), y_true=y_true,
                       y_pred=y_pred, au_true=au_true, au_scores=au_scores, metrics=pooled,
                       au_f1=au_f1)


def parent_metrics(pooled: PooledFolds) -> dict[str, float]:
    """The metrics logged on the parent (step 0): the pooled ones, ``au_f1/<AU>`` and
    ``cost/train_seconds``."""
    from orchestrator.cost import train_seconds

    out = dict(pooled.metrics)
    out.update({f"au_f1/{name}": v for name, v in pooled.au_f1.items()})
    out.update(train_seconds(pooled.results))  # cost/train_seconds: every fold's, summed
    return out


def parent_tables(pooled: PooledFolds) -> dict[str, str]:
    """The text artifacts logged on the parent: artifact name -> content."""
    return {"predictions.csv": predictions_csv(pooled.results, pooled.data),
            "per_au_f1.csv": per_au_f1_csv(pooled)}


def parent_figures(pooled: PooledFolds) -> dict[str, Any]:
    """The figures logged on the parent: artifact name -> matplotlib ``Figure``."""
    from medn import metrics as mm

    matrix = mm.confusion(pooled.y_true, pooled.y_pred, pooled.data.num_classes)
    title = (f"{pooled.variant} UF1 {pooled.metrics['uf1']:.3f}  "
             f"UAR {pooled.metrics['uar']:.3f}")
    # Fig. 7 (row-normalised) and Fig. 8 (t-SNE of the held-out features) beside the counts
    from orchestrator.paper_figures import parent_figures as paper_figures

    return {"confusion_matrix.png": confusion_figure(matrix, pooled.data.classes, title),
            **paper_figures(pooled.results, pooled.data.classes, pooled.data.num_classes,
                            title)}


def predictions_csv(results: Sequence[FoldResult], data: PreparedDataset) -> str:
    """One row per clip: subject, clip, true and predicted class, each class's score."""
    rows = []
    for result in results:
        for i, clip in enumerate(result.clips):
            row: dict[str, Any] = {
                "subject": result.subject, "clip": clip,
                "true": data.classes[int(result.y_true[i])],
                "predicted": data.classes[int(result.y_pred[i])],
            }
            for c, name in enumerate(data.classes):
                row[f"score_{name}"] = float(result.scores[i, c])
            rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False, float_format="%.6f")


def per_au_f1_csv(pooled: PooledFolds) -> str:
    """One row per AU: its F1 over the pooled predictions and its count of positives."""
    positives = (pooled.au_true.sum(axis=0).astype(int).tolist() if pooled.au_f1 else [])
    return pd.DataFrame({"au": list(pooled.au_f1), "f1": list(pooled.au_f1.values()),
                         "positives": positives}).to_csv(index=False)


def confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str) -> Any:
    """The confusion matrix (counts) as a figure titled ``title``."""
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(3.5, 0.9 * len(classes) + 1.5)
    figure = Figure(figsize=(size, size), layout="constrained")
    ax = figure.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(classes)).plot(
        ax=ax, colorbar=False, cmap="Blues", values_format="d")
    ax.set_title(title.strip(), fontsize=9)
    return figure
