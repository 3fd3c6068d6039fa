"""Everything medn writes to MLflow, in parts with one job each.

- ``store``: the tracking URI (checked, credentials moved out), per-store folders, MLflow's
  environment defaults (``configure_mlflow_environment``), the UI link;
- ``retry``: what is transient, and one retry policy for every call (``RetryingClient``);
- ``spool``: results not yet logged, as validated records in atomic files;
- ``locks``: the experiment claim between drivers and the store-creation lock;
- ``run_tree``: ``RunTreeWriter``, the parent and fold runs of one experiment;
- ``pooling``: the pooled metrics, tables and figures of a finished parent;
- ``errors``: the exceptions, whose messages are the user's error lines.
"""

from orchestrator.tracking.errors import (
    DiskFull,
    ExperimentBusy,
    SpoolError,
    TrackingError,
    TrackingStoreError,
    TrackingUnavailable,
)
from orchestrator.tracking.retry import RetryingClient, classify, is_transient, retry_call
from orchestrator.tracking.run_tree import (
    FOLD_RESULT_ARTIFACT,
    ParentState,
    RunTreeWriter,
    config_digest,
    describe_variant,
)
from orchestrator.tracking.spool import SPOOL_KINDS, Spool, SpoolEntry
from orchestrator.tracking.store import (
    DEFAULT_TRACKING_URI,
    SPOOL_ENV,
    configure_mlflow_environment,
    default_artifact_location,
    default_spool_dir,
    open_client,
    redact_uri,
    resolve_tracking_uri,
    sqlite_path,
    store_slug,
    ui_link,
)
from orchestrator.tracking.tags import (
    ROLE_FOLD,
    ROLE_PARENT,
    TAG_ATTEMPT,
    TAG_CONFIG_DIGEST,
    TAG_DATASET,
    TAG_DATASET_DIGEST,
    TAG_DEVIATIONS,
    TAG_DEVICE,
    TAG_ERROR,
    TAG_FOLD,
    TAG_INCOMPLETE,
    TAG_MISSING_CLIPS,
    TAG_PROFILE,
    TAG_PRUNED,
    TAG_ROLE,
    TAG_SEED,
    TAG_STUDY,
    TAG_TASK,
    TAG_VARIANT,
)

__all__ = [
    "DEFAULT_TRACKING_URI", "FOLD_RESULT_ARTIFACT", "ROLE_FOLD", "ROLE_PARENT", "SPOOL_ENV",
    "SPOOL_KINDS", "TAG_ATTEMPT", "TAG_CONFIG_DIGEST", "TAG_DATASET", "TAG_DATASET_DIGEST",
    "TAG_DEVIATIONS", "TAG_DEVICE", "TAG_ERROR", "TAG_FOLD", "TAG_INCOMPLETE",
    "TAG_MISSING_CLIPS", "TAG_PROFILE", "TAG_PRUNED", "TAG_ROLE", "TAG_SEED", "TAG_STUDY",
    "TAG_TASK", "TAG_VARIANT", "DiskFull", "ExperimentBusy", "ParentState", "RetryingClient",
    "RunTreeWriter", "Spool", "SpoolEntry", "SpoolError", "TrackingError", "TrackingStoreError",
    "TrackingUnavailable", "classify", "config_digest", "configure_mlflow_environment",
    "default_artifact_location", "default_spool_dir", "describe_variant", "is_transient",
    "open_client",
    "redact_uri", "resolve_tracking_uri", "retry_call", "sqlite_path", "store_slug", "ui_link",
]
