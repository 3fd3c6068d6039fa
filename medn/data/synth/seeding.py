"""Stable random generators for the synthetic data (Python's ``hash`` is salted per process)."""

from __future__ import annotations

import zlib

import numpy as np


def stable_rng(*parts: object) -> np.random.Generator:
    """A NumPy generator determined only by ``parts`` (ints, strings), the same in any process."""
    words = [zlib.crc32(str(part).encode("utf-8")) for part in parts]
    return np.random.default_rng(np.random.SeedSequence(words))
