"""Label protocols on hand-made records, synth included; emotion normalisation."""

from __future__ import annotations

import pytest

from medn.data.annotations import (
    allowed_tasks,
    apply_protocol,
    normalise_emotion,
    table_from_records,
    validation_report,
)
from medn.data.records import ActionUnit, ClipRecord


def record(subject: str, clip: str, emotion: str, row: int, dataset: str = "synth",
           onset: int = 1, apex: int | None = 3, offset: int = 8) -> ClipRecord:
    return ClipRecord(dataset=dataset, subject=subject, clip=clip, video=clip, emotion=emotion,
                      aus=frozenset({ActionUnit(4)}), onset=onset, apex=apex, offset=offset,
                      row=row)


SEVEN = ["happiness", "disgust", "surprise", "fear", "anger", "sadness", "others"]


@pytest.mark.parametrize(("value", "expected"), [
    ("happy", "happiness"), (" Happiness ", "happiness"), ("sad", "sadness"),
    ("SADNESS", "sadness"), ("Other", "others"), ("Others", "others"), ("others ", "others"),
    ("Anger", "anger"), (None, ""), ("joy", "joy"),
])
def test_normalise_emotion(value: object, expected: str) -> None:
    assert normalise_emotion(value) == expected


@pytest.mark.parametrize(("dataset", "tasks"), [
    ("casme2", (3, 5)), ("samm", (3, 5)), ("casme3a", (3, 4, 7)), ("synth", (3, 4, 7))])
def test_allowed_tasks(dataset: str, tasks: tuple[int, ...]) -> None:
    assert allowed_tasks(dataset) == tasks


def test_a_missing_task_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"task 5 .*'casme3a'.*3, 4, 7"):
        apply_protocol([], "casme3a", 5)
    with pytest.raises(ValueError, match="unknown dataset"):
        apply_protocol([], "smic", 3)


def test_synth_three_four_seven() -> None:
    records = [record("s01", f"c{i}", e, i) for i, e in enumerate(SEVEN, start=1)]
    three = apply_protocol(records, "synth", 3)
    assert three.classes == ("negative", "positive", "surprise")
    assert three.labels == ["positive", "negative", "surprise", "negative", "negative",
                            "negative"]
    assert [r.clip for r in three.records] == ["c1", "c2", "c3", "c4", "c5", "c6"]
    assert [(i.filename, i.row) for i in three.excluded] == [("c7", 7)]
    assert "'others' is not in the 3-class" in three.excluded[0].reason
    four = apply_protocol(records, "synth", 4)
    assert four.classes[-1] == "others" and four.labels[-1] == "others"
    assert four.excluded == []
    seven = apply_protocol(records, "synth", 7)
    assert seven.labels == SEVEN and seven.classes == tuple(SEVEN)
    assert seven.label_indices == list(range(7))


def test_casme2_three_class_negative_is_disgust_and_repression() -> None:
    emotions = ["disgust", "repression", "sadness", "fear", "happiness", "surprise", "others"]
    records = [record("01", f"EP{i}", e, i, dataset="casme2") for i, e in enumerate(emotions)]
    three = apply_protocol(records, "casme2", 3)
    assert three.labels == ["negative", "negative", "positive", "surprise"]
    assert [i.row for i in three.excluded] == [2, 3, 6]
    five = apply_protocol(records, "casme2", 5)
    assert five.classes == ("happiness", "disgust", "repression", "surprise", "others")
    assert five.labels == ["disgust", "repression", "happiness", "surprise", "others"]


def test_samm_three_and_five() -> None:
    emotions = ["anger", "contempt", "disgust", "fear", "sadness", "happiness", "surprise",
                "others"]
    records = [record("006", f"006_{i}", e, i, dataset="samm") for i, e in enumerate(emotions)]
    three = apply_protocol(records, "samm", 3)
    assert three.counts() == {"negative": 5, "positive": 1, "surprise": 1}
    five = apply_protocol(records, "samm", 5)
    assert five.classes == ("happiness", "anger", "contempt", "surprise", "others")
    assert five.counts() == {"happiness": 1, "anger": 1, "contempt": 1, "surprise": 1,
                             "others": 1}
    assert sorted(i.row for i in five.excluded) == [2, 3, 4]


def test_records_from_code_are_checked_too() -> None:
    records = [record("s01", "c1", "fear", 1), record("s01", "c2", "joy", 2),
               record("s01", "c3", "fear", 3, onset=5, apex=6, offset=5),
               record("s01", "c4", "fear", 4, apex=20), record("s01", "c1", "fear", 5),
               record("s02", "c1", "others", 6, apex=None)]
    table = table_from_records("synth", records)
    assert [r.row for r in table.records] == [1, 6]
    reasons = [i.reason for i in table.excluded]
    assert "'joy'" in reasons[0] and "not before offset" in reasons[1]
    assert "outside" in reasons[2] and "duplicate" in reasons[3]
    report = validation_report("synth", 4, table, apply_protocol(table.records, "synth", 4))
    assert report["total"] == 2 and report["subjects"] == 2
    assert report["classes"] == {"negative": 1, "positive": 0, "surprise": 0, "others": 1}
    assert len(report["excluded"]) == 4 and report["repaired"] == []


def test_synth_generator_records_validate() -> None:
    import json

    from typer.testing import CliRunner

    from medn.data.synth import generate_records
    from orchestrator.cli.app import app

    records = generate_records(profile="smoke", seed=3)
    table = table_from_records("synth", records)
    assert table.excluded == [] and len(table.records) == len(records)
    result = CliRunner().invoke(app, ["data", "validate", "--dataset", "synth", "--profile",
                                      "smoke", "--seed", "3", "--task", "7", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["total"] == len(records)
    assert report["subjects"] == len({r.subject for r in records})
    assert sum(report["classes"].values()) == len(records)
    assert list(report["classes"]) == SEVEN
