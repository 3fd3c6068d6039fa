"""``medn ui``: the real MLflow server on a real store, its printed deep links opened in a real
headless browser, and reachable from other machines when bound to 0.0.0.0."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.ports import free_port

MEDN = str(Path(sys.executable).with_name("medn"))
EXPERIMENT = "ablation-components/synth-3class"
VARIANTS = ["no1-plain-vit", "no2-single-rate", "no3-weighted-sum", "no4-no-orth", "no5-full"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A sqlite store with a study's run tree: one parent per variant, two folds under each."""
    root = tmp_path_factory.mktemp("ui_store")
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    (root / "mlruns").mkdir()
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(
        EXPERIMENT, artifact_location=(root / "mlruns" / "artifacts").as_uri())
    for variant in VARIANTS:
        parent = client.create_run(experiment_id, run_name=variant,
                                   tags={"medn.role": "parent", "medn.variant": variant})
        for fold in ("s01", "s02"):
            child = client.create_run(experiment_id, run_name=f"fold-{fold}", tags={
                "mlflow.parentRunId": parent.info.run_id, "medn.role": "fold"})
            client.set_terminated(child.info.run_id)
        client.log_metric(parent.info.run_id, "uf1", 0.5)
        client.set_terminated(parent.info.run_id)
    return uri, experiment_id


@contextlib.contextmanager
def medn_ui(uri: str, *args: str):
    """``medn ui`` running on a free port: yields (port, the lines it printed before serving)."""
    port = free_port()
    proc = subprocess.Popen([MEDN, "ui", "--tracking-uri", uri, "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "300"}, start_new_session=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "medn ui ended early:\n" + "".join(lines)
            lines.append(line)
            if "Uvicorn running" in line or "Started server process" in line:
                break
        _wait_healthy(port, deadline)
        yield port, lines
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _wait_healthy(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(
                f"http://127.0.0.1:{port}/health", timeout=5):
            return
        time.sleep(0.5)
    raise AssertionError("the MLflow UI never answered /health")


def _status(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_ui_prints_the_deep_link_and_the_browser_shows_every_variant(store, tmp_path) -> None:
    uri, experiment_id = store
    with medn_ui(uri) as (port, lines):
        text = "".join(lines)
        link = (f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs"
                "?workflowType=machine_learning")
        assert f"{EXPERIMENT}: {link}" in text, text
        if CHROMIUM is None:
            pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); the "
                        "deep link was printed but not opened in a browser")
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
             "--virtual-time-budget=30000", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium'}", link],
            capture_output=True, text=True, timeout=180).stdout
    page = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))
    assert "Run Name" in page, page[-2000:]  # the runs table of the machine-learning view
    missing = [v for v in VARIANTS if v not in page]
    assert not missing, f"variants not on the page: {missing}\n{page[-3000:]}"


def test_ui_on_all_interfaces_prints_a_reachable_address_and_serves_it(store) -> None:
    uri, _ = store
    with medn_ui(uri, "--host", "0.0.0.0") as (port, lines):
        text = "".join(lines)
        shown = re.search(r"MLflow UI for .* at http://(\S+):(\d+)", text)
        assert shown is not None, text
        host = shown.group(1).strip("[]")
        assert host not in ("localhost", "127.0.0.1", "0.0.0.0"), text
        api = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5"
        # a browser on another machine sends the printed address as its Host header
        assert _status(api, host=f"{shown.group(1)}:{port}") == 200
        assert _status(api, host=f"evil.example:{port}") == 403  # the rebinding guard stays
