"""The paper's figures (Fig. 6, 7, 8) drawn from synthetic inputs, the data gathered for them,
and the cost numbers behind the Table VI claim."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from train_helpers import fake_result, random_dataset, tiny_config

from orchestrator import figures
from orchestrator.cost import (
    FLOPS,
    FLOPS_EMOTION,
    PARAMS,
    PARAMS_EMOTION,
    TRAIN_SECONDS,
    add_cost_columns,
    cost_notes,
    model_cost_metrics,
    train_seconds,
)
from orchestrator.paper_figures import (
    NORMALIZED_CONFUSION_ARTIFACT,
    TSNE_ARTIFACT,
    TSNE_RAW_ARTIFACT,
    parent_figures,
    pooled_features,
    standardize,
)

CLASSES = ["negative", "positive", "surprise"]


def _clusters(n_per_class: int, dims: int, spread: float, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs, one per class, ``spread`` apart (0: no class signal)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASSES)), n_per_class)
    centres = rng.normal(size=(len(CLASSES), dims)) * spread
    return (centres[labels] + rng.normal(size=(len(labels), dims))).astype(np.float32), labels


def test_rows_are_normalised_and_an_empty_class_stays_empty() -> None:
    rates = figures.normalize_rows(np.array([[3, 1, 0], [0, 0, 0], [1, 1, 2]]))
    assert rates[0].tolist() == [0.75, 0.25, 0.0]
    assert np.isnan(rates[1]).all()
    assert rates[2].tolist() == [0.25, 0.25, 0.5]


def test_normalized_confusion_figure_prints_each_class_accuracy() -> None:
    matrix = np.array([[20, 3, 2], [4, 10, 1], [0, 0, 0]])
    fig = figures.confusion_normalized_figure(matrix, CLASSES, "full UF1 0.61")
    ax = fig.axes[0]
    cells = [t.get_text() for t in ax.texts]
    assert cells == ["0.80", "0.12", "0.08", "0.27", "0.67", "0.07", "-", "-", "-"]
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "negative (n=25)", "positive (n=15)", "surprise (n=0)"]
    assert "full UF1 0.61" in ax.get_title() and "per-class accuracy" in ax.get_title()
    with pytest.raises(ValueError, match="3 classes"):
        figures.confusion_normalized_figure(np.eye(2), CLASSES)


def _nearest_neighbour_agreement(ax) -> float:
    """Share of plotted points whose nearest other point has the same colour (class)."""
    points, owners = [], []
    for index, collection in enumerate(c for c in ax.collections
                                       if isinstance(c, PathCollection)):
        offsets = collection.get_offsets()
        points.append(np.asarray(offsets))
        owners += [index] * len(offsets)
    xy, owner = np.concatenate(points), np.asarray(owners)
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(distance, np.inf)
    return float((owner[distance.argmin(axis=1)] == owner).mean())


def test_tsne_figure_three_panels_coloured_by_emotion() -> None:
    separated, labels = _clusters(20, 16, spread=6.0)
    noise, _ = _clusters(20, 16, spread=0.0, seed=1)
    fig = figures.tsne_figure({"f_m": noise, "f_e": separated, "f_fusion": separated},
                              labels, CLASSES, "full")
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == list(figures.FEATURE_PANELS.values())
    for ax in panels:
        sizes = [len(c.get_offsets()) for c in ax.collections]
        assert sizes == [20, 20, 20]                     # one colour per emotion, every clip
    # clusters in the features stay clusters of one colour; noise does not
    assert _nearest_neighbour_agreement(panels[2]) > 0.95
    assert _nearest_neighbour_agreement(panels[0]) < 0.8
    assert "60 held-out clips" in fig._suptitle.get_text()
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [
        "negative (20)", "positive (20)", "surprise (20)"]


def test_tsne_is_seeded_and_says_why_a_panel_is_empty() -> None:
    x, labels = _clusters(4, 8, spread=3.0)
    assert np.array_equal(figures.tsne_embedding(x, seed=3), figures.tsne_embedding(x, seed=3))
    fig = figures.tsne_figure({"f_e": x, "f_fusion": x[:4]}, labels, CLASSES)
    texts = [" ".join(t.get_text() for t in ax.texts) for ax in fig.axes]
    assert texts[0] == "no t-SNE: not recorded" and texts[2] == "no t-SNE: only 4 clips"
    assert len(fig.axes[1].collections) == 3
    with pytest.raises(ValueError, match="11 feature rows for 12 labels"):
        figures.tsne_figure({"f_e": x[:11]}, labels, CLASSES)


def test_lambda_curves_one_colour_per_task_and_the_tasks_named() -> None:
    xs = [0.0, 1.0, 2.0]
    curves = {3: {"loss.lambda_au": [(x, 0.5 + 0.1 * x, 0.4) for x in xs],
                  "loss.lambda_orth": [(x, 0.6, math.nan) for x in xs]},
              4: {"loss.lambda_au": [(x, 0.3, 0.35) for x in xs]}}
    fig = figures.lambda_curves_figure(curves, "synth")
    title = fig._suptitle.get_text()
    assert "tasks in this figure: 3-class, 4-class" in title and "also plots 7-class" in title
    au, orth = fig.axes
    assert au.get_xlabel() == "λ_au" and orth.get_xlabel() == "λ_orth"
    lines = {line.get_label(): line for line in au.get_lines()}
    assert list(lines["3-class UF1 (3/3 points)"].get_ydata()) == pytest.approx([0.5, 0.6, 0.7])
    assert list(lines["4-class UAR"].get_ydata()) == [0.35] * 3
    assert (lines["3-class UF1 (3/3 points)"].get_color()
            != lines["4-class UF1 (3/3 points)"].get_color())
    orth_lines = {line.get_label(): line for line in orth.get_lines()}
    assert set(orth_lines) == {"3-class UF1 (3/3 points)", "3-class UAR"}
    assert len(orth_lines["3-class UAR"].get_xdata()) == 0           # no complete UAR point
    every = {t: curves[3] for t in (3, 4, 7)}
    assert "also plots" not in figures.lambda_curves_figure(every)._suptitle.get_text()


def _with_features(result, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = len(result.clips)
    feats = {name: (rng.normal(size=(n, dim)) + result.y_true[:, None]).astype(np.float32)
             for name in figures.FEATURE_PANELS}
    return replace(result, features=feats)


def test_parent_figures_pool_every_fold() -> None:
    cfg = tiny_config()
    data = random_dataset(cfg, subjects=3, clips_per_subject=6)
    results = [_with_features(fake_result(data, s, seed=i), seed=i)
               for i, s in enumerate(data.subject_ids)]
    pooled = pooled_features(results)
    assert set(pooled) == set(figures.FEATURE_PANELS)
    assert pooled["f_e"].shape == (18, 8)
    raw = pooled_features(results, per_fold=False)
    assert np.array_equal(raw["f_m"][6:12], results[1].features["f_m"])
    # by default each fold is standardised over its own clips: a fold's offset or scale
    # (each fold is its own model) does not separate it from the others
    results[1] = replace(results[1], features={
        k: v * 5.0 + 100.0 for k, v in results[1].features.items()})
    pooled = pooled_features(results)
    assert np.allclose(pooled["f_m"][6:12], standardize(raw["f_m"][6:12]), atol=1e-5)
    for fold in (slice(0, 6), slice(6, 12), slice(12, 18)):
        assert np.allclose(pooled["f_e"][fold].mean(axis=0), 0.0, atol=1e-5)
        assert np.allclose(pooled["f_e"][fold].std(axis=0), 1.0, atol=1e-4)
    assert np.allclose(standardize(np.ones((4, 2))), 0.0)              # constant column
    out = parent_figures(results, data.classes, data.num_classes, "full")
    assert set(out) == {NORMALIZED_CONFUSION_ARTIFACT, TSNE_ARTIFACT, TSNE_RAW_ARTIFACT}
    assert "standardised" in out[TSNE_ARTIFACT]._suptitle.get_text()
    assert "raw features of every fold" in out[TSNE_RAW_ARTIFACT]._suptitle.get_text()
    y_true = np.concatenate([r.y_true for r in results])
    y_pred = np.concatenate([r.y_pred for r in results])
    first = (y_pred[y_true == 0] == 0).mean()
    assert out[NORMALIZED_CONFUSION_ARTIFACT].axes[0].texts[0].get_text() == f"{first:.2f}"
    # one fold without features: no partial t-SNE
    results[2] = replace(results[2], features={})
    assert pooled_features(results) == {}
    assert set(parent_figures(results, data.classes, data.num_classes, "x")) == {
        NORMALIZED_CONFUSION_ARTIFACT}


def test_model_cost_of_doubled_rates_and_the_claim_note() -> None:
    from medn.models.cost import model_cost

    costs = {}
    for rates in ("[1,2,4,8]", "[1,1,2,2,4,4,8,8]"):
        cfg = tiny_config(f"model.emotion.sparsity_rates={rates}")
        data = random_dataset(cfg)
        costs[rates] = model_cost_metrics(cfg, data)
        whole = model_cost(cfg, num_classes=data.num_classes, num_aus=data.num_aus)
        assert costs[rates][FLOPS] == whole.flops_per_clip      # the same counter as medn's
        assert costs[rates][PARAMS] == whole.parameters
        assert 0 < costs[rates][FLOPS_EMOTION] < costs[rates][FLOPS]
    single, double = costs["[1,2,4,8]"], costs["[1,1,2,2,4,4,8,8]"]
    assert 1.8 < double[FLOPS_EMOTION] / single[FLOPS_EMOTION] < 2.2
    assert double[PARAMS_EMOTION] > single[PARAMS_EMOTION]
    runs = {"a": {**single, TRAIN_SECONDS: 100.0}, "b1": {**double, TRAIN_SECONDS: 170.0},
            "b2": {**double, TRAIN_SECONDS: 190.0}, "c": {}}
    df = pd.DataFrame({"label": ["[1,2,4,8]", "[1,1,2,2,4,4,8,8]", "[1]", "[1,2,4,8]"],
                       "variant": ["s1-2-4-8-contiguous", "s1-1-2-2-4-4-8-8-contiguous",
                                   "s1-contiguous", "s1-2-4-8-strided"],
                       "run_id": ["a", "b1,b2", "c", "a"]})
    add_cost_columns(df, runs)
    assert df["train_seconds"].tolist()[:2] == [100.0, 180.0]    # mean over the seeds
    assert math.isnan(df["flops_per_clip"].iloc[2])
    notes = cost_notes(df)
    ratio = double[FLOPS_EMOTION] / single[FLOPS_EMOTION]
    assert notes[0].startswith("cost (parameters · FLOPs per clip · training seconds")
    assert "[1] - · - · -" in notes[0]
    assert len(notes) == 2                         # the strided [1,2,4,8] has no doubled pair
    assert notes[1].startswith("cost of [1,1,2,2,4,4,8,8] (s1-1-2-2-4-4-8-8-contiguous) "
                               "against [1,2,4,8] (s1-2-4-8-contiguous)")
    assert f"SEVit FLOPs ×{ratio:.2f}" in notes[1] and "training time ×1.80" in notes[1]
    assert "nearly doubles" in notes[1]
    assert train_seconds([replace(fake_result(data, data.subject_ids[0]), seconds=2.5)] * 2) == {
        TRAIN_SECONDS: 5.0}
    empty = pd.DataFrame({"label": ["[1]"], "variant": ["s1"], "run_id": ["x"]})
    add_cost_columns(empty, {"x": {"uf1": 0.5}})
    assert "flops_per_clip" not in empty.columns and cost_notes(empty) == []


# -- wired into the run tree, the summary run and the report (a real sqlite MLflow store) -----

@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("figures_store")
    return {"uri": f"sqlite:///{root}/mlflow.db", "root": root}


def _parent(store: dict, experiment: str, variant: str, cfg, data, *, features: bool = True,
            seconds: float = 1.5) -> str:
    from orchestrator.tracking import RunTreeWriter

    writer = RunTreeWriter(store["uri"], experiment, spool_dir=store["root"] / "spool")
    parent = writer.parent_run(variant, cfg, data, {"medn.study": experiment.split("/")[0]})
    for i, subject in enumerate(data.subject_ids):
        result = replace(fake_result(data, subject, seed=i), seconds=seconds)
        writer.log_fold(parent, _with_features(result, seed=i) if features else result, {})
    assert writer.finalize_parent(parent, data) is not None
    return parent


def test_parent_run_holds_figures_7_and_8_and_its_cost(store: dict, tmp_path) -> None:
    from matplotlib.image import imread
    from mlflow import MlflowClient

    from medn.train import FoldResult

    cfg = tiny_config()
    data = random_dataset(cfg, subjects=3, clips_per_subject=6)
    parent = _parent(store, "fig-unit/synth-3class", "full", cfg, data)
    client = MlflowClient(store["uri"])
    names = {a.path for a in client.list_artifacts(parent)}
    assert {"confusion_matrix.png", NORMALIZED_CONFUSION_ARTIFACT, TSNE_ARTIFACT,
            TSNE_RAW_ARTIFACT} <= names
    for name in (NORMALIZED_CONFUSION_ARTIFACT, TSNE_ARTIFACT, TSNE_RAW_ARTIFACT):
        image = imread(client.download_artifacts(parent, name, str(tmp_path)))
        assert image.ndim == 3 and image.shape[1] > 300            # a real, decodable PNG
    metrics = client.get_run(parent).data.metrics
    assert metrics[TRAIN_SECONDS] == pytest.approx(1.5 * 3)
    expected = model_cost_metrics(cfg, data)
    for key in (PARAMS, FLOPS, PARAMS_EMOTION, FLOPS_EMOTION):
        assert metrics[key] == expected[key]
    # each fold's held-out features travel in its fold_result.json artifact
    fold = client.search_runs([client.get_run(parent).info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent}'")[0]
    import json
    from pathlib import Path

    stored = FoldResult.from_dict(json.loads(Path(client.download_artifacts(
        fold.info.run_id, "fold_result.json", str(tmp_path))).read_text()))
    assert set(stored.features) == set(figures.FEATURE_PANELS)
    assert stored.features["f_fusion"].shape == (6, 8)


def test_lambda_grid_summary_holds_every_task_in_one_fig6(store: dict, tmp_path) -> None:
    from mlflow import MlflowClient

    from orchestrator.paper_figures import FIG6_ARTIFACT, lambda_curves
    from orchestrator.report import write_summary
    from orchestrator.studies import find_study

    spec = find_study("lambda-grid")
    for task in (3, 4):
        cfg = tiny_config()
        data = random_dataset(cfg, classes=task, subjects=3, clips_per_subject=4)
        for name in ("lambda_au=0.0,lambda_orth=1.0", "lambda_au=1.0,lambda_orth=1.0"):
            _parent(store, f"lambda-grid/synth-{task}class", name, cfg, data, features=False)
    curves = lambda_curves(store["uri"], spec, "synth")
    assert sorted(curves) == [3, 4]
    au = {x: (uf1, uar) for x, uf1, uar in curves[4]["loss.lambda_au"]}
    assert not math.isnan(au[0.0][0]) and not math.isnan(au[1.0][1])
    assert math.isnan(au[0.4][0])                                   # never trained
    shared = {x: uf1 for x, uf1, _ in curves[3]["loss.lambda_au"]}[1.0]
    orth = {x: uf1 for x, uf1, _ in curves[3]["loss.lambda_orth"]}
    assert orth[1.0] == shared and not math.isnan(shared)          # on both curves
    run_id = write_summary(None, store["uri"], spec, "synth", 4)
    client = MlflowClient(store["uri"])
    names = {a.path for a in client.list_artifacts(run_id, "summary")}
    assert f"summary/{FIG6_ARTIFACT}" in names and "summary/plot.png" in names


def test_sparsity_rates_report_checks_the_cost_claim(store: dict) -> None:
    from orchestrator.report import render, study_table

    data = random_dataset(tiny_config(), subjects=3, clips_per_subject=4)
    for name, rates, seconds in (("s1-2-4-8-strided", "[1,2,4,8]", 2.0),
                                 ("s1-1-2-2-4-4-8-8-strided", "[1,1,2,2,4,4,8,8]", 3.0)):
        cfg = tiny_config(f"model.emotion.sparsity_rates={rates}",
                          "model.emotion.grouping=strided")
        _parent(store, "sparsity-rates/synth-3class", name, cfg, data, features=False,
                seconds=seconds)
    df = study_table(store["uri"], "sparsity-rates", "synth", 3)
    rows = df.set_index("variant")
    single, double = rows.loc["s1-2-4-8-strided"], rows.loc["s1-1-2-2-4-4-8-8-strided"]
    assert double["flops_per_clip_emotion"] == pytest.approx(
        2 * single["flops_per_clip_emotion"], rel=0.1)
    assert single["train_seconds"] == 6.0 and double["train_seconds"] == 9.0
    assert math.isnan(rows.loc["s1-2-4-8-contiguous", "flops_per_clip"])   # not run
    text = render(df, "markdown")
    ratio = double["flops_per_clip_emotion"] / single["flops_per_clip_emotion"]
    assert ("cost of [1,1,2,2,4,4,8,8] (s1-1-2-2-4-4-8-8-strided) against [1,2,4,8] "
            f"(s1-2-4-8-strided): SEVit FLOPs ×{ratio:.2f}") in text
    assert "training time ×1.50" in text and "nearly doubles" in text
    assert "flops_per_clip" in render(df, "csv").splitlines()[0]


def test_a_cost_that_cannot_be_counted_is_a_tag_not_a_failed_run() -> None:
    from orchestrator.cost import COST_ERROR_TAG, parent_cost

    data = random_dataset(tiny_config())
    metrics, tags = parent_cost(tiny_config(), data)
    assert {m.key for m in metrics} == {PARAMS, FLOPS, PARAMS_EMOTION, FLOPS_EMOTION}
    assert tags == []
    metrics, tags = parent_cost(object(), data)          # not a configuration: cannot build
    assert metrics == [] and [t.key for t in tags] == [COST_ERROR_TAG]
    assert tags[0].value.startswith("AttributeError")


def test_folds_too_small_to_standardise_are_left_out_and_said() -> None:
    from orchestrator.paper_figures import MIN_FOLD_CLIPS, kept_folds

    data = random_dataset(tiny_config(), subjects=3, clips_per_subject=6)
    results = [_with_features(fake_result(data, s, seed=i), seed=i)
               for i, s in enumerate(data.subject_ids)]
    small = results[1]
    keep = slice(0, MIN_FOLD_CLIPS - 3)                      # a fold of 2 held-out clips
    results[1] = replace(small, clips=small.clips[keep], y_true=small.y_true[keep],
                         y_pred=small.y_pred[keep], scores=small.scores[keep],
                         au_true=small.au_true[keep], au_scores=small.au_scores[keep],
                         features={k: v[keep] for k, v in small.features.items()})
    assert kept_folds(results) == [True, False, True]
    assert pooled_features(results)["f_m"].shape == (12, 8)
    assert pooled_features(results, per_fold=False)["f_m"].shape == (14, 8)
    tsne = parent_figures(results, data.classes, data.num_classes, "x")[TSNE_ARTIFACT]
    title = tsne._suptitle.get_text()
    assert "t-SNE of 12 held-out clips" in title
    assert "2 clips of 1 fold with fewer than 5 held-out clips left out" in title
    raw = parent_figures(results, data.classes, data.num_classes, "x")[TSNE_RAW_ARTIFACT]
    assert "t-SNE of 14 held-out clips" in raw._suptitle.get_text()     # nothing left out
    tiny = [results[1]] * 3                                   # every fold too small: raw pool
    tsne = parent_figures(tiny, data.classes, data.num_classes, "x")[TSNE_ARTIFACT]
    assert "raw features" in tsne._suptitle.get_text()
    assert "t-SNE of 6 held-out clips" in tsne._suptitle.get_text()
    assert TSNE_RAW_ARTIFACT not in parent_figures(tiny, data.classes, data.num_classes, "x")
