"""Fixtures of the integration tests: the whole topology (PostgreSQL, MLflow server, two-node Ray
cluster) started once per module on 127.0.0.1 and stopped by process id/group afterwards, also
when a test fails (a finalizer, not code after ``yield`` that an error could skip)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from topology import Topology  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this folder is an integration test."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def topology(request: pytest.FixtureRequest) -> Topology:
    """PostgreSQL + MLflow server (served artifacts) + Ray head + Ray node ``node2``."""
    topo = Topology.create()
    failed_before = request.session.testsfailed

    def stop() -> None:
        topo.down()
        # Keep the logs (PostgreSQL, MLflow server, both Ray nodes) when something failed.
        if request.session.testsfailed == failed_before:
            shutil.rmtree(topo.root, ignore_errors=True)
        else:
            print(f"\nintegration topology logs kept under {topo.root}")

    request.addfinalizer(stop)
    topo.up()
    return topo
