"""RunTreeWriter against a real sqlite MLflow store, read back with MLflow's own client."""

from __future__ import annotations

import io
import json
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    INTERNAL_ERROR,
    INVALID_PARAMETER_VALUE,
    TEMPORARILY_UNAVAILABLE,
)
from sklearn.metrics import accuracy_score, f1_score, recall_score
from train_helpers import fake_result, random_dataset, tiny_config

from medn.config import MednConfig
from orchestrator.git_info import git_commit
from orchestrator.tracking import (
    FOLD_RESULT_ARTIFACT,
    RunTreeWriter,
    TrackingUnavailable,
    classify,
    config_digest,
    is_transient,
    resolve_tracking_uri,
    retry_call,
)

HISTORY_KEYS = ("train/loss", "train/loss_cls", "train/loss_au", "train/loss_orth",
                "val/uf1", "val/uar", "val/au_f1")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("tracking")
    return f"sqlite:///{root}/mlruns/mlflow.db", root


@pytest.fixture(scope="module")
def cfg() -> MednConfig:
    return tiny_config()


@pytest.fixture(scope="module")
def data(cfg):
    return random_dataset(cfg, subjects=3, clips_per_subject=6)


def _writer(store, name: str) -> RunTreeWriter:
    uri, root = store
    resolve_tracking_uri(uri)
    return RunTreeWriter(uri, name, spool_dir=root / "spool" / name)


def _children(client: MlflowClient, writer: RunTreeWriter, parent: str) -> list:
    return client.search_runs([writer.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")


def _artifact_text(client: MlflowClient, run_id: str, path: str, tmp: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(tmp))).read_text()


def test_run_tree_tags_metrics_artifacts_and_pooling(store, cfg, data, tmp_path):
    writer = _writer(store, "tree")
    parent = writer.parent_run("full", cfg, data, {"medn.study": "unit-study"})
    results = [fake_result(data, s, seed=i) for i, s in enumerate(data.subject_ids)]
    child_ids = [writer.log_fold(parent, r, {"medn.note": "x"}) for r in results]
    pooled = writer.finalize_parent(parent, data)

    client = MlflowClient(store[0])
    exp = client.get_experiment(writer.experiment_id)
    assert exp.name == "tree" and exp.artifact_location.endswith("mlruns/artifacts")
    run = client.get_run(parent)
    tags = run.data.tags
    assert run.info.status == "FINISHED" and run.info.run_name == "full"
    assert tags["medn.dataset"] == "random" and tags["medn.task"] == "3"
    assert tags["medn.variant"] == "full" and tags["medn.study"] == "unit-study"
    assert tags["medn.dataset_digest"] == data.digest
    assert tags["medn.config_digest"] == config_digest(cfg)
    assert tags.get("mlflow.source.git.commit") == git_commit()
    assert run.data.params == {k: "None" if v is None else str(v)
                               for k, v in cfg.flat().items()}
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "random-3class"
    assert dataset_input.dataset.digest == data.digest[:36]
    artifacts = {a.path for a in client.list_artifacts(parent)}
    assert {"config.yaml", "confusion_matrix.png", "predictions.csv",
            "per_au_f1.csv"} <= artifacts
    config_back = yaml.safe_load(_artifact_text(client, parent, "config.yaml", tmp_path))
    assert MednConfig.model_validate(config_back) == cfg

    # Pooled = scikit-learn on the concatenated predictions, not a mean of per-fold scores.
    y_true = np.concatenate([r.y_true for r in results])
    y_pred = np.concatenate([r.y_pred for r in results])
    labels = list(range(data.num_classes))
    expected_uf1 = f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
    expected_uar = recall_score(y_true, y_pred, average="macro", labels=labels, zero_division=0)
    assert pooled["uf1"] == pytest.approx(expected_uf1)
    assert pooled["uar"] == pytest.approx(expected_uar)
    assert pooled["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    fold_mean = np.mean([f1_score(r.y_true, r.y_pred, average="macro", labels=labels,
                                  zero_division=0) for r in results])
    assert pooled["uf1"] != pytest.approx(fold_mean)
    logged = run.data.metrics
    for key in ("uf1", "uar", "accuracy", "au_f1"):
        assert logged[key] == pytest.approx(pooled[key])
    assert {f"au_f1/{name}" for name in data.au_names} <= set(logged)

    frame = pd.read_csv(io.StringIO(_artifact_text(client, parent, "predictions.csv", tmp_path)))
    assert list(frame.columns) == ["subject", "clip", "true", "predicted",
                                   *[f"score_{c}" for c in data.classes]]
    assert sorted(frame["clip"]) == sorted(data.clips)
    assert list(frame["predicted"]) == [data.classes[i] for i in y_pred]

    children = _children(client, writer, parent)
    assert sorted(c.info.run_id for c in children) == sorted(child_ids)
    for child in children:
        ctags = child.data.tags
        subject = ctags["medn.fold"]
        assert child.info.status == "FINISHED" and child.info.run_name == f"fold-{subject}"
        assert ctags["medn.role"] == "fold" and ctags["medn.note"] == "x"
        for inherited in ("medn.variant", "medn.study", "medn.dataset", "medn.task",
                          "medn.dataset_digest"):
            assert ctags[inherited] == tags[inherited]
        result = results[data.subject_ids.index(subject)]
        for key in HISTORY_KEYS:
            history = client.get_metric_history(child.info.run_id, key)
            assert [m.step for m in history] == [1, 2, 3]
            assert [m.value for m in history] == pytest.approx([e[key] for e in result.history])
        saved = json.loads(_artifact_text(client, child.info.run_id, FOLD_RESULT_ARTIFACT,
                                          tmp_path))
        assert saved["clips"] == result.clips and saved["y_pred"] == result.y_pred.tolist()


def test_incomplete_variant_reports_none_and_says_which_folds(store, cfg, data):
    writer = _writer(store, "incomplete")
    parent = writer.parent_run("partial", cfg, data, {})
    first, *rest = data.subject_ids
    for subject in rest:
        writer.log_fold(parent, fake_result(data, subject), {})
    writer.log_failed_fold(parent, first, "Traceback ...\nRuntimeError: boom", 1, {})
    assert writer.finalize_parent(parent, data) is None

    client = MlflowClient(store[0])
    run = client.get_run(parent)
    assert first in run.data.tags["medn.incomplete"]
    assert not {"uf1", "uar", "accuracy"} & set(run.data.metrics)
    assert run.info.status != "FINISHED"
    failed = [c for c in _children(client, writer, parent) if c.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["medn.fold"] == first
    assert "boom" in failed[0].data.tags["medn.error"]
    assert failed[0].data.tags["medn.attempt"] == "1"

    # The missing fold arrives (a retry, or a resume): pooling now uses one run per fold.
    writer.log_fold(parent, fake_result(data, first), {})
    pooled = writer.finalize_parent(parent, data)
    run = client.get_run(parent)
    assert pooled is not None and run.data.metrics["uf1"] == pytest.approx(pooled["uf1"])
    assert "medn.incomplete" not in run.data.tags and run.info.status == "FINISHED"
    assert len(run.data.tags["medn.pooled_runs"].split(",")) == len(data.subject_ids)


def test_resume_returns_the_same_parent_and_skips_finished_folds(store, cfg, data):
    writer = _writer(store, "resume")
    parent = writer.parent_run("v", cfg, data, {})
    first = writer.log_fold(parent, fake_result(data, "s01"), {})

    again = RunTreeWriter(store[0], "resume", spool_dir=writer.spool_dir)
    assert again.parent_run("v", cfg, data, {}) == parent
    # Where the data lives is not what is trained: same parent.
    moved = cfg.model_copy(update={"data": cfg.data.model_copy(update={"cache_dir": Path("x")})})
    assert again.parent_run("v", moved, data, {}) == parent
    assert again.finished_folds(parent) == {"s01": first}
    assert again.log_fold(parent, fake_result(data, "s01", seed=9), {}) == first
    client = MlflowClient(store[0])
    assert len(_children(client, again, parent)) == 1

    other_cfg = tiny_config("loss.lambda_au=0.5")
    assert again.parent_run("v", other_cfg, data, {}) != parent
    assert again.parent_run("w", cfg, data, {}) != parent
    fresh = again.parent_run("v", cfg, data, {}, fresh=True)
    assert fresh != parent and again.finished_folds(fresh) == {}
    assert again.parent_run("v", cfg, data, {}) == fresh  # the newest one is resumed


def test_stale_running_fold_run_is_closed_when_the_fold_is_logged(store, cfg, data):
    writer = _writer(store, "stale")
    parent = writer.parent_run("v", cfg, data, {})
    client = MlflowClient(store[0])
    stale = client.create_run(writer.experiment_id, tags={
        "mlflow.parentRunId": parent, "medn.fold": "s02", "medn.role": "fold"}).info.run_id
    done = writer.log_fold(parent, fake_result(data, "s02"), {})
    assert client.get_run(stale).info.status == "KILLED"
    assert writer.finished_folds(parent) == {"s02": done}


def test_spooled_results_are_logged_when_the_parent_is_resumed(store, cfg, data):
    writer = _writer(store, "spool")
    parent = writer.parent_run("v", cfg, data, {})
    # what a log_fold / log_failed_fold that could not reach the store leaves behind
    writer.spool_fold(parent, fake_result(data, "s03"), {})
    writer.spool_failed(parent, "s02", "Traceback: boom", 1, {})
    assert [r.subject for r in writer.spooled_results(parent)] == ["s03"]
    assert [(e.kind, e.subject) for e in writer.spooled(parent)] == [("fold", "s03"),
                                                                     ("failed", "s02")]
    resumed = RunTreeWriter(store[0], "spool", spool_dir=writer.spool_dir)
    assert resumed.parent_run("v", cfg, data, {}) == parent
    assert set(resumed.finished_folds(parent)) == {"s03"}
    failed = resumed.children(parent, status="FAILED")
    assert [(r.data.tags["medn.fold"], r.data.tags["medn.attempt"]) for r in failed] == [
        ("s02", "1")]
    assert resumed.spooled_results(parent) == [] and resumed.spooled() == []


def test_retry_call_retries_transient_errors_with_backoff():
    calls, sleeps = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("connection refused")
        return "ok"

    assert retry_call(flaky, retries=4, backoff_s=0.5, sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and sleeps == [0.5, 1.0]


def test_retry_call_gives_up_with_a_resume_hint():
    sleeps: list[float] = []

    def down() -> None:
        raise MlflowException("API request failed: Max retries exceeded",
                              error_code=TEMPORARILY_UNAVAILABLE)

    with pytest.raises(TrackingUnavailable, match="re-run the same command") as info:
        retry_call(down, retries=3, backoff_s=0.1, what="log metrics", sleep=sleeps.append)
    assert sleeps == pytest.approx([0.1, 0.2, 0.4]) and "log metrics" in str(info.value)


def test_retry_call_does_not_retry_a_bad_request():
    calls = []

    def bad() -> None:
        calls.append(1)
        raise MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)

    with pytest.raises(MlflowException, match="bad value"):
        retry_call(bad, retries=5, backoff_s=0.0, sleep=lambda s: None)
    assert len(calls) == 1
    assert not is_transient(FileNotFoundError("x")) and is_transient(ConnectionResetError())
    assert not is_transient(MlflowException("a bug", error_code=INTERNAL_ERROR))
    # the message alone decides nothing: the same words without a cause are not transient
    assert not is_transient(MlflowException(
        "API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/create failed with exception "
        "HTTPConnectionPool: Max retries exceeded (Connection refused)"))


def test_a_real_refused_connection_is_transient(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(MlflowException) as info:
        MlflowClient(f"http://127.0.0.1:{port}").get_experiment_by_name("x")
    assert classify(info.value) == "transient"


def test_resolve_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None) == "sqlite:///mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5999"
    assert resolve_tracking_uri("sqlite:///other/db.sqlite") == "sqlite:///other/db.sqlite"
    assert (tmp_path / "other").is_dir()


def test_runs_describe_themselves_in_the_mlflow_ui(store, cfg, data, tmp_path):
    from medn.config import deviations
    from orchestrator.report import write_summary
    from orchestrator.studies import find_study
    from orchestrator.tracking import describe_variant

    writer = _writer(store, "ablation-components/synth-3class")
    spec = find_study("ablation-components", cwd=Path(__file__).resolve().parents[1])
    variant = next(v for v in spec.variants_for(3) if v.name == "no5-full")
    other = next(v for v in spec.variants_for(3) if v.overrides)
    note = describe_variant(other.name, other.label, other.overrides)
    assert other.name in note and all(f"`{k}`" in note for k in other.overrides)
    parent = writer.parent_run(variant.name, cfg, data, {
        "medn.study": spec.name, "medn.missing_clips": "2", "medn.seed": "7"},
        description=describe_variant(variant.name, variant.label, variant.overrides))
    for subject in data.subject_ids:
        writer.log_fold(parent, fake_result(data, subject), {})
    writer.finalize_parent(parent, data)

    client = MlflowClient(store[0])
    run = client.get_run(parent)
    assert run.data.tags["mlflow.note.content"].startswith(f"**{variant.name}**")
    assert run.data.tags["medn.deviations"] == (", ".join(deviations(cfg)) or "none")
    for child in _children(client, writer, parent):  # a partial dataset: every run says so
        assert child.data.tags["medn.missing_clips"] == "2"
        assert child.data.tags["medn.seed"] == "7"
    summary = client.get_run(write_summary(writer, store[0], spec, "synth", 3))
    table = summary.data.tags["mlflow.note.content"]
    assert table.startswith("|") or "\n|" in table
    for v in spec.variants_for(3):
        assert v.label in table


def test_a_failed_cost_count_is_a_tag_never_a_failed_parent(store, cfg, data, monkeypatch):
    import orchestrator.cost

    def broken(*_args, **_kwargs):
        raise ImportError("the profiler could not load")

    monkeypatch.setattr(orchestrator.cost, "model_cost_metrics", broken)
    writer = _writer(store, "cost-error")
    parent = writer.parent_run("v", cfg, data, {"medn.study": "cost-error"})
    run = MlflowClient(store[0]).get_run(parent)
    assert run.info.status == "RUNNING"
    assert run.data.tags["medn.cost_error"] == "ImportError: the profiler could not load"
    assert run.data.tags["medn.study"] == "cost-error"
    assert not any(k.startswith("cost/") for k in run.data.metrics)
    again = RunTreeWriter(store[0], "cost-error", spool_dir=writer.spool_dir)
    assert again.parent_run("v", cfg, data, {"medn.study": "cost-error"}) == parent
