"""Shared test fixtures: where the real annotation sheets are, and a prepared `synth` smoke set."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real sheets live beside the checkout (never copied into the repo); CI has them.
SHARED_ANNOTATIONS = REPO_ROOT.parent / "shared" / "annotations"


@pytest.fixture(scope="session")
def shared_annotations() -> Path:
    """The folder of real annotation sheets; the tests that use it fail loudly if it is absent
    in CI, and are skipped with the reason on a machine without it."""
    if not SHARED_ANNOTATIONS.is_dir():
        import os

        if os.environ.get("CI"):
            pytest.fail(f"CI must have the real annotation sheets at {SHARED_ANNOTATIONS}")
        pytest.skip(f"real annotation sheets not found at {SHARED_ANNOTATIONS}")
    return SHARED_ANNOTATIONS


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One preprocessing cache for the whole test session."""
    return tmp_path_factory.mktemp("medn_cache")


@pytest.fixture(scope="session")
def smoke_dataset(smoke_cache: Path):
    """The `synth` dataset on the `smoke` profile, prepared once per test session."""
    from medn.config import load_config
    from medn.data.dataset import prepare_dataset

    cfg = load_config(profile="smoke", overrides=[f"data.cache_dir={smoke_cache}"])
    return prepare_dataset(cfg.data)
