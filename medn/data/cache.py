"""The on-disk preprocessing cache: one ``.npz`` file per clip, named by the clip's digest.

Key: a SHA-256 over a canonical JSON of everything that determines a clip's flow: the dataset and
clip id, the sampled frame numbers and the *content* hash (BLAKE2b) of each sampled frame file
(so a copied or touched dataset still hits, an edited frame misses), or for ``synth`` the
generator's profile, seed, version and the clip's record; plus every preprocessing parameter
(size, T, TV-L1 parameters, alignment and sampling rules' versions, ``CACHE_FORMAT``). Any change
gives a new key; old entries are left in place (delete the folder to reclaim space).

Layout: ``<cache_dir>/<dataset>/<key[:2]>/<key>.npz`` holding ``flow`` float16 (T-1, 2, H, W),
``frames`` uint8 (T, H, W) (the aligned grayscale frames), ``frame_numbers`` int64 (T,), ``qc``
(the clip's quality record as JSON text), ``key`` (the entry's own key) and ``digest`` (BLAKE2b
over the arrays' bytes, shapes and the QC text). Writes go to a temporary file in the same folder
and are renamed into place (``medn.io.atomic_write``), so parallel workers and killed runs never
leave a partial entry under a real name; a file that cannot be read as a zip is treated as a miss
(recomputed). A readable entry that holds another key (files swapped or copied), whose content
does not match its digest, or whose arrays have the wrong shape raises ``CacheEntryError`` naming
the file: it was changed by something other than medn and must not be used silently.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from medn.io import atomic_write

CACHE_FORMAT = 2


class CacheEntryError(ValueError):
    """A cache entry that exists and reads, but is not the entry its name says (or is damaged)."""


@dataclass
class CacheEntry:
    """One clip's cached preprocessing result."""

    flow: np.ndarray = field(repr=False)
    frames: np.ndarray = field(repr=False)
    frame_numbers: np.ndarray
    qc: dict[str, Any]


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


def content_digest(key: str, flow: np.ndarray, frames: np.ndarray, frame_numbers: np.ndarray,
                   qc_text: str) -> str:
    """The digest stored in an entry: its key, each array's dtype, shape and bytes, the QC."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(key.encode())
    for array in (flow, frames, frame_numbers):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(qc_text.encode())
    return digest.hexdigest()


def load_entry(cache_dir: Path, dataset: str, key: str,
               expected: dict[str, tuple[int, ...]] | None = None) -> CacheEntry | None:
    """The cached clip ``key``, or ``None`` if absent or not a readable npz file.

    ``expected`` maps array names (``flow``, ``frames``, ``frame_numbers``) to their shapes.
    Raises ``CacheEntryError`` naming the file if the entry holds another key, fails its content
    digest, lacks an array or has an array of another shape.
    """
    path = entry_path(cache_dir, dataset, key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    missing = [n for n in ("flow", "frames", "frame_numbers", "qc", "key", "digest")
               if n not in arrays]
    if missing:
        raise CacheEntryError(f"cache entry {path} lacks {', '.join(missing)}: not written by "
                              f"this medn (cache format {CACHE_FORMAT}); delete it to recompute")
    stored_key = str(arrays["key"])
    if stored_key != key:
        raise CacheEntryError(f"cache entry {path} holds the entry {stored_key[:16]}..., not "
                              f"{key[:16]}...: cache files were swapped, renamed or copied; "
                              "delete it to recompute")
    for name, shape in (expected or {}).items():
        if arrays[name].shape != tuple(shape):
            raise CacheEntryError(f"cache entry {path}: {name} has shape "
                                  f"{arrays[name].shape}, expected {tuple(shape)}; delete it "
                                  "to recompute")
    qc_text = str(arrays["qc"])
    actual = content_digest(key, arrays["flow"], arrays["frames"], arrays["frame_numbers"],
                            qc_text)
    if actual != str(arrays["digest"]):
        raise CacheEntryError(f"cache entry {path}: its content does not match its digest "
                              "(edited or damaged); delete it to recompute")
    return CacheEntry(arrays["flow"], arrays["frames"], arrays["frame_numbers"],
                      json.loads(qc_text))


def store_entry(cache_dir: Path, dataset: str, key: str, entry: CacheEntry) -> Path:
    """Write a clip's entry atomically (temporary file + rename); returns its path."""
    flow = np.asarray(entry.flow, dtype=np.float16)
    frames = np.asarray(entry.frames, dtype=np.uint8)
    numbers = np.asarray(entry.frame_numbers, dtype=np.int64)
    qc_text = json.dumps(entry.qc, sort_keys=True)
    digest = content_digest(key, flow, frames, numbers, qc_text)

    def write(handle: IO[bytes]) -> None:
        np.savez(handle, flow=flow, frames=frames, frame_numbers=numbers, qc=np.array(qc_text),
                 key=np.array(key), digest=np.array(digest))

    return atomic_write(entry_path(cache_dir, dataset, key), write)
