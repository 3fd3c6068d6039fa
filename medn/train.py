"""Training and evaluating MEDN on one leave-one-subject-out fold (paper §IV-C, §IV-D).

``train_fold`` is a pure function of (configuration, prepared data, held-out subject): it imports
neither Ray nor MLflow, so the same call runs in ``medn train``, in a Ray Tune trial and in a test.

Protocol, as in the paper: AdamW (lr ``optim.lr``, weight decay ``optim.weight_decay``) over
parameter groups; the motion branch's learning rate is multiplied by ``optim.motion_lr_decay``
every ``optim.motion_lr_step`` epochs, the rest of the model keeps ``optim.lr``; LED's filter
(alpha, r1, r2) has its own group at ``model.motion.led_filter_lr``, cut once by
``led_filter_lr_decay`` after ``led_filter_lr_epoch`` epochs, as in the original LED. An
epoch's clips are drawn by ``optim.sampling`` (each once, or class-balanced with replacement).
The held-out subject is evaluated after every epoch (``val/*`` in the history); the returned
predictions and features are those of the last epoch (choosing an epoch on the held-out
subject would leak the test set). A non-finite training loss stops the fold
(``NonFiniteLossError``, naming the epoch).
"""

from __future__ import annotations

import base64
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
    "train/loss", "train/loss_cls", "train/loss_au", "train/loss_orth", "train/abs_cos",
    "val/uf1", "val/uar", "val/au_f1",
)
# the held-out clips' features a FoldResult carries (Fig. 8's t-SNE)
FEATURE_NAMES: tuple[str, ...] = ("f_m", "f_e", "f_fusion")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the fold and the epoch."""


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A float32 array as ``{"dtype": "float32", "shape": [...], "base64": "..."}``: exact and
    about 4x smaller in JSON than a list of floats."""
    data = np.ascontiguousarray(array, dtype="<f4")
    return {"dtype": "float32", "shape": list(data.shape),
            "base64": base64.b64encode(data.tobytes()).decode("ascii")}


def decode_array(payload: dict[str, Any]) -> np.ndarray:
    """The array ``encode_array`` wrote; a clear error if the payload does not fit its shape."""
    if payload.get("dtype") != "float32":
        raise ValueError(f"encoded array: expected dtype float32, got {payload.get('dtype')!r}")
    shape = tuple(int(n) for n in payload["shape"])
    raw = base64.b64decode(payload["base64"])
    if len(raw) != 4 * math.prod(shape):
        raise ValueError(f"encoded array: {len(raw)} bytes do not fit shape {shape}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


@dataclass
class FoldResult:
    """What one LOSO fold produced: per-clip predictions and scores, and per-epoch history.

    ``scores`` (n, C) are softmax probabilities, ``au_scores`` (n, A) sigmoid probabilities of the
    held-out clips, in the order of ``clips``; ``history`` has one dict per epoch with exactly the
    keys ``HISTORY_KEYS``. ``features`` holds the held-out clips' F_m, F_e and F_fusion
    (``"f_m"``, ``"f_e"``, ``"f_fusion"``, each (n, D) float32) after the last epoch; empty
    when not recorded. In ``to_dict`` they travel base64-encoded (``encode_array``).
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
    features: dict[str, np.ndarray] = field(default_factory=dict)

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
            "features": {name: encode_array(value) for name, value in self.features.items()},
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
            features=_decode_features(data.get("features") or {}, n),
        )


def _decode_features(payload: dict[str, Any], n: int) -> dict[str, np.ndarray]:
    features = {}
    for name, encoded in payload.items():
        try:
            value = decode_array(encoded)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"fold result: features.{name}: {err}") from None
        if value.ndim != 2 or value.shape[0] != n:
            raise ValueError(f"fold result: features.{name} has shape {value.shape}, expected "
                             f"({n}, D): one row per held-out clip")
        features[str(name)] = value
    return features


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


def filter_lr_factor(epoch: int, milestone: int, decay: float) -> float:
    """LED's filter group's learning-rate factor after ``epoch`` completed epochs: ``decay``
    once ``milestone`` epochs are done (the original cuts it once, at epoch 50)."""
    return decay if epoch >= milestone else 1.0


def build_optimizer(model: torch.nn.Module, cfg: MednConfig
                    ) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the groups ``motion`` (index 0, step decay), ``other`` (index 1, constant)
    and, when the backbone has one and ``model.motion.led_filter_lr`` is set, ``filter``
    (index 2: LED's (alpha, r1, r2) at their own lr, cut once)."""
    optim_cfg, motion_cfg = cfg.optim, cfg.model.motion
    filter_lr = getattr(motion_cfg, "led_filter_lr", None)
    own = model.filter_parameters() if filter_lr is not None else []
    own_ids = {id(p) for p in own}
    motion = [p for p in model.motion_parameters() if p.requires_grad and id(p) not in own_ids]
    other = [p for p in model.other_parameters() if p.requires_grad]
    groups: list[dict[str, Any]] = [{"params": motion, "name": "motion"},
                                    {"params": other, "name": "other"}]
    lambdas: list[Callable[[int], float]] = [
        lambda epoch: motion_lr_factor(epoch, optim_cfg.motion_lr_step, optim_cfg.motion_lr_decay),
        lambda epoch: 1.0,
    ]
    own = [p for p in own if p.requires_grad]
    if own:
        groups.append({"params": own, "name": "filter", "lr": filter_lr})
        lambdas.append(lambda epoch: filter_lr_factor(
            epoch, motion_cfg.led_filter_lr_epoch, motion_cfg.led_filter_lr_decay))
    optimizer = torch.optim.AdamW(groups, lr=optim_cfg.lr, weight_decay=optim_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lambdas)
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
def predict(model: torch.nn.Module, flows: torch.Tensor, apex: torch.Tensor, batch_size: int,
            autocast: torch.autocast, frames: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Softmax class scores, sigmoid AU scores and the features (``FEATURE_NAMES``) of every
    clip, in order, as float32 on CPU."""
    model.eval()
    scores, au_scores = [], []
    features: dict[str, list[torch.Tensor]] = {name: [] for name in FEATURE_NAMES}
    for idx in _split(torch.arange(len(flows)), batch_size):
        idx = idx.to(flows.device)
        with autocast:
            out = model(flows[idx], apex[idx],
                        frames=frames[idx] if frames is not None else None)
        scores.append(torch.softmax(out.logits.float(), dim=1))
        au_scores.append(torch.sigmoid(out.au_logits.float()))
        for name in FEATURE_NAMES:
            value = getattr(out, name, None)
            if value is not None:
                features[name].append(value.float())
    return (torch.cat(scores).cpu(), torch.cat(au_scores).cpu(),
            {name: torch.cat(parts).cpu() for name, parts in features.items() if parts})


def _predict(model: torch.nn.Module, flows: torch.Tensor, apex: torch.Tensor, batch_size: int,
             autocast: torch.autocast, frames: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax class scores and sigmoid AU scores of every clip (``predict`` without the
    features)."""
    scores, au_scores, _ = predict(model, flows, apex, batch_size, autocast, frames)
    return scores, au_scores


def fold_frames(cfg: MednConfig, data: PreparedDataset) -> torch.Tensor | None:
    """The dataset's aligned frames when ``cfg``'s motion branch reads them, else None; a
    clear error when it does and the dataset has none."""
    if not cfg.model.motion.uses_frames:
        return None
    frames = getattr(data, "frames", None)
    if frames is None:
        raise ValueError(f"model.motion.led_input=frames: dataset {data.name!r} carries no "
                         "aligned frames; prepare it again, or use led_input=flow")
    return frames


def check_finite(values: list[float], epoch: int, subject: str) -> None:
    """Raise ``NonFiniteLossError`` if the epoch's mean training loss parts are not finite."""
    bad = [f"{name}={value}" for name, value in zip(
        ("loss", "loss_cls", "loss_au", "loss_orth"), values, strict=False)
        if not math.isfinite(value)]
    if bad:
        raise NonFiniteLossError(
            f"fold {subject!r}: non-finite training loss at epoch {epoch} ({', '.join(bad)}); "
            "lower optim.lr or the loss weights")


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
    from medn.losses import medn_loss, stack_parts
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
    frames = fold_frames(cfg, data)  # kept uint8 on the device; the model casts per batch
    frames_train = frames_test = None
    if frames is not None:
        frames_train = frames[torch.as_tensor(fold.train_idx, dtype=torch.long)].to(device)
        frames_test = frames[torch.as_tensor(fold.test_idx, dtype=torch.long)].to(device)
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
            sums = torch.zeros(5, device=device)
            order = epoch_order(y_train, cfg.optim.sampling, generator)
            for idx in _split(order, cfg.optim.batch_size):
                idx = idx.to(device)
                with autocast:
                    out = model(x_train[idx], apex_train[idx],
                                frames=frames_train[idx] if frames_train is not None else None)
                parts = medn_loss(out, y_train[idx], au_train[idx], cfg.loss)
                optimizer.zero_grad(set_to_none=True)
                parts.total.backward()
                optimizer.step()
                sums += stack_parts(parts) * len(idx)
            scheduler.step()
            # one check per epoch (the sums are synced for the history anyway): an inf/NaN
            # in any batch makes the sum non-finite
            mean = (sums / len(order)).tolist()
            check_finite(mean, epoch, fold.subject)
            scores, au_scores, features = predict(model, x_test, apex_test,
                                                  cfg.optim.batch_size, autocast, frames_test)
            entry = {"train/loss": mean[0], "train/loss_cls": mean[1],
                     "train/loss_au": mean[2], "train/loss_orth": mean[3],
                     "train/abs_cos": mean[4]}
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
        features={name: value.numpy().astype(np.float32) for name, value in features.items()},
    )


def train_folds(cfg: MednConfig, data: PreparedDataset, subjects: list[str],
                **kwargs: Any) -> list[FoldResult]:
    """Train several folds of ``cfg`` as one stacked model: ``medn.packing.train_folds``."""
    from medn.packing import train_folds as packed

    return packed(cfg, data, subjects, **kwargs)
