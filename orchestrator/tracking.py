"""The one MLflow writer: a parent run per configuration, a nested child run per LOSO fold.

Every MLflow write of ``medn train`` and of the studies goes through ``RunTreeWriter`` on the
driver (the local sqlite store breaks under concurrent writers, and only the driver is sure to
reach a tracking server). Writes are batched (``log_batch``, chunked to MLflow's limits) and
retried with bounded exponential backoff when the store is unreachable; after the retries the
writer raises ``TrackingUnavailable``, whose message tells the user to re-run to resume.

Run tree (issue 3 §5, issue 4 §3):

- parent run (tag ``medn.role=parent``): every resolved parameter, ``config.yaml``, tags
  ``medn.dataset``, ``medn.task``, ``medn.variant``, ``medn.study`` (studies), the git commit,
  ``medn.dataset_digest``, the dataset as an MLflow input; once every fold has finished, the
  pooled ``uf1``, ``uar``, ``accuracy``, ``au_f1`` and ``confusion_matrix.png``,
  ``predictions.csv``, ``per_au_f1.csv``.
- child run per fold (``medn.role=fold``, ``medn.fold=<subject>``, run name ``fold-<subject>``):
  per-epoch ``train/*`` and ``val/*`` metrics with ``step`` = epoch (1-based), and the fold's
  predictions as ``fold_result.json`` so that pooled metrics can be recomputed from MLflow alone.
- a failed attempt: a FAILED child with tags ``medn.error``, ``medn.attempt`` and ``error.txt``.

The spool (``spool_dir``) is the one local store of what is not yet logged: a fold's result and
a failed attempt are written there atomically (``spool_fold``, ``spool_failed``) before any MLflow
call, and removed once their run is written (``log_spooled``). ``log_fold`` and
``log_failed_fold`` do both steps; the study recorder calls them apart, so that a result is safe
the moment the driver receives it and waits there while MLflow is down. Whatever waits is logged
first on the next run (``flush_spool``; ``parent_run`` does it when it resumes a parent), so a
result that could not reach the tracking store costs no training.

Spool layout: ``<spool_dir>/<experiment id>/<parent run id>/<kind>-<subject hash>[-...].json``,
one JSON object per record: ``kind`` (``fold`` or ``failed``), ``parent_id``, ``subject``,
``tags``, ``spooled_at`` (ns), and ``result`` (``FoldResult.to_dict()``) or ``error`` and
``attempt``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from mlflow.utils.validation import (
    MAX_DATASET_DIGEST_SIZE,
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from medn.config import MednConfig
from medn.data.prepared import PreparedDataset
from medn.io import atomic_write, slug
from medn.train import FoldResult
from orchestrator.git_info import git_commit

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
FOLD_RESULT_ARTIFACT = "fold_result.json"
SPOOL_ENV = "MEDN_SPOOL_DIR"
SPOOL_KINDS = ("fold", "failed")

TAG_ROLE = "medn.role"
TAG_VARIANT = "medn.variant"
TAG_STUDY = "medn.study"
TAG_DATASET = "medn.dataset"
TAG_TASK = "medn.task"
TAG_FOLD = "medn.fold"
TAG_DATASET_DIGEST = "medn.dataset_digest"
TAG_CONFIG_DIGEST = "medn.config_digest"
TAG_PROFILE = "medn.profile"
TAG_INCOMPLETE = "medn.incomplete"
TAG_ERROR = "medn.error"
TAG_ATTEMPT = "medn.attempt"
TAG_DEVICE = "medn.device"
ROLE_PARENT = "parent"
ROLE_FOLD = "fold"

# Tags a child inherits from its parent, so that every run carries them (issue 4 §3).
_INHERITED_TAGS = (TAG_VARIANT, TAG_STUDY, TAG_DATASET, TAG_TASK, TAG_DATASET_DIGEST,
                   TAG_CONFIG_DIGEST, TAG_PROFILE, MLFLOW_GIT_COMMIT)
# Configuration fields that say where things are, not what is trained: not part of the digest.
_LOCATION_FIELDS = ("data.annotations", "data.data_root", "data.cache_dir", "device")
_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED",
                    "ABORTED", "IO_ERROR", "SERVICE_UNDER_MAINTENANCE", "RESOURCE_EXHAUSTED",
                    "COULD_NOT_ACQUIRE_LOCK"}
# MLflow reports an unreachable server or a busy database as a generic INTERNAL_ERROR; these
# fragments of its message tell them apart from a genuine error.
_TRANSIENT_MESSAGES = ("api request to", "max retries exceeded", "connection refused",
                       "connection reset", "connection aborted", "remotedisconnected",
                       "failed to establish a new connection", "timed out", "timeout",
                       "database is locked", "could not connect", "server closed the connection",
                       "temporarily unavailable", "bad gateway", "service unavailable",
                       "gateway timeout", "too many 5")

T = TypeVar("T")


class TrackingUnavailable(RuntimeError):
    """The tracking store stayed unreachable through every retry."""


class SpoolError(RuntimeError):
    """A spool file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class SpoolEntry:
    """One record waiting in the spool and the file that holds it: a fold's result
    (``kind="fold"``, ``result`` = ``FoldResult.to_dict()``) or a failed training attempt
    (``kind="failed"``, ``error``, ``attempt``)."""

    path: Path
    kind: str
    parent_id: str
    subject: str
    tags: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str = ""
    attempt: int = 0
    spooled_at: int = 0  # time.time_ns() when it was spooled: the order entries are logged in

    def fold_result(self) -> FoldResult:
        """The fold's result (a ``fold`` entry only)."""
        if self.kind != "fold" or self.result is None:
            raise ValueError(f"{self.path}: a {self.kind!r} spool entry holds no fold result")
        return FoldResult.from_dict(self.result)


def resolve_tracking_uri(flag: str | None) -> str:
    """``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///mlruns/mlflow.db``.

    For a sqlite URI the folder of the database file is created.
    """
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    return uri


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (relative to the working directory)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):]
    return Path(rest) if rest and rest != ":memory:" else None


def store_slug(tracking_uri: str) -> str:
    """A file name for the tracking store at ``tracking_uri`` (``http://127.0.0.1:5000`` ->
    ``127.0.0.1__5000``), for local state kept per store."""
    return slug(urlparse(tracking_uri).netloc or tracking_uri)


def default_spool_dir(tracking_uri: str) -> Path:
    """``$MEDN_SPOOL_DIR``, else ``<sqlite db folder>/spool`` for a sqlite store, else
    ``.medn_spool/<store_slug>`` (per tracking server, so experiment ids never mix)."""
    if os.environ.get(SPOOL_ENV):
        return Path(os.environ[SPOOL_ENV])
    db = _sqlite_path(tracking_uri)
    return db.parent / "spool" if db is not None else Path(".medn_spool") / store_slug(
        tracking_uri)


def default_artifact_location(tracking_uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``<db folder>/artifacts`` for a sqlite store
    (``mlruns/artifacts`` by default); None (the server's choice) for any other store."""
    db = _sqlite_path(tracking_uri)
    if db is None:
        return None
    return (db.parent.resolve() / "artifacts").as_uri()


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` looks like an unreachable or busy store (worth retrying), not a bad call."""
    if isinstance(exc, TrackingUnavailable):
        return False
    if isinstance(exc, MlflowException):
        if exc.error_code in _TRANSIENT_CODES:
            return True
        message = str(exc).lower()
        return exc.error_code == "INTERNAL_ERROR" and any(m in message
                                                          for m in _TRANSIENT_MESSAGES)
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError
                  | NotADirectoryError | FileExistsError):
        return False
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status < 500:
        return False
    if isinstance(exc, OSError | TimeoutError):  # requests' errors are OSErrors too
        return True
    try:
        from sqlalchemy.exc import InterfaceError, OperationalError
    except ImportError:  # pragma: no cover - sqlalchemy ships with mlflow
        return False
    return isinstance(exc, OperationalError | InterfaceError)


def retry_call(fn: Callable[..., T], *args: Any, retries: int = 6, backoff_s: float = 0.5,
               what: str = "tracking call", target: str = "the tracking store",
               sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried up to ``retries`` times on transient errors with delays
    ``backoff_s * 2**k`` (capped at 30 s); then ``TrackingUnavailable``. Other errors propagate
    at once."""
    waited = 0.0
    for attempt in range(retries + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == retries:
                raise TrackingUnavailable(
                    f"MLflow tracking store {target} is unreachable: {what} failed "
                    f"{retries + 1} times over {waited:.1f} s (last error: "
                    f"{_one_line(exc)}). Finished folds already logged are kept, and fold "
                    "results not yet logged are kept in the local spool; once the store is "
                    "back, re-run the same command to resume (finished folds are not "
                    "trained again).") from exc
            delay = min(backoff_s * 2 ** attempt, 30.0)
            log.warning("MLflow %s failed (%s); retrying in %.1f s (%d/%d)", what,
                        _one_line(exc), delay, attempt + 1, retries)
            sleep(delay)
            waited += delay
    raise AssertionError("unreachable")  # pragma: no cover


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def config_digest(cfg: MednConfig) -> str:
    """A short digest of what the configuration trains (file locations and device excluded)."""
    params = {k: v for k, v in cfg.flat().items() if k not in _LOCATION_FIELDS}
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _filter_value(value: str, field: str) -> str:
    if "'" in value:
        raise ValueError(f"{field} {value!r} must not contain a single quote")
    return f"'{value}'"


def _chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class RunTreeWriter:
    """Writes one experiment's run tree through one ``MlflowClient`` (see the module doc)."""

    def __init__(self, tracking_uri: str, experiment: str, *, retries: int = 6,
                 backoff_s: float = 0.5, spool_dir: Path | None = None) -> None:
        """Connect to ``tracking_uri`` and get or create the experiment ``experiment``.

        ``spool_dir`` holds fold results and failed attempts not yet logged (default
        ``default_spool_dir(tracking_uri)``).
        """
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment
        self.retries = retries
        self.backoff_s = backoff_s
        if tracking_uri.startswith(("http://", "https://")):
            # Let this writer own the retry policy: MLflow's own HTTP retries default to
            # minutes of backoff inside one call. A user's explicit setting still wins.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")  # MLflow: an int
        # Fold results are read back one small file at a time: no per-file progress bars.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.spool_dir = Path(spool_dir if spool_dir is not None
                              else default_spool_dir(tracking_uri))
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self._get_or_create_experiment(experiment)
        self._parent_tags: dict[str, dict[str, str]] = {}

    # -- plumbing -------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, what: str = "tracking call",
             **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` under this writer's retry policy (for callers' own writes)."""
        return retry_call(fn, *args, retries=self.retries, backoff_s=self.backoff_s, what=what,
                          target=self.tracking_uri, **kwargs)

    def _get_or_create_experiment(self, name: str) -> str:
        exp = self.call(self.client.get_experiment_by_name, name, what="get experiment")
        if exp is None:
            try:
                return self.call(self.client.create_experiment, name,
                                 artifact_location=default_artifact_location(self.tracking_uri),
                                 what="create experiment")
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                exp = self.call(self.client.get_experiment_by_name, name, what="get experiment")
                assert exp is not None
        if exp.lifecycle_stage == "deleted":
            raise ValueError(
                f"MLflow experiment {name!r} is deleted; restore it (mlflow experiments restore "
                f"--experiment-id {exp.experiment_id}) or remove it for good (mlflow gc)")
        return exp.experiment_id

    def log_batch(self, run_id: str, metrics: Sequence[Metric] = (),
                  params: Sequence[Param] = (), tags: Sequence[RunTag] = ()) -> None:
        """Log metrics, params and tags in as few requests as MLflow's batch limits allow."""
        keyed = [*params, *tags]
        for chunk in _chunks(keyed, MAX_PARAMS_TAGS_PER_BATCH):
            self.call(self.client.log_batch, run_id,
                      params=[p for p in chunk if isinstance(p, Param)],
                      tags=[t for t in chunk if isinstance(t, RunTag)], what="log params/tags")
        for chunk in _chunks(list(metrics), MAX_METRICS_PER_BATCH):
            self.call(self.client.log_batch, run_id, metrics=chunk, what="log metrics")

    def _search(self, filter_string: str, order_by: list[str] | None = None,
                max_results: int | None = None) -> list[Any]:
        runs: list[Any] = []
        token = None
        while True:
            page = self.call(self.client.search_runs, [self.experiment_id], filter_string,
                             max_results=min(max_results or 1000, 1000), order_by=order_by,
                             page_token=token, what="search runs")
            runs.extend(page)
            token = page.token
            if not token or (max_results is not None and len(runs) >= max_results):
                return runs

    def children(self, parent_id: str, status: str | None = None) -> list[Any]:
        """Every child run of ``parent_id`` (optionally of one status), oldest first."""
        filt = f"tags.{MLFLOW_PARENT_RUN_ID} = {_filter_value(parent_id, 'run id')}"
        if status:
            filt += f" and attributes.status = '{status}'"
        return self._search(filt, order_by=["attributes.start_time ASC"])

    # -- parent runs ----------------------------------------------------------------------------
    def find_parent(self, variant: str, cfg: MednConfig, data: PreparedDataset,
                    tags: dict[str, str] | None = None) -> str | None:
        """The newest parent run of (variant, configuration, dataset[, study]), if any."""
        parts = [f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'",
                 f"tags.`{TAG_VARIANT}` = {_filter_value(variant, 'variant')}",
                 f"tags.`{TAG_CONFIG_DIGEST}` = '{config_digest(cfg)}'",
                 f"tags.`{TAG_DATASET_DIGEST}` = {_filter_value(data.digest, 'dataset digest')}"]
        if tags and tags.get(TAG_STUDY):
            parts.append(f"tags.`{TAG_STUDY}` = {_filter_value(tags[TAG_STUDY], 'study')}")
        runs = self._search(" and ".join(parts), order_by=["attributes.start_time DESC"],
                            max_results=1)
        return runs[0].info.run_id if runs else None

    def parent_run(self, variant: str, cfg: MednConfig, data: PreparedDataset,
                   tags: dict[str, str], *, fresh: bool = False) -> str:
        """Get (resume) or create the parent run of (variant, configuration, dataset).

        ``fresh=True`` always creates a new parent beside any old one. A resumed parent is set
        back to RUNNING and gets what waits for it in the spool logged.
        """
        if not fresh:
            existing = self.find_parent(variant, cfg, data, tags)
            if existing is not None:
                run = self.call(self.client.get_run, existing, what="get parent run")
                self._parent_tags[existing] = dict(run.data.tags)
                if run.info.status != "RUNNING":
                    self.call(self.client.update_run, existing, status="RUNNING",
                              what="reopen parent run")
                self.flush_spool(existing)
                return existing
        run_tags: dict[str, str] = {
            TAG_ROLE: ROLE_PARENT,
            TAG_VARIANT: variant,
            TAG_DATASET: data.name,
            TAG_TASK: str(data.task),
            TAG_DATASET_DIGEST: data.digest,
            TAG_CONFIG_DIGEST: config_digest(cfg),
            TAG_PROFILE: cfg.profile,
            "medn.folds": str(len(data.subject_ids)),
        }
        commit = git_commit()
        if commit:
            run_tags[MLFLOW_GIT_COMMIT] = commit
        run_tags.update({k: str(v) for k, v in tags.items()})
        run = self.call(self.client.create_run, self.experiment_id, tags=run_tags,
                        run_name=variant, what="create parent run")
        run_id = run.info.run_id
        self._parent_tags[run_id] = {**run_tags, MLFLOW_RUN_NAME: variant}
        params = [Param(k, "None" if v is None else str(v)) for k, v in cfg.flat().items()]
        self.log_batch(run_id, params=params)
        self.call(self.client.log_text, run_id,
                  yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), "config.yaml",
                  what="log config.yaml")
        self.call(self.client.log_inputs, run_id, datasets=[_dataset_input(cfg, data)],
                  what="log dataset input")
        return run_id

    def _tags_of(self, parent_id: str) -> dict[str, str]:
        if parent_id not in self._parent_tags:
            run = self.call(self.client.get_run, parent_id, what="get parent run")
            self._parent_tags[parent_id] = dict(run.data.tags)
        return self._parent_tags[parent_id]

    def _child_tags(self, parent_id: str, subject: str, extra: dict[str, str]) -> dict[str, str]:
        parent = self._tags_of(parent_id)
        tags = {k: parent[k] for k in _INHERITED_TAGS if k in parent}
        tags.update({MLFLOW_PARENT_RUN_ID: parent_id, TAG_ROLE: ROLE_FOLD, TAG_FOLD: subject})
        tags.update({k: str(v) for k, v in extra.items()})
        return tags

    # -- fold runs ------------------------------------------------------------------------------
    def finished_folds(self, parent_id: str) -> dict[str, str]:
        """Held-out subject -> its FINISHED child run id (the oldest, if there were several)."""
        done: dict[str, str] = {}
        for run in self.children(parent_id, status="FINISHED"):
            subject = run.data.tags.get(TAG_FOLD)
            if subject is not None and subject not in done:
                done[subject] = run.info.run_id
        return done

    def log_fold(self, parent_id: str, result: FoldResult, tags: dict[str, str]) -> str:
        """Log one fold as a FINISHED child run of ``parent_id`` and return its id.

        The result is spooled first and unspooled once its run is FINISHED. If the fold already
        has a FINISHED run, that run's id is returned and nothing is written; RUNNING leftovers
        of the same fold (a crash mid-write) are marked KILLED.
        """
        return self.log_spooled(self.spool_fold(parent_id, result, tags))

    def log_failed_fold(self, parent_id: str, subject: str, error: str, attempt: int,
                        tags: dict[str, str]) -> str:
        """Record a failed training attempt of a fold as a FAILED child run with its error
        (spooled first, like ``log_fold``)."""
        return self.log_spooled(self.spool_failed(parent_id, subject, error, attempt, tags))

    def log_spooled(self, entry: SpoolEntry) -> str:
        """Write the run of a spooled ``entry`` (a FINISHED fold run or a FAILED attempt), then
        remove it from the spool; returns the run's id."""
        if entry.kind == "fold":
            run_id = self._write_fold_run(entry.parent_id, entry.fold_result(), entry.tags)
        else:
            run_id = self._write_failed_run(entry.parent_id, entry.subject, entry.error,
                                            entry.attempt, entry.tags)
        self._unspool(entry)
        return run_id

    def _write_fold_run(self, parent_id: str, result: FoldResult, tags: dict[str, str]) -> str:
        subject = result.subject
        children = self.children(parent_id)
        for run in children:
            if run.data.tags.get(TAG_FOLD) == subject and run.info.status == "FINISHED":
                return run.info.run_id
        for run in children:
            if run.data.tags.get(TAG_FOLD) == subject and run.info.status == "RUNNING":
                self.call(self.client.set_terminated, run.info.run_id, "KILLED",
                          what="close a stale fold run")
        run_tags = self._child_tags(parent_id, subject, {TAG_DEVICE: result.device, **tags})
        run = self.call(self.client.create_run, self.experiment_id, tags=run_tags,
                        run_name=f"fold-{subject}", what="create fold run")
        run_id = run.info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(key, float(value), now, epoch)
                   for epoch, entry in enumerate(result.history, start=1)
                   for key, value in entry.items()]
        metrics.append(Metric("fold_seconds", float(result.seconds), now, 0))
        self.log_batch(run_id, metrics=metrics)
        self.call(self.client.log_dict, run_id, result.to_dict(), FOLD_RESULT_ARTIFACT,
                  what="log fold predictions")
        self.call(self.client.set_terminated, run_id, "FINISHED", what="finish fold run")
        return run_id

    def _write_failed_run(self, parent_id: str, subject: str, error: str, attempt: int,
                          tags: dict[str, str]) -> str:
        run_tags = self._child_tags(parent_id, subject, {
            TAG_ERROR: _truncate(error), TAG_ATTEMPT: str(attempt), **tags})
        run = self.call(self.client.create_run, self.experiment_id, tags=run_tags,
                        run_name=f"fold-{subject}-failed-{attempt}", what="create failed run")
        run_id = run.info.run_id
        self.call(self.client.log_text, run_id, error, "error.txt", what="log error text")
        self.call(self.client.set_terminated, run_id, "FAILED", what="mark run failed")
        return run_id

    def load_fold_result(self, run_id: str) -> FoldResult:
        """The ``FoldResult`` a fold run holds (its ``fold_result.json`` artifact)."""
        with tempfile.TemporaryDirectory(prefix="medn-fold-") as tmp:
            path = self.call(self.client.download_artifacts, run_id, FOLD_RESULT_ARTIFACT, tmp,
                             what="download fold predictions")
            return FoldResult.from_dict(json.loads(Path(path).read_text()))

    # -- spool ----------------------------------------------------------------------------------
    def spool_fold(self, parent_id: str, result: FoldResult,
                   tags: dict[str, str] | None = None) -> SpoolEntry:
        """Persist a fold's result for ``parent_id`` (no MLflow call); complete on disk
        (written, fsynced, renamed) when this returns. A fold spooled again replaces its
        earlier entry."""
        name = f"fold-{_subject_hash(result.subject)}.json"
        return self._spool(name, {"kind": "fold", "parent_id": parent_id,
                                  "subject": result.subject, "tags": dict(tags or {}),
                                  "result": result.to_dict()})

    def spool_failed(self, parent_id: str, subject: str, error: str, attempt: int,
                     tags: dict[str, str] | None = None) -> SpoolEntry:
        """Persist a failed attempt of ``subject``'s fold (no MLflow call), to be logged as a
        FAILED run; every attempt is its own entry."""
        name = f"failed-{_subject_hash(subject)}-{int(attempt)}-{uuid.uuid4().hex[:12]}.json"
        return self._spool(name, {"kind": "failed", "parent_id": parent_id,
                                  "subject": subject, "tags": dict(tags or {}),
                                  "error": error, "attempt": int(attempt)})

    def _spool(self, name: str, record: dict[str, Any]) -> SpoolEntry:
        path = self.spool_dir / self.experiment_id / record["parent_id"] / name
        record["spooled_at"] = time.time_ns()
        atomic_write(path, lambda handle: json.dump(record, handle), text=True)
        return _entry(path, record)

    def _unspool(self, entry: SpoolEntry) -> None:
        entry.path.unlink(missing_ok=True)
        for folder in (entry.path.parent, entry.path.parent.parent):
            with contextlib.suppress(OSError):  # not empty (or gone): keep it
                folder.rmdir()

    def spooled(self, parent_id: str | None = None) -> list[SpoolEntry]:
        """What waits in this experiment's spool (only ``parent_id``'s when given), oldest
        first; ``SpoolError`` names a file that cannot be read."""
        root = self.spool_dir / self.experiment_id
        pattern = f"{parent_id}/*.json" if parent_id is not None else "*/*.json"
        entries = [_read_entry(p) for p in root.glob(pattern) if not p.name.startswith(".")]
        return sorted(entries, key=lambda e: (e.spooled_at, e.path.name))

    def spooled_results(self, parent_id: str) -> list[FoldResult]:
        """Fold results of ``parent_id`` computed but not yet logged (kept on local disk)."""
        return [e.fold_result() for e in self.spooled(parent_id) if e.kind == "fold"]

    def flush_spool(self, parent_id: str | None = None) -> list[str]:
        """Log everything waiting in this experiment's spool (only ``parent_id``'s when given);
        the ids of the runs written."""
        return [self.log_spooled(entry) for entry in self.spooled(parent_id)]

    # -- pooling --------------------------------------------------------------------------------
    def finalize_parent(self, parent_id: str, data: PreparedDataset) -> dict[str, float] | None:
        """Pool exactly one FINISHED run per fold of ``data`` and log the parent's results.

        The predictions are read back from MLflow. If some fold has no FINISHED run, no pooled
        metric is logged: the parent is tagged ``medn.incomplete`` with the missing subjects,
        ended as KILLED, and None is returned.
        """
        from medn import metrics as mm

        done = self.finished_folds(parent_id)
        missing = [s for s in data.subject_ids if s not in done]
        if missing:
            note = (f"{len(missing)} of {len(data.subject_ids)} folds have no finished run: "
                    + ", ".join(missing))
            self.log_batch(parent_id, tags=[RunTag(TAG_INCOMPLETE, _truncate(note))])
            self.call(self.client.set_terminated, parent_id, "KILLED", what="end parent run")
            return None
        results = [self._checked_result(done[s], s, data) for s in data.subject_ids]
        y_true = np.concatenate([r.y_true for r in results])
        y_pred = np.concatenate([r.y_pred for r in results])
        au_true = np.concatenate([r.au_true for r in results])
        au_scores = np.concatenate([r.au_scores for r in results])
        pooled = {k: float(v) for k, v in
                  mm.pooled_metrics(y_true, y_pred, data.num_classes).items()}
        au_f1 = _per_au_f1(mm, au_true, au_scores, data.au_names)
        if au_f1:
            pooled["au_f1"] = float(np.mean(list(au_f1.values())))
        now = int(time.time() * 1000)
        metric_list = [Metric(k, v, now, 0) for k, v in pooled.items()]
        metric_list += [Metric(f"au_f1/{name}", v, now, 0) for name, v in au_f1.items()]
        self.log_batch(parent_id, metrics=metric_list, tags=[
            RunTag("medn.pooled_runs", _truncate(",".join(done[s] for s in data.subject_ids))),
            RunTag("medn.clips", str(len(y_true)))])
        self.call(self.client.log_text, parent_id, _predictions_csv(results, data),
                  "predictions.csv", what="log predictions.csv")
        self.call(self.client.log_text, parent_id,
                  pd.DataFrame({"au": list(au_f1), "f1": list(au_f1.values()),
                                "positives": au_true.sum(axis=0).astype(int).tolist()
                                if au_f1 else []}).to_csv(index=False),
                  "per_au_f1.csv", what="log per_au_f1.csv")
        figure = _confusion_figure(mm.confusion(y_true, y_pred, data.num_classes), data.classes,
                                   title=f"{self._tags_of(parent_id).get(TAG_VARIANT, '')} "
                                         f"UF1 {pooled['uf1']:.3f}  UAR {pooled['uar']:.3f}")
        self.call(self.client.log_figure, parent_id, figure, "confusion_matrix.png",
                  what="log confusion_matrix.png")
        if TAG_INCOMPLETE in self.call(self.client.get_run, parent_id,
                                       what="get parent run").data.tags:
            self.call(self.client.delete_tag, parent_id, TAG_INCOMPLETE, what="clear tag")
        self.call(self.client.set_terminated, parent_id, "FINISHED", what="finish parent run")
        return pooled

    def _checked_result(self, run_id: str, subject: str, data: PreparedDataset) -> FoldResult:
        result = self.load_fold_result(run_id)
        expected = sorted(data.clips[i] for i in data.fold(subject).test_idx)
        if sorted(result.clips) != expected:
            raise ValueError(f"fold run {run_id} (subject {subject!r}) holds predictions for "
                             f"clips {sorted(result.clips)[:5]}..., not the dataset's "
                             f"{expected[:5]}...: it was made from other data")
        return result


def _subject_hash(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


def _entry(path: Path, record: dict[str, Any]) -> SpoolEntry:
    return SpoolEntry(path=path, kind=record["kind"], parent_id=record["parent_id"],
                      subject=record["subject"], tags=record.get("tags") or {},
                      result=record.get("result"), error=record.get("error", ""),
                      attempt=int(record.get("attempt", 0)),
                      spooled_at=int(record.get("spooled_at", 0)))


def _read_entry(path: Path) -> SpoolEntry:
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpoolError(f"{path}: unreadable spool record ({err}); move it away to continue "
                         "(its fold will be trained again)") from None
    required = {"fold": ("parent_id", "subject", "result"),
                "failed": ("parent_id", "subject", "error", "attempt")}
    kind = record.get("kind") if isinstance(record, dict) else None
    missing = [k for k in required.get(kind, ()) if k not in record]
    if kind not in SPOOL_KINDS or missing:
        raise SpoolError(f"{path}: not a spool record (expected a JSON object with kind in "
                         f"{', '.join(SPOOL_KINDS)}"
                         + (f"; missing {', '.join(missing)})" if missing else ")"))
    return _entry(path, record)


def _truncate(text: str, limit: int = MAX_TAG_VAL_LENGTH) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ...[truncated]"


def _dataset_input(cfg: MednConfig, data: PreparedDataset) -> DatasetInput:
    source = {"dataset": cfg.data.dataset, "task": data.task,
              "annotations": str(cfg.data.annotations) if cfg.data.annotations else None,
              "data_root": str(cfg.data.data_root) if cfg.data.data_root else None}
    profile = {"clips": len(data), "subjects": len(set(data.subjects)),
               "classes": list(data.classes), "aus": list(data.au_names),
               "flows_shape": list(data.flows.shape), "digest": data.digest}
    dataset = Dataset(name=f"{data.name}-{data.task}class",
                      digest=data.digest[:MAX_DATASET_DIGEST_SIZE], source_type="local",
                      source=json.dumps(source), profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])


def _per_au_f1(mm: Any, au_true: np.ndarray, au_scores: np.ndarray,
               au_names: Sequence[str]) -> dict[str, float]:
    if not len(au_names):
        return {}
    values = np.asarray(mm.per_au_f1(au_true, au_scores))
    return {str(name): float(v) for name, v in zip(au_names, values, strict=True)}


def _predictions_csv(results: Sequence[FoldResult], data: PreparedDataset) -> str:
    rows = []
    for result in results:
        for i, clip in enumerate(result.clips):
            row: dict[str, Any] = {
                "subject": result.subject, "clip": clip,
                "true": data.classes[int(result.y_true[i])],
                "predicted": data.classes[int(result.y_pred[i])],
            }
            for c, name in enumerate(data.classes):
                row[f"score_{name}"] = float(result.scores[i, c])
            rows.append(row)
    return pd.DataFrame(rows).to_csv(index=False, float_format="%.6f")


def _confusion_figure(matrix: np.ndarray, classes: Sequence[str], title: str) -> Any:
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(3.5, 0.9 * len(classes) + 1.5)
    figure = Figure(figsize=(size, size), layout="constrained")
    ax = figure.add_subplot()
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=list(classes)).plot(
        ax=ax, colorbar=False, cmap="Blues", values_format="d")
    ax.set_title(title.strip(), fontsize=9)
    return figure
