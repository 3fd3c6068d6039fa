"""Training and evaluating MEDN on one leave-one-subject-out fold (paper §IV-C, §IV-D).

``train_fold`` is a pure function of (configuration, prepared data, held-out subject): it imports
neither Ray nor MLflow, so the same call runs in ``medn train``, in a Ray Tune trial and in a test.

Protocol, as in the paper: AdamW (lr ``optim.lr``, weight decay ``optim.weight_decay``) over two
parameter groups; the motion branch's learning rate is multiplied by ``optim.motion_lr_decay``
every ``optim.motion_lr_step`` epochs, the rest of the model keeps ``optim.lr``. An epoch's clips
are drawn by ``optim.sampling`` (each once, or class-balanced with replacement). The held-out
subject is evaluated after every epoch (``val/*`` in the history); the returned predictions are
those of the last epoch (choosing an epoch on the held-out subject would leak the test set).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medn.config import MednConfig
from medn.data.prepared import PreparedDataset
from medn.seeding import deterministic, seed_everything

HISTORY_KEYS: tuple[str, ...] = (
    "train/loss", "train/loss_cls", "train/loss_au", "train/loss_orth",
    "val/uf1", "val/uar", "val/au_f1",
)


@dataclass
class FoldResult:
    """What one LOSO fold produced: per-clip predictions and scores, and per-epoch history.

    ``scores`` (n, C) are softmax probabilities, ``au_scores`` (n, A) sigmoid probabilities of the
    held-out clips, in the order of ``clips``; ``history`` has one dict per epoch with exactly the
    keys ``HISTORY_KEYS``.
    """

    subject: str
    clips: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    scores: np.ndarray
    au_true: np.ndarray
    au_scores: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (plain lists and numbers) that ``from_dict`` turns back into this."""
        return {
            "subject": self.subject,
            "clips": list(self.clips),
            "y_true": [int(v) for v in self.y_true],
            "y_pred": [int(v) for v in self.y_pred],
            "scores": np.asarray(self.scores, dtype=np.float64).tolist(),
            "num_classes": int(np.asarray(self.scores).shape[1]),
            "au_true": np.asarray(self.au_true, dtype=np.float64).tolist(),
            "au_scores": np.asarray(self.au_scores, dtype=np.float64).tolist(),
            "num_aus": int(np.asarray(self.au_scores).shape[1]),
            "history": [{k: float(v) for k, v in epoch.items()} for epoch in self.history],
            "seconds": float(self.seconds),
            "device": self.device,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FoldResult:
        """The result that ``to_dict`` wrote; a clear error naming the missing field."""
        required = ("subject", "clips", "y_true", "y_pred", "scores", "au_true", "au_scores")
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"fold result is missing field(s) {', '.join(missing)}")
        n = len(data["clips"])
        num_classes = int(data.get("num_classes", len(data["scores"][0]) if n else 0))
        num_aus = int(data.get("num_aus", len(data["au_scores"][0]) if n else 0))
        return cls(
            subject=str(data["subject"]),
            clips=[str(c) for c in data["clips"]],
            y_true=np.asarray(data["y_true"], dtype=np.int64).reshape(n),
            y_pred=np.asarray(data["y_pred"], dtype=np.int64).reshape(n),
            scores=np.asarray(data["scores"], dtype=np.float32).reshape(n, num_classes),
            au_true=np.asarray(data["au_true"], dtype=np.float32).reshape(n, num_aus),
            au_scores=np.asarray(data["au_scores"], dtype=np.float32).reshape(n, num_aus),
            history=[{str(k): float(v) for k, v in epoch.items()}
                     for epoch in data.get("history", [])],
            seconds=float(data.get("seconds", 0.0)),
            device=str(data.get("device", "cpu")),
        )


def resolve_device(cfg: MednConfig) -> torch.device:
    """The device ``cfg.device`` asks for: ``auto`` is CUDA when available, else the CPU.

    ``cuda`` on a machine without CUDA is an error that says so.
    """
    if cfg.device == "cpu":
        return torch.device("cpu")
    if cfg.device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device: 'cuda' was asked for but torch sees no CUDA device; "
                               "use --set device=cpu or device=auto")
        return torch.device("cuda")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def motion_lr_factor(epoch: int, step: int, decay: float) -> float:
    """The motion branch's learning-rate factor after ``epoch`` completed epochs."""
    return decay ** (epoch // step)


def build_optimizer(model: torch.nn.Module, cfg: MednConfig
                    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over [motion branch, everything else] and the step decay of group 0 only."""
    optim_cfg = cfg.optim
    motion = [p for p in model.motion_parameters() if p.requires_grad]
    other = [p for p in model.other_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": motion, "name": "motion"}, {"params": other, "name": "other"}],
        lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=[
        lambda epoch: motion_lr_factor(epoch, optim_cfg.motion_lr_step, optim_cfg.motion_lr_decay),
        lambda epoch: 1.0,
    ])
    return optimizer, scheduler


def epoch_order(labels: torch.Tensor, sampling: str, generator: torch.Generator) -> torch.Tensor:
    """The training clips of one epoch, as indices into ``labels`` (the fold's training labels).

    ``shuffle``: every clip once, in random order. ``balanced``: as many draws as clips, with
    replacement, each clip drawn with probability proportional to 1 / (its class's count), so
    every class is seen about equally often (the loss, eq. 15-16, is unchanged).
    """
    n = len(labels)
    if sampling == "shuffle":
        return torch.randperm(n, generator=generator)
    if sampling == "balanced":
        counts = torch.bincount(labels.cpu()).float()
        weights = 1.0 / counts[labels.cpu()]
        return torch.multinomial(weights, n, replacement=True, generator=generator)
    raise ValueError(f"optim.sampling: unknown {sampling!r}; allowed: shuffle, balanced")


def _split(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` cut into ceil(n / batch_size) near-equal batches (never a lone clip)."""
    return list(order.tensor_split(max(1, math.ceil(len(order) / batch_size))))


@torch.inference_mode()
def _predict(model: torch.nn.Module, flows: torch.Tensor, apex: torch.Tensor, batch_size: int,
             autocast: torch.autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax class scores and sigmoid AU scores of every clip, in order, as float32 on CPU."""
    model.eval()
    scores, au_scores = [], []
    for idx in _split(torch.arange(len(flows)), batch_size):
        idx = idx.to(flows.device)
        with autocast:
            out = model(flows[idx], apex[idx])
        scores.append(torch.softmax(out.logits.float(), dim=1))
        au_scores.append(torch.sigmoid(out.au_logits.float()))
    return torch.cat(scores).cpu(), torch.cat(au_scores).cpu()


def _val_metrics(y_true: np.ndarray, scores: np.ndarray, au_true: np.ndarray,
                 au_scores: np.ndarray) -> dict[str, float]:
    """Held-out metrics of one epoch: the per-fold score ``medn.metrics.fold_scores`` (UF1/UAR
    over the classes present in the held-out subject; the pooled metrics over all folds average
    over every class of the protocol) and the AU F1."""
    from medn import metrics

    fold = metrics.fold_scores(y_true, scores.argmax(axis=1))
    return {
        "val/uf1": fold["uf1"],
        "val/uar": fold["uar"],
        "val/au_f1": float(np.mean(metrics.per_au_f1(au_true, au_scores))),
    }


def train_fold(cfg: MednConfig, data: PreparedDataset, subject: str, *,
               device: torch.device | None = None,
               on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> FoldResult:
    """Train MEDN on every subject but ``subject`` and evaluate on ``subject`` after each epoch.

    The fold's tensors are moved to ``device`` once and batches are index tensors into them.
    ``on_epoch(epoch, metrics)`` is called after each epoch (1-based) with that epoch's history
    entry. The same ``cfg.seed`` gives identical results on CPU.
    """
    from medn.losses import medn_loss
    from medn.models import build_model, validate_model_config

    started = time.perf_counter()
    validate_model_config(cfg)
    device = device or resolve_device(cfg)
    fold = data.fold(subject)
    if len(fold.train_idx) == 0:
        raise ValueError(f"fold {subject!r}: no training clips left once the subject is held out")

    def take(idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(idx, dtype=torch.long)
        return (data.flows[index].to(device=device, dtype=torch.float32),
                data.labels[index].to(device), data.aus[index].to(device=device,
                                                                  dtype=torch.float32),
                data.apex[index].to(device))

    x_train, y_train, au_train, apex_train = take(fold.train_idx)
    x_test, _, _, apex_test = take(fold.test_idx)
    if cfg.optim.standardize_flows:
        scale = x_train.std().clamp_min(1e-8)  # training clips only: no test-set statistics
        x_train, x_test = x_train / scale, x_test / scale
    y_test = data.labels[torch.as_tensor(fold.test_idx)].numpy().astype(np.int64)
    au_test = data.aus[torch.as_tensor(fold.test_idx)].numpy().astype(np.float32)

    history: list[dict[str, float]] = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with deterministic(device):
        generator = seed_everything(cfg.seed)
        model = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus).to(device)
        optimizer, scheduler = build_optimizer(model, cfg)
        for epoch in range(1, cfg.optim.epochs + 1):
            model.train()
            sums = torch.zeros(4, device=device)
            order = epoch_order(y_train, cfg.optim.sampling, generator)
            for idx in _split(order, cfg.optim.batch_size):
                idx = idx.to(device)
                with autocast:
                    out = model(x_train[idx], apex_train[idx])
                parts = medn_loss(out, y_train[idx], au_train[idx], cfg.loss)
                optimizer.zero_grad(set_to_none=True)
                parts.total.backward()
                optimizer.step()
                sums += torch.stack([parts.total, parts.cls, parts.au, parts.orth]).detach() \
                    .float() * len(idx)
            scheduler.step()
            mean = (sums / len(order)).tolist()
            scores, au_scores = _predict(model, x_test, apex_test, cfg.optim.batch_size, autocast)
            entry = {"train/loss": mean[0], "train/loss_cls": mean[1],
                     "train/loss_au": mean[2], "train/loss_orth": mean[3]}
            entry.update(_val_metrics(y_test, scores.numpy(), au_test, au_scores.numpy()))
            history.append(entry)
            if on_epoch is not None:
                on_epoch(epoch, entry)

    scores_np = scores.numpy().astype(np.float32)
    return FoldResult(
        subject=fold.subject,
        clips=[data.clips[i] for i in fold.test_idx],
        y_true=y_test,
        y_pred=scores_np.argmax(axis=1).astype(np.int64),
        scores=scores_np,
        au_true=au_test,
        au_scores=au_scores.numpy().astype(np.float32),
        history=history,
        seconds=time.perf_counter() - started,
        device=str(device),
    )
