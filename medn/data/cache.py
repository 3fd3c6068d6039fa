"""The on-disk preprocessing cache: one ``.npz`` file per clip, named by the clip's digest.

Key: a SHA-256 over a canonical JSON of everything that determines a clip's flow: the dataset and
clip id, the sampled frame numbers and the *content* hash (BLAKE2b) of each sampled frame file
(so a copied or touched dataset still hits, an edited frame misses), or for ``synth`` the
generator's profile, seed, version and the clip's record; plus every preprocessing parameter
(size, T, TV-L1 parameters, alignment version, ``CACHE_FORMAT``). Any change gives a new key; old
entries are left in place (delete the folder to reclaim space).

Layout: ``<cache_dir>/<dataset>/<key[:2]>/<key>.npz`` holding ``flow`` float16 (T-1, 2, H, W) and
``frames`` int64 (the sampled frame numbers). Writes go to a temporary file in the same folder
and are renamed into place (``medn.io.atomic_write``), so parallel workers and killed runs never
leave a partial entry under a real name; a file that still fails to load is treated as a miss.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from medn.io import atomic_write

CACHE_FORMAT = 1


def file_digest(path: Path) -> str:
    """The BLAKE2b hex digest of a file's bytes."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_key(payload: dict[str, Any]) -> str:
    """The SHA-256 hex digest of ``payload`` as canonical JSON (sorted keys)."""
    text = json.dumps({"cache_format": CACHE_FORMAT, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def entry_path(cache_dir: Path, dataset: str, key: str) -> Path:
    """Where the entry ``key`` of ``dataset`` lives."""
    return Path(cache_dir) / dataset / key[:2] / f"{key}.npz"


def load_entry(cache_dir: Path, dataset: str, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(flow, frame_numbers)`` of a cached clip, or ``None`` if absent or unreadable."""
    path = entry_path(cache_dir, dataset, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["flow"], data["frames"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def store_entry(cache_dir: Path, dataset: str, key: str, flow: np.ndarray,
                frames: np.ndarray) -> Path:
    """Write a clip's entry atomically (temporary file + rename); returns its path."""

    def write(handle: IO[bytes]) -> None:
        np.savez(handle, flow=flow.astype(np.float16), frames=np.asarray(frames, dtype=np.int64))

    return atomic_write(entry_path(cache_dir, dataset, key), write)
