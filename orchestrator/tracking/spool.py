"""The spool: the one local store of results not yet written to MLflow.

A fold's result and a failed attempt are written here atomically (``medn.io.atomic_write``:
written, fsynced, renamed) before any MLflow call, and removed once their run is written. So a
result is safe the moment the driver receives it and waits here while MLflow is down; the next
run logs it first and trains nothing again.

Layout: ``<root>/<experiment id>/<parent run id>/<kind>-<subject hash>[-...].json``; one JSON
object per file, validated by pydantic (``FoldRecord`` / ``FailedRecord``, told apart by
``kind``). Only the driver that holds the experiment's claim (``RunTreeWriter``) flushes a
spool folder, so two drivers never log one record twice.

A write that fails stops the caller: ``DiskFull`` ("disk full at <folder>") when the disk or
quota is full, ``SpoolError`` for any other reason; nothing is ever dropped silently.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from medn.io import atomic_write
from medn.train import FoldResult
from orchestrator.tracking.errors import DiskFull, SpoolError

SPOOL_KINDS = ("fold", "failed")


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore")

    parent_id: str
    subject: str
    tags: dict[str, str] = Field(default_factory=dict)
    spooled_at: int = 0  # time.time_ns() when spooled: the order records are logged in


class FoldRecord(_Record):
    """A fold's result (``FoldResult.to_dict()``) waiting to become a FINISHED fold run."""

    kind: Literal["fold"] = "fold"
    result: dict[str, Any]


class FailedRecord(_Record):
    """A failed training attempt waiting to become a FAILED fold run."""

    kind: Literal["failed"] = "failed"
    error: str
    attempt: int


SpoolRecord = Annotated[FoldRecord | FailedRecord, Field(discriminator="kind")]
_RECORD = TypeAdapter(SpoolRecord)


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
    spooled_at: int = 0

    def fold_result(self) -> FoldResult:
        """The fold's result (a ``fold`` entry only)."""
        if self.kind != "fold" or self.result is None:
            raise ValueError(f"{self.path}: a {self.kind!r} spool entry holds no fold result")
        return FoldResult.from_dict(self.result)


def _entry(path: Path, record: FoldRecord | FailedRecord) -> SpoolEntry:
    if isinstance(record, FoldRecord):
        return SpoolEntry(path=path, kind="fold", parent_id=record.parent_id,
                          subject=record.subject, tags=dict(record.tags), result=record.result,
                          spooled_at=record.spooled_at)
    return SpoolEntry(path=path, kind="failed", parent_id=record.parent_id,
                      subject=record.subject, tags=dict(record.tags), error=record.error,
                      attempt=record.attempt, spooled_at=record.spooled_at)


def subject_hash(subject: str) -> str:
    """A file-name-safe, fixed-length name for a subject."""
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


def read_entry(path: Path) -> SpoolEntry:
    """The record in ``path``; ``SpoolError`` naming the file when it is not one."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpoolError(f"{path}: unreadable spool record ({err.strerror or err}); move it "
                         "away to continue (its fold will be trained again)") from None
    try:
        record = _RECORD.validate_json(raw)
    except ValidationError as err:
        if any(e["type"] == "json_invalid" for e in err.errors()):
            raise SpoolError(f"{path}: unreadable spool record (not JSON); move it away to "
                             "continue (its fold will be trained again)") from None
        missing = [".".join(str(p) for p in e["loc"][1:]) for e in err.errors()
                   if e["type"] == "missing"]
        raise SpoolError(f"{path}: not a spool record (expected a JSON object with kind in "
                         f"{', '.join(SPOOL_KINDS)}"
                         + (f"; missing {', '.join(missing)})" if missing else ")")) from None
    return _entry(path, record)


class Spool:
    """The spool folder of one experiment (``<root>/<experiment id>``)."""

    def __init__(self, root: Path, experiment_id: str) -> None:
        """The spool of ``experiment_id`` under ``root`` (nothing is created yet)."""
        self.root = Path(root)
        self.experiment_id = experiment_id

    @property
    def folder(self) -> Path:
        """This experiment's spool folder."""
        return self.root / self.experiment_id

    def put_fold(self, parent_id: str, result: FoldResult,
                 tags: dict[str, str] | None = None) -> SpoolEntry:
        """Persist a fold's result for ``parent_id``; complete on disk when this returns. A
        fold spooled again replaces its earlier entry."""
        record = FoldRecord(parent_id=parent_id, subject=result.subject, tags=dict(tags or {}),
                            result=result.to_dict(), spooled_at=time.time_ns())
        return self._write(f"fold-{subject_hash(result.subject)}.json", record)

    def put_failed(self, parent_id: str, subject: str, error: str, attempt: int,
                   tags: dict[str, str] | None = None) -> SpoolEntry:
        """Persist a failed attempt of ``subject``'s fold; every attempt is its own entry."""
        record = FailedRecord(parent_id=parent_id, subject=subject, tags=dict(tags or {}),
                              error=error, attempt=int(attempt), spooled_at=time.time_ns())
        name = f"failed-{subject_hash(subject)}-{int(attempt)}-{uuid.uuid4().hex[:12]}.json"
        return self._write(name, record)

    def _write(self, name: str, record: FoldRecord | FailedRecord) -> SpoolEntry:
        path = self.folder / record.parent_id / name
        blob = record.model_dump_json().encode()
        try:
            atomic_write(path, lambda handle: handle.write(blob))
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(path.parent, err.strerror or "") from err
            raise SpoolError(f"cannot write the spool record {path} "
                             f"({err.strerror or err}); the study cannot keep its results "
                             "and stops") from err
        return _entry(path, record)

    def remove(self, entry: SpoolEntry) -> None:
        """Remove a logged entry (and its parent's folder once empty)."""
        entry.path.unlink(missing_ok=True)
        for folder in (entry.path.parent, entry.path.parent.parent):
            with contextlib.suppress(OSError):  # not empty (or gone): keep it
                folder.rmdir()

    def entries(self, parent_id: str | None = None) -> list[SpoolEntry]:
        """What waits (only ``parent_id``'s when given), oldest first; ``SpoolError`` names
        a file that cannot be read."""
        pattern = f"{parent_id}/*.json" if parent_id is not None else "*/*.json"
        found = [read_entry(p) for p in self.folder.glob(pattern) if not p.name.startswith(".")]
        return sorted(found, key=lambda e: (e.spooled_at, e.path.name))
