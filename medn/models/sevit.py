"""SEVit, the Sparse Emotion Vision Transformer (paper eq. 2-4): the emotion branch.

For a sparsity rate s, the G x G token grid of every frame is split into s^2 groups with time
kept whole, and each group (T' x G/s x G/s tokens) is attended on its own (eq. 2: the groups are
batched as (B*s*s, tokens, dim) and share the block weights); the groups are put back in place
(the concatenation of eq. 2), then LayerNorm, pooling (``model.emotion.pool``: the mean of all
tokens, or one mean per frame with time kept), a linear map and the parameter-free
``model.feature_norm`` give F_k (B, D). One such branch per rate (eq. 3), each with its own
weights, and F_e = sum_k gamma_k F_k with learnable gamma_k initialised to 1/K (eq. 4).

Two readings of eq. 2 (``model.emotion.grouping``): ``contiguous`` groups are s x s windows of
neighbouring tokens (the text: "divide the features sequentially into s^2 non-overlapping
sub-tensors" N_i of size T x H/s x W/s); ``strided`` groups take every s-th token in each
direction, starting at offsets (a, b), so every group spans the whole face (the sparse
attention of SparseViT, ref. [40], which the paper cites). At s = 1 both are exactly the plain
``VideoViT``. Token width = ``model.dim``; ``model.emotion`` gives patch size, depth, heads,
MLP ratio and pooling.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medn.config import MednConfig
from medn.models.vit import VideoViT

GROUPINGS: tuple[str, ...] = ("contiguous", "strided")


class SparseVideoViT(VideoViT):
    """A ``VideoViT`` whose attention runs within each of s x s spatial windows (eq. 2)."""

    def __init__(self, *, rate: int, grouping: str = "contiguous",
                 **kwargs: int | float | str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if self.grid % rate:
            raise ValueError(f"sparsity rate {rate} does not divide the {self.grid}x{self.grid} "
                             "token grid")
        if grouping not in GROUPINGS:
            raise ValueError(f"model.emotion.grouping: unknown {grouping!r}; allowed: "
                             f"{', '.join(GROUPINGS)}")
        self.rate = rate
        self.grouping = grouping

    def attend(self, tokens: Tensor) -> Tensor:
        """Split (B, T', G*G, dim) into s*s groups, attend each, and reassemble."""
        b, t, _, d = tokens.shape
        s, g = self.rate, self.grid // self.rate
        if self.grouping == "contiguous":
            # row = window_row * g + row_in_window: the window index is the SLOW axis
            grid = tokens.view(b, t, s, g, s, g, d).permute(0, 2, 4, 1, 3, 5, 6)
        else:
            # row = row_in_group * s + offset: the group (offset) index is the FAST axis
            grid = tokens.view(b, t, g, s, g, s, d).permute(0, 3, 5, 1, 2, 4, 6)
        groups = self.blocks(grid.reshape(b * s * s, t * g * g, d))  # (B*s*s, T'*g*g, dim)
        groups = groups.view(b, s, s, t, g, g, d)
        if self.grouping == "contiguous":
            back = groups.permute(0, 3, 1, 4, 2, 5, 6)   # (B, T', s, g, s, g, dim)
        else:
            back = groups.permute(0, 3, 4, 1, 5, 2, 6)   # (B, T', g, s, g, s, dim)
        return back.reshape(b, t, s * g * s * g, d)


class SEVit(nn.Module):
    """Parallel SEVit branches, one per sparsity rate, fused by learnable weights gamma_k."""

    def __init__(self, *, rates: list[int], frames: int, size: int, patch: int, dim: int,
                 depth: int, heads: int, mlp_ratio: float, out_dim: int,
                 pool: str = "mean", out_norm: str = "none",
                 grouping: str = "contiguous") -> None:
        super().__init__()
        self.rates = list(rates)
        self.branches = nn.ModuleList(
            SparseVideoViT(rate=rate, grouping=grouping, frames=frames, size=size, patch=patch,
                           dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, out_dim=out_dim,
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
                   out_norm=cfg.model.feature_norm, grouping=e.grouping)

    def branch_features(self, flows: Tensor) -> Tensor:
        """F_k of every branch, stacked: (K, B, D)."""
        x = flows.float()
        return torch.stack([branch(x) for branch in self.branches])

    def forward(self, flows: Tensor) -> Tensor:
        """F_e (B, D) = sum_k gamma_k F_k from the flow sequence (B, T', 2, H, W)."""
        features = self.branch_features(flows)
        return torch.einsum("k,kbd->bd", self.gamma.to(features.dtype), features)
