"""SEVit, the Sparse Emotion Vision Transformer (paper eq. 2-4): the emotion branch.

For a sparsity rate s, the G x G token grid of every frame is split into s x s non-overlapping
spatial windows with time kept whole; each window (T' x G/s x G/s tokens) is attended on its
own (eq. 2: the windows are batched as (B*s*s, tokens, dim) and share the block weights); the
windows are put back in place (the concatenation of eq. 2), then LayerNorm, pooling
(``model.emotion.pool``: the mean of all tokens, or one mean per frame with time kept), a linear
map and the parameter-free ``model.feature_norm`` give F_k (B, D). One such branch per rate
(eq. 3), each with its own weights, and F_e = sum_k gamma_k F_k with learnable gamma_k
initialised to 1/K (eq. 4). s = 1 is exactly the plain ``VideoViT``. Token width =
``model.dim``; ``model.emotion`` gives patch size, depth, heads, MLP ratio and pooling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medn.config import MednConfig
from medn.models.vit import VideoViT


class SparseVideoViT(VideoViT):
    """A ``VideoViT`` whose attention runs within each of s x s spatial windows (eq. 2)."""

    def __init__(self, *, rate: int, **kwargs: int | float | str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if self.grid % rate:
            raise ValueError(f"sparsity rate {rate} does not divide the {self.grid}x{self.grid} "
                             "token grid")
        self.rate = rate

    def attend(self, tokens: Tensor) -> Tensor:
        """Split (B, T', G*G, dim) into s*s windows, attend each, and reassemble."""
        b, t, _, d = tokens.shape
        s, g = self.rate, self.grid // self.rate
        windows = (tokens.view(b, t, s, g, s, g, d)
                   .permute(0, 2, 4, 1, 3, 5, 6)          # (B, s, s, T', g, g, dim)
                   .reshape(b * s * s, t * g * g, d))
        windows = self.blocks(windows)
        return (windows.view(b, s, s, t, g, g, d)
                .permute(0, 3, 1, 4, 2, 5, 6)              # (B, T', s, g, s, g, dim)
                .reshape(b, t, s * g * s * g, d))


class SEVit(nn.Module):
    """Parallel SEVit branches, one per sparsity rate, fused by learnable weights gamma_k."""

    def __init__(self, *, rates: list[int], frames: int, size: int, patch: int, dim: int,
                 depth: int, heads: int, mlp_ratio: float, out_dim: int,
                 pool: str = "mean", out_norm: str = "none") -> None:
        super().__init__()
        self.rates = list(rates)
        self.branches = nn.ModuleList(
            SparseVideoViT(rate=rate, frames=frames, size=size, patch=patch, dim=dim,
                           depth=depth, heads=heads, mlp_ratio=mlp_ratio, out_dim=out_dim,
                           pool=pool, out_norm=out_norm)
            for rate in rates)
        self.gamma = nn.Parameter(torch.full((len(rates),), 1.0 / len(rates)))

    @classmethod
    def from_config(cls, cfg: MednConfig) -> SEVit:
        """Build from ``cfg.model.emotion``, ``cfg.model.dim`` and ``cfg.data`` (T, size)."""
        e = cfg.model.emotion
        return cls(rates=e.sparsity_rates, frames=cfg.data.frames - 1, size=cfg.data.size,
                   patch=e.patch_size, dim=cfg.model.dim, depth=e.depth, heads=e.heads,
                   mlp_ratio=e.mlp_ratio, out_dim=cfg.model.dim, pool=e.pool,
                   out_norm=cfg.model.feature_norm)

    def branch_features(self, flows: Tensor) -> Tensor:
        """F_k of every branch, stacked: (K, B, D)."""
        x = flows.float()
        return torch.stack([branch(x) for branch in self.branches])

    def forward(self, flows: Tensor) -> Tensor:
        """F_e (B, D) = sum_k gamma_k F_k from the flow sequence (B, T', 2, H, W)."""
        features = self.branch_features(flows)
        return torch.einsum("k,kbd->bd", self.gamma.to(features.dtype), features)
