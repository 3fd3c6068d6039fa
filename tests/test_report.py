"""Reports re-read from a real sqlite MLflow store, the summary run, and ``medn report``."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from orchestrator.paper_numbers import TABLE4, TABLE5, paper_value
from orchestrator.report import (
    PAPER_UAR,
    PAPER_UF1,
    ReportError,
    render,
    study_table,
    write_summary,
)
from orchestrator.studies import find_study
from tests.ports import free_port

REPO = Path(__file__).resolve().parents[1]
SUBJECTS = ["s01", "s02", "s03"]


def add_variant(client: MlflowClient, exp_id: str, study: str, variant: str, task: int,
                folds: dict[str, str], metrics: dict[str, float] | None,
                incomplete: bool = False, profile: str | None = None) -> str:
    """A parent run and its fold children, tagged as ``RunTreeWriter`` tags them."""
    parent = client.create_run(exp_id, run_name=variant, tags={
        "medn.role": "parent", "medn.variant": variant, "medn.study": study,
        "medn.dataset": "synth", "medn.task": str(task), "medn.folds": str(len(SUBJECTS)),
        **({"medn.profile": profile} if profile else {})})
    pid = parent.info.run_id
    for subject, status in folds.items():
        child = client.create_run(exp_id, run_name=f"fold-{subject}", tags={
            "mlflow.parentRunId": pid, "medn.role": "fold", "medn.fold": subject,
            "medn.variant": variant, "medn.study": study})
        client.set_terminated(child.info.run_id, status)
    if metrics:
        for key, value in metrics.items():
            client.log_metric(pid, key, value)
    if incomplete:
        client.set_tag(pid, "medn.incomplete", "1 of 3 folds have no finished run: s03")
    client.set_terminated(pid, "FINISHED" if metrics else "KILLED")
    time.sleep(0.01)  # distinct start times: "newest parent" is well defined
    return pid


ALL_DONE = dict.fromkeys(SUBJECTS, "FINISHED")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A sqlite store with ablation-components (3- and 4-class) and part of lambda-grid."""
    root = tmp_path_factory.mktemp("mlstore")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    artifacts = (root / "artifacts").as_uri()
    exp = client.create_experiment("ablation-components/synth-3class", artifact_location=artifacts)
    # No.1: an old run (superseded by --fresh), then the newest one, which is the one reported.
    add_variant(client, exp, "ablation-components", "no1-plain-vit", 3, ALL_DONE,
                {"uf1": 0.11, "uar": 0.12, "accuracy": 0.13})
    add_variant(client, exp, "ablation-components", "no1-plain-vit", 3, ALL_DONE,
                {"uf1": 0.41, "uar": 0.42, "accuracy": 0.43})
    add_variant(client, exp, "ablation-components", "no2-single-rate", 3,
                {"s01": "FINISHED", "s02": "FINISHED", "s03": "FAILED"}, None, incomplete=True)
    add_variant(client, exp, "ablation-components", "no3-weighted-sum", 3,
                {"s01": "FAILED", **ALL_DONE}, {"uf1": 0.5, "uar": 0.55, "accuracy": 0.6})
    add_variant(client, exp, "ablation-components", "no5-full", 3, ALL_DONE,
                {"uf1": 0.62, "uar": 0.61, "accuracy": 0.7})
    exp4 = client.create_experiment("ablation-components/synth-4class",
                                    artifact_location=artifacts)
    add_variant(client, exp4, "ablation-components", "no5-full", 4, ALL_DONE,
                {"uf1": 0.3, "uar": 0.31, "accuracy": 0.4})
    lam = client.create_experiment("lambda-grid/synth-3class", artifact_location=artifacts)
    for i, name in enumerate(["lambda_au=0.0,lambda_orth=1.0", "lambda_au=1.0,lambda_orth=1.0",
                              "lambda_au=1.0,lambda_orth=2.0"]):
        add_variant(client, lam, "lambda-grid", name, 3, ALL_DONE,
                    {"uf1": 0.3 + 0.1 * i, "uar": 0.35 + 0.1 * i, "accuracy": 0.5})
    return {"uri": uri, "client": client}


def test_study_table_reads_the_newest_parent_of_each_variant(store: dict) -> None:
    df = study_table(store["uri"], "ablation-components", "synth", 3)
    assert list(df["label"]) == ["No.1", "No.2", "No.3", "No.4", "No.5"]
    rows = df.set_index("label")
    assert rows.loc["No.1", "uf1"] == pytest.approx(0.41)          # the --fresh re-run wins
    assert rows.loc["No.1", "accuracy"] == pytest.approx(0.43)
    assert rows.loc["No.1", "status"] == "complete"
    assert rows.loc["No.2", "status"] == "incomplete"
    assert rows.loc["No.2", "folds_done"] == 2 and rows.loc["No.2", "folds_total"] == 3
    assert pd.isna(rows.loc["No.2", "uf1"])
    assert rows.loc["No.3", "folds_done"] == 3                      # a FAILED attempt not counted
    assert rows.loc["No.4", "status"] == "not started" and rows.loc["No.4", "folds_done"] == 0
    assert rows.loc["No.5", "uar"] == pytest.approx(0.61)
    assert df.attrs["experiment"] == "ablation-components/synth-3class"


def test_paper_columns_are_the_printed_numbers(store: dict) -> None:
    df = study_table(store["uri"], "ablation-components", "synth", 3).set_index("label")
    for label, (uf1, uar) in TABLE5.items():
        assert df.loc[label, PAPER_UF1] == uf1 and df.loc[label, PAPER_UAR] == uar
    assert df.loc["No.1", PAPER_UF1] == 0.6876 and df.loc["No.5", PAPER_UAR] == 0.7294
    notes = " ".join(df.attrs["notes"])
    assert "different dataset: synth" in notes and "Table V" in notes
    four = study_table(store["uri"], "ablation-components", "synth", 4).set_index("label")
    assert four.loc["No.5", PAPER_UF1] == TABLE4[4][0] == 0.6514   # Table IV, full MEDN
    assert four[PAPER_UF1].drop("No.5").isna().all()               # Table V is 3-class only
    assert "Table IV" in " ".join(four.attrs["notes"])


def test_paper_numbers_lookup() -> None:
    assert paper_value("table6", "[1,1,2,2,4,4,8,8]", 3).uar == 0.7301
    assert paper_value("table7", "ViT-B/16", 3).uf1 == 0.7342
    assert paper_value("table7", "LED", 7).uf1 == 0.4906
    assert paper_value("table7", "ResNet-18", 7) is None
    assert paper_value("fig6", "lambda_au=1.0,lambda_orth=1.0", 3) is None


def test_markdown_and_csv_output(store: dict) -> None:
    df = study_table(store["uri"], "ablation-components", "synth", 3)
    md = render(df, "markdown")
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| label"))
    assert f"| {PAPER_UF1} | {PAPER_UAR} |" in header
    row1 = next(line for line in lines if line.startswith("| No.1 "))
    # No.5 (the reference) is complete, but these runs hold no predictions.csv: the table
    # says so instead of comparing, and shows "-" in the comparison columns
    assert "| 0.4100 |" in row1 and "| 3/3 | complete | - |  | 0.6876 | 0.6324 |" in row1
    assert any("no paired comparison where a complete run lacks predictions.csv" in line
               for line in lines)
    assert any(line.startswith("> different dataset: synth") for line in lines)
    parsed = pd.read_csv(io.StringIO(render(df, "csv")))
    assert list(parsed["variant"]) == list(df["variant"])
    for column in ("uf1_mean", "uf1_std", "uar_mean", "uar_std", "uf1_diff", "ci_low",
                   "ci_high", "p_value"):
        assert column in parsed.columns
    assert parsed.loc[0, "uf1_mean"] == pytest.approx(0.41) and pd.isna(parsed.loc[0, "uf1_std"])
    assert parsed.loc[0, "uf1"] == pytest.approx(0.41)
    assert parsed.loc[4, PAPER_UF1] == pytest.approx(0.7568)
    with pytest.raises(ReportError, match="--format 'html'"):
        render(df, "html")


def test_missing_experiment_is_named(store: dict) -> None:
    with pytest.raises(ReportError, match=r"no MLflow experiment 'ablation-components/"
                                          r"synth-7class'.*This study has: ablation-components/"
                                          r"synth-3class"):
        study_table(store["uri"], "ablation-components", "synth", 7)


def _artifact_text(client: MlflowClient, run_id: str, path: str, tmp: Path) -> bytes:
    return Path(client.download_artifacts(run_id, path, str(tmp))).read_bytes()


def test_summary_run_is_created_once_and_updated(store: dict, tmp_path: Path) -> None:
    client: MlflowClient = store["client"]
    spec = find_study("ablation-components", cwd=REPO)
    first = write_summary(client, store["uri"], spec, "synth", 3)
    exp = client.get_experiment_by_name("ablation-components/synth-3class")
    run = client.get_run(first)
    assert run.info.run_name == "summary" and run.info.status == "FINISHED"
    assert run.data.tags["medn.study"] == "ablation-components"
    assert run.data.tags["medn.summary"] == "true"
    assert run.data.tags["medn.variants_complete"] == "3/5"
    assert run.data.tags["medn.best_variant"] == "no5-full"
    files = {f.path for f in client.list_artifacts(first, "summary")}
    assert files == {"summary/table.csv", "summary/table.md", "summary/plot.png"}
    assert _artifact_text(client, first, "summary/plot.png", tmp_path / "a")[:8] == \
        b"\x89PNG\r\n\x1a\n"
    table = pd.read_csv(io.BytesIO(_artifact_text(client, first, "summary/table.csv",
                                                  tmp_path / "b")))
    assert list(table["label"]) == ["No.1", "No.2", "No.3", "No.4", "No.5"]
    assert b"No.5" in _artifact_text(client, first, "summary/table.md", tmp_path / "c")

    # A later run of the study finishes No.4: the same summary run is updated, not duplicated.
    add_variant(client, exp.experiment_id, "ablation-components", "no4-no-orth", 3, ALL_DONE,
                {"uf1": 0.9, "uar": 0.8, "accuracy": 0.85})
    second = write_summary(client, store["uri"], spec, "synth", 3)
    assert second == first
    summaries = client.search_runs([exp.experiment_id], "tags.`medn.summary` = 'true'")
    assert len(summaries) == 1
    assert client.get_run(first).data.tags["medn.variants_complete"] == "4/5"
    assert client.get_run(first).data.tags["medn.best_variant"] == "no4-no-orth"
    table = pd.read_csv(io.BytesIO(_artifact_text(client, first, "summary/table.csv",
                                                  tmp_path / "d")))
    assert table.set_index("label").loc["No.4", "uf1"] == pytest.approx(0.9)
    # The summary run is not mistaken for a variant.
    assert "summary" not in set(study_table(store["uri"], "ablation-components")["variant"])


def test_lambda_grid_summary_has_the_two_curves(store: dict, tmp_path: Path) -> None:
    from orchestrator.report import summary_figure

    spec = find_study("lambda-grid", cwd=REPO)
    df = study_table(store["uri"], "lambda-grid", "synth", 3, spec=spec)
    assert len(df) == 21 and (df["status"] == "complete").sum() == 3
    assert PAPER_UF1 not in df.columns
    assert any("Fig. 6" in note and "no numbers" in note for note in df.attrs["notes"])
    figure = summary_figure(df, spec)
    axes = figure.get_axes()
    assert [ax.get_xlabel().split()[0] for ax in axes] == ["lambda_au", "lambda_orth"]
    au_uf1 = axes[0].get_lines()[0]
    assert list(au_uf1.get_xdata()) == pytest.approx([0.2 * i for i in range(11)])
    ys = au_uf1.get_ydata()
    assert ys[0] == pytest.approx(0.3) and ys[5] == pytest.approx(0.4)   # (0,1) and (1,1)
    run_id = write_summary(None, store["uri"], spec, "synth", 3)
    assert _artifact_text(store["client"], run_id, "summary/plot.png", tmp_path)[:4] == \
        b"\x89PNG"


def test_report_command_prints_each_format(store: dict, tmp_path: Path) -> None:
    from orchestrator.cli.app import app

    runner = CliRunner()
    md = runner.invoke(app, ["report", "ablation-components", "--format", "markdown",
                             "--tracking-uri", store["uri"]])
    assert md.exit_code == 0, md.output
    assert "| No.5 |" in md.output and PAPER_UF1 in md.output
    csv = runner.invoke(app, ["report", "ablation-components", "--format", "csv",
                              "--tracking-uri", store["uri"], "--task", "4"])
    assert csv.exit_code == 0, csv.output
    assert pd.read_csv(io.StringIO(csv.output)).set_index("label").loc["No.5", "uf1"] == \
        pytest.approx(0.3)
    table = runner.invoke(app, ["report", "ablation-components", "--tracking-uri", store["uri"]],
                          env={"COLUMNS": "220"})
    assert table.exit_code == 0, table.output
    assert "No.1" in table.output and "different dataset: synth" in table.output
    no_store = runner.invoke(app, ["report", "backbones", "--tracking-uri",
                                   f"sqlite:///{tmp_path / 'none.db'}"])
    assert no_store.exit_code == 1 and "no MLflow store at" in no_store.output
    assert not (tmp_path / "none.db").exists()
    missing = runner.invoke(app, ["report", "backbones", "--tracking-uri", store["uri"]])
    assert missing.exit_code == 1
    assert "no MLflow experiment 'backbones/synth-3class'" in missing.output


def test_medn_ui_serves_the_store(store: dict, tmp_path: Path) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys
    import urllib.parse
    import urllib.request

    client: MlflowClient = store["client"]
    exp = client.get_experiment_by_name("ablation-components/synth-3class")
    run = client.create_run(exp.experiment_id, run_name="ui-probe")
    client.log_text(run.info.run_id, "served from the store", "probe.txt")
    port = free_port()
    log = (tmp_path / "ui.log").open("w")
    medn = Path(sys.executable).parent / "medn"
    process = subprocess.Popen([str(medn), "ui", "--tracking-uri", store["uri"], "--port",
                                str(port)], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    query = urllib.parse.urlencode({"experiment_name": exp.name})
    try:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(
                        f"{base}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=5) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.5)
        assert body is not None, (tmp_path / "ui.log").read_text()
        assert body["experiment"]["experiment_id"] == exp.experiment_id
        artifact = urllib.parse.urlencode({"path": "probe.txt", "run_uuid": run.info.run_id})
        with urllib.request.urlopen(f"{base}/get-artifact?{artifact}", timeout=10) as r:
            assert r.read() == b"served from the store"
        with urllib.request.urlopen(f"{base}/", timeout=10) as r:
            assert r.status == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    assert f"http://127.0.0.1:{port}" in (tmp_path / "ui.log").read_text()


# -- seeds and paired comparisons, written by the real RunTreeWriter ---------------------------

SEEDS = (0, 1, 2)


def _fold(data, subject: str, rng: np.random.Generator, accuracy: float):
    """A fold result whose predictions are right with probability ``accuracy``."""
    from medn.train import FoldResult

    idx = data.fold(subject).test_idx
    y_true = data.labels[idx].numpy().astype(np.int64)
    right = rng.random(len(idx)) < accuracy
    y_pred = np.where(right, y_true, (y_true + rng.integers(1, data.num_classes, len(idx)))
                      % data.num_classes)
    scores = np.full((len(idx), data.num_classes), 0.1, dtype=np.float32)
    scores[np.arange(len(idx)), y_pred] = 0.8
    return FoldResult(subject=subject, clips=[data.clips[i] for i in idx], y_true=y_true,
                      y_pred=y_pred, scores=scores,
                      au_true=data.aus[idx].numpy().astype(np.float32),
                      au_scores=rng.random((len(idx), data.num_aus)).astype(np.float32),
                      history=[{"val/uf1": 0.5}], seconds=0.1)


@pytest.fixture(scope="module")
def seeded_store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """ablation-components with 3 seeds per variant, written as a study writes it: No.5 (the
    reference) and No.3 right half of the time, No.2 right 90 % of the time, No.1 missing its
    third seed, No.4 never started."""
    from orchestrator.tracking import RunTreeWriter
    from tests.train_helpers import random_dataset, tiny_config

    root = tmp_path_factory.mktemp("seeded")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    data = random_dataset(tiny_config(), subjects=6, clips_per_subject=8)
    writer = RunTreeWriter(uri, "ablation-components/synth-3class", spool_dir=root / "spool")
    rng = np.random.default_rng(7)
    pooled: dict[str, list[float]] = {}
    plan = {"no5-full": ("No.5", 0.5, SEEDS), "no2-single-rate": ("No.2", 0.9, SEEDS),
            "no3-weighted-sum": ("No.3", 0.5, SEEDS), "no1-plain-vit": ("No.1", 0.5, (0,))}
    for variant, (label, accuracy, seeds) in plan.items():
        for seed in seeds:
            cfg = tiny_config(f"seed={seed}")
            tags = {"medn.study": "ablation-components", "medn.label": label,
                    "medn.seed": str(seed), "medn.seeds": str(len(SEEDS))}
            parent = writer.parent_run(variant, cfg, data, tags)
            for subject in data.subject_ids:
                writer.log_fold(parent, _fold(data, subject, rng, accuracy), {})
            pooled.setdefault(variant, []).append(writer.finalize_parent(parent, data)["uf1"])
    return {"uri": uri, "pooled": pooled, "client": MlflowClient(tracking_uri=uri)}


def test_seeds_give_mean_std_and_paired_comparisons(seeded_store: dict) -> None:
    spec = find_study("ablation-components", cwd=REPO, check_model=False)
    df = study_table(seeded_store["uri"], "ablation-components", "synth", 3, spec=spec)
    rows = df.set_index("variant")
    pooled = seeded_store["pooled"]
    for variant in ("no5-full", "no2-single-rate", "no3-weighted-sum"):
        assert rows.loc[variant, "seeds"] == 3 and rows.loc[variant, "status"] == "complete"
        assert rows.loc[variant, "uf1_mean"] == pytest.approx(np.mean(pooled[variant]))
        assert rows.loc[variant, "uf1_std"] == pytest.approx(np.std(pooled[variant], ddof=1))
        assert rows.loc[variant, "folds_done"] == 18 and rows.loc[variant, "folds_total"] == 18
    # No.1 has 1 of its 3 seeds: incomplete, no numbers, the missing seed's folds counted
    assert rows.loc["no1-plain-vit", "status"] == "incomplete"
    assert pd.isna(rows.loc["no1-plain-vit", "uf1_mean"])
    assert rows.loc["no1-plain-vit", "folds_total"] == 18
    assert pd.isna(rows.loc["no1-plain-vit", "uf1_diff"])
    assert rows.loc["no4-no-orth", "status"] == "not started"
    # the reference compares as 0; the better variant by its pooled difference, significant
    assert rows.loc["no5-full", "uf1_diff"] == 0.0 and pd.isna(rows.loc["no5-full", "p_value"])
    better = rows.loc["no2-single-rate"]
    assert better["uf1_diff"] == pytest.approx(np.mean(pooled["no2-single-rate"])
                                               - np.mean(pooled["no5-full"]))
    assert 0 < better["ci_low"] < better["uf1_diff"] < better["ci_high"]
    assert better["p_value"] < 0.05 and bool(better["significant"])
    same = rows.loc["no3-weighted-sum"]
    assert same["ci_low"] < 0 < same["ci_high"] and not bool(same["significant"])

    md = render(df, "markdown")
    line = next(x for x in md.splitlines() if x.startswith("| No.2 "))
    mean, std = better["uf1_mean"], better["uf1_std"]
    assert f"| {mean:.4f} ± {std:.4f} |" in line
    assert (f"| {better['uf1_diff']:+.4f} [{better['ci_low']:+.3f}, {better['ci_high']:+.3f}] |"
            in line)
    assert "n.s." not in line
    assert "n.s." in next(x for x in md.splitlines() if x.startswith("| No.3 "))
    assert "| ref |" in next(x for x in md.splitlines() if x.startswith("| No.5 "))
    assert "mean ± standard deviation over seeds" in md and "Wilcoxon" in md
    csv = pd.read_csv(io.StringIO(render(df, "csv"))).set_index("variant")
    assert csv.loc["no2-single-rate", "p_value"] == pytest.approx(better["p_value"])
    assert csv.loc["no2-single-rate", "uar_std"] == pytest.approx(better["uar_std"])


def test_report_says_which_non_paper_switches_each_row_used(seeded_store: dict) -> None:
    from medn.config import deviations
    from tests.train_helpers import tiny_config

    expected = ", ".join(deviations(tiny_config()))
    assert expected  # smoke keeps stabilisers the paper does not have
    client: MlflowClient = seeded_store["client"]
    exp = client.get_experiment_by_name("ablation-components/synth-3class")
    folds = client.search_runs([exp.experiment_id], "tags.`medn.role` = 'fold'")
    assert folds and all(r.data.tags["medn.deviations"] == expected for r in folds)
    spec = find_study("ablation-components", cwd=REPO, check_model=False)
    df = study_table(seeded_store["uri"], "ablation-components", "synth", 3, spec=spec)
    started = df[df["status"] != "not started"]
    assert set(started["deviations"]) == {expected} and set(started["profile"]) == {"smoke"}
    assert f"non-paper switches (every row): {expected}" in df.attrs["notes"]
    assert not any("300 epochs" in note for note in df.attrs["notes"])  # smoke trains 2
    md = render(df, "markdown")
    assert f"> non-paper switches (every row): {expected}" in md
    csv = pd.read_csv(io.StringIO(render(df, "csv"))).set_index("variant")
    assert csv.loc["no5-full", "deviations"] == expected


def testsetting_notes_group_rows_by_their_switches_and_name_the_assumed_epochs() -> None:
    from orchestrator.report import setting_notes

    df = pd.DataFrame({
        "label": ["No.1", "No.2", "No.3", "No.4"],
        "status": ["complete", "complete", "incomplete", "not started"],
        "deviations": ["none", "model.head_norm=true", "none", ""],
        "epochs": ["300", "300", "300", ""]})
    notes = setting_notes(df)
    assert "non-paper switches (No.1, No.3): none, only the paper's settings" in notes
    assert "non-paper switches (No.2): model.head_norm=true" in notes
    assert not any("No.4" in note for note in notes)  # never started: no setting to report
    assert any(note.startswith("300 epochs is our assumption") for note in notes)


def test_seeded_summary_holds_the_comparison_and_error_bars(seeded_store: dict,
                                                             tmp_path: Path) -> None:
    from orchestrator.report import summary_figure

    spec = find_study("ablation-components", cwd=REPO, check_model=False)
    client: MlflowClient = seeded_store["client"]
    run_id = write_summary(client, seeded_store["uri"], spec, "synth", 3)
    table = pd.read_csv(io.BytesIO(_artifact_text(client, run_id, "summary/table.csv",
                                                  tmp_path / "a"))).set_index("variant")
    assert table.loc["no2-single-rate", "ci_low"] > 0
    assert {"uf1_mean", "uf1_std", "uf1_diff", "p_value"} <= set(table.columns)
    md = _artifact_text(client, run_id, "summary/table.md", tmp_path / "b").decode()
    assert "±" in md and "Δ UF1" in md
    df = study_table(seeded_store["uri"], "ablation-components", "synth", 3, spec=spec)
    ax = summary_figure(df, spec).get_axes()[0]
    bars = [c for c in ax.containers if getattr(c, "errorbar", None) is not None]
    assert len(bars) == 2  # UF1 and UAR bars, each with its standard deviation over seeds
    segments = bars[0].errorbar.lines[2][0].get_segments()
    heights = sorted(round(float(seg[1][1] - seg[0][1]), 6) for seg in segments)
    stds = sorted(round(2 * float(v), 6) for v in df["uf1_std"].fillna(0.0))
    assert heights == pytest.approx(stds)


def test_rich_table_fits_the_terminal(store: dict) -> None:
    from rich.console import Console

    df = study_table(store["uri"], "ablation-components", "synth", 3)

    def printed(width: int) -> str:
        console = Console(width=width, record=True, file=io.StringIO())
        console.print(render(df, "table"))
        return console.export_text()

    narrow, wide = printed(80), printed(200)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert "no1-plain-vit" not in narrow and "narrow terminal: variant" in narrow
    assert "no1-plain-vit" in wide and "paper" in wide and "narrow terminal" not in wide


def test_narrow_table_keeps_variant_names_when_labels_repeat(store: dict) -> None:
    from rich.console import Console

    df = study_table(store["uri"], "ablation-components", "synth", 3).copy()
    df["label"] = "same row"  # as when one paper row is run in two readings (sparsity-rates)
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(render(df, "table"))
    narrow = console.export_text()
    assert "no1-plain-vit" in narrow and "no5-full" in narrow
    assert "narrow terminal: label" in narrow


def test_side_by_side_lays_table_vi_out_once_per_reading(tmp_path: Path) -> None:
    from orchestrator.report import side_by_side_rows

    spec = find_study("sparsity-rates", cwd=REPO, check_model=False)
    assert spec.side_by_side == "model.emotion.grouping"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("sparsity-rates/synth-3class",
                                   artifact_location=(tmp_path / "a").as_uri())
    scores = {"s1-contiguous": 0.31, "s1-2-4-8-contiguous": 0.52, "s1-strided": 0.31,
              "s1-2-4-8-strided": 0.44}
    for variant, uf1 in scores.items():
        add_variant(client, exp, "sparsity-rates", variant, 3, ALL_DONE,
                    {"uf1": uf1, "uar": uf1 + 0.01, "accuracy": 0.5})
    df = study_table(uri, "sparsity-rates", "synth", 3, spec=spec)
    rows = df.set_index("variant")
    assert rows.loc["s1-2-4-8-strided", "model.emotion.grouping"] == "strided"
    columns, table = side_by_side_rows(df)
    assert columns[:5] == ["label", "UF1 (contiguous)", "UAR (contiguous)", "UF1 (strided)",
                           "UAR (strided)"]
    assert columns[5:] == [PAPER_UF1, PAPER_UAR]
    by_label = {row[0]: row for row in table}
    assert len(table) == 7  # Table VI's rows, each once
    assert by_label["[1,2,4,8]"][1:5] == ["0.5200", "0.5300", "0.4400", "0.4500"]
    assert by_label["[1,2,4,8]"][5] == "0.7568"
    assert by_label["[2]"][1:5] == ["-", "-", "-", "-"]  # not run: no cell invented
    md = render(df, "markdown")
    assert "| [1,2,4,8] | 0.5200 | 0.5300 | 0.4400 | 0.4500 | 0.7568 | 0.7294 |" in md
    # the reference is named by variant, since its label is also a strided row's
    assert "pooled UF1 minus s1-2-4-8-contiguous's (the reference)" in md
    csv = pd.read_csv(io.StringIO(render(df, "csv")))
    assert "model.emotion.grouping" in csv.columns
    plain = study_table(uri, "sparsity-rates", "synth", 3,
                        spec=find_study("ablation-components", cwd=REPO, check_model=False))
    assert side_by_side_rows(plain) is None


@pytest.mark.parametrize(("variants", "message"), [
    ("  - {name: a, label: x, set: {model.emotion.grouping: strided}}\n"
     "  - {name: b, label: y, set: {optim.lr: 0.1}}\n", "variant 'b' does not set"),
    ("  - {name: a, label: x, set: {model.emotion.grouping: strided}}\n"
     "  - {name: b, label: x, set: {model.emotion.grouping: strided}}\n",
     "share label 'x' and model.emotion.grouping=strided"),
])
def test_side_by_side_needs_one_cell_per_variant(variants: str, message: str) -> None:
    import yaml

    from orchestrator.studies import StudySpecError, parse_spec

    text = f"name: s\nside_by_side: model.emotion.grouping\nvariants:\n{variants}"
    with pytest.raises(StudySpecError, match=message):
        parse_spec(yaml.safe_load(text), "s.yaml")


def test_a_run_reports_its_own_parents_and_report_can_pick_a_profile(tmp_path: Path) -> None:
    spec = find_study("ablation-components", cwd=REPO, check_model=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("ablation-components/synth-3class",
                                   artifact_location=(tmp_path / "a").as_uri())
    quick = add_variant(client, exp, "ablation-components", "no5-full", 3, ALL_DONE,
                        {"uf1": 0.42, "uar": 0.48, "accuracy": 0.5}, profile="quick")
    add_variant(client, exp, "ablation-components", "no5-full", 3, ALL_DONE,  # newer
                {"uf1": 0.26, "uar": 0.33, "accuracy": 0.65}, profile="quick-paper")
    newest = study_table(uri, "ablation-components", spec=spec).set_index("variant")
    assert newest.loc["no5-full", "uf1"] == pytest.approx(0.26)
    assert any("several profiles (quick, quick-paper)" in n for n in newest.attrs["notes"])
    # the study run that resumed the quick parent reports it, not the newer quick-paper one
    own = study_table(uri, "ablation-components", spec=spec, parent_ids={quick})
    assert own.set_index("variant").loc["no5-full", "uf1"] == pytest.approx(0.42)
    assert not any("several profiles" in n for n in own.attrs["notes"])
    picked = study_table(uri, "ablation-components", spec=spec, profile="quick")
    assert picked.set_index("variant").loc["no5-full", "uf1"] == pytest.approx(0.42)
    assert "only runs of profile quick" in picked.attrs["notes"]
    with pytest.raises(ReportError, match=r"--profile paper: no run .* quick, quick-paper"):
        study_table(uri, "ablation-components", spec=spec, profile="paper")
    from orchestrator.cli.app import app

    result = CliRunner().invoke(app, ["report", "ablation-components", "--tracking-uri", uri,
                                      "--profile", "quick", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(io.StringIO(result.output)).set_index("variant")
    assert rows.loc["no5-full", "uf1"] == pytest.approx(0.42)
