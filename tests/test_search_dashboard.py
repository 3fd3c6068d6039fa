"""``optuna-dashboard <storage>`` opens a search's study: started on loopback, its API lists
the study and serves its trials with the fold scores and the pruned trial's attributes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna

from tests.ports import free_port

DASHBOARD = str(Path(sys.executable).with_name("optuna-dashboard"))


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_optuna_dashboard_opens_the_search_study(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="tune/synth-3class", storage=storage,
                                direction="maximize")
    for value, pruned in ((0.5, False), (0.1, True)):  # as the search records them
        trial = study.ask()
        trial.suggest_float("optim.lr", 1e-5, 1e-2, log=True)
        steps = 8 if not pruned else 4
        for step in range(steps):
            trial.report(value, step)
        trial.set_user_attr("folds_scored", steps)
        if pruned:
            trial.set_user_attr("pruned", True)
        study.tell(trial, value)
    port = free_port()
    log = (tmp_path / "dashboard.log").open("w")
    process = subprocess.Popen([DASHBOARD, storage, "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        listing = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                listing = _get(f"{base}/api/studies")
                break
            except OSError:
                time.sleep(0.3)
        assert listing is not None, (tmp_path / "dashboard.log").read_text()
        summary = next(s for s in listing["study_summaries"]
                       if s["study_name"] == "tune/synth-3class")
        detail = _get(f"{base}/api/studies/{summary['study_id']}")
        trials = detail["trials"]
        assert [t["state"] for t in trials] == ["Complete", "Complete"]
        assert [len(t["intermediate_values"]) for t in trials] == [8, 4]
        attrs = {a["key"]: a["value"] for a in trials[1]["user_attrs"]}
        assert attrs["pruned"] == "True" and attrs["folds_scored"] == "4"
        with urllib.request.urlopen(f"{base}/dashboard", timeout=10) as page:
            assert page.status == 200
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
