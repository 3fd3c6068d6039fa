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


def test_prepare_json_is_one_object_on_stdout(tmp_path: Path) -> None:
    import json

    root = tmp_path / "frames"
    good = casme2_record("01", "EP02_01f", onset=46)
    write_casme2_clip(root, good)
    lost = casme2_record("02", "EP07_04", onset=3)
    sheet = _sheet(tmp_path / "coding.xlsx", [_row(good, "happiness"), _row(lost, "surprise")])
    args = ("--dataset", "casme2", "--annotations", str(sheet), "--data-root", str(root),
            "--size", "48", "--workers", "1", "--cache-dir", str(tmp_path / "cache"), "--json")
    result = _prepare(*args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the whole of stdout is the one object
    assert set(report) == {"dataset", "task", "total", "prepared", "computed", "cached",
                           "failed", "qc"}
    assert (report["dataset"], report["task"], report["total"], report["prepared"],
            report["computed"], report["cached"]) == ("casme2", 3, 2, 1, 1, 0)
    assert report["failed"] == [{"clip": "02/EP07_04", "row": 3,
                                 "reason": report["failed"][0]["reason"]}]
    assert report["failed"][0]["reason"].startswith("missing folder")
    (qc,) = report["qc"]
    assert set(qc) == {"clip", "face_box", "interocular_px", "outside_share", "flow_face",
                       "flow_outside"}
    assert qc["clip"] == "01/EP02_01f" and qc["flow_outside"] is None
    assert len(qc["face_box"]) == 4 and qc["interocular_px"] > 10 and qc["flow_face"] > 0
    again = json.loads(_prepare(*args).stdout)
    assert (again["computed"], again["cached"]) == (0, 1) and again["qc"] == report["qc"]


def test_human_output_flags_outliers(tmp_path: Path) -> None:
    from medn.data.qc import outliers

    rows = [{"clip": f"s/c{i}", "status": "computed", "outside_share": 0.0, "flow_face": 0.1,
             "interocular_px": 80.0, "reason": None} for i in range(6)]
    rows[1]["flow_face"] = 0.5
    rows[2]["outside_share"] = 0.6
    rows[3]["interocular_px"] = 20.0
    rows.append({"clip": "s/gone", "status": "failed", "outside_share": None, "flow_face": None,
                 "interocular_px": None, "reason": "no face found in the first frame (x.jpg)"})
    flagged = dict(outliers(rows))
    assert set(flagged) == {"s/c1", "s/c2", "s/c3", "s/gone"}
    assert "5.0x the median" in flagged["s/c1"] and "60% outside" in flagged["s/c2"]
    result = _prepare("--dataset", "synth", "--profile", "smoke", "--subjects", "2",
                      "--workers", "1", "--cache-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "QC: face flow median" in result.output


def test_preview_writes_contact_sheets(tmp_path: Path) -> None:
    import matplotlib.image

    result = runner.invoke(app, ["data", "preview", "--dataset", "synth", "--profile", "smoke",
                                 "--subjects", "2", "--workers", "1", "--clips", "7",
                                 "--cache-dir", str(tmp_path / "c"), "--out",
                                 str(tmp_path / "png")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    sheets = sorted((tmp_path / "png").glob("*.png"))
    assert [p.name for p in sheets] == ["synth_task3_01.png", "synth_task3_02.png"]
    image = matplotlib.image.imread(sheets[0])
    assert image.shape[0] > 400 and image.shape[1] > 400 and image.std() > 0.05
    bad = runner.invoke(app, ["data", "preview", "--dataset", "casme2", "--cache-dir",
                              str(tmp_path / "c")])
    assert bad.exit_code == 2 and "error:" in bad.output and "--annotations" in bad.output


def test_swapped_cache_files_stop_prepare_with_the_file_named(tmp_path: Path) -> None:
    args = ("--dataset", "synth", "--profile", "smoke", "--subjects", "2", "--workers", "1",
            "--cache-dir", str(tmp_path))
    assert _prepare(*args).exit_code == 0
    first, second = sorted(tmp_path.rglob("*.npz"))[:2]
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    result = runner.invoke(app, ["data", "prepare", *args])
    assert result.exit_code == 2
    flat = "".join(result.output.split())  # rich wraps long paths
    assert "error:" in result.output and "swapped" in result.output
    assert first.name in flat or second.name in flat
