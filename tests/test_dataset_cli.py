"""``medn data prepare`` as a user runs it (Typer's CliRunner, real cache, real frames)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from helpers_astronaut import casme2_record, write_casme2_clip
from typer.testing import CliRunner

from orchestrator.cli.app import app

runner = CliRunner()


def _prepare(*args: str):
    return runner.invoke(app, ["data", "prepare", *args], catch_exceptions=False)


def test_prepare_synth_then_everything_is_cached(tmp_path: Path) -> None:
    args = ("--dataset", "synth", "--profile", "smoke", "--subjects", "2", "--workers", "1",
            "--cache-dir", str(tmp_path))
    first = _prepare(*args)
    assert first.exit_code == 0, first.output
    assert "prepared (computed now)" in first.output and "failed" in first.output
    computed = _count(first.output, "prepared (computed now)")
    assert computed > 0 and _count(first.output, "prepared (from cache)") == 0
    second = _prepare(*args)
    assert second.exit_code == 0, second.output
    assert _count(second.output, "prepared (computed now)") == 0
    assert _count(second.output, "prepared (from cache)") == computed


def _count(output: str, label: str) -> int:
    line = next(line for line in output.splitlines() if label in line)
    return int(line.replace("│", " ").split()[-1])


def _sheet(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_excel(path, index=False)
    return path


def _row(record, emotion: str) -> dict:
    return {"Subject": int(record.subject), "Filename": record.video,
            "OnsetFrame": record.onset, "ApexFrame": record.apex,
            "OffsetFrame": record.offset, "Action Units": "12", "Estimated Emotion": emotion}


def test_prepare_real_layout_with_a_failed_clip(tmp_path: Path) -> None:
    root = tmp_path / "frames"
    good = casme2_record("01", "EP02_01f", onset=46)
    write_casme2_clip(root, good)
    lost = casme2_record("02", "EP07_04", onset=3)
    sheet = _sheet(tmp_path / "coding.xlsx", [_row(good, "happiness"), _row(lost, "surprise")])
    result = _prepare("--dataset", "casme2", "--annotations", str(sheet), "--data-root",
                      str(root), "--size", "48", "--workers", "1", "--cache-dir",
                      str(tmp_path / "cache"))
    assert result.exit_code == 0, result.output
    assert _count(result.output, "prepared (computed now)") == 1
    assert _count(result.output, "failed") == 1
    text = " ".join(result.output.replace("│", " ").split())
    assert "02/EP07_04" in text and "missing folder" in text


def test_prepare_exits_non_zero_when_nothing_could_be_prepared(tmp_path: Path) -> None:
    lost = casme2_record("02", "EP07_04", onset=3)
    sheet = _sheet(tmp_path / "coding.xlsx", [_row(lost, "surprise")])
    (tmp_path / "empty").mkdir()
    result = _prepare("--dataset", "casme2", "--annotations", str(sheet), "--data-root",
                      str(tmp_path / "empty"), "--workers", "1", "--cache-dir",
                      str(tmp_path / "cache"))
    assert result.exit_code == 1
    assert "no clip could be prepared" in result.output


def test_prepare_names_a_missing_data_root(tmp_path: Path) -> None:
    good = casme2_record("01", "EP02_01f", onset=46)
    sheet = _sheet(tmp_path / "coding.xlsx", [_row(good, "happiness")])
    result = _prepare("--dataset", "casme2", "--annotations", str(sheet), "--data-root",
                      str(tmp_path / "nowhere"), "--cache-dir", str(tmp_path / "cache"))
    assert result.exit_code == 2
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "nowhere: no such folder" in text


def test_prepare_rejects_an_unknown_dataset(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "prepare", "--dataset", "casme9"])
    assert result.exit_code == 2
    assert "casme9" in result.output
