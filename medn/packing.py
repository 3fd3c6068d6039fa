"""Packed LOSO training: K folds of ONE configuration trained as one stacked model.

A MEDN fold is too small to keep a GPU busy: one training step dispatches thousands of aten
operators (kernel launches) for ~1.7 M parameters, so a fold is bound by dispatch, not by
arithmetic. ``train_folds`` trains K folds at once, so one dispatched operator does the work of
K folds.

How (``torch.func``): the K folds' parameters and buffers are stacked along a new leading
dimension; one forward/backward runs ``vmap(functional_call(template, ...))`` over that
dimension, and one optimizer step updates every fold. Each fold keeps exactly what its unpacked
run (``medn.train.train_fold``) has:

- its own initialisation: ``cfg.seed`` seeds the template model exactly as ``train_fold`` does,
  and every fold starts from a copy of it (unpacked folds of one configuration start equal too);
- its own training set and batches: fold k's epoch order comes from its own generator seeded
  with ``cfg.seed`` over its own training labels, cut into batches exactly as unpacked. Folds
  whose batches differ in size are padded to the largest with a repeated index of weight 0
  ("masks where sizes differ"); a fold with fewer batches in an epoch is inactive (weight 0,
  no optimizer update, no BatchNorm update) in the steps it lacks;
- its own BatchNorm statistics: buffers are stacked like parameters (one running mean/var per
  fold, updated in place under ``vmap``). In a step with padding, BatchNorm layers compute their
  batch statistics over the fold's real rows only (``_MaskedBatchNorm``), so padding never
  leaks into a fold; without padding the native kernel runs. (``replace_all_batch_norm_modules_``
  was not used: it drops running statistics, and eval would then use batch statistics.)
- its own dropout masks (``vmap(randomness="different")``);
- the same AdamW per parameter group and the same per-group learning-rate schedule: the groups
  and the schedule come from ``medn.train.build_optimizer`` on the template (whatever groups it
  defines), the scheduler is stepped once per epoch as unpacked; the update itself is AdamW's
  arithmetic on one flat (K, P) buffer per group, with a per-fold step count (bias correction)
  and a per-fold "active" mask;
- its own held-out predictions after every epoch and its own history.

Exactness (tests/test_packing.py): ``vmap`` dispatches other kernels than the unbatched model
(batched matmuls, grouped convolutions, the math attention kernel on CPU), so results are not
bit-identical; they agree with ``train_fold`` to float32 rounding that training then amplifies
a little (see docs/training.md for the tolerances and why).

Attention: PyTorch has no ``vmap`` batching rule for SDPA's CPU flash kernel, so on CPU it runs
once per fold inside the vmapped step (about ten calls per step: K x 10 operator calls, small
next to the thousands it saves). Forcing SDPA's math kernel instead (batched matmuls + softmax)
was measured 1.6x slower than unpacked on the ``quick`` profile, the per-fold flash calls 0.6x
(4 folds, 1 thread, loaded 2-core machine). On CUDA the fused kernels have batching rules.
"""

from __future__ import annotations

import contextvars
import dataclasses
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from medn.config import MednConfig
from medn.data.prepared import PreparedDataset
from medn.seeding import deterministic, seed_everything
from medn.train import (
    FoldResult,
    _split,
    _val_metrics,
    build_optimizer,
    epoch_order,
    resolve_device,
)

# The per-sample weights (B,) of the fold being computed, set around each vmapped training
# forward that has padding; read by ``_MaskedBatchNorm``. None = no padding: native BatchNorm.
_SAMPLE_WEIGHTS: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar(
    "medn_packing_sample_weights", default=None)


class _MaskedBatchNorm:
    """Mixin for BatchNorm{1,2,3}d: with sample weights set, batch statistics (and the running
    statistics' update) use only the rows of weight 1; otherwise the native BatchNorm runs."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        """BatchNorm over the weighted rows of ``x`` (N, C, ...)."""
        weights = _SAMPLE_WEIGHTS.get()
        if weights is None or not self.training:
            return super().forward(x)  # type: ignore[misc]
        dims = [0, *range(2, x.dim())]
        per_channel = [1, -1] + [1] * (x.dim() - 2)
        w = weights.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        count = weights.sum() * (x[0, 0].numel())
        denom = count.clamp_min(1.0)
        mean = (x * w).sum(dims) / denom
        centered = x - mean.view(per_channel)
        var = (centered.pow(2) * w).sum(dims) / denom
        out = centered * torch.rsqrt(var + self.eps).view(per_channel)
        if self.affine:
            out = out * self.weight.view(per_channel) + self.bias.view(per_channel)
        if self.track_running_stats:
            momentum = 0.1 if self.momentum is None else self.momentum
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - momentum).add_(mean.detach() * momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.detach() * momentum)
                self.num_batches_tracked.add_(1)
        return out


def _mask_batch_norms(model: nn.Module) -> None:
    """Swap every BatchNorm of ``model`` (in place) for its masked twin (same state)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
                module, _MaskedBatchNorm):
            cls = type(module)
            module.__class__ = type(f"Masked{cls.__name__}", (_MaskedBatchNorm, cls), {})


@dataclass
class _Group:
    """One optimizer parameter group, flattened: parameters (K, P) and AdamW's state."""

    names: list[str]
    shapes: list[torch.Size]
    flat: Tensor            # (K, P) the parameters of every fold
    grad: Tensor            # (K, P) their gradients (the params' .grad are views of it)
    exp_avg: Tensor
    exp_avg_sq: Tensor
    betas: tuple[float, float]
    eps: float
    weight_decay: float


class StackedModel:
    """K copies of a template model as stacked tensors, and the AdamW that trains them.

    ``params`` and ``buffers`` map the template's names to (K, ...) tensors; each parameter is
    a leaf view into its group's flat buffer, and its ``.grad`` a view into the flat gradient.
    """

    def __init__(self, template: nn.Module, cfg: MednConfig, folds: int,
                 device: torch.device) -> None:
        self.template = template
        self.folds = folds
        self.device = device
        self.optimizer, self.scheduler = build_optimizer(template, cfg)
        if not isinstance(self.optimizer, torch.optim.Adam):
            raise TypeError(f"packed training implements AdamW; build_optimizer returned "
                            f"{type(self.optimizer).__name__}")
        names = {id(p): n for n, p in template.named_parameters()}
        own = dict(template.named_parameters())
        self.groups: list[_Group] = []
        self.params: dict[str, Tensor] = {}
        for group in self.optimizer.param_groups:
            if group.get("amsgrad") or group.get("maximize"):
                raise ValueError("packed training supports plain AdamW (no amsgrad/maximize)")
            if not group.get("decoupled_weight_decay", isinstance(self.optimizer,
                                                                  torch.optim.AdamW)):
                raise ValueError("packed training supports AdamW's decoupled weight decay")
            members = [names[id(p)] for p in group["params"]]
            shapes = [own[n].shape for n in members]
            flat = torch.cat([own[n].detach().reshape(-1) for n in members]) if members \
                else torch.zeros(0, device=device)
            flat = flat.to(device).unsqueeze(0).repeat(folds, 1).contiguous()
            grad = torch.zeros_like(flat)
            offset = 0
            for name, shape in zip(members, shapes, strict=True):
                size = shape.numel()
                param = flat[:, offset:offset + size].view(folds, *shape)
                param = param.detach().requires_grad_(True)  # a leaf sharing flat's storage
                param.grad = grad[:, offset:offset + size].view(folds, *shape)
                self.params[name] = param
                offset += size
            self.groups.append(_Group(
                names=members, shapes=shapes, flat=flat, grad=grad,
                exp_avg=torch.zeros_like(flat), exp_avg_sq=torch.zeros_like(flat),
                betas=tuple(group["betas"]), eps=float(group["eps"]),
                weight_decay=float(group["weight_decay"])))
        missing = set(own) - set(self.params)
        if missing:  # parameters outside every group (frozen) stay the template's, unstacked
            raise ValueError(f"parameters in no optimizer group: {sorted(missing)[:5]}")
        self.buffers: dict[str, Tensor] = {
            name: buf.detach().to(device).unsqueeze(0).repeat(
                folds, *([1] * buf.dim())).contiguous()
            for name, buf in template.named_buffers()}
        self.steps = torch.zeros(folds, dtype=torch.float64, device=device)

    # -- one optimizer step ------------------------------------------------------------------
    def zero_grad(self) -> None:
        """Zero the flat gradients (the parameters' ``.grad`` views see it)."""
        for group in self.groups:
            group.grad.zero_()

    def lrs(self) -> list[float]:
        """Each group's learning rate this epoch (from the template's scheduler)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    @torch.no_grad()
    def step(self, active: Tensor | None) -> None:
        """AdamW (decoupled weight decay) on every fold; ``active`` (K,) bool or None = all.

        The arithmetic is torch's single-tensor AdamW, with the bias corrections per fold (a
        fold's step count advances only where it is active) and inactive folds left unchanged
        (parameters and moments).
        """
        if active is None:
            self.steps += 1
        else:
            self.steps += active.to(self.steps.dtype)
        for group, lr in zip(self.groups, self.lrs(), strict=True):
            if group.flat.numel() == 0:
                continue
            beta1, beta2 = group.betas
            bias1 = (1 - beta1 ** self.steps).to(group.flat.dtype).unsqueeze(1)
            bias2_sqrt = (1 - beta2 ** self.steps).sqrt().to(group.flat.dtype).unsqueeze(1)
            step_size = lr / bias1
            if active is None:
                param, exp_avg, exp_avg_sq = group.flat, group.exp_avg, group.exp_avg_sq
            else:
                param, exp_avg, exp_avg_sq = (group.flat.clone(), group.exp_avg.clone(),
                                              group.exp_avg_sq.clone())
            grad = group.grad
            if group.weight_decay:
                param.mul_(1 - lr * group.weight_decay)
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / bias2_sqrt).add_(group.eps)
            param.sub_(step_size * exp_avg / denom)
            if active is not None:
                keep = active.unsqueeze(1)
                group.flat.copy_(torch.where(keep, param, group.flat))
                group.exp_avg.copy_(torch.where(keep, exp_avg, group.exp_avg))
                group.exp_avg_sq.copy_(torch.where(keep, exp_avg_sq, group.exp_avg_sq))

    def snapshot_buffers(self) -> dict[str, Tensor]:
        """Copies of the buffers (to undo an inactive fold's BatchNorm update)."""
        return {name: buf.clone() for name, buf in self.buffers.items()}

    @torch.no_grad()
    def restore_buffers(self, before: dict[str, Tensor], active: Tensor) -> None:
        """Put back the buffers of the inactive folds."""
        for name, buf in self.buffers.items():
            keep = active.view(-1, *([1] * (buf.dim() - 1)))
            buf.copy_(torch.where(keep, buf, before[name]))

    def fold_state(self, k: int) -> dict[str, Tensor]:
        """Fold ``k``'s parameters and buffers as a ``state_dict`` of the template."""
        state = {name: p[k].detach().clone() for name, p in self.params.items()}
        state.update({name: b[k].clone() for name, b in self.buffers.items()})
        return state


def _loss_parts(out, labels: Tensor, aus: Tensor, loss_cfg) -> Tensor:
    """``medn_loss`` of one fold's batch as (total, cls, au, orth, abs_cos): ``stack_parts``
    with the total left differentiable."""
    from medn.losses import medn_loss, stack_parts

    parts = medn_loss(out, labels, aus, loss_cfg)
    logged = stack_parts(parts)
    return torch.cat([parts.total.float().unsqueeze(0), logged[1:]])


def _masked_loss_parts(out, labels: Tensor, aus: Tensor, weights: Tensor, loss_cfg) -> Tensor:
    """``_loss_parts`` over the rows of weight 1 only.

    Every MEDN loss term (and |cos|) is a batch mean of a per-sample term, so ``medn_loss`` of
    each sample alone (vmapped over the batch), averaged with the weights, is ``medn_loss`` of the
    real rows.
    """
    fields = {f.name: getattr(out, f.name) for f in dataclasses.fields(out)}
    batched = {n: v for n, v in fields.items()
               if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == labels.shape[0]}
    fixed = {n: v for n, v in fields.items() if n not in batched}

    def one(values: dict[str, Tensor], label: Tensor, au: Tensor) -> Tensor:
        single = type(out)(**fixed, **{n: v.unsqueeze(0) for n, v in values.items()})
        return _loss_parts(single, label.unsqueeze(0), au.unsqueeze(0), loss_cfg)

    per_sample = vmap(one)(batched, labels, aus)                  # (B, 5)
    w = weights.to(per_sample.dtype)
    return (per_sample * w.unsqueeze(1)).sum(0) / w.sum().clamp_min(1.0)


@dataclass
class _FoldData:
    """One fold of a pack: indices into the dataset and what its evaluation needs."""

    subject: str
    train_idx: Tensor        # (n,) long, CPU: the fold's training clips
    test_idx: Tensor         # (m,) long, CPU
    y_train: Tensor          # (n,) long, CPU (for the epoch order)
    y_test: np.ndarray
    au_test: np.ndarray
    clips: list[str]
    generator: torch.Generator


def _epoch_plan(folds: list[_FoldData], cfg: MednConfig
                ) -> tuple[Tensor, Tensor, list[bool], list[bool], Tensor]:
    """One epoch of every fold as (S, K, B) dataset indices and weights.

    Returns ``index`` (S, K, B) long, ``weight`` (S, K, B) float 0/1, per step whether any fold
    is padded and whether every fold is active, and ``active`` (S, K) bool. Fold k's batches are
    exactly ``train_fold``'s: its own order, cut by ``_split``.
    """
    batches = []
    for fold in folds:
        order = epoch_order(fold.y_train, cfg.optim.sampling, fold.generator)
        batches.append([fold.train_idx[b] for b in _split(order, cfg.optim.batch_size)])
    steps = max(len(b) for b in batches)
    width = max(len(x) for b in batches for x in b)
    index = torch.zeros(steps, len(folds), width, dtype=torch.long)
    weight = torch.zeros(steps, len(folds), width)
    active = torch.zeros(steps, len(folds), dtype=torch.bool)
    padded, full = [], []
    for s in range(steps):
        sizes = []
        for k, fold_batches in enumerate(batches):
            if s < len(fold_batches):
                idx = fold_batches[s]
                active[s, k] = True
                weight[s, k, :len(idx)] = 1.0
            else:
                idx = folds[k].train_idx[:1]  # any real clip, weight 0: the fold sits out
            index[s, k, :len(idx)] = idx
            index[s, k, len(idx):] = idx[-1]
            sizes.append(len(idx) if s < len(fold_batches) else 0)
        padded.append(any(n != width for n in sizes))
        full.append(all(n > 0 for n in sizes))
    return index, weight, padded, full, active


class PackError(RuntimeError):
    """Some folds of a pack failed; ``results`` holds the folds that finished (their results are
    kept), ``errors`` maps each failed subject to its exception."""

    def __init__(self, results: list[FoldResult], errors: dict[str, BaseException]) -> None:
        self.results = results
        self.errors = errors
        lines = "; ".join(f"{s}: {e}" for s, e in errors.items())
        super().__init__(f"{len(errors)} of {len(results) + len(errors)} packed folds failed "
                         f"({lines})")


def train_folds(cfg: MednConfig, data: PreparedDataset, subjects: Sequence[str], *,
                device: torch.device | None = None,
                on_epoch: Callable[[str, int, dict[str, float]], None] | None = None,
                ) -> list[FoldResult]:
    """Train the LOSO folds ``subjects`` of one configuration as one stacked model.

    Returns one ``FoldResult`` per subject, in the order given, as ``train_fold`` would (same
    fields, history keys, features and semantics; ``seconds`` is the pack's wall time divided
    by its folds). ``on_epoch(subject, epoch, metrics)`` is called for every fold after each
    epoch. A fold whose training loss becomes non-finite stops (as ``train_fold`` raises
    ``NonFiniteLossError``) while its pack-mates train on; if any fold failed, ``PackError``
    is raised at the end, carrying the results of the folds that finished.
    """
    from medn.models import build_model, validate_model_config
    from medn.train import FEATURE_NAMES, NonFiniteLossError, check_finite, fold_frames

    started = time.perf_counter()
    validate_model_config(cfg)
    subjects = list(subjects)
    if not subjects:
        raise ValueError("train_folds: no subjects given")
    if len(set(subjects)) != len(subjects):
        raise ValueError(f"train_folds: subjects repeat: {subjects}")
    device = device or resolve_device(cfg)

    folds: list[_FoldData] = []
    for subject in subjects:
        fold = data.fold(subject)
        if len(fold.train_idx) == 0:
            raise ValueError(f"fold {subject!r}: no training clips left once the subject is "
                             "held out")
        train_idx = torch.as_tensor(fold.train_idx, dtype=torch.long)
        test_idx = torch.as_tensor(fold.test_idx, dtype=torch.long)
        folds.append(_FoldData(
            subject=fold.subject, train_idx=train_idx, test_idx=test_idx,
            y_train=data.labels[train_idx].long(),
            y_test=data.labels[test_idx].numpy().astype(np.int64),
            au_test=data.aus[test_idx].numpy().astype(np.float32),
            clips=[data.clips[i] for i in fold.test_idx],
            generator=torch.Generator(device="cpu").manual_seed(cfg.seed)))
    k_folds = len(folds)

    # every clip once on the device; each step gathers its (K, B) batch from here
    flows = data.flows.to(device=device, dtype=torch.float32)
    labels = data.labels.to(device)
    aus = data.aus.to(device=device, dtype=torch.float32)
    apex = data.apex.to(device)
    frames = fold_frames(cfg, data)
    if frames is not None:
        frames = frames.to(device)  # uint8 stays uint8: the model casts per batch
    scale = None
    if cfg.optim.standardize_flows:  # per fold, from its training clips only (as unpacked)
        scale = torch.stack([flows[f.train_idx.to(device)].std().clamp_min(1e-8)
                             for f in folds]).view(k_folds, 1, 1, 1, 1, 1)

    def batch(idx: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Flows (K, B, ...) of dataset indices ``idx`` (K, B), and the model's kwargs."""
        x = flows[idx]
        if scale is not None:
            x = x / scale
        return x, ({"frames": frames[idx]} if frames is not None else {})

    test_width = max(len(f.test_idx) for f in folds)
    test_index = torch.stack([torch.cat([f.test_idx, f.test_idx[-1:].expand(
        test_width - len(f.test_idx))]) for f in folds])                  # (K, M)
    # the evaluation batches, cut as train_fold cuts them, sent to the device once
    test_chunks = [test_index[:, chunk].to(device)
                   for chunk in _split(torch.arange(test_width), cfg.optim.batch_size)]

    histories: list[list[dict[str, float]]] = [[] for _ in folds]
    errors: dict[str, BaseException] = {}
    alive = torch.ones(k_folds, dtype=torch.bool)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with deterministic(device), warnings.catch_warnings():
        # the template's scheduler is stepped without its optimizer (ours does the update)
        warnings.filterwarnings("ignore", message=r".*lr_scheduler\.step\(\)")
        # the flat gradient's row stride is the group's size, not the contract's dense layout
        warnings.filterwarnings("ignore", message=r".*gradient layout contract")
        # CPU flash attention has no vmap rule: it runs once per fold (measured faster than
        # the batched math kernel, see the module doc)
        warnings.filterwarnings("ignore", message=r".*not yet implemented the batching rule")
        seed_everything(cfg.seed)
        template = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus)
        template = template.to(device)
        _mask_batch_norms(template)
        stacked = StackedModel(template, cfg, k_folds, device)
        loss_cfg = cfg.loss

        def train_step(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor,
                       apex_b: Tensor, y: Tensor, au: Tensor, w: Tensor,
                       kwargs: dict[str, Tensor], masked: bool) -> Tensor:
            token = _SAMPLE_WEIGHTS.set(w if masked else None)
            try:
                with autocast:
                    out = functional_call(template, (params, buffers), (x, apex_b), kwargs)
            finally:
                _SAMPLE_WEIGHTS.reset(token)
            if masked:
                return _masked_loss_parts(out, y, au, w, loss_cfg)
            return _loss_parts(out, y, au, loss_cfg)

        def predict_step(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor,
                         apex_b: Tensor, kwargs: dict[str, Tensor]
                         ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
            with autocast:
                out = functional_call(template, (params, buffers), (x, apex_b), kwargs)
            feats = {name: getattr(out, name).float() for name in FEATURE_NAMES
                     if getattr(out, name, None) is not None}
            return (torch.softmax(out.logits.float(), dim=-1),
                    torch.sigmoid(out.au_logits.float()), feats)

        plain = vmap(lambda p, b, x, a, y, au, w, kw: train_step(p, b, x, a, y, au, w, kw, False),
                     randomness="different")
        masked = vmap(lambda p, b, x, a, y, au, w, kw: train_step(p, b, x, a, y, au, w, kw, True),
                      randomness="different")
        predict = vmap(predict_step, randomness="different")

        for epoch in range(1, cfg.optim.epochs + 1):
            template.train()
            index, weight, padded, full, active = _epoch_plan(folds, cfg)
            if not bool(alive.all()):  # failed folds sit out (weight 0, no update)
                active &= alive
                weight *= alive.view(1, -1, 1).float()
                full = [False] * len(full)
                padded = [True] * len(padded)
            counts = weight.sum(dim=(0, 2)).to(device)                    # (K,) clips seen
            index, weight, active = index.to(device), weight.to(device), active.to(device)
            sums = torch.zeros(k_folds, 5, device=device)
            for s in range(index.shape[0]):
                idx = index[s]                                             # (K, B)
                x, kwargs = batch(idx)
                fn = masked if padded[s] else plain
                step_active = None if full[s] else active[s]
                before = stacked.snapshot_buffers() if step_active is not None else None
                stacked.zero_grad()
                parts = fn(stacked.params, stacked.buffers, x, apex[idx], labels[idx],
                           aus[idx], weight[s], kwargs)                    # (K, 5)
                parts[:, 0].sum().backward()
                stacked.step(step_active)
                if before is not None:
                    stacked.restore_buffers(before, step_active)
                sums += parts.detach().float() * weight[s].sum(dim=1, keepdim=True)
            stacked.scheduler.step()
            means = (sums / counts.clamp_min(1).unsqueeze(1)).tolist()
            for k, fold in enumerate(folds):
                if alive[k]:
                    try:
                        check_finite(means[k], epoch, fold.subject)
                    except NonFiniteLossError as err:
                        errors[fold.subject] = err
                        alive[k] = False
            if not bool(alive.any()):
                break

            template.eval()
            score_parts, au_parts = [], []
            feature_parts: dict[str, list[Tensor]] = {}
            with torch.inference_mode():
                for idx in test_chunks:
                    x, kwargs = batch(idx)
                    sc, au_sc, feats = predict(stacked.params, stacked.buffers, x, apex[idx],
                                               kwargs)
                    score_parts.append(sc)
                    au_parts.append(au_sc)
                    for name, value in feats.items():
                        feature_parts.setdefault(name, []).append(value)
            scores_all = torch.cat(score_parts, dim=1).cpu().numpy()        # (K, M, C)
            au_all = torch.cat(au_parts, dim=1).cpu().numpy()
            features_all = {name: torch.cat(v, dim=1).cpu().numpy()
                            for name, v in feature_parts.items()}
            for k, fold in enumerate(folds):
                if not alive[k]:
                    continue
                m = len(fold.test_idx)
                entry = {"train/loss": means[k][0], "train/loss_cls": means[k][1],
                         "train/loss_au": means[k][2], "train/loss_orth": means[k][3],
                         "train/abs_cos": means[k][4]}
                entry.update(_val_metrics(fold.y_test, scores_all[k, :m], fold.au_test,
                                          au_all[k, :m]))
                histories[k].append(entry)
                if on_epoch is not None:
                    on_epoch(fold.subject, epoch, entry)

    seconds = (time.perf_counter() - started) / k_folds
    results = []
    for k, fold in enumerate(folds):
        if not alive[k]:
            continue
        m = len(fold.test_idx)
        scores_np = scores_all[k, :m].astype(np.float32)
        results.append(FoldResult(
            subject=fold.subject, clips=fold.clips, y_true=fold.y_test,
            y_pred=scores_np.argmax(axis=1).astype(np.int64), scores=scores_np,
            au_true=fold.au_test, au_scores=au_all[k, :m].astype(np.float32),
            history=histories[k], seconds=seconds, device=str(device),
            features={name: value[k, :m].astype(np.float32)
                      for name, value in features_all.items()}))
    if errors:
        raise PackError(results, errors)
    return results


# On CPU a fold costs about the same CPU time packed or not (the arithmetic dominates) and
# more memory: packs asked for on CPU hold at most this many folds at once (docs/training.md).
CPU_PACK_LIMIT = 8
# share of the device memory packs may use, and the margin on the probe (vmap's batching
# rules and the allocator's fragmentation add to one fold's own peak)
MEMORY_SHARE = 0.8
PROBE_MARGIN = 1.3


def fold_memory_bytes(cfg: MednConfig, data: PreparedDataset, device: torch.device) -> int:
    """Peak CUDA memory one fold's training step adds beyond the shared data: one forward,
    backward and AdamW step of a full batch, measured on ``device``, plus AdamW's state."""
    from medn.losses import medn_loss
    from medn.models import build_model
    from medn.train import fold_frames

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    idx = torch.arange(min(cfg.optim.batch_size, len(data)))
    frames = fold_frames(cfg, data)
    model = build_model(cfg, num_classes=data.num_classes, num_aus=data.num_aus).to(device)
    optimizer, _ = build_optimizer(model, cfg)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = model(data.flows[idx].to(device=device, dtype=torch.float32),
                    data.apex[idx].to(device),
                    frames=frames[idx].to(device) if frames is not None else None)
    medn_loss(out, data.labels[idx].to(device), data.aus[idx].to(device=device,
              dtype=torch.float32), cfg.loss).total.backward()
    optimizer.step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del model, optimizer, out
    torch.cuda.empty_cache()
    return int(peak)


def max_pack_size(cfg: MednConfig, data: PreparedDataset, device: torch.device | None = None,
                  memory_fraction: float = 1.0) -> int:
    """The most folds of ``cfg`` one pack may hold on ``device`` (``--pack auto``).

    CUDA: ``MEMORY_SHARE`` of this process's share of the device memory (``memory_fraction``,
    e.g. 0.25 for a quarter GPU; never more than what is free), less the dataset kept on the
    device, divided by one fold's measured peak (``fold_memory_bytes``) x ``PROBE_MARGIN``.
    CPU: ``CPU_PACK_LIMIT`` (packing does not make a CPU faster; it only adds memory).
    """
    device = device or resolve_device(cfg)
    if device.type != "cuda":
        return CPU_PACK_LIMIT
    free, total = torch.cuda.mem_get_info(device)
    budget = min(free, total * memory_fraction) * MEMORY_SHARE
    shared = len(data) * data.flows[0].numel() * 4
    if data.frames is not None:
        shared += data.frames.numel()
    per_fold = fold_memory_bytes(cfg, data, device) * PROBE_MARGIN
    return max(1, int((budget - shared) // per_fold))


def train_in_packs(cfg: MednConfig, data: PreparedDataset, subjects: Sequence[str],
                   pack_size: int, **kwargs: object) -> list[FoldResult]:
    """``train_folds`` over ``subjects`` in consecutive packs of at most ``pack_size`` folds.

    Every pack runs even when an earlier one had failing folds; ``PackError`` at the end then
    carries every finished fold's result and every failure.
    """
    if pack_size < 1:
        raise ValueError(f"pack size must be at least 1, got {pack_size}")
    subjects = list(subjects)
    results: list[FoldResult] = []
    errors: dict[str, BaseException] = {}
    for start in range(0, len(subjects), pack_size):
        try:
            results.extend(train_folds(cfg, data, subjects[start:start + pack_size],
                                       **kwargs))  # type: ignore[arg-type]
        except PackError as err:
            results.extend(err.results)
            errors.update(err.errors)
    if errors:
        raise PackError(results, errors)
    return results
