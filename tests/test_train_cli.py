"""`medn train --profile smoke` on synth: the MLflow run tree (parent, folds, pooled), resume."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import f1_score, recall_score
from typer.testing import CliRunner

from orchestrator.cli.app import app

HISTORY_KEYS = ("train/loss", "train/loss_cls", "train/loss_au", "train/loss_orth",
                "val/uf1", "val/uar", "val/au_f1")


@pytest.fixture(scope="module")
def trained(smoke_dataset, smoke_cache: Path, tmp_path_factory: pytest.TempPathFactory):
    """One `medn train --profile smoke` run into a fresh sqlite store."""
    root = tmp_path_factory.mktemp("train_cli")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    args = ["train", "--profile", "smoke", "--tracking-uri", uri,
            "--set", f"data.cache_dir={smoke_cache}"]
    result = CliRunner().invoke(app, args, env={"MEDN_SPOOL_DIR": str(root / "spool")})
    assert result.exit_code == 0, result.output
    return uri, args, result.output, root


def test_run_tree_in_mlflow(trained, smoke_dataset, tmp_path):
    uri, _, output, _ = trained
    data = smoke_dataset
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train/synth-3class")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    tags, metrics, params = parent.data.tags, parent.data.metrics, parent.data.params
    assert parent.info.status == "FINISHED" and parent.info.run_name == "default"
    assert tags["medn.dataset"] == "synth" and tags["medn.task"] == "3"
    assert tags["medn.variant"] == "default" and tags["medn.dataset_digest"] == data.digest
    assert "mlflow.source.git.commit" in tags
    assert params["optim.epochs"] == "2" and params["data.size"] == "32"
    assert params["model.emotion.sparsity_rates"] == "[1, 2, 4, 8]"
    assert parent.inputs.dataset_inputs[0].dataset.name == "synth-3class"
    assert {"config.yaml", "confusion_matrix.png", "predictions.csv"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)}

    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.data.tags["medn.fold"] for c in children) == sorted(data.subject_ids)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.info.run_name == f"fold-{child.data.tags['medn.fold']}"
        for key in HISTORY_KEYS:
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == [1, 2]

    # Pooled metrics = scikit-learn on the pooled predictions.csv, printed in the table.
    csv = Path(client.download_artifacts(parent.info.run_id, "predictions.csv", str(tmp_path)))
    frame = pd.read_csv(io.StringIO(csv.read_text()))
    assert len(frame) == len(data) and set(frame["subject"]) == set(data.subject_ids)
    classes = list(data.classes)
    y_true = np.array([classes.index(c) for c in frame["true"]])
    y_pred = np.array([classes.index(c) for c in frame["predicted"]])
    labels = list(range(len(classes)))
    assert metrics["uf1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    assert metrics["uar"] == pytest.approx(
        recall_score(y_true, y_pred, average="macro", labels=labels, zero_division=0))
    text = " ".join(output.split())
    assert f"{metrics['uf1']:.4f}" in text
    assert f"/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning" in text


def test_rerun_resumes_without_training_again(trained):
    uri, args, _, root = trained
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train/synth-3class")
    before = {r.info.run_id for r in client.search_runs([exp.experiment_id])}
    result = CliRunner().invoke(app, args, env={"MEDN_SPOOL_DIR": str(root / "spool")})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "resuming default" in text and "0 to train" in text
    after = {r.info.run_id for r in client.search_runs([exp.experiment_id])}
    assert after == before


def test_config_errors_exit_2_and_name_the_field(smoke_cache, tmp_path):
    runner = CliRunner()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    bad_rate = runner.invoke(app, ["train", "--profile", "smoke", "--tracking-uri", uri,
                                   "--set", "model.emotion.sparsity_rates=[3]"])
    assert bad_rate.exit_code == 2 and "sparsity_rates" in bad_rate.output, bad_rate.output
    unknown = runner.invoke(app, ["train", "--profile", "smoke", "--tracking-uri", uri,
                                  "--set", "optim.lrr=1"])
    assert unknown.exit_code == 2 and "optim.lrr" in unknown.output
    bad_fold = runner.invoke(app, ["train", "--profile", "smoke", "--tracking-uri", uri,
                                   "--set", f"data.cache_dir={smoke_cache}", "--fold", "s99"])
    assert bad_fold.exit_code == 2 and "--fold s99" in " ".join(bad_fold.output.split())


def test_a_failed_fold_exits_1_is_kept_and_is_retried_by_a_rerun(smoke_cache, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    args = ["train", "--profile", "smoke", "--tracking-uri", uri, "--cache-dir", str(smoke_cache)]
    env = {"MEDN_SPOOL_DIR": str(tmp_path / "spool"), "MEDN_FAULT_DIR": str(tmp_path / "faults"),
           "MEDN_FAULT_INJECT": "default:s01:1"}
    first = CliRunner().invoke(app, args, env=env)
    assert first.exit_code == 1, first.output
    assert "fold(s) s01 did not finish" in " ".join(first.output.split())
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train/synth-3class")
    failed = client.search_runs([exp.experiment_id], "attributes.status = 'FAILED'")
    assert [r.data.tags["medn.fold"] for r in failed] == ["s01"]
    assert "injected fault" in failed[0].data.tags["medn.error"]
    again = CliRunner().invoke(app, args, env=env)  # the fault fired once: now s01 trains
    assert again.exit_code == 0, again.output
    assert "3 of 4 folds already finished, 1 to train" in " ".join(again.output.split())


def test_packed_train_logs_one_run_per_fold_and_keeps_a_failed_folds_pack_mate(smoke_cache,
                                                                               tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    args = ["train", "--profile", "smoke", "--tracking-uri", uri, "--cache-dir", str(smoke_cache),
            "--pack", "2"]
    env = {"MEDN_SPOOL_DIR": str(tmp_path / "spool"), "MEDN_FAULT_DIR": str(tmp_path / "faults"),
           "MEDN_FAULT_INJECT": "default:s01:1"}
    first = CliRunner().invoke(app, args, env=env)
    text = " ".join(first.output.split())
    assert first.exit_code == 1, first.output
    assert "4 folds in 2 packs (up to 2 folds each)" in text and "s01 did not finish" in text
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("train/synth-3class")
    folds = {r.data.tags["medn.fold"]: r for r in client.search_runs(
        [exp.experiment_id], "tags.`medn.role` = 'fold'")}
    assert sorted(folds) == ["s01", "s02", "s03", "s04"]
    assert folds["s01"].info.status == "FAILED"  # s02 trained in its pack and was kept
    assert all(folds[s].info.status == "FINISHED" for s in ("s02", "s03", "s04"))
    assert all("val/uf1" in folds[s].data.metrics for s in ("s02", "s03", "s04"))
    again = CliRunner().invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    assert "3 of 4 folds already finished, 1 to train" in " ".join(again.output.split())
    bad = CliRunner().invoke(app, [*args[:-1], "0"], env=env)
    assert bad.exit_code == 2 and "--pack" in bad.output
