"""File writes that never leave half a file under the real name.

``atomic_write`` is the one place of the project that writes a file through a temporary file in
the same folder, flushes and fsyncs it, then renames it into place (``os.replace``): readers
(parallel workers, a re-run after a crash) see either the old file, no file, or the whole new
one. The preprocessing cache and the tracking spool use it. ``slug`` makes any text a safe
file or folder name.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


def atomic_write(path: Path, write: Callable[[IO[Any]], object], *, text: bool = False) -> Path:
    """Write ``path`` atomically: ``write(handle)`` fills a temporary file beside it (binary,
    or text when ``text``), which is flushed, fsynced and renamed to ``path``.

    The folder is created if needed. On any error the temporary file is removed and the error
    propagates; ``path`` is then untouched. Temporary files are named ``.<name>.*.tmp``.
    Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "w" if text else "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def slug(text: str) -> str:
    """``text`` as a safe single path component (``ablation-components/synth-3class`` ->
    ``ablation-components__synth-3class``)."""
    return re.sub(r"[^A-Za-z0-9_.=,+-]+", "__", text).strip("_") or "default"
