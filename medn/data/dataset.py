"""One interface for all four datasets: annotations (or synth) -> labels -> cached flows -> tensors.

``prepare_dataset(data_cfg)`` is what training and studies call: it gives a ``PreparedDataset``
(flow sequence, emotion label, AU vector, apex, subject per clip; LOSO folds by subject). The
``medn data prepare`` command calls ``prepare_clips`` to fill the cache and report per clip.

AU list: the AU numbers present in at least ``data.au_min_count`` of the prepared clips (default
10, i.e. ~7% of CASME II's 145 3-class clips, so the AU head only learns AUs it sees often enough).
If no AU reaches the threshold (tiny synthetic profiles) the threshold is lowered to the count
of the most frequent AU, so there is always at least one AU.

A partial dataset is never used silently: if any clip fails, ``prepare_dataset`` raises
``PreparationError`` listing every failed clip and its reason (``err.failed``: ``MissingClip``s),
unless ``allow_missing=True``: then the failed clips are left out, ``PreparedDataset.missing``
says which and why, and the digest covers only the clips kept.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medn.config import DataConfig
from medn.data.cache import CacheEntryError
from medn.data.prepared import MissingClip, PreparedDataset
from medn.data.preprocess import (
    ClipOutcome,
    PreprocessParams,
    SynthSource,
    preprocess_clips,
)
from medn.data.records import ClipRecord, RowIssue


class PreparationError(RuntimeError):
    """Clips could not be prepared; the message lists each one with its reason.

    ``failed`` holds the failed clips (empty for errors that concern the whole dataset).
    """

    def __init__(self, message: str, failed: Sequence[MissingClip] = ()) -> None:
        super().__init__(message)
        self.failed = list(failed)


@dataclass
class Preparation:
    """The outcome of preparing every clip of one dataset under one label protocol."""

    data_cfg: DataConfig
    classes: tuple[str, ...]
    records: list[ClipRecord]
    labels: list[str]
    outcomes: list[ClipOutcome]
    excluded: list[RowIssue]

    @property
    def failed(self) -> list[ClipOutcome]:
        """The clips that could not be prepared."""
        return [o for o in self.outcomes if o.status == "failed"]

    def missing(self) -> list[MissingClip]:
        """The failed clips as ``MissingClip`` (clip, sheet row, reason), in sheet order."""
        return [MissingClip(o.record.key, o.record.row, o.reason or "") for o in self.failed]

    def count(self, status: str) -> int:
        """How many clips ended with ``status`` (``computed``, ``cached`` or ``failed``)."""
        return sum(1 for o in self.outcomes if o.status == status)


def preprocess_params(data_cfg: DataConfig) -> PreprocessParams:
    """The preprocessing parameters a data configuration asks for."""
    return PreprocessParams(size=data_cfg.size, num_frames=data_cfg.frames)


def labelled_records(data_cfg: DataConfig):
    """``(LabelledClips, sheet exclusions)``: the clips of the dataset under its label protocol."""
    from medn.data.annotations import apply_protocol, load_annotations

    if data_cfg.dataset == "synth":
        from medn.data.synth import generate_records

        records = generate_records(data_cfg.synth_profile, data_cfg.synth_subjects,
                                   data_cfg.synth_seed, hard_share=data_cfg.synth_hard_share)
        return apply_protocol(records, "synth", data_cfg.task), []
    if data_cfg.annotations is None:
        raise PreparationError(f"dataset {data_cfg.dataset!r} needs its annotation sheet: "
                               "--annotations FILE (data.annotations)")
    if data_cfg.data_root is None:
        raise PreparationError(f"dataset {data_cfg.dataset!r} needs the folder of its frames: "
                               "--data-root DIR (data.data_root)")
    table = load_annotations(data_cfg.dataset, Path(data_cfg.annotations))
    return apply_protocol(table.records, data_cfg.dataset, data_cfg.task), list(table.excluded)


def prepare_clips(data_cfg: DataConfig, progress: Callable[[int, int], None] | None = None,
                  workers: int | None = None) -> Preparation:
    """Every labelled clip's flow, from the cache or computed into it (the ``prepare`` command)."""
    labelled, sheet_excluded = labelled_records(data_cfg)
    synth = (SynthSource(data_cfg.synth_profile, data_cfg.synth_seed, data_cfg.synth_subjects)
             if data_cfg.dataset == "synth" else None)
    if data_cfg.dataset != "synth" and not Path(data_cfg.data_root).is_dir():
        raise PreparationError(f"--data-root {data_cfg.data_root}: no such folder")
    try:
        outcomes = preprocess_clips(labelled.records, preprocess_params(data_cfg),
                                    Path(data_cfg.cache_dir), data_root=data_cfg.data_root,
                                    synth=synth, workers=workers, progress=progress)
    except CacheEntryError as err:
        raise PreparationError(str(err)) from None
    return Preparation(data_cfg, tuple(labelled.classes), list(labelled.records),
                       list(labelled.labels), outcomes,
                       sheet_excluded + list(labelled.excluded))


def select_aus(au_sets: Sequence[frozenset[int]], min_count: int) -> tuple[int, ...]:
    """The AU numbers present in at least ``min_count`` clips (lowered so at least one AU stays)."""
    counts = Counter(n for aus in au_sets for n in aus)
    if not counts:
        return ()
    threshold = min(min_count, max(counts.values()))
    return tuple(sorted(n for n, c in counts.items() if c >= threshold))


def apex_index(record: ClipRecord, frame_numbers: Sequence[int], flow: np.ndarray) -> int:
    """The apex as an index into the T-1 flows.

    The annotated apex maps to the nearest sampled frame after the first (ties: the earlier).
    Sampling puts the annotated apex frame itself among the sampled frames when it is on disk
    (``medn.data.frames.anchor_apex``), so this is then the flow onset -> annotated apex.
    Without an annotated apex: the flow frame of largest mean flow magnitude.
    """
    if record.apex is not None and len(frame_numbers) == flow.shape[0] + 1:
        distances = [abs(n - record.apex) for n in frame_numbers[1:]]
        return int(np.argmin(distances))
    magnitude = np.sqrt((flow.astype(np.float32) ** 2).sum(axis=1)).mean(axis=(1, 2))
    return int(np.argmax(magnitude))


def failure_report(failed: Sequence[ClipOutcome], limit: int = 50) -> str:
    """One line per failed clip (``subject/clip: reason``), at most ``limit`` then a count."""
    lines = [f"  {o.record.key} (sheet row {o.record.row}): {o.reason}" for o in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more")
    return "\n".join(lines)


def assemble(prep: Preparation, allow_missing: bool = False) -> PreparedDataset:
    """The in-memory ``PreparedDataset`` of a ``Preparation``."""
    cfg = prep.data_cfg
    failed = prep.failed
    if failed and not allow_missing:
        raise PreparationError(
            f"{len(failed)} of {len(prep.outcomes)} {cfg.dataset} clips could not be prepared "
            f"(pass --allow-missing, or allow_missing=True, to train without them):\n"
            + failure_report(failed), prep.missing())
    kept = [(o, label) for o, label in zip(prep.outcomes, prep.labels, strict=True)
            if o.status != "failed"]
    if not kept:
        raise PreparationError(f"no {cfg.dataset} clip could be prepared:\n"
                               + failure_report(failed), prep.missing())
    au_numbers = select_aus([o.record.au_numbers for o, _ in kept], cfg.au_min_count)
    au_names = tuple(f"AU{n}" for n in au_numbers)
    flows = torch.from_numpy(np.stack([o.flow for o, _ in kept]).astype(np.float16, copy=False))
    labels = torch.tensor([prep.classes.index(label) for _, label in kept], dtype=torch.int64)
    aus = torch.tensor([[float(n in o.record.au_numbers) for n in au_numbers] for o, _ in kept],
                       dtype=torch.float32).reshape(len(kept), len(au_numbers))
    apex = torch.tensor([apex_index(o.record, o.frame_numbers, o.flow) for o, _ in kept],
                        dtype=torch.int64)
    frames = torch.from_numpy(np.stack([o.frames for o, _ in kept]).astype(np.uint8, copy=False))
    qc = tuple({"clip": o.record.key, "row": o.record.row, **o.qc} for o, _ in kept)
    payload = {"dataset": cfg.dataset, "task": cfg.task, "classes": list(prep.classes),
               "au_names": list(au_names), "params": preprocess_params(cfg).as_dict(),
               "clips": [[o.record.key, o.key, label] for o, label in kept]}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return PreparedDataset(
        name=cfg.dataset, task=cfg.task, classes=prep.classes, au_names=au_names, flows=flows,
        labels=labels, aus=aus, apex=apex, subjects=tuple(o.record.subject for o, _ in kept),
        clips=tuple(o.record.key for o, _ in kept), digest=digest, frames=frames, qc=qc,
        missing=tuple(prep.missing()))


def prepare_dataset(data_cfg: DataConfig, progress: Callable[[int, int], None] | None = None,
                    workers: int | None = None, allow_missing: bool = False) -> PreparedDataset:
    """The whole dataset of ``data_cfg`` in memory, ready for LOSO training.

    Annotations (or the synthetic generator) -> label protocol -> flows from the cache (missing
    clips computed in ``workers`` processes and cached) -> AU selection -> tensors. Raises
    ``PreparationError`` listing the failed clips unless ``allow_missing``.
    """
    return assemble(prepare_clips(data_cfg, progress, workers), allow_missing)
