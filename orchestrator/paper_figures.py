"""Which of the paper's figures each run gets, and the data they are drawn from.

- every pooled parent run: Fig. 7's row-normalised confusion matrix
  (``confusion_matrix_normalized.png``, beside the counts) and Fig. 8's t-SNE of the held-out
  clips' F_m, F_e and F_fusion pooled over the folds (``tsne.png``: each fold's features
  standardised over its own clips first, see ``pooled_features``; ``tsne_raw.png``: every
  clip as its fold's model gave it), from the features each fold's ``FoldResult`` carries
  (its ``fold_result.json`` artifact);
- the summary run of a sweeps study (``lambda-grid``, Fig. 6): the lambda curves of every task
  of that dataset found in MLflow, in one figure (``summary/fig6_lambda_curves.png``);
- the summary run of a main-results study: the assembled Table III / IV
  (``summary/main_results.md``, ``summary/main_results.csv``).

The drawing itself is ``orchestrator.figures``; this module only gathers the numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from orchestrator import figures

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from medn.train import FoldResult
    from orchestrator.studies.spec import StudySpec

NORMALIZED_CONFUSION_ARTIFACT = "confusion_matrix_normalized.png"
TSNE_ARTIFACT = "tsne.png"
TSNE_RAW_ARTIFACT = "tsne_raw.png"
FIG6_ARTIFACT = "fig6_lambda_curves.png"
MAIN_RESULTS_MD = "main_results.md"
MAIN_RESULTS_CSV = "main_results.csv"
TSNE_SEED = 0
MIN_FOLD_CLIPS = 5


def standardize(features: np.ndarray) -> np.ndarray:
    """Each column minus its mean, divided by its standard deviation (a constant column
    becomes 0), over the rows given: one fold's held-out clips."""
    x = np.asarray(features, dtype=np.float64)
    std = x.std(axis=0)
    return ((x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def kept_folds(results: Sequence[FoldResult], per_fold: bool = True) -> list[bool]:
    """Which folds enter the pooled t-SNE: all of them raw; standardised, those with at least
    ``MIN_FOLD_CLIPS`` held-out clips (mean and deviation of fewer clips say little, and one
    clip would become all zeros)."""
    return [not per_fold or len(r.clips) >= MIN_FOLD_CLIPS for r in results]


def pooled_features(results: Sequence[FoldResult], per_fold: bool = True
                    ) -> dict[str, np.ndarray]:
    """Each feature (``f_m``, ``f_e``, ``f_fusion``) of the held-out clips of every fold that
    ``kept_folds`` keeps, concatenated in the folds' order (the order of their pooled labels);
    a feature that some fold did not record is left out (no partial pool).

    ``per_fold``: standardise each fold's features over its own held-out clips first. Each
    fold is a different model with its own feature space; pooled raw, the t-SNE shows one
    cluster per fold (held-out subject) rather than the emotions (seen on synth). Only the
    held-out clips' own features are used, no label.
    """
    kept = [r for r, keep in zip(results, kept_folds(results, per_fold), strict=True) if keep]
    out: dict[str, np.ndarray] = {}
    for name in figures.FEATURE_PANELS:
        parts = [getattr(r, "features", {}).get(name) for r in kept]
        if parts and all(p is not None for p in parts):
            out[name] = np.concatenate([standardize(p) if per_fold
                                        else np.asarray(p, dtype=np.float32) for p in parts])
    return out


def parent_figures(results: Sequence[FoldResult], classes: Sequence[str], num_classes: int,
                   title: str) -> dict[str, Figure]:
    """The paper's per-run figures for a parent whose folds produced ``results``: artifact
    name -> figure (Fig. 7 normalised confusion matrix; Fig. 8 t-SNE, standardised per fold
    and raw, when features exist)."""
    from medn import metrics as mm

    y_true = np.concatenate([r.y_true for r in results])
    y_pred = np.concatenate([r.y_pred for r in results])
    matrix = mm.confusion(y_true, y_pred, num_classes)
    out = {NORMALIZED_CONFUSION_ARTIFACT: figures.confusion_normalized_figure(
        matrix, classes, title)}
    per_fold = any(kept_folds(results))  # else every fold is too small: pool them raw
    features = pooled_features(results, per_fold)
    if features:
        kept = kept_folds(results, per_fold)
        note = ("each fold's features standardised over its held-out clips" if per_fold else
                f"raw features: every fold has fewer than {MIN_FOLD_CLIPS} held-out clips")
        if not all(kept):
            left = [r for r, keep in zip(results, kept, strict=True) if not keep]
            folds = f"{len(left)} fold" + ("s" if len(left) != 1 else "")
            note += (f"; {sum(len(r.clips) for r in left)} clips of {folds} with "
                     f"fewer than {MIN_FOLD_CLIPS} held-out clips left out")
        y_kept = np.concatenate([r.y_true for r, keep in zip(results, kept, strict=True)
                                 if keep])
        out[TSNE_ARTIFACT] = figures.tsne_figure(features, y_kept, classes, title,
                                                 seed=TSNE_SEED, note=note)
    if per_fold and features:
        # every clip, as the models gave them: nothing left out, but clusters may be folds
        out[TSNE_RAW_ARTIFACT] = figures.tsne_figure(
            pooled_features(results, per_fold=False), y_true, classes, title, seed=TSNE_SEED,
            note="raw features of every fold: each fold is its own model, so clusters may be "
                 "folds")
    return out


def lambda_curves(tracking_uri: str, spec: StudySpec, dataset: str
                  ) -> dict[int, dict[str, list[tuple[float, float, float]]]]:
    """Per task of ``spec`` on ``dataset`` found in MLflow: each sweep's points as
    ``{key: [(value, uf1, uar), ...]}`` (NaN where the point is not complete)."""
    from mlflow import MlflowClient

    from orchestrator.report import study_table
    from orchestrator.studies.expand import sweep_curves

    curves_spec = sweep_curves(spec)
    if not curves_spec:
        return {}
    pattern = re.compile(rf"^{re.escape(spec.name)}/{re.escape(dataset)}-(\d+)class$")
    client = MlflowClient(tracking_uri=tracking_uri)
    tasks = sorted(int(m[1]) for exp in client.search_experiments(
        filter_string=f"name LIKE '{spec.name}/%'", max_results=1000)
        if (m := pattern.match(exp.name)))
    out: dict[int, dict[str, list[tuple[float, float, float]]]] = {}
    for task in tasks:
        table = study_table(tracking_uri, spec.name, dataset, task, spec=spec)
        by_name = table.set_index("variant")
        out[task] = {key: [(float(value), float(by_name["uf1"].get(name, math.nan)),
                            float(by_name["uar"].get(name, math.nan)))
                           for value, name in points]
                     for key, points in curves_spec}
    return out


def summary_extras(tracking_uri: str, spec: StudySpec, dataset: str) -> dict[str, Any]:
    """Extra artifacts for the summary run of ``spec`` on ``dataset``, name -> a matplotlib
    figure (saved as PNG) or text: Fig. 6 (every task's lambda curves in one figure) for a
    sweeps study; the assembled Table III / IV (markdown and CSV, as ``medn report`` prints
    it, every dataset and task found so far) for a main-results study; nothing otherwise."""
    from orchestrator import main_results

    if main_results.is_main_results(spec):
        table = main_results.main_results_table(tracking_uri, spec)
        return {MAIN_RESULTS_MD: main_results.render(table, "markdown"),
                MAIN_RESULTS_CSV: main_results.render(table, "csv")}
    curves = lambda_curves(tracking_uri, spec, dataset)
    if not curves:
        return {}
    return {FIG6_ARTIFACT: figures.lambda_curves_figure(curves, dataset)}
