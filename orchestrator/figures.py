"""The paper's figures as pure functions: data in, a matplotlib ``Figure`` out (no pyplot, no
global state, so they draw in any thread and under the Agg canvas MLflow saves with).

- ``confusion_normalized_figure``: Fig. 7, the row-normalised confusion matrix (each row is one
  true class; its diagonal cell is that class's accuracy).
- ``tsne_figure``: Fig. 8, t-SNE of the held-out clips' F_m, F_e and F_fusion, three panels,
  points coloured by emotion.
- ``lambda_curves_figure``: Fig. 6, UF1/UAR against lambda_au and lambda_orth, one curve per
  task, saying which tasks the figure holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FEATURE_PANELS: dict[str, str] = {
    "f_m": "F_m (motion branch)",
    "f_e": "F_e (emotion branch, SEVit)",
    "f_fusion": "F_fusion (CoFM output)",
}
PAPER_FIG6_TASKS = (3, 4, 7)
# t-SNE needs some clips to say anything; below this a panel says why it is empty.
MIN_TSNE_POINTS = 5


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (a row with no clips stays NaN: no accuracy to show)."""
    counts = np.asarray(matrix, dtype=np.float64)
    sums = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sums > 0, counts / np.where(sums > 0, sums, 1.0), np.nan)


def confusion_normalized_figure(matrix: np.ndarray, classes: Sequence[str],
                                title: str = "") -> Figure:
    """Fig. 7: the confusion matrix with each true-class row divided by its clip count.

    Rows are true classes (tick labels give each row's clip count), columns predicted classes;
    the diagonal is the per-class accuracy (recall). A class with no held-out clip shows '-'.
    """
    counts = np.asarray(matrix)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix of shape {counts.shape} for {len(classes)} classes")
    rates = normalize_rows(counts)
    size = max(3.8, 0.95 * len(classes) + 2.0)
    figure = _figure(size + 0.8, size)
    ax = figure.add_subplot()
    image = ax.imshow(np.nan_to_num(rates, nan=0.0), cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(len(classes)):
        for j in range(len(classes)):
            value = rates[i, j]
            text = "-" if math.isnan(value) else f"{value:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if not math.isnan(value) and value > 0.55 else "black")
    rows = counts.sum(axis=1).astype(int)
    ax.set_xticks(range(len(classes)), list(classes), rotation=30 if len(classes) > 4 else 0,
                  ha="right" if len(classes) > 4 else "center")
    ax.set_yticks(range(len(classes)), [f"{c} (n={n})" for c, n in zip(classes, rows,
                                                                     strict=True)])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_title((title.strip() + "\n" if title.strip() else "")
                 + "row-normalised (diagonal = per-class accuracy)", fontsize=9)
    return figure


def tsne_embedding(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """A 2-D t-SNE embedding (scikit-learn, PCA initialisation, seeded) of ``features`` (n, d);
    perplexity min(30, (n - 1) / 3) so that small pools work too."""
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < MIN_TSNE_POINTS:
        raise ValueError(f"t-SNE needs an (n, d) array with n >= {MIN_TSNE_POINTS}, got shape "
                         f"{x.shape}")
    perplexity = min(30.0, (len(x) - 1) / 3.0)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                max_iter=1000).fit_transform(x)


def _scatter(ax: Axes, points: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> None:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    for c, name in enumerate(classes):
        mask = labels == c
        if mask.any():
            ax.scatter(points[mask, 0], points[mask, 1], s=14, alpha=0.8,
                       color=palette(c % 10), label=f"{name} ({int(mask.sum())})",
                       edgecolors="none")
    ax.set_xticks([])
    ax.set_yticks([])


def tsne_figure(features: Mapping[str, np.ndarray], labels: np.ndarray,
                classes: Sequence[str], title: str = "", seed: int = 0,
                note: str = "") -> Figure:
    """Fig. 8: one t-SNE panel per feature (``f_m``, ``f_e``, ``f_fusion``, each (n, d)) of
    the same n held-out clips, points coloured by their true emotion ``labels`` (n,).

    Each panel is its own embedding (t-SNE axes carry no units). A panel whose feature is
    missing, or with fewer than 5 clips, says so instead of plotting. ``note`` (how the
    features were prepared) is added to the title.
    """
    y = np.asarray(labels)
    figure = _figure(4.2 * len(FEATURE_PANELS), 4.4)
    axes = figure.subplots(1, len(FEATURE_PANELS))
    handles: list[Any] = []
    for ax, (key, name) in zip(axes, FEATURE_PANELS.items(), strict=True):
        ax.set_title(name, fontsize=10)
        x = features.get(key)
        if x is None or len(x) < MIN_TSNE_POINTS:
            why = "not recorded" if x is None else f"only {len(x)} clips"
            ax.text(0.5, 0.5, f"no t-SNE: {why}", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        if len(x) != len(y):
            raise ValueError(f"{key}: {len(x)} feature rows for {len(y)} labels")
        _scatter(ax, tsne_embedding(x, seed), y, classes)
        handles = handles or ax.get_legend_handles_labels()[0]
    if handles:
        present = [f"{name} ({int((y == c).sum())})" for c, name in enumerate(classes)
                   if (y == c).any()]
        figure.legend(handles, present, loc="outside lower center", ncol=min(len(present), 7),
                      fontsize=9, title="true emotion (clips)")
    figure.suptitle((title.strip() + ": " if title.strip() else "")
                    + f"t-SNE of {len(y)} held-out clips, pooled over the LOSO folds"
                    + (f"\n({note})" if note else ""), fontsize=10)
    return figure


CurvePoints = Sequence[tuple[float, float, float]]  # (lambda value, UF1, UAR)


def lambda_curves_figure(curves: Mapping[int, Mapping[str, CurvePoints]], dataset: str = "",
                         paper_tasks: Sequence[int] = PAPER_FIG6_TASKS) -> Figure:
    """Fig. 6: one panel per swept lambda (e.g. ``loss.lambda_au``, ``loss.lambda_orth``), one
    colour per task (UF1 solid, UAR dashed); ``curves[task][key]`` = [(value, uf1, uar), ...]
    (NaN where a point is not complete: left out, the legend counts the complete points).

    The title says which tasks the figure holds and which of the paper's (3, 4, 7) it lacks.
    """
    from matplotlib import colormaps

    keys = list(dict.fromkeys(k for per_task in curves.values() for k in per_task))
    if not keys:
        raise ValueError("no lambda curves to draw")
    palette = colormaps["tab10"]
    figure = _figure(5.2 * len(keys), 4.2)
    axes = figure.subplots(1, len(keys), squeeze=False)[0]
    tasks = sorted(curves)
    for ax, key in zip(axes, keys, strict=True):
        for index, task in enumerate(tasks):
            points = sorted(curves[task].get(key, ()))
            if not points:
                continue
            colour = palette(index % 10)
            # the complete points, joined (a grid still running leaves gaps, not breaks)
            done = [p for p in points if math.isfinite(p[1])]
            ax.plot([p[0] for p in done], [p[1] for p in done], "o-", color=colour,
                    markersize=4, label=f"{task}-class UF1 ({len(done)}/{len(points)} points)")
            done = [p for p in points if math.isfinite(p[2])]
            ax.plot([p[0] for p in done], [p[2] for p in done], "s--", color=colour,
                    markersize=3, alpha=0.7, label=f"{task}-class UAR")
        ax.set_xlabel(key.rsplit(".", 1)[-1].replace("lambda_", "λ_"))
        ax.set_ylabel("pooled LOSO score")
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    held = ", ".join(f"{t}-class" for t in tasks)
    lacking = [t for t in paper_tasks if t not in curves]
    note = (f"; the paper also plots {', '.join(map(str, lacking))}-class (not run here)"
            if lacking else "")
    where = f" on {dataset}" if dataset else ""
    figure.suptitle(f"Fig. 6{where}: tasks in this figure: {held}{note}", fontsize=10)
    return figure
