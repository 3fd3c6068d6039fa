"""Vision Transformers: ``ViT`` over one image (the ``vit_b16`` motion backbone) and ``VideoViT``,
the plain global-attention ViT over a whole flow sequence that SEVit generalises (s = 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from medn.config import MednConfig
from medn.models.layers import Block, PatchEmbed, feature_norm, init_vit_weights, select_apex
from medn.models.registry import register_backbone


class ViT(nn.Module):
    """ViT (Dosovitskiy et al. 2021) over a (B, C, H, W) map: patch embedding, class token,
    learnable position embedding, pre-norm blocks, final LayerNorm, linear head on the class
    token -> (B, out_dim)."""

    def __init__(self, *, size: int, patch: int, dim: int, depth: int, heads: int,
                 out_dim: int, mlp_ratio: float = 4.0, in_channels: int = 2) -> None:
        super().__init__()
        grid = size // patch
        self.patch_embed = PatchEmbed(in_channels, dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, out_dim)."""
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        tokens = self.norm(self.blocks(tokens))
        return self.head(tokens[:, 0])


@register_backbone("vit_b16")
class ViTB16Backbone(nn.Module):
    """ViT over the onset->apex flow; ViT-B/16 sizes (768 wide, 12 blocks, 12 heads, patch 16)
    unless ``model.motion.vit_*`` say otherwise (the smoke/quick profiles shrink it)."""

    def __init__(self, vit: ViT) -> None:
        super().__init__()
        self.vit = vit

    @classmethod
    def from_config(cls, cfg: MednConfig) -> ViTB16Backbone:
        """Build from ``cfg.model.motion.vit_*``, ``cfg.model.dim`` and ``cfg.data.size``."""
        m = cfg.model.motion
        return cls(ViT(size=cfg.data.size, patch=m.vit_patch, dim=m.vit_dim, depth=m.vit_depth,
                       heads=m.vit_heads, out_dim=cfg.model.dim))

    def forward(self, flows: Tensor, apex: Tensor) -> Tensor:
        """F_m (B, D) from the apex flow of each clip in ``flows`` (B, T', 2, H, W)."""
        return self.vit(select_apex(flows, apex).float())


VIDEO_POOLS: tuple[str, ...] = ("mean", "time")


class VideoViT(nn.Module):
    """Plain ViT over a flow sequence (B, T', C, H, W) with global attention.

    Each frame is cut into a G x G grid of ``patch`` x ``patch`` patches (G = size / patch) and
    embedded; learnable spatial (G*G) and temporal (T') position embeddings are added; the
    T' x G x G tokens go through ``depth`` pre-norm blocks (``attend``); then LayerNorm, pooling
    (``pool="mean"``: the mean of all tokens; ``"time"``: the mean of each frame's tokens, the T'
    frame vectors concatenated), a linear map to (B, out_dim) and ``out_norm`` (``feature_norm``).
    Subclasses change only ``attend`` (SEVit's windowed attention).
    """

    def __init__(self, *, frames: int, size: int, patch: int, dim: int, depth: int, heads: int,
                 out_dim: int, mlp_ratio: float = 2.0, in_channels: int = 2,
                 pool: str = "mean", out_norm: str = "none") -> None:
        super().__init__()
        if pool not in VIDEO_POOLS:
            raise ValueError(f"model.emotion.pool: unknown {pool!r}; allowed: "
                             f"{', '.join(VIDEO_POOLS)}")
        self.pool = pool
        self.grid = size // patch
        self.patch_embed = PatchEmbed(in_channels, dim, patch)
        self.pos_spatial = nn.Parameter(torch.zeros(1, 1, self.grid * self.grid, dim))
        self.pos_temporal = nn.Parameter(torch.zeros(1, frames, 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim * (frames if pool == "time" else 1), out_dim)
        self.out_norm = feature_norm(out_norm, out_dim)
        self.apply(init_vit_weights)
        nn.init.trunc_normal_(self.pos_spatial, std=0.02)
        nn.init.trunc_normal_(self.pos_temporal, std=0.02)

    def embed(self, x: Tensor) -> Tensor:
        """(B, T', C, H, W) -> tokens (B, T', G*G, dim) with position embeddings added."""
        b, t = x.shape[:2]
        tokens = self.patch_embed(x.flatten(0, 1)).unflatten(0, (b, t))
        return tokens + self.pos_spatial + self.pos_temporal

    def attend(self, tokens: Tensor) -> Tensor:
        """Global attention over all T' x G x G tokens of each clip; shape kept."""
        b, t, n, d = tokens.shape
        return self.blocks(tokens.reshape(b, t * n, d)).view(b, t, n, d)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T', C, H, W) -> (B, out_dim)."""
        tokens = self.norm(self.attend(self.embed(x)))      # (B, T', G*G, dim)
        # "time": one mean per frame, the time course kept; "mean": one mean over everything
        pooled = (tokens.mean(dim=2).flatten(1) if self.pool == "time"
                  else tokens.mean(dim=(1, 2)))
        return self.out_norm(self.head(pooled))
