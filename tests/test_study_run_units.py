"""The execution parts that need no Ray: the writer's spool, the fault hook, the recorder against
a real sqlite MLflow store that goes away and comes back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medn.config import load_config
from orchestrator.execution.faults import InjectedFault, maybe_inject_fault, parse_faults
from orchestrator.execution.recorder import ResultsNotLogged, StudyRecorder
from orchestrator.execution.units import VariantState, data_key, unit_id
from orchestrator.tracking import RunTreeWriter, SpoolError, default_spool_dir


def _take_away(store: Path, away: Path) -> None:
    """Make the sqlite store at ``store`` unreachable: its folder moved, a file in its place."""
    shutil.move(store, away)
    store.write_text("not a folder")


def _bring_back(store: Path, away: Path) -> None:
    store.unlink()
    shutil.move(away, store)


@pytest.fixture
def gone_store_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A writer whose sqlite store is taken away right after it connected: every MLflow call
    it makes now fails; yields (writer, bring_back)."""
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    store = tmp_path / "store"
    store.mkdir()
    writer = RunTreeWriter(f"sqlite:///{store}/mlflow.db", "ablation-components/synth-3class",
                           retries=0, backoff_s=0.01, spool_dir=tmp_path / "spool")
    _take_away(store, tmp_path / "away")
    yield writer, lambda: _bring_back(store, tmp_path / "away")


def test_spool_roundtrip_is_atomic_ordered_and_needs_no_store(gone_store_writer,
                                                               smoke_dataset) -> None:
    writer, _ = gone_store_writer
    result = _fold_result(smoke_dataset, "s01")
    first = writer.spool_fold("parent-a", result, {"medn.study": "x"})  # no MLflow call
    second = writer.spool_failed("parent-a", "s02", "Traceback: boom", 1)
    third = writer.spool_failed("parent-b", "s02", "Traceback: boom again", 1)
    folder = writer.spool_dir / writer.experiment_id
    assert first.path.parent == folder / "parent-a" and first.path.is_file()
    assert not [p for p in writer.spool_dir.rglob("*") if p.name.endswith(".tmp")]
    assert [(e.kind, e.subject, e.parent_id) for e in writer.spooled()] == [
        ("fold", "s01", "parent-a"), ("failed", "s02", "parent-a"), ("failed", "s02", "parent-b")]
    pending = writer.spooled("parent-a")
    assert pending == [first, second] and pending[0].tags == {"medn.study": "x"}
    assert pending[0].fold_result().to_dict() == result.to_dict()
    assert (pending[1].error, pending[1].attempt) == ("Traceback: boom", 1)
    assert [r.subject for r in writer.spooled_results("parent-a")] == ["s01"]
    # the same fold spooled again replaces its entry; every failed attempt is its own entry
    writer.spool_fold("parent-a", result, {})
    writer.spool_failed("parent-a", "s02", "Traceback: boom", 1)
    assert [e.kind for e in writer.spooled("parent-a")] == ["failed", "fold", "failed"]
    writer._unspool(third)
    assert not (folder / "parent-b").exists()  # an emptied parent folder goes away


def test_spool_rejects_bad_records_with_the_file_named(gone_store_writer) -> None:
    writer, _ = gone_store_writer
    folder = writer.spool_dir / writer.experiment_id / "parent-a"
    folder.mkdir(parents=True)
    (folder / "broken.json").write_text("{not json")
    with pytest.raises(SpoolError, match="broken.json"):
        writer.spooled()
    (folder / "broken.json").write_text(json.dumps({"kind": "other", "subject": "s01"}))
    with pytest.raises(SpoolError, match=r"broken.json: not a spool record"):
        writer.spooled()
    (folder / "broken.json").write_text(json.dumps({"kind": "fold", "parent_id": "parent-a",
                                                    "subject": "s01"}))
    with pytest.raises(SpoolError, match="missing result"):
        writer.spooled()


def test_spool_dir_sits_beside_a_local_store(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDN_SPOOL_DIR", raising=False)
    assert default_spool_dir(f"sqlite:///{tmp_path}/m/mlflow.db") == tmp_path / "m" / "spool"
    assert default_spool_dir("sqlite:///mlruns/mlflow.db") == Path("mlruns/spool")
    server = default_spool_dir("http://127.0.0.1:5000")
    assert server.parent == Path(".medn_spool") and "5000" in server.name
    assert default_spool_dir("http://127.0.0.1:5001") != server  # one folder per server
    monkeypatch.setenv("MEDN_SPOOL_DIR", str(tmp_path / "mine"))
    assert default_spool_dir("http://127.0.0.1:5000") == tmp_path / "mine"


def test_fault_hook_raises_the_asked_number_of_times(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDN_FAULT_INJECT", "no5-full:s02:2,*:s09:1")
    monkeypatch.setenv("MEDN_FAULT_DIR", str(tmp_path))
    maybe_inject_fault("no5-full", "s01")  # another fold: no fault
    for _ in range(2):
        with pytest.raises(InjectedFault, match="s02"):
            maybe_inject_fault("no5-full", "s02")
    maybe_inject_fault("no5-full", "s02")  # the third attempt trains
    with pytest.raises(InjectedFault):
        maybe_inject_fault("any-variant", "s09")
    with pytest.raises(ValueError, match="MEDN_FAULT_INJECT"):
        parse_faults("no-times-given")


def test_units_ids_and_data_keys() -> None:
    a = load_config(profile="smoke")
    b = load_config(profile="smoke", overrides=["loss.lambda_au=0.5"])
    c = load_config(profile="smoke", overrides=["data.size=40"])
    assert data_key(a.data) == data_key(b.data) != data_key(c.data)
    assert unit_id(3, "no5-full", "s01") == "3|no5-full|s01"


def _state(cfg, data, parent_id: str, experiment: str) -> VariantState:
    return VariantState(task=3, name="v1", label="V1", config=cfg, experiment=experiment,
                        data_key="k", subjects=list(data.subject_ids), parent_id=parent_id)


def _fake_fold(data, subject: str) -> dict:
    """A fold result of the right shape for ``subject`` (predictions: every clip class 0)."""
    idx = data.fold(subject).test_idx
    n, c, a = len(idx), data.num_classes, data.num_aus
    return {"subject": subject, "clips": [data.clips[i] for i in idx],
            "y_true": [int(data.labels[i]) for i in idx], "y_pred": [0] * n,
            "scores": [[1.0] + [0.0] * (c - 1)] * n, "au_true": [[0.0] * a] * n,
            "au_scores": [[0.0] * a] * n, "history": [{"val/uf1": 0.5, "val/uar": 0.5}],
            "seconds": 1.0, "device": "cpu"}


def _fold_result(data, subject: str):
    from medn.train import FoldResult

    return FoldResult.from_dict(_fake_fold(data, subject))


def test_recorder_keeps_results_while_the_store_is_gone_then_logs_and_pools(
        tmp_path: Path, smoke_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # a fresh sqlite connection per call, as a restarted server would give: the store can be
    # taken away (its folder moved) and brought back under the same URI
    monkeypatch.setenv("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
    data = smoke_dataset
    cfg = load_config(profile="smoke")
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store}/mlflow.db"
    experiment = "unit/synth-3class"
    writer = RunTreeWriter(uri, experiment, retries=1, backoff_s=0.01,
                           spool_dir=tmp_path / "spool")
    parent = writer.parent_run("v1", cfg, data, {"medn.study": "unit"})
    state = _state(cfg, data, parent, experiment)
    recorder = StudyRecorder([state], {experiment: writer}, {"k": data},
                             tags=lambda s: {}, backoff_s=(0.0,))
    first, *rest = data.subject_ids
    recorder.received(3, "v1", first, _fake_fold(data, first))
    assert state.finished == {first} and writer.spooled() == []

    _take_away(store, tmp_path / "away")  # the store is unreachable now
    for subject in rest:
        recorder.received(3, "v1", subject, _fake_fold(data, subject))
    recorder.failed(3, "v1", rest[0], "Traceback: boom", attempt=1, final=False)
    assert recorder.tracking_down
    waiting = writer.spooled()
    assert len(waiting) == len(rest) + 1  # nothing lost
    assert sorted(e.subject for e in waiting if e.kind == "fold") == sorted(rest)
    with pytest.raises(ResultsNotLogged, match="re-run the same command"):
        recorder.finish(attempts=1)

    _bring_back(store, tmp_path / "away")  # the store is back: a new run drains the spool
    other = RunTreeWriter(uri, "unit/other", spool_dir=tmp_path / "spool")
    assert other.spooled() == [] and other.flush_spool() == []  # experiments never mix
    writer2 = RunTreeWriter(uri, experiment, spool_dir=tmp_path / "spool")
    again = _state(cfg, data, parent, experiment)
    again.finished = {first}
    recorder2 = StudyRecorder([again], {experiment: writer2}, {"k": data},
                              tags=lambda s: {})
    assert recorder2.flush(force=True)
    assert writer2.spooled() == []
    assert set(writer2.finished_folds(parent)) == set(data.subject_ids)
    assert again.finalized and again.pooled is not None and "uf1" in again.pooled
    failed = writer2.children(parent, status="FAILED")
    assert [r.data.tags["medn.fold"] for r in failed] == [rest[0]]
    assert failed[0].data.tags["medn.error"] == "Traceback: boom"
    assert json.loads(json.dumps(again.pooled))  # plain numbers
