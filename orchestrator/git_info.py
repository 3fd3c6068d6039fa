"""The git commit of the code that produced a run (tagged on every MLflow run)."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=8)
def git_commit(path: Path = _REPO_ROOT) -> str | None:
    """The HEAD commit of the repository holding ``path``.

    ``MEDN_GIT_COMMIT`` in the environment wins (a Docker image built without ``.git`` passes
    the commit that way); None outside a git checkout or without a ``git`` executable.
    """
    if os.environ.get("MEDN_GIT_COMMIT"):
        return os.environ["MEDN_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


@functools.lru_cache(maxsize=8)
def git_dirty(path: Path = _REPO_ROOT) -> bool | None:
    """Whether tracked files differ from HEAD (None when unknown)."""
    try:
        out = subprocess.run(["git", "-C", str(path), "status", "--porcelain",
                              "--untracked-files=no"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None
