"""MEDN's losses (paper eq. 1, 5-8, 15, 16), computed in float32 even under autocast, and the
|cos(F_m, F_e)| that tells how decoupled the two features are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from medn.config import LossConfig

if TYPE_CHECKING:
    from medn.models.medn import MednOutput


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Focal loss (eq. 15), batch mean of -(1 - p_t)^gamma log p_t; cross-entropy at gamma = 0.

    ``logits`` (B, C), ``target`` (B,) class indices.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    log_pt = log_p.gather(1, target.long().view(-1, 1)).squeeze(1)
    if gamma == 0:
        return -log_pt.mean()
    return (-(1.0 - log_pt.exp()).pow(gamma) * log_pt).mean()


def au_loss(au_logits: Tensor, au_targets: Tensor) -> Tensor:
    """AU detection loss (eq. 1): the SUM over AUs of binary cross-entropy, mean over the batch.

    ``au_logits`` (B, A) raw scores; ``au_targets`` (B, A) 0/1.
    """
    per_entry = F.binary_cross_entropy_with_logits(
        au_logits.float(), au_targets.float(), reduction="none")
    return per_entry.sum(dim=1).mean()


def orthogonal_components(f_m: Tensor, f_e: Tensor,
                          eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """F_perp_m, F_perp_e (eq. 5-7) of (B, D) features, in float32.

    F_hat = F / (||F||_2 + eps); alpha = <F_hat_m, F_hat_e> per sample;
    F_perp_m = F_hat_m - alpha F_hat_e; F_perp_e = F_hat_e - alpha F_hat_m.
    """
    f_m, f_e = f_m.float(), f_e.float()
    hat_m = f_m / (f_m.norm(dim=-1, keepdim=True) + eps)
    hat_e = f_e / (f_e.norm(dim=-1, keepdim=True) + eps)
    alpha = (hat_m * hat_e).sum(dim=-1, keepdim=True)
    return hat_m - alpha * hat_e, hat_e - alpha * hat_m


def orthogonal_loss(f_m: Tensor, f_e: Tensor, eps: float = 1e-6, form: str = "paper") -> Tensor:
    """Orthogonal loss, batch mean; D = the feature width, alpha = cos(F_m, F_e) (eq. 6).

    ``form="paper"``: eq. 8 as printed, D <F_perp_m, F_perp_e>^2. With unit F_hat,
    <F_perp_m, F_perp_e> = alpha - 2 alpha + alpha^3 = -alpha (1 - alpha^2), so this is
    D alpha^2 (1 - alpha^2)^2: zero for orthogonal AND for collinear features, largest at
    |alpha| = 1/sqrt(3); beyond that its gradient pushes the features towards collinearity.
    ``form="cosine"``: D alpha^2, zero only for orthogonal features.
    """
    if form == "paper":
        perp_m, perp_e = orthogonal_components(f_m, f_e, eps)
        return (f_m.shape[-1] * (perp_m * perp_e).sum(dim=-1).pow(2)).mean()
    if form == "cosine":
        return (f_m.shape[-1] * cosine(f_m, f_e, eps).pow(2)).mean()
    raise ValueError(f"loss.orth_form: unknown {form!r}; allowed: {', '.join(ORTH_FORMS)}")


ORTH_FORMS: tuple[str, ...] = ("paper", "cosine")


def cosine(f_m: Tensor, f_e: Tensor, eps: float = 1e-6) -> Tensor:
    """alpha = <F_hat_m, F_hat_e> (eq. 5-6) per sample, (B,), in float32."""
    f_m, f_e = f_m.float(), f_e.float()
    hat_m = f_m / (f_m.norm(dim=-1, keepdim=True) + eps)
    hat_e = f_e / (f_e.norm(dim=-1, keepdim=True) + eps)
    return (hat_m * hat_e).sum(dim=-1)


@dataclass
class LossParts:
    """The total loss (eq. 16) and its parts (unweighted), each a scalar tensor, and the batch
    mean of |cos(F_m, F_e)| (detached; how decoupled the two features are)."""

    total: Tensor
    cls: Tensor
    au: Tensor
    orth: Tensor
    abs_cos: Tensor | None = None


def medn_loss(out: MednOutput, labels: Tensor, au_targets: Tensor,
              cfg: LossConfig) -> LossParts:
    """L_total = L_cls + lambda_au L_au + lambda_orth L_orth (eq. 16).

    L_cls is the focal loss (gamma = ``cfg.focal_gamma``) of ``out.logits``, L_au the AU loss of
    ``out.au_logits``, L_orth the orthogonal loss of ``out.f_m`` and ``out.f_e``. A part whose
    weight is 0 is still computed (for logging) but does not reach the total's gradient.
    """
    cls = focal_loss(out.logits, labels, cfg.focal_gamma)
    au = au_loss(out.au_logits, au_targets)
    orth = orthogonal_loss(out.f_m, out.f_e, cfg.orth_eps, cfg.orth_form)
    total = cls
    if cfg.lambda_au:
        total = total + cfg.lambda_au * au
    if cfg.lambda_orth:
        total = total + cfg.lambda_orth * orth
    abs_cos = cosine(out.f_m.detach(), out.f_e.detach(), cfg.orth_eps).abs().mean()
    return LossParts(total=total, cls=cls, au=au, orth=orth, abs_cos=abs_cos)


PART_NAMES: tuple[str, ...] = ("loss", "loss_cls", "loss_au", "loss_orth", "abs_cos")


def stack_parts(parts: LossParts) -> Tensor:
    """The parts as one detached float32 vector, in ``PART_NAMES`` order (abs_cos 0 if unset)."""
    abs_cos = parts.abs_cos if parts.abs_cos is not None else torch.zeros_like(parts.total)
    return torch.stack([parts.total, parts.cls, parts.au, parts.orth, abs_cos]).detach().float()


def detach_parts(parts: LossParts) -> dict[str, float]:
    """The parts as plain floats: ``{"loss", "loss_cls", "loss_au", "loss_orth", "abs_cos"}``."""
    return dict(zip(PART_NAMES, stack_parts(parts).cpu().tolist(), strict=True))
