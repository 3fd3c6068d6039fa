"""Where the tracking store is, and everything kept per store: the URI (checked, credentials
moved out of it), the spool and lock folders, artifact location, MLflow's environment, the UI
link, and the one place that opens a store (a new sqlite store is created under a lock).

Credentials: ``resolve_tracking_uri`` takes ``user:password@`` out of an HTTP URI and hands them
to MLflow through ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` (MLflow's own way),
so the URI that medn prints, logs and names files after never holds them.
"""

from __future__ import annotations

import contextlib
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


# A reader (``medn report``) has no spool to fall back on and nothing to wait for: a server
# that accepts the connection but never answers fails it in seconds, not MLflow's 120 s a try.
READER_ENV_DEFAULTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "15"}


def configure_mlflow_environment(reader: bool = False) -> None:
    """Set medn's MLflow environment defaults (``MLFLOW_ENV_DEFAULTS``, and for a read-only
    command ``READER_ENV_DEFAULTS``) unless the user set them; called once when a command
    starts, never at import."""
    for key, value in {**MLFLOW_ENV_DEFAULTS, **(READER_ENV_DEFAULTS if reader else {})}.items():
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
    sqlite database created. ``TrackingStoreError`` for a URI MLflow cannot use: a blank one,
    an unsupported scheme, an in-memory sqlite database (everything would vanish when the
    process ends), a database whose driver is not installed, a file that is not a sqlite
    database of MLflow's."""
    source = "--tracking-uri"
    if flag is None:
        # an exported but empty variable means "unset", as in the shell; blanks are a mistake
        flag = os.environ.get("MLFLOW_TRACKING_URI") or None
        source = "MLFLOW_TRACKING_URI"
    if flag is not None and not flag.strip():
        raise TrackingStoreError(
            f"{source} {flag!r}: empty; expected sqlite:///path/mlflow.db, http(s)://host:port "
            f"or a database URI (leave it out for the default, {DEFAULT_TRACKING_URI})")
    uri = (flag or DEFAULT_TRACKING_URI).strip()
    _check_scheme(uri)
    _check_not_in_memory(uri)
    uri = move_credentials(uri)
    check_database_driver(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingStoreError(f"--tracking-uri {uri}: cannot create the folder "
                                     f"{db.parent} ({err.strerror or err})") from None
        check_sqlite_store(db)
    return uri


def _check_not_in_memory(uri: str) -> None:
    """Refuse an in-memory sqlite database: each MLflow client would get its own, and every
    result would vanish when the process ends."""
    parts = urlsplit(uri)
    if parts.scheme.split("+", 1)[0].lower() != "sqlite":
        return
    path = (parts.netloc + parts.path).lstrip("/")
    if path in ("", ":memory:") or path.startswith("file::memory:") or \
            "mode=memory" in parts.query:
        raise TrackingStoreError(
            f"--tracking-uri {uri}: an in-memory sqlite database; every result would vanish "
            "when the process ends. Expected a file, e.g. sqlite:///mlruns/mlflow.db")


# The DB-API module SQLAlchemy's dialect imports, and the pip package that provides it.
DRIVER_PACKAGES = {"psycopg": "'psycopg[binary]'", "psycopg2": "psycopg2-binary",
                   "MySQLdb": "mysqlclient", "pymysql": "PyMySQL", "pyodbc": "pyodbc",
                   "pymssql": "pymssql", "pg8000": "pg8000", "mysql": "mysql-connector-python"}


def check_database_driver(uri: str) -> None:
    """For a database URI (``postgresql://``, ``mysql://``, ``mssql://``): the Python driver
    SQLAlchemy would use for it can be imported, else ``TrackingStoreError`` naming it, the
    package to install, and an installed driver of the same database (SQLAlchemy 2.1 reads
    ``postgresql://`` as psycopg 3; medn ships psycopg2: ``postgresql+psycopg2://``)."""
    scheme = urlsplit(uri).scheme.lower()
    base = scheme.split("+", 1)[0]
    if base not in ("postgresql", "mysql", "mssql"):
        return
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redact_uri(uri)
    try:
        dialect = make_url(uri).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError) as err:
        raise TrackingStoreError(f"--tracking-uri {shown}: not a database URI SQLAlchemy can "
                                 f"use ({redact_text(str(err).splitlines()[0])})") from None
    try:
        dialect.import_dbapi()
    except ImportError as err:
        module = (err.name or dialect.driver).split(".")[0]
        package = DRIVER_PACKAGES.get(module, module)
        hint = ""
        if base == "postgresql" and module != "psycopg2":
            import importlib.util

            if importlib.util.find_spec("psycopg2") is not None:
                hint = (" or use the installed psycopg2 driver: "
                        + shown.replace(f"{scheme}://", "postgresql+psycopg2://", 1))
        raise TrackingStoreError(
            f"--tracking-uri {shown}: the database driver {module!r} that SQLAlchemy uses for "
            f"{scheme}:// is not installed ({redact_text(str(err))}); install it "
            f"(pip install {package}){hint}") from None


SQLITE_MAGIC = b"SQLite format 3\x00"
# A table of MLflow's schema (any one: a store being created by another process has some).
_MLFLOW_TABLES = ("experiments", "runs", "alembic_version", "metrics", "params", "tags")


def check_sqlite_store(db: Path) -> None:
    """An existing ``db`` is a regular file holding a sqlite database that is empty or MLflow's;
    else ``TrackingStoreError`` naming it (MLflow would raise a long traceback, or add its
    tables to another program's database). A missing file is fine: it is created."""
    try:
        if not db.exists():
            return
        if not db.is_file():
            raise TrackingStoreError(f"{db} is not an MLflow sqlite store (not a regular "
                                     "file); move it away or pass another --tracking-uri")
        with open(db, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as err:
        raise TrackingStoreError(f"{db} cannot be read ({err.strerror or err}); fix its "
                                 "permissions or pass another --tracking-uri") from None
    if not head:
        return  # an empty file: sqlite treats it as an empty database, MLflow fills it
    if head != SQLITE_MAGIC:
        raise TrackingStoreError(
            f"{db} is not an MLflow sqlite store (not a sqlite database: it starts with "
            f"{head[:8]!r}); move it away, or pass another --tracking-uri")
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True,
                                                timeout=5)) as con:
            tables = [row[0] for row in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.Error as err:
        if not (getattr(err, "sqlite_errorname", "") or "").startswith(
                ("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            return  # busy, locked, cannot open here: a database; MLflow's own errors say why
        raise TrackingStoreError(f"{db} is not an MLflow sqlite store (a damaged sqlite "
                                 f"database: {err}); move it away, or pass another "
                                 "--tracking-uri") from None
    if tables and not set(tables) & set(_MLFLOW_TABLES):
        shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
        raise TrackingStoreError(
            f"{db} is not an MLflow sqlite store (a sqlite database of something else, with "
            f"tables {shown}); pass another --tracking-uri")


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
