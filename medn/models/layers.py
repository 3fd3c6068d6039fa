"""Shared transformer layers: patch embedding, multi-head (cross-)attention, MLP, pre-norm block.

Attention always goes through ``torch.nn.functional.scaled_dot_product_attention`` (SDPA), which
picks the fused kernel of the device (flash / memory-efficient on CUDA, a fused CPU kernel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """(N, L, heads * d) -> (N, heads, L, d)."""
    n, length, width = x.shape
    return x.view(n, length, heads, width // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """(N, heads, L, d) -> (N, L, heads * d)."""
    n, heads, length, d = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * d)


class PatchEmbed(nn.Module):
    """Cut a (N, C, H, W) map into non-overlapping ``patch`` x ``patch`` patches and embed each.

    Returns (N, G*G, dim) tokens in row-major grid order, G = H / patch.
    """

    def __init__(self, in_channels: int, dim: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        """Embed the patches of ``x`` (N, C, H, W) as (N, G*G, dim)."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention over (N, L, dim) tokens (SDPA)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Self-attend the tokens ``x`` (N, L, dim)."""
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        out = F.scaled_dot_product_attention(_split_heads(q, self.heads),
                                             _split_heads(k, self.heads),
                                             _split_heads(v, self.heads))
        return self.proj(_merge_heads(out))


class CrossAttention(nn.Module):
    """Multi-head attention with queries from one token set and keys/values from another (SDPA)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: Tensor, context: Tensor) -> Tensor:
        """Attend from ``query`` (N, Lq, dim) to ``context`` (N, Lk, dim); returns (N, Lq, dim)."""
        k, v = self.kv(context).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(_split_heads(self.q(query), self.heads),
                                             _split_heads(k, self.heads),
                                             _split_heads(v, self.heads))
        return self.proj(_merge_heads(out))


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> Linear -> dropout."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out_dim or dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP to the last dimension of ``x``."""
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """A pre-norm ViT block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, max(1, round(dim * mlp_ratio)), dropout=dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Transform the tokens ``x`` (N, L, dim)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


FEATURE_NORMS: tuple[str, ...] = ("none", "layer")


def feature_norm(kind: str, dim: int) -> nn.Module:
    """The parameter-free norm that ends a branch (``model.feature_norm``): ``layer`` is a
    LayerNorm without gain or bias over the last dimension (|F| stays sqrt(dim)), ``none`` the
    identity."""
    if kind == "layer":
        return nn.LayerNorm(dim, elementwise_affine=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"model.feature_norm: unknown {kind!r}; allowed: {', '.join(FEATURE_NORMS)}")


def init_vit_weights(module: nn.Module) -> None:
    """ViT-style initialisation: truncated-normal(0.02) linear weights, zero biases, unit LN."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
        nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def select_apex(flows: Tensor, apex: Tensor) -> Tensor:
    """The onset->apex flow of each clip: ``flows[b, apex[b]]`` -> (B, 2, H, W)."""
    if apex.shape != (flows.shape[0],):
        raise ValueError(f"apex must have shape ({flows.shape[0]},), got {tuple(apex.shape)}")
    index = torch.arange(flows.shape[0], device=flows.device)
    return flows[index, apex.to(device=flows.device, dtype=torch.long)]
