"""Fusion of the orthogonalised features: CoFM (eq. 9-14) and the weighted sum (ablation No.3).

The paper applies attention to single D-vectors, which is degenerate (softmax over one key is 1).
CoFM therefore views each D-vector as ``n = model.fusion.tokens`` tokens of width d = D / n:

- eq. 9:  F_mix = concat(F_perp_m tokens, F_perp_e tokens)                  (B, 2n, d)
- eq. 10-11: Q, K, V = Linear(F_mix); F_col = softmax(Q K^T / sqrt(d)) V    (single head, SDPA)
- F_col is split into F_col,m (first n tokens) and F_col,e (last n tokens);
- F'_m = F_perp_m + MHA(query = F_perp_m tokens, key/value = F_col,m), F'_e likewise with
  F_col,e, each branch with its own multi-head attention (``model.fusion.heads`` heads);
  flattened back to D. The residual ``F_perp +`` is our choice (``model.fusion.residual``, the
  usual transformer residual; the paper does not say): on a toy task it learned in 12 epochs
  what the bare MHA output needed ~30 for;
- eq. 12-13: w_m = sigmoid(W1 GELU(W2 F'_m)), w_e = sigmoid(W3 GELU(W4 F'_e)), scalars per
  sample (hidden width max(D // 4, 1)); normalised w / (w_m + w_e);
- eq. 14: F_fusion = w_m F'_m + w_e F'_e.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medn.config import MednConfig
from medn.models.layers import CrossAttention


class _Gate(nn.Module):
    """w = sigmoid(W_a GELU(W_b F')) -> (B, 1)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        hidden = max(dim // 4, 1)
        self.inner = nn.Linear(dim, hidden)
        self.outer = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        """The gate's weight in (0, 1) for each sample of ``x`` (B, D)."""
        return torch.sigmoid(self.outer(F.gelu(self.inner(x))))


class CoFM(nn.Module):
    """The Collaborative Fusion Module (eq. 9-14) over (B, D) orthogonalised features."""

    def __init__(self, *, dim: int, tokens: int, heads: int, residual: bool = True) -> None:
        super().__init__()
        if dim % tokens:
            raise ValueError(f"CoFM: {tokens} tokens do not divide the feature width {dim}")
        self.tokens = tokens
        self.residual = residual
        width = dim // tokens
        self.qkv = nn.Linear(width, 3 * width)
        self.attend_m = CrossAttention(width, heads)
        self.attend_e = CrossAttention(width, heads)
        self.gate_m = _Gate(dim)
        self.gate_e = _Gate(dim)

    @classmethod
    def from_config(cls, cfg: MednConfig) -> CoFM:
        """Build from ``cfg.model.dim`` and ``cfg.model.fusion``."""
        f = cfg.model.fusion
        return cls(dim=cfg.model.dim, tokens=f.tokens, heads=f.heads, residual=f.residual)

    def collaborate(self, perp_m: Tensor, perp_e: Tensor) -> tuple[Tensor, Tensor]:
        """F'_m, F'_e (B, D): eq. 9-11, the split, and the per-branch multi-head attention."""
        b, n = perp_m.shape[0], self.tokens
        tok_m, tok_e = perp_m.view(b, n, -1), perp_e.view(b, n, -1)
        mix = torch.cat([tok_m, tok_e], dim=1)                        # eq. 9
        q, k, v = self.qkv(mix).chunk(3, dim=-1)                      # eq. 10
        col = F.scaled_dot_product_attention(q, k, v)                 # eq. 11
        col_m, col_e = col[:, :n], col[:, n:]
        new_m = self.attend_m(tok_m.to(col.dtype), col_m).reshape(b, -1)
        new_e = self.attend_e(tok_e.to(col.dtype), col_e).reshape(b, -1)
        if self.residual:
            return perp_m + new_m, perp_e + new_e
        return new_m, new_e

    def weights(self, new_m: Tensor, new_e: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised (w_m, w_e), each (B, 1), summing to 1 (eq. 12-13)."""
        w_m, w_e = self.gate_m(new_m).float(), self.gate_e(new_e).float()
        total = w_m + w_e
        return w_m / total, w_e / total

    def forward(self, perp_m: Tensor, perp_e: Tensor) -> Tensor:
        """F_fusion (B, D) from F_perp_m, F_perp_e (B, D) (eq. 14)."""
        new_m, new_e = self.collaborate(perp_m, perp_e)
        w_m, w_e = self.weights(new_m, new_e)
        return w_m * new_m.float() + w_e * new_e.float()


class WeightedSumFusion(nn.Module):
    """Ablation No.3: F_fusion = a_m F_perp_m + a_e F_perp_e, (a_m, a_e) = softmax of two
    learnable logits (initialised equal)."""

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(2))

    @classmethod
    def from_config(cls, cfg: MednConfig) -> WeightedSumFusion:
        """Build (nothing to configure)."""
        return cls()

    def forward(self, perp_m: Tensor, perp_e: Tensor) -> Tensor:
        """The weighted sum of the two (B, D) features."""
        a = torch.softmax(self.logits.float(), dim=0)
        return a[0] * perp_m.float() + a[1] * perp_e.float()


FUSIONS: dict[str, type[CoFM] | type[WeightedSumFusion]] = {
    "cofm": CoFM,
    "weighted_sum": WeightedSumFusion,
}


def create_fusion(cfg: MednConfig) -> nn.Module:
    """The fusion module named by ``cfg.model.fusion.kind``."""
    kind = cfg.model.fusion.kind
    if kind not in FUSIONS:
        raise ValueError(f"model.fusion.kind: unknown fusion {kind!r}; "
                         f"allowed: {', '.join(FUSIONS)}")
    return FUSIONS[kind].from_config(cfg)
