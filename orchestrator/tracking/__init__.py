"""Everything medn writes to MLflow, in parts with one job each.

- ``store``: the tracking URI (checked, credentials moved out), per-store folders, MLflow's
  environment defaults (``configure_mlflow_environment``), the UI link;
- ``retry``: what is transient, and one retry policy for every call (``RetryingClient``);
- ``spool``: results not yet logged, as validated records in atomic files;
- ``experiment``: opening an experiment (a new store under a lock) and claiming it;
- ``locks``: exclusive file locks between processes, with who holds them;
- ``run_tree``: ``RunTreeWriter``, the parent and fold runs of one experiment;
- ``pooling``: the pooled metrics, tables and figures of a finished parent;
- ``errors``: the exceptions, whose messages are the user's error lines.

The names below are loaded on first use, so that ``orchestrator.tracking.store`` (no MLflow
import) stays cheap for a command that starts up.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_TRACKING_URI": "orchestrator.tracking.store",
    "DiskFull": "orchestrator.tracking.errors",
    "ExperimentBusy": "orchestrator.tracking.errors",
    "FOLD_RESULT_ARTIFACT": "orchestrator.tracking.run_tree",
    "ParentState": "orchestrator.tracking.run_tree",
    "ROLE_FOLD": "orchestrator.tracking.tags",
    "ROLE_PARENT": "orchestrator.tracking.tags",
    "RetryingClient": "orchestrator.tracking.retry",
    "RunTreeWriter": "orchestrator.tracking.run_tree",
    "SPOOL_ENV": "orchestrator.tracking.store",
    "SPOOL_KINDS": "orchestrator.tracking.spool",
    "Spool": "orchestrator.tracking.spool",
    "SpoolEntry": "orchestrator.tracking.spool",
    "SpoolError": "orchestrator.tracking.errors",
    "TAG_ATTEMPT": "orchestrator.tracking.tags",
    "TAG_CONFIG_DIGEST": "orchestrator.tracking.tags",
    "TAG_DATASET": "orchestrator.tracking.tags",
    "TAG_DATASET_DIGEST": "orchestrator.tracking.tags",
    "TAG_DEVIATIONS": "orchestrator.tracking.tags",
    "TAG_DEVICE": "orchestrator.tracking.tags",
    "TAG_ERROR": "orchestrator.tracking.tags",
    "TAG_FOLD": "orchestrator.tracking.tags",
    "TAG_INCOMPLETE": "orchestrator.tracking.tags",
    "TAG_MISSING_CLIPS": "orchestrator.tracking.tags",
    "TAG_PROFILE": "orchestrator.tracking.tags",
    "TAG_PRUNED": "orchestrator.tracking.tags",
    "TAG_ROLE": "orchestrator.tracking.tags",
    "TAG_SEED": "orchestrator.tracking.tags",
    "TAG_STUDY": "orchestrator.tracking.tags",
    "TAG_TASK": "orchestrator.tracking.tags",
    "TAG_VARIANT": "orchestrator.tracking.tags",
    "TrackingError": "orchestrator.tracking.errors",
    "TrackingStoreError": "orchestrator.tracking.errors",
    "TrackingUnavailable": "orchestrator.tracking.errors",
    "classify": "orchestrator.tracking.retry",
    "config_digest": "orchestrator.tracking.run_tree",
    "configure_mlflow_environment": "orchestrator.tracking.store",
    "default_artifact_location": "orchestrator.tracking.store",
    "default_spool_dir": "orchestrator.tracking.store",
    "describe_variant": "orchestrator.tracking.run_tree",
    "is_transient": "orchestrator.tracking.retry",
    "open_client": "orchestrator.tracking.store",
    "redact_uri": "orchestrator.tracking.store",
    "resolve_tracking_uri": "orchestrator.tracking.store",
    "retry_call": "orchestrator.tracking.retry",
    "sqlite_path": "orchestrator.tracking.store",
    "store_slug": "orchestrator.tracking.store",
    "ui_link": "orchestrator.tracking.store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
