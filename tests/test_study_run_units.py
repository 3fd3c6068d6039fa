"""The execution parts that need no Ray: the outbox, the fault hook, the recorder against a real
sqlite MLflow store that goes away and comes back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medn.config import load_config
from orchestrator.execution.faults import InjectedFault, maybe_inject_fault, parse_faults
from orchestrator.execution.outbox import Outbox, OutboxError, outbox_root
from orchestrator.execution.recorder import ResultsNotLogged, StudyRecorder
from orchestrator.execution.units import VariantState, data_key, unit_id
from orchestrator.tracking import RunTreeWriter


def test_outbox_roundtrip_is_atomic_and_ordered(tmp_path: Path) -> None:
    box = Outbox(tmp_path, "ablation-components/synth-3class")
    first = box.put({"kind": "fold", "subject": "s01", "result": {"x": 1}})
    second = box.put({"kind": "failed", "subject": "s02", "error": "boom", "attempt": 1})
    assert box.folder.name == "ablation-components__synth-3class"
    assert not list(box.folder.glob(".tmp-*"))
    pending = box.pending()
    assert [item.record["subject"] for item in pending] == ["s01", "s02"]
    assert pending[0].record["experiment"] == "ablation-components/synth-3class"
    box.remove(first)
    assert [item.kind for item in box.pending()] == ["failed"]
    box.remove(second)
    assert box.pending() == []


def test_outbox_rejects_bad_records_with_the_file_named(tmp_path: Path) -> None:
    box = Outbox(tmp_path, "e")
    with pytest.raises(ValueError, match="kind"):
        box.put({"kind": "other"})
    box.folder.mkdir(parents=True)
    (box.folder / "broken.json").write_text("{not json")
    with pytest.raises(OutboxError, match="broken.json"):
        box.pending()


def test_outbox_root_sits_beside_a_local_store(tmp_path: Path) -> None:
    assert outbox_root(f"sqlite:///{tmp_path}/m/mlflow.db") == tmp_path / "m" / ".medn_outbox"
    assert outbox_root("sqlite:///mlruns/mlflow.db") == Path("mlruns/.medn_outbox")
    server = outbox_root("http://127.0.0.1:5000", tmp_path)
    assert server.parent == tmp_path / "outbox" and "5000" in server.name


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
    box = Outbox(tmp_path / "outbox", experiment)
    state = _state(cfg, data, parent, experiment)
    recorder = StudyRecorder([state], {experiment: writer}, {experiment: box}, {"k": data},
                             tags=lambda s: {}, backoff_s=(0.0,))
    first, *rest = data.subject_ids
    recorder.received(3, "v1", first, _fake_fold(data, first))
    assert state.finished == {first} and box.pending() == []

    shutil.move(store, tmp_path / "away")  # the store is unreachable now: a plain file
    store.write_text("not a folder")  # where its folder was, so nothing can reopen it
    for subject in rest:
        recorder.received(3, "v1", subject, _fake_fold(data, subject))
    recorder.failed(3, "v1", rest[0], "Traceback: boom", attempt=1, final=False)
    assert recorder.tracking_down
    assert len(box.pending()) == len(rest) + 1  # nothing lost
    with pytest.raises(ResultsNotLogged, match="re-run the same command"):
        recorder.finish(attempts=1)

    store.unlink()
    shutil.move(tmp_path / "away", store)  # the store is back: a new run drains the outbox
    again = _state(cfg, data, parent, experiment)
    again.finished = {first}
    recorder2 = StudyRecorder([again], {experiment: writer}, {experiment: box}, {"k": data},
                              tags=lambda s: {})
    assert recorder2.flush(force=True)
    assert box.pending() == []
    assert set(writer.finished_folds(parent)) == set(data.subject_ids)
    assert again.finalized and again.pooled is not None and "uf1" in again.pooled
    failed = writer.children(parent, status="FAILED")
    assert [r.data.tags["medn.fold"] for r in failed] == [rest[0]]
    assert json.loads(json.dumps(again.pooled))  # plain numbers
