"""The driver's outbox: fold results (and failed attempts) persisted before they are logged.

A trained fold's result is written here, atomically, the moment the driver receives it; only
once it is logged to MLflow is its file removed. A driver that crashes between "trained" and
"logged", or an MLflow server that is down for a while, therefore costs no training: the next
run of the same study command logs what it finds here before it decides which folds to train.

Layout: ``<root>/<experiment slug>/<record id>.json``, one JSON object per record, written as a
temporary file then ``os.replace``d (never half a file).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

RECORD_KINDS = ("fold", "failed")


class OutboxError(RuntimeError):
    """An outbox file that cannot be read; the message names the file."""


def slug(text: str) -> str:
    """``text`` as a safe single path component (``ablation-components/synth-3class`` ->
    ``ablation-components__synth-3class``)."""
    return re.sub(r"[^A-Za-z0-9_.=,+-]+", "__", text).strip("_") or "default"


def outbox_root(tracking_uri: str, cache_dir: Path | None = None) -> Path:
    """Where the outbox of the store at ``tracking_uri`` lives.

    Beside a local store (``sqlite:///dir/mlflow.db`` -> ``dir/.medn_outbox``; ``file:///dir``
    or a plain path -> ``dir/.medn_outbox``); for a tracking server, under the local cache
    folder (``<cache_dir or .medn_cache>/outbox/<host_port>``), since only this driver writes it.
    """
    parsed = urlparse(tracking_uri)
    if parsed.scheme == "sqlite" and ":///" in tracking_uri:
        # sqlite:///relative.db and sqlite:////absolute.db (SQLAlchemy's forms)
        db_path = tracking_uri.split(":///", 1)[1]
        if db_path and db_path != ":memory:":
            return Path(db_path).parent / ".medn_outbox"
    if parsed.scheme in ("", "file"):
        folder = Path(parsed.path if parsed.scheme == "file" else tracking_uri)
        return folder / ".medn_outbox"
    base = Path(cache_dir) if cache_dir is not None else Path(".medn_cache")
    return base / "outbox" / slug(parsed.netloc or tracking_uri)


@dataclass(frozen=True)
class OutboxItem:
    """One persisted record and the file that holds it."""

    path: Path
    record: dict[str, Any]

    @property
    def kind(self) -> str:
        """``fold`` (a finished fold's result) or ``failed`` (a failed attempt)."""
        return str(self.record["kind"])


class Outbox:
    """Atomic JSON records of one experiment, waiting to be logged."""

    def __init__(self, root: Path, experiment: str) -> None:
        self.folder = Path(root) / slug(experiment)
        self.experiment = experiment

    def put(self, record: dict[str, Any]) -> OutboxItem:
        """Persist ``record`` (it must have ``kind`` in ``RECORD_KINDS``) and return its item.

        The file is complete on disk (written, flushed, fsynced, renamed) when this returns.
        """
        if record.get("kind") not in RECORD_KINDS:
            raise ValueError(f"outbox record kind {record.get('kind')!r}: expected one of "
                             f"{', '.join(RECORD_KINDS)}")
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{record['kind']}-{slug(str(record.get('subject', '')))}-{uuid.uuid4().hex}.json"
        path = self.folder / name
        record = {**record, "experiment": self.experiment}
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=self.folder)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(record, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return OutboxItem(path, record)

    def pending(self) -> list[OutboxItem]:
        """Every record still waiting, oldest first."""
        if not self.folder.is_dir():
            return []
        items = []
        paths = sorted(self.folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
        for path in paths:
            if path.name.startswith(".tmp-"):
                continue
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise OutboxError(f"{path}: unreadable outbox record ({err}); move it away "
                                  "to continue (its fold will be trained again)") from None
            if not isinstance(record, dict) or record.get("kind") not in RECORD_KINDS:
                raise OutboxError(f"{path}: not an outbox record (expected a JSON object with "
                                  f"kind in {', '.join(RECORD_KINDS)})")
            items.append(OutboxItem(path, record))
        return items

    def remove(self, item: OutboxItem) -> None:
        """Forget ``item`` once it is logged."""
        item.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.pending())
