"""The prepared dataset: every clip's optical-flow sequence and labels, held whole in memory.

It is made once per study (``medn.data.dataset.prepare_dataset``) from the preprocessing cache and
handed to every (variant, fold) training; training never re-reads disk per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import LeaveOneGroupOut


@dataclass(frozen=True)
class Fold:
    """One leave-one-subject-out split: the held-out subject and the clip indices on each side."""

    subject: str
    train_idx: np.ndarray
    test_idx: np.ndarray


@dataclass(frozen=True)
class MissingClip:
    """A clip of the dataset that could not be prepared: ``subject/clip``, sheet row, reason."""

    clip: str
    row: int
    reason: str

    def as_dict(self) -> dict[str, str | int]:
        """``{"clip", "row", "reason"}`` (the shape ``medn data prepare --json`` prints)."""
        return {"clip": self.clip, "row": self.row, "reason": self.reason}


@dataclass(frozen=True)
class PreparedDataset:
    """All clips of one dataset under one label protocol, as tensors.

    Shapes (N clips, T-1 flow frames, A action units):
    ``flows`` (N, T-1, 2, H, W) float16 on the CPU (u, v channels of TV-L1 flow of each frame
    against the first); ``labels`` (N,) int64 class indices into ``classes``; ``aus`` (N, A)
    float32 0/1 presence of each AU in ``au_names``; ``apex`` (N,) int64 index into the T-1
    flow frames of the apex (annotated, else the frame of largest mean flow magnitude).
    ``digest`` identifies the exact data (clips, labels, flows, preprocessing parameters).
    ``frames`` (N, T, H, W) uint8: the aligned grayscale frames the flows come from
    (``flows[:, t]`` is ``frames[:, 0]`` -> ``frames[:, t + 1]``); ``None`` only when built
    without them. ``qc`` one quality record per clip (``medn.data.qc``); ``missing`` the clips
    left out because they failed (empty unless prepared with ``allow_missing``).
    """

    name: str
    task: int
    classes: tuple[str, ...]
    au_names: tuple[str, ...]
    flows: torch.Tensor
    labels: torch.Tensor
    aus: torch.Tensor
    apex: torch.Tensor
    subjects: tuple[str, ...]
    clips: tuple[str, ...]
    digest: str
    frames: torch.Tensor | None = None
    qc: tuple[dict, ...] = ()
    missing: tuple[MissingClip, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.subjects)
        for name, value in (("flows", self.flows), ("labels", self.labels), ("aus", self.aus),
                            ("apex", self.apex)):
            if value.shape[0] != n:
                raise ValueError(f"PreparedDataset.{name} has {value.shape[0]} rows, "
                                 f"expected {n} (one per clip)")
        if self.frames is not None and self.frames.shape[0] != n:
            raise ValueError(f"PreparedDataset.frames has {self.frames.shape[0]} rows, "
                             f"expected {n} (one per clip)")
        if self.qc and len(self.qc) != n:
            raise ValueError(f"PreparedDataset.qc has {len(self.qc)} entries, expected {n}")
        if len(self.clips) != n:
            raise ValueError(f"PreparedDataset.clips has {len(self.clips)} entries, expected {n}")

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def num_classes(self) -> int:
        """The number of emotion classes of the protocol."""
        return len(self.classes)

    @property
    def num_aus(self) -> int:
        """The number of AUs the AU head predicts."""
        return len(self.au_names)

    @property
    def subject_ids(self) -> list[str]:
        """The distinct subjects, in LOSO fold order."""
        return [fold.subject for fold in self.loso_folds()]

    def loso_folds(self) -> list[Fold]:
        """Leave-one-subject-out splits (scikit-learn's ``LeaveOneGroupOut``), one per subject."""
        groups = np.asarray(self.subjects)
        folds = []
        for train_idx, test_idx in LeaveOneGroupOut().split(groups, groups=groups):
            folds.append(Fold(str(groups[test_idx[0]]), train_idx, test_idx))
        return folds

    def fold(self, subject: str) -> Fold:
        """The fold that holds out ``subject``; a clear error if there is no such subject."""
        for fold in self.loso_folds():
            if fold.subject == subject:
                return fold
        raise KeyError(f"subject {subject!r} is not in dataset {self.name!r} "
                       f"(subjects: {', '.join(sorted(set(self.subjects)))})")
