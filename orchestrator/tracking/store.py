"""Where the tracking store is, and everything kept per store: the URI (checked, credentials
moved out of it), the spool and lock folders, artifact location, MLflow's environment, the UI
link, and the one place that opens a store (a new sqlite store is created under a lock).

Credentials: ``resolve_tracking_uri`` takes ``user:password@`` out of an HTTP URI and hands them
to MLflow through ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (MLflow's own way),
so the URI that medn prints, logs and names files after never holds them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from medn.io import slug
from orchestrator.tracking.errors import TrackingStoreError

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
SPOOL_ENV = "MEDN_SPOOL_DIR"
# The tracking-store schemes MLflow registers (``mlflow.tracking._tracking_service.utils``);
# a database URI may name its driver after a ``+`` (``postgresql+psycopg2``).
SUPPORTED_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file",
                     "databricks")
# Defaults medn sets for MLflow once per process (a user's own setting always wins):
# the tracking writer owns the retry policy, so MLflow's HTTP retries (minutes of backoff inside
# one call by default) are kept short; fold results are read back one small file at a time, and
# per-file progress bars would break the live table.
MLFLOW_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def configure_mlflow_environment() -> None:
    """Set medn's MLflow environment defaults (``MLFLOW_ENV_DEFAULTS``) unless the user set
    them; called once when a command starts, never at import."""
    for key, value in MLFLOW_ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    # a new sqlite store is created under medn's lock and said so in medn's own output; MLflow's
    # INFO lines about its schema ("Creating initial MLflow database tables...") are noise there
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)


_USERINFO = re.compile(r"(://[^/\s:@]*):[^/\s@]*@")


def redact_text(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(r"\1:***@", text)


def redact_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (``http://u:p@h`` -> ``http://u:***@h``)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _check_scheme(uri: str) -> None:
    scheme = urlsplit(uri).scheme.split("+", 1)[0].lower()
    if scheme and scheme not in SUPPORTED_SCHEMES and not (len(scheme) == 1 and os.name == "nt"):
        raise TrackingStoreError(
            f"--tracking-uri {redact_uri(uri)}: unsupported scheme {scheme!r}; expected "
            "sqlite:///path/mlflow.db, http(s)://host:port (an MLflow server), "
            "postgresql://…, mysql://… or a folder")


def resolve_tracking_uri(flag: str | None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``:
    checked, with credentials moved to MLflow's environment variables and the folder of a
    sqlite database created. ``TrackingStoreError`` for a URI MLflow cannot use."""
    uri = (flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI).strip()
    _check_scheme(uri)
    uri = move_credentials(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingStoreError(f"--tracking-uri {uri}: cannot create the folder "
                                     f"{db.parent} ({err.strerror or err})") from None
    return uri


def move_credentials(uri: str) -> str:
    """``uri`` without ``user:password@``, which go to MLflow's ``MLFLOW_TRACKING_USERNAME`` /
    ``MLFLOW_TRACKING_PASSWORD`` (unless already set): MLflow authenticates with them, and
    nothing medn prints, logs or names after the URI can hold them."""
    parts = urlsplit(uri)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return uri
    if parts.username is not None:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", parts.username)
    if parts.password is not None:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", parts.password)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (relative to the working directory)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):]
    return Path(rest) if rest and rest != ":memory:" else None


def store_slug(tracking_uri: str) -> str:
    """A file name for the tracking store at ``tracking_uri`` for local state kept per store:
    the host and port, then a short hash of the redacted URI (``http://127.0.0.1:5000`` ->
    ``127.0.0.1__5000-1f0c…``). Never holds a password."""
    redacted = redact_uri(tracking_uri)
    host = urlsplit(redacted).hostname or ""
    port = urlsplit(redacted).port if host else None
    label = slug(f"{host}:{port}" if port else host or redacted.split("://")[-1])
    return f"{label[:60]}-{hashlib.sha256(redacted.encode()).hexdigest()[:10]}"


def default_spool_dir(tracking_uri: str) -> Path:
    """``$MEDN_SPOOL_DIR``, else ``<sqlite db folder>/spool`` for a sqlite store, else
    ``.medn_spool/<store_slug>`` (per tracking server, so experiment ids never mix)."""
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV])
    db = sqlite_path(tracking_uri)
    return db.parent / "spool" if db is not None else Path(".medn_spool") / store_slug(
        tracking_uri)


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``<db folder>/artifacts`` for a sqlite store
    (``mlruns/artifacts`` by default); None (the server's choice) for any other store."""
    db = sqlite_path(tracking_uri)
    if db is None:
        return None
    return (db.parent.resolve() / "artifacts").as_uri()


def ui_link(experiment_id: str, port: int = 5000, host: str = "127.0.0.1") -> str:
    """The MLflow UI's page of an experiment's runs in the classic ML view (MLflow 3 opens
    its GenAI overview otherwise): ``http://127.0.0.1:5000/#/experiments/<id>/runs?
    workflowType=machine_learning``."""
    return (f"http://{host}:{port}/#/experiments/{experiment_id}/runs"
            "?workflowType=machine_learning")


def store_creation_lock(tracking_uri: str) -> Path | None:
    """The lock file that serialises the first opening of a sqlite store (None otherwise)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else db.parent / f".{db.name}.init.lock"


def open_client(tracking_uri: str) -> MlflowClient:
    """A plain ``MlflowClient`` of ``tracking_uri`` for readers (``medn report``, ``medn ui``).
    A new sqlite store is created under the same lock as the writers use, so a reader and a
    study that open it at the same moment do not both run its schema migrations."""
    from mlflow import MlflowClient

    from orchestrator.tracking.locks import exclusive

    lock = store_creation_lock(tracking_uri)
    if lock is None:
        return MlflowClient(tracking_uri=tracking_uri)
    with exclusive(lock):
        client = MlflowClient(tracking_uri=tracking_uri)
        client.search_experiments(max_results=1)  # the schema is made (or checked) now
    return client
