"""Opening one experiment of a tracking store for writing, and claiming it for this driver.

``open_experiment`` connects (a new sqlite store is created under a lock: MLflow runs the
schema migrations when a client is made, and two processes doing it at once crash), gets or
creates the experiment (marked as classic ML, so MLflow 3 opens it on its runs table), and
refuses a deleted one. ``ExperimentClaim`` is the exclusive lock a driver holds on the
experiment while it writes: beside a sqlite store (``<db folder>/locks``), else in
``~/.cache/medn/locks/<store>`` (or the spool folder when that cannot be written).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from mlflow.exceptions import MlflowException

from orchestrator.tracking import locks
from orchestrator.tracking.errors import DiskFull, ExperimentBusy, TrackingStoreError
from orchestrator.tracking.retry import RetryingClient
from orchestrator.tracking.store import (
    default_artifact_location,
    redact_uri,
    sqlite_path,
    store_creation_lock,
    store_slug,
)
from orchestrator.tracking.tags import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG


@contextlib.contextmanager
def _lock_file_errors(tracking_uri: str, path: Path) -> Iterator[None]:
    """Turn a lock file that cannot be written into the user's error."""
    try:
        yield
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(path.parent, err.strerror or "") from err
        raise TrackingStoreError(
            f"tracking store {redact_uri(tracking_uri)}: cannot write the lock file {path} "
            f"({err.strerror or err}); the store's folder must be writable") from None


def _connect(tracking_uri: str, retries: int, backoff_s: float) -> RetryingClient:
    db = sqlite_path(tracking_uri)
    try:
        return RetryingClient(tracking_uri, retries=retries, backoff_s=backoff_s,
                              target=redact_uri(tracking_uri),
                              disk=str(db.resolve()) if db is not None else None)
    except MlflowException as err:
        raise TrackingStoreError(f"--tracking-uri {redact_uri(tracking_uri)}: "
                                 f"{str(err.message).strip().splitlines()[0]}") from None


def _get_or_create(client: RetryingClient, tracking_uri: str, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(
                name, artifact_location=default_artifact_location(tracking_uri),
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except MlflowException as err:
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)
            assert exp is not None
    if exp.lifecycle_stage == "deleted":
        raise TrackingStoreError(
            f"MLflow experiment {name!r} in {redact_uri(tracking_uri)} is deleted; restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or remove it "
            "for good (mlflow gc) before running it again")
    if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        # experiments made before medn set it would open on MLflow's GenAI page
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp.experiment_id


def open_experiment(tracking_uri: str, name: str, *, retries: int = 6,
                    backoff_s: float = 0.5) -> tuple[RetryingClient, str]:
    """A retrying client of ``tracking_uri`` and the id of experiment ``name`` (created if
    needed). ``TrackingStoreError`` when the store or the experiment cannot be used."""
    creation_lock = store_creation_lock(tracking_uri)
    if creation_lock is None:
        client = _connect(tracking_uri, retries, backoff_s)
        return client, _get_or_create(client, tracking_uri, name)
    with _lock_file_errors(tracking_uri, creation_lock), locks.exclusive(creation_lock):
        client = _connect(tracking_uri, retries, backoff_s)
        return client, _get_or_create(client, tracking_uri, name)


def _writable_folder(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


class ExperimentClaim:
    """The exclusive claim of one experiment by this process (re-entrant within it)."""

    def __init__(self, tracking_uri: str, name: str, experiment_id: str,
                 spool_dir: Path) -> None:
        """The claim of experiment ``name`` (``experiment_id``) of ``tracking_uri``."""
        self.tracking_uri = tracking_uri
        self.name = name
        db = sqlite_path(tracking_uri)
        if db is not None:
            root = db.parent / "locks"
        else:
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            root = cache / "medn" / "locks" / store_slug(tracking_uri)
            if not _writable_folder(root):  # e.g. a read-only home folder
                root = Path(spool_dir) / "locks"
        self.path = root / f"experiment-{experiment_id}.lock"
        self.held = False

    def acquire(self) -> None:
        """Take the claim; ``ExperimentBusy`` naming the holder when another process has it."""
        if self.held:
            return
        with _lock_file_errors(self.tracking_uri, self.path):
            holder = locks.try_claim(self.path)
        if holder is not None:
            raise ExperimentBusy(
                f"experiment {self.name!r} is already being run by another medn process "
                f"({holder.describe()}); wait for it to finish (then re-run: finished folds "
                f"are kept) or stop it. Lock file: {self.path}")
        self.held = True

    def release(self) -> None:
        """Give the claim back (the kernel also drops it when the process ends)."""
        if self.held:
            locks.release(self.path)
            self.held = False
