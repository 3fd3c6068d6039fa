"""Seeding and deterministic execution, so that the same seed gives the same metrics on CPU."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a CPU ``torch.Generator``
    seeded the same way, for the shuffling of training batches."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Run the body with torch's deterministic algorithms on, then restore the previous mode.

    On CPU every op used by MEDN has a deterministic implementation, so results are exactly
    reproducible. On CUDA some ops have none; there the mode only warns (``warn_only``) and
    cuBLAS is asked for its reproducible workspace when the caller has not chosen one.
    """
    was_enabled = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_enabled, warn_only=was_warn_only)
