"""The whole MEDN network (paper Fig. 3): motion branch + AU head, SEVit, orthogonalisation, fusion,
classifier."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from medn.losses import orthogonal_components
from medn.models.layers import feature_norm as make_feature_norm


@dataclass
class MednOutput:
    """One forward pass: class logits (B, C), AU logits (B, A), F_m (B, D), F_e (B, D) and
    F_fusion (B, D), the fused feature the classifier reads (before ``head_norm``)."""

    logits: Tensor
    au_logits: Tensor
    f_m: Tensor
    f_e: Tensor
    f_fusion: Tensor | None = None


INPUT_NORMS: tuple[str, ...] = ("none", "clip_rms", "fixed")


def normalize_flows(flows: Tensor, kind: str, scale: float = 1.0, eps: float = 1e-6) -> Tensor:
    """Scale a flow batch (B, T', 2, H, W): ``clip_rms`` scales each clip so that the
    root-mean-square of its own flows is ``scale`` (whatever its motion amplitude; no other clip
    is used), ``fixed`` multiplies by ``scale``, ``none`` returns ``flows``."""
    if kind == "clip_rms":
        rms = flows.pow(2).mean(dim=tuple(range(1, flows.dim())), keepdim=True).sqrt()
        return flows * (scale / (rms + eps))
    if kind == "fixed":
        return flows * scale
    if kind == "none":
        return flows
    raise ValueError(f"model.input_norm: unknown {kind!r}; allowed: {', '.join(INPUT_NORMS)}")


class MEDN(nn.Module):
    """Motion-Emotion Decoupling Network.

    F_m = motion backbone(flows, apex); AU logits = Linear(F_m); F_e = SEVit(flows);
    F_perp_m, F_perp_e = orthogonal components (eq. 5-7); F_fusion = fusion(F_perp_m, F_perp_e);
    logits = Linear(dropout(LayerNorm(F_fusion))) (the LayerNorm when ``head_norm``).
    """

    def __init__(self, *, motion: nn.Module, emotion: nn.Module, fusion: nn.Module, dim: int,
                 num_classes: int, num_aus: int, dropout: float = 0.1,
                 orth_eps: float = 1e-6, head_norm: bool = True,
                 input_norm: str = "none", input_scale: float = 1.0,
                 feature_norm: str = "none") -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"model.input_norm: unknown {input_norm!r}; "
                             f"allowed: {', '.join(INPUT_NORMS)}")
        self.input_norm = input_norm
        self.input_scale = input_scale
        self.motion = motion
        self.motion_norm = make_feature_norm(feature_norm, dim)
        self.au_head = nn.Linear(dim, num_aus)
        self.emotion = emotion
        self.fusion = fusion
        self.head_norm: nn.Module = nn.LayerNorm(dim) if head_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes)
        self.orth_eps = orth_eps

    @property
    def uses_frames(self) -> bool:
        """Whether the motion backbone reads the aligned frames (LED with ``led_input:
        frames``): then ``forward`` needs ``frames``."""
        return bool(getattr(self.motion, "uses_frames", False))

    def forward(self, flows: Tensor, apex: Tensor, frames: Tensor | None = None) -> MednOutput:
        """``flows`` (B, T-1, 2, H, W) float (float16 is upcast), ``apex`` (B,) long index into
        T-1 (used by the single-flow backbones), ``frames`` (B, T, H, W) (any dtype; needed
        when ``uses_frames``) -> ``MednOutput``."""
        if flows.dim() != 5 or flows.shape[2] != 2:
            raise ValueError(f"flows must have shape (B, T-1, 2, H, W), got {tuple(flows.shape)}")
        if flows.dtype != torch.float32:
            flows = flows.float()
        flows = self.normalize_input(flows)
        if self.uses_frames:
            if frames is None:
                raise ValueError("model.motion.led_input=frames: the motion branch reads the "
                                 "aligned frames, but none were given")
            f_m = self.motion_norm(self.motion(frames, apex))
        else:
            f_m = self.motion_norm(self.motion(flows, apex))
        au_logits = self.au_head(f_m)
        f_e = self.emotion(flows)
        perp_m, perp_e = orthogonal_components(f_m, f_e, self.orth_eps)
        fused = self.fusion(perp_m, perp_e)
        logits = self.classifier(self.dropout(self.head_norm(fused)))
        return MednOutput(logits=logits, au_logits=au_logits, f_m=f_m, f_e=f_e, f_fusion=fused)

    def normalize_input(self, flows: Tensor) -> Tensor:
        """The flows as both branches see them (``model.input_norm``): each clip divided by its
        own RMS (``clip_rms``), times ``input_scale`` (``fixed``), or unchanged (``none``)."""
        return normalize_flows(flows, self.input_norm, self.input_scale)

    def motion_parameters(self) -> list[nn.Parameter]:
        """The motion branch and its AU head (their own lr group: x0.1 every 100 epochs),
        LED's filter parameters included (see ``filter_parameters``)."""
        return [*self.motion.parameters(), *self.au_head.parameters()]

    def filter_parameters(self) -> list[nn.Parameter]:
        """The motion backbone's parameters that may train at their own learning rate (LED's
        (alpha, r1, r2); empty for the other backbones). A subset of ``motion_parameters``."""
        own = getattr(self.motion, "filter_parameters", None)
        return list(own()) if callable(own) else []

    def other_parameters(self) -> list[nn.Parameter]:
        """Every parameter not in ``motion_parameters`` (SEVit, fusion, head norm, classifier)."""
        motion_ids = {id(p) for p in self.motion_parameters()}
        return [p for p in self.parameters() if id(p) not in motion_ids]
