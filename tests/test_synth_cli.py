"""``medn data synth`` as a user runs it (Typer's CliRunner on the real app and pipeline)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli.app import app

runner = CliRunner()


def test_synth_json_reports_counts_and_prepares_the_cache(smoke_cache: Path) -> None:
    args = ["data", "synth", "--profile", "smoke", "--cache-dir", str(smoke_cache),
            "--workers", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dataset"] == "synth" and summary["profile"] == "smoke"
    assert summary["total"] == 24 and summary["subjects"] == 4
    assert sum(summary["emotions"].values()) == 24
    # 3-class protocol: "others" is left out, the rest is prepared.
    assert summary["prepared"] == 24 - summary["emotions"]["others"]
    assert set(summary["classes"]) == {"negative", "positive", "surprise"}
    assert sum(summary["classes"].values()) == summary["prepared"]
    assert summary["classes"]["negative"] == sum(
        summary["emotions"][e] for e in ("disgust", "fear", "anger", "sadness"))
    assert abs(summary["hard_share"] - 0.85) <= 1 / 24
    assert summary["size"] == 32 and summary["frames"] == 8
    assert Path(summary["cache_dir"]) == smoke_cache.resolve()
    assert any(smoke_cache.rglob("*")), "the flows are cached"

    again = runner.invoke(app, args)  # the second run reads the cache and says the same
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == summary


def test_synth_tables_and_options(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", "--profile", "smoke", "--subjects", "2",
                                 "--seed", "3", "--size", "32", "--task", "7",
                                 "--hard-share", "0.5", "--cache-dir", str(tmp_path),
                                 "--workers", "1"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "12 clips, 2 subjects" in out
    assert "7-class protocol: 12 clips prepared (32 px, T=8)" in out
    assert "hard samples" in out and "50.0% of all clips" in out
    assert str(tmp_path.resolve()) in out.replace("\n", "")


def test_synth_bad_flags_are_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "synth", "--profile", "huge", "--cache-dir",
                                 str(tmp_path)])
    assert result.exit_code == 2
    assert "--profile" in result.stderr and "smoke, quick, full" in result.stderr
    result = runner.invoke(app, ["data", "synth", "--task", "5", "--cache-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "--task" in result.stderr and "allowed tasks: 3, 4, 7" in result.stderr
    result = runner.invoke(app, ["data", "synth", "--hard-share", "2", "--cache-dir",
                                 str(tmp_path)])
    assert result.exit_code == 2 and "--hard-share" in result.stderr
