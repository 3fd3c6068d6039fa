"""The retry policy of every tracking call: what is transient, how long to wait, what to say.

What counts as transient is read from the exception's type and codes, never from its message.
The chain of causes is read from the root up (MLflow wraps every database error, a read-only
file and a full disk included, as ``TEMPORARILY_UNAVAILABLE``; the root cause says which):

- sqlite: the error code (``SQLITE_BUSY`` / ``SQLITE_LOCKED`` / ``SQLITE_CANTOPEN`` /
  ``SQLITE_IOERR``: retry; ``SQLITE_FULL``: disk full; ``SQLITE_READONLY*``: a read-only store);
- PostgreSQL: the SQLSTATE class (08 connection, 40 rollback, 53 resources, 57 operator
  intervention: retry; 53100: disk full); other SQLAlchemy ``OperationalError`` s: retry;
- ``OSError``: ``ENOSPC`` / ``EDQUOT`` are a full disk, ``EROFS`` / ``EACCES`` / ``EPERM`` a
  read-only store, connection errors and timeouts are transient; ``requests``' connection,
  timeout and retry errors are transient (MLflow already retried them by its own settings);
- an MLflow error with no such cause: transient when its HTTP status is one of MLflow's own
  retried statuses (``_TRANSIENT_FAILURE_RESPONSE_CODES``) other than 500 (a server's 500 was
  already retried by MLflow's HTTP session; what is left is a genuine error).
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.utils.request_utils import _TRANSIENT_FAILURE_RESPONSE_CODES
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from orchestrator.tracking.errors import (
    DiskFull,
    TrackingError,
    TrackingStoreError,
    TrackingUnavailable,
)
from orchestrator.tracking.store import redact_text

log = logging.getLogger(__name__)

T = TypeVar("T")
Verdict = Literal["transient", "disk_full", "read_only", "permanent"]

_SQLITE_TRANSIENT = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR",
                     "SQLITE_PROTOCOL")
_PG_TRANSIENT_CLASSES = ("08", "40", "53", "57")
_PG_DISK_FULL = "53100"
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
_HTTP_TRANSIENT = frozenset(_TRANSIENT_FAILURE_RESPONSE_CODES) - {500}


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes (explicit, else implicit), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _verdict_of_one(exc: BaseException) -> Verdict | None:
    """What one exception in the chain says, or None when it says nothing decisive."""
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith("SQLITE_FULL"):
            return "disk_full"
        if name.startswith("SQLITE_READONLY"):
            return "read_only"
        if name.startswith(_SQLITE_TRANSIENT):
            return "transient"
        return "permanent" if name else None
    pgcode = getattr(exc, "pgcode", None)
    if isinstance(pgcode, str) and pgcode:
        if pgcode == _PG_DISK_FULL:
            return "disk_full"
        return "transient" if pgcode[:2] in _PG_TRANSIENT_CLASSES else "permanent"
    if isinstance(exc, requests.exceptions.RequestException):
        if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout
                      | requests.exceptions.RetryError
                      | requests.exceptions.ChunkedEncodingError):
            return "transient"
        return "permanent"
    if isinstance(exc, OSError):
        if exc.errno in _DISK_FULL_ERRNOS:
            return "disk_full"
        if exc.errno in _READ_ONLY_ERRNOS:
            return "read_only"
        if isinstance(exc, ConnectionError | TimeoutError):
            return "transient"
        return None
    if isinstance(exc, OperationalError | InterfaceError):
        return "transient"  # a connection-level database error without a finer code
    if isinstance(exc, DBAPIError):
        return None  # its ``orig`` is the next link of the chain
    if isinstance(exc, MlflowException):
        return "transient" if exc.get_http_status_code() in _HTTP_TRANSIENT else "permanent"
    return None


def classify(exc: BaseException) -> Verdict:
    """What ``exc`` means for a tracking call: ``transient`` (retry), ``disk_full``,
    ``read_only`` (a store that cannot be written) or ``permanent`` (a bad call or a bug)."""
    if isinstance(exc, TrackingError):
        return "permanent"
    for link in reversed(list(_causes(exc))):  # the root cause knows best
        verdict = _verdict_of_one(link)
        if verdict is not None:
            return verdict
    return "permanent"


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an unreachable or busy store (worth retrying), not a bad call."""
    return classify(exc) == "transient"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc``'s message on one line, at most ``limit`` characters, passwords redacted."""
    text = redact_text(" ".join(str(exc).split())) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def retry_call(fn: Callable[..., T], *args: Any, retries: int = 6, backoff_s: float = 0.5,
               what: str = "tracking call", target: str = "the tracking store",
               disk: str | None = None, sleep: Callable[[float], None] = time.sleep,
               **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried up to ``retries`` times on transient errors with delays
    ``backoff_s * 2**k`` (capped at 30 s); then ``TrackingUnavailable``. A full disk raises
    ``DiskFull`` and a read-only store ``TrackingStoreError`` at once; other errors propagate
    unchanged at once. ``target`` names the store in messages (pass a redacted URI), ``disk``
    where it keeps its data (a sqlite file; default ``target``)."""
    waited = 0.0
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            verdict = classify(exc)
            if verdict == "disk_full":
                raise DiskFull(disk or target, f"while trying to {what}") from exc
            if verdict == "read_only":
                raise TrackingStoreError(
                    f"tracking store {target} cannot be written ({what}: {one_line(exc, 160)});"
                    " make it writable or choose another with --tracking-uri") from exc
            if verdict != "transient":
                raise
            if attempt == retries:
                raise TrackingUnavailable(
                    f"MLflow tracking store {target} is unreachable: {what} failed "
                    f"{retries + 1} times over {waited:.1f} s (last error: "
                    f"{one_line(exc)}). Finished folds already logged are kept, and fold "
                    "results not yet logged are kept in the local spool; once the store is "
                    "back, re-run the same command to resume (finished folds are not "
                    "trained again).") from exc
            delay = min(backoff_s * 2 ** attempt, 30.0)
            log.warning("MLflow %s failed (%s); retrying in %.1f s (%d/%d)", what,
                        one_line(exc), delay, attempt + 1, retries)
            sleep(delay)
            waited += delay
    raise AssertionError("unreachable")  # pragma: no cover


class RetryingClient:
    """An ``MlflowClient`` whose every method is called under ``retry_call`` (one policy for
    all of medn's tracking calls); ``retries`` and ``backoff_s`` may be changed at any time."""

    def __init__(self, tracking_uri: str, *, retries: int = 6, backoff_s: float = 0.5,
                 target: str | None = None, disk: str | None = None) -> None:
        """A client of ``tracking_uri``; ``target`` names it in messages (default: the URI),
        ``disk`` is where its data lies (for "disk full at ...")."""
        self.retries = retries
        self.backoff_s = backoff_s
        self.target = target or tracking_uri
        self.disk = disk
        self._client = MlflowClient(tracking_uri=tracking_uri)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def retried(*args: Any, **kwargs: Any) -> Any:
            return retry_call(attr, *args, retries=self.retries, backoff_s=self.backoff_s,
                              what=name.replace("_", " "), target=self.target,
                              disk=self.disk, **kwargs)

        return retried
