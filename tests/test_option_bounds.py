"""Upper bounds on what a user sets: flags (``--seeds``, ``--subjects``, ``--threads``), study
specs, configuration integers and ``--config`` files. Each absurd value is one ``error:`` line
naming the flag, field or file, exit 2, before anything is prepared, opened or trained (before:
hangs, tracebacks, runs that would train for ever)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medn.config import MAX_EPOCHS, ConfigError, build_config, load_config
from orchestrator.cli.app import app
from orchestrator.studies.options import MAX_THREADS, StudyOptions, StudyOptionsError
from orchestrator.studies.spec import (
    MAX_SEEDS,
    MAX_TRIALS,
    MAX_UNITS,
    StudySpecError,
    parse_spec,
)

runner = CliRunner()
HUGE = 99999999999999999999999999999


def _clean_error(result, *needles: str) -> str:
    """The output of a refused command: exit 2, no traceback, every needle in it."""
    text = " ".join(result.output.split())  # rich wraps at the terminal width
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert text.startswith("error:") or "error:" in text, text
    for needle in needles:
        assert needle in text, text
    return text


def _spec(**extra) -> dict:
    return {"name": "s", "variants": [{"name": "a"}], **extra}


def test_seeds_are_bounded_and_units_are_counted_before_anything_starts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    flag = runner.invoke(app, ["study", "ablation-components", "--profile", "smoke",
                               "--seeds", "100000"])
    _clean_error(flag, "--seeds 100000", f"<= {MAX_SEEDS}")
    # 22 variants x 4 tasks x 100 seeds: each flag within its bound, the product is not
    units = runner.invoke(app, ["study", "lambda-grid", "--profile", "smoke", "--seeds", "100",
                                "--task", "3", "--task", "4", "--task", "5", "--task", "7"])
    _clean_error(units, "--seeds 100", "= 8800 trainings", f"more than the {MAX_UNITS}")
    assert not (tmp_path / "mlruns").exists()  # refused before the store was touched

    with pytest.raises(StudySpecError, match=r"seeds: Input should be less than or equal to 100"):
        parse_spec(_spec(seeds=1000000), "s.yaml")
    # a 1000-variant grid (MAX_VARIANTS) is fine once, not five times: the counts alone
    grid = {"grid": {"optim.lr": [i * 1e-5 + 1e-5 for i in range(50)],
                     "loss.lambda_au": [i / 20 for i in range(20)]}}
    with pytest.raises(StudySpecError, match=r"seeds: 1 task\(s\) x 1000 variant\(s\) x 5 "
                                             r"seed\(s\) = 5000"):
        parse_spec({"name": "s", "variants": grid, "seeds": 5}, "s.yaml")
    assert parse_spec(_spec(seeds=MAX_SEEDS), "s.yaml").seeds == MAX_SEEDS

    big = parse_spec(_spec(tasks=[3, 4], seeds=MAX_SEEDS), "s.yaml")
    StudyOptions(tasks=[3, 4]).check_study_size(big)
    with pytest.raises(StudyOptionsError, match=r"--task 3 4 5 7 \(the spec's seeds: 100\)"):
        StudyOptions(tasks=[3, 4, 5, 7]).check_study_size(
            parse_spec({"name": "s", "variants": [{"name": f"v{i}"} for i in range(11)],
                        "seeds": MAX_SEEDS}, "s.yaml"))


def test_search_trials_and_retries_are_bounded() -> None:
    with pytest.raises(StudyOptionsError, match=f"--trials 100000: expected a number <= "
                                                 f"{MAX_TRIALS}"):
        StudyOptions(trials=100000)
    with pytest.raises(StudyOptionsError, match="--max-failures 1000: expected a number <= 100"):
        StudyOptions(max_failures=1000)
    space = {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}
    with pytest.raises(StudySpecError, match="search.trials: Input should be less than"):
        parse_spec({"name": "s", "search": {"space": space, "trials": 10**9}}, "s.yaml")


def test_synth_subjects_workers_and_seed_name_their_flag(tmp_path: Path) -> None:
    cache = ["--cache-dir", str(tmp_path / "cache")]
    _clean_error(runner.invoke(app, ["data", "synth", "--subjects", "100000", *cache]),
                 "--subjects", "less than or equal to 1000")
    _clean_error(runner.invoke(app, ["data", "synth", "--seed", "-1", *cache]),
                 "--seed", "greater than or equal to 0")
    _clean_error(runner.invoke(app, ["data", "synth", "--workers", "100000", *cache]),
                 "--workers: expected 1 to 1024")
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ConfigError, match="data.synth_subjects: Input should be less than"):
        load_config(profile="smoke", overrides=["data.synth_subjects=100000"])


def test_threads_is_bounded_and_the_help_says_so() -> None:
    _clean_error(runner.invoke(app, ["train", "--profile", "smoke", "--threads", "100000"]),
                 "--threads 100000", f"<= {MAX_THREADS}")
    assert StudyOptions(threads=MAX_THREADS).threads == MAX_THREADS
    help_text = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
                         .output.split())
    assert f"at most {MAX_THREADS}" in help_text


@pytest.mark.parametrize("key", [
    "optim.epochs", "optim.batch_size", "optim.motion_lr_step", "data.frames", "data.size",
    "model.dim", "model.emotion.depth", "model.emotion.heads", "model.emotion.patch_size",
    "model.fusion.tokens", "model.motion.width", "model.motion.led_hidden", "seed",
    "data.synth_seed"])
def test_absurd_config_integers_are_errors_naming_the_field(key: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: Input should be less than or equal"):
        load_config(profile="smoke", overrides=[f"{key}={HUGE}"])


def test_a_study_base_with_absurd_epochs_is_refused_and_every_profile_still_validates() -> None:
    with pytest.raises(StudySpecError, match=rf"optim.epochs: Input should be less than or "
                                             rf"equal to {MAX_EPOCHS}"):
        parse_spec(_spec(base={"optim.epochs": HUGE}), "s.yaml")
    for profile in ("smoke", "quick", "quick-paper", "stable", "paper"):
        for backbone in ("led", "resnet18", "resnet34", "vit_b16"):
            build_config({"profile": profile, "model": {"motion": {"backbone": backbone}}})
    assert load_config(profile="paper", overrides=[f"optim.epochs={MAX_EPOCHS}"])


def test_config_file_errors_name_the_flag_and_file(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    train = ["train", "--profile", "smoke", "--config"]
    (tmp_path / "d").mkdir()
    _clean_error(runner.invoke(app, [*train, "d"]), "--config d: is a directory")
    (tmp_path / "bad.yaml").write_bytes(b"optim:\n  epochs: 2\n\xff\n")
    _clean_error(runner.invoke(app, [*train, "bad.yaml"]),
                 "--config bad.yaml: not UTF-8 text (byte 0xff")
    _clean_error(runner.invoke(app, [*train, "missing.yaml"]), "--config missing.yaml: no such")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)  # reading it would block for ever
    _clean_error(runner.invoke(app, [*train, "fifo.yaml"]), "--config fifo.yaml: not a regular")
    # the keys --set may not set, a file may not either (before: silently ignored)
    (tmp_path / "p.yaml").write_text("profile: paper\n")
    _clean_error(runner.invoke(app, [*train, "p.yaml"]),
                 "--config p.yaml: profile is set by --profile", "(use --profile paper)")
    (tmp_path / "t.yaml").write_text("data:\n  task: 4\n")
    _clean_error(runner.invoke(app, [*train, "t.yaml"]),
                 "--config t.yaml: data.task is set by --task", "(use --task 4)")
    laughs = "a0: &a0 {x: 1, y: 1}\n" + "".join(
        f"a{i}: &a{i} {{p: *a{i - 1}, q: *a{i - 1}}}\n" for i in range(1, 40))
    (tmp_path / "bomb.yaml").write_text(laughs)  # 2^40 leaves once flattened
    _clean_error(runner.invoke(app, [*train, "bomb.yaml"]),
                 "--config bomb.yaml: not valid YAML", "YAML aliases (*a0) are not allowed")
    assert not (tmp_path / "mlruns").exists()  # each refused before the store was touched
    (tmp_path / "e.yaml").write_text(f"optim:\n  epochs: {HUGE}\n")
    _clean_error(runner.invoke(app, [*train, "e.yaml"]), "optim.epochs: Input should be less")


def _session_members(sid: int) -> list[int]:
    """Live processes of session ``sid`` (``/proc/<pid>/stat`` field 6)."""
    out = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append(int(stat_file.parent.name))
    return out


def test_sigterm_ends_a_large_synth_preparation_and_its_workers(tmp_path: Path) -> None:
    # the largest --subjects allowed: thousands of clips queued in the worker pool
    medn = Path(sys.executable).with_name("medn")
    proc = subprocess.Popen(
        [str(medn), "data", "synth", "--profile", "smoke", "--subjects", "1000", "--workers",
         "2", "--cache-dir", str(tmp_path / "cache")], cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        while len(list((tmp_path / "cache").rglob("*.npz"))) < 3 and proc.poll() is None:
            time.sleep(0.2)  # until the pool is computing clips
        proc.send_signal(signal.SIGTERM)
        # generous: it ends within seconds; before, it never did
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 143, err
    assert "error: interrupted by SIGTERM" in err and "Traceback" not in err
    for _ in range(50):  # the workers and the forkserver go with it
        if not _session_members(proc.pid):
            break
        time.sleep(0.1)
    assert _session_members(proc.pid) == []
