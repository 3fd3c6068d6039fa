"""Small in-memory datasets and fold results for the training and tracking unit tests.

The end-to-end tests use the real synthetic data (``smoke_dataset``); these unit tests only need
tensors of the right shapes, with a class signal so that training has something to learn.
"""

from __future__ import annotations

import numpy as np
import torch

from medn.config import MednConfig, load_config
from medn.data.prepared import PreparedDataset
from medn.train import FoldResult


def tiny_config(*overrides: str) -> MednConfig:
    """The ``smoke`` profile on the CPU, with extra ``--set`` overrides."""
    return load_config(profile="smoke", overrides=["device=cpu", *overrides])


def random_dataset(cfg: MednConfig, *, subjects: int = 3, clips_per_subject: int = 6,
                   classes: int = 3, aus: int = 3, seed: int = 0) -> PreparedDataset:
    """A PreparedDataset of random flows with a class-dependent mean, shaped like ``cfg``."""
    gen = torch.Generator().manual_seed(seed)
    n = subjects * clips_per_subject
    t1, size = cfg.data.frames - 1, cfg.data.size
    labels = torch.arange(n) % classes
    flows = torch.randn(n, t1, 2, size, size, generator=gen) * 0.5
    flows += labels.view(n, 1, 1, 1, 1).float() * 0.5
    au = (torch.rand(n, aus, generator=gen) < 0.4).float()
    au[:, 0] = (labels == 0).float()
    return PreparedDataset(
        name="random", task=classes, classes=tuple(f"class{c}" for c in range(classes)),
        au_names=tuple(f"AU{a + 1}" for a in range(aus)), flows=flows.half(),
        labels=labels.long(), aus=au, apex=torch.randint(0, t1, (n,), generator=gen),
        subjects=tuple(f"s{i // clips_per_subject + 1:02d}" for i in range(n)),
        clips=tuple(f"s{i // clips_per_subject + 1:02d}/clip{i:03d}" for i in range(n)),
        digest=f"random-{seed}-{n}")


def fake_result(data: PreparedDataset, subject: str, *, seed: int = 0,
                epochs: int = 3) -> FoldResult:
    """A FoldResult with random (seeded) predictions for ``subject``'s clips of ``data``.

    For testing the writer, which must log and pool whatever a fold produced."""
    rng = np.random.default_rng(seed)
    idx = data.fold(subject).test_idx
    n, c, a = len(idx), data.num_classes, data.num_aus
    scores = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
    history = [{"train/loss": 1.0 / e, "train/loss_cls": 0.5 / e, "train/loss_au": 0.3 / e,
                "train/loss_orth": 0.2 / e, "val/uf1": 0.1 * e, "val/uar": 0.1 * e,
                "val/au_f1": 0.05 * e} for e in range(1, epochs + 1)]
    return FoldResult(
        subject=subject, clips=[data.clips[i] for i in idx],
        y_true=data.labels[idx].numpy().astype(np.int64),
        y_pred=scores.argmax(axis=1).astype(np.int64), scores=scores,
        au_true=data.aus[idx].numpy().astype(np.float32),
        au_scores=rng.random((n, a)).astype(np.float32), history=history, seconds=1.5,
        device="cpu")
