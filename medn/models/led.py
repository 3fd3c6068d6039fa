"""Learnable Eulerian Dynamics (LED, Varanka et al. 2023, ref. [42]): the default motion branch.

LED is linearised Eulerian video magnification with learnable parameters. Its filter is a T x T
upper-triangular matrix ``W``; row ``i`` indexes the INPUT frame, column ``j`` the OUTPUT frame
(as in the original ``einsum("scfhw,fx->scxhw", x, W)``), so output frame j mixes frames i <= j:

    W[i, j] = a (1 - r1)^(j - i) r1^min(1, i) - a (1 - r2)^(j - i) r2^min(1, i)   for j > i
    W[i, i] = a (r1 - r2)
    W[i, j] = 0                                                                  for j < i

with a, r1, r2 learnable and stored as logs (initialised to 10, 0.4, 0.05). The output is
``(x W) / (|x| |W| + 1)`` per pixel and channel, and output frame 0 is input frame 0 unchanged.

Deviation (documented): the original divides by ``x |W| + 1``, which for its non-negative image
input equals ``|x| |W| + 1``. MEDN feeds signed optical flow, where ``x |W| + 1`` can be zero or
negative, so the denominator uses ``|x|``: identical on non-negative input, never a division by 0.

After the filter, as in the original network: frame 0 is dropped (``model.motion.led_drop_first``),
then conv(1,5,5) -> ReLU -> maxpool(1,3,3) -> BN -> conv(2,3,3) -> ReLU -> maxpool(2,2,2) -> BN,
then (our addition, to keep 144x144 sane) average pooling to a ``led_grid`` x ``led_grid`` map,
and an MLP (Linear -> ReLU -> dropout -> Linear) to F_m (B, D).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from medn.config import MednConfig
from medn.models.registry import register_backbone


class LEDFilter(nn.Module):
    """The learnable Eulerian temporal filter over a (B, T, C, H, W) sequence."""

    def __init__(self, alpha: float = 10.0, r1: float = 0.4, r2: float = 0.05) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)))
        self.log_r1 = nn.Parameter(torch.tensor(math.log(r1)))
        self.log_r2 = nn.Parameter(torch.tensor(math.log(r2)))

    def matrix(self, frames: int) -> Tensor:
        """The (frames x frames) filter matrix W (row = input frame, column = output frame)."""
        alpha, r1, r2 = self.log_alpha.exp(), self.log_r1.exp(), self.log_r2.exp()
        device = self.log_alpha.device
        idx = torch.arange(frames, device=device, dtype=torch.float32)
        i, j = idx[:, None], idx[None, :]
        lag = (j - i).clamp(min=0.0)          # j - i where used; 0 elsewhere (masked anyway)
        first = (i > 0).to(torch.float32)     # min(1, i)
        upper = (alpha * (1 - r1).pow(lag) * r1.pow(first)
                 - alpha * (1 - r2).pow(lag) * r2.pow(first))
        diagonal = (alpha * (r1 - r2)).expand(frames, frames)
        zeros = torch.zeros((), device=device, dtype=upper.dtype)
        return torch.where(j > i, upper, torch.where(j == i, diagonal, zeros))

    def forward(self, x: Tensor) -> Tensor:
        """Filter ``x`` (B, T, C, H, W) along T; computed in float32 even under autocast."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            w = self.matrix(x.shape[1])
            out = torch.einsum("bfchw,fx->bxchw", x, w)
            div = torch.einsum("bfchw,fx->bxchw", x.abs(), w.abs())
            out = out / (div + 1.0)
            return torch.cat([x[:, :1], out[:, 1:]], dim=1)


@register_backbone("led")
class LEDBackbone(nn.Module):
    """LED filter + small 3D-conv network over the whole flow sequence -> F_m (B, D)."""

    def __init__(self, *, dim: int, width: int = 32, grid: int = 4, dropout: float = 0.1,
                 drop_first: bool = True, in_channels: int = 2) -> None:
        super().__init__()
        self.led = LEDFilter()
        self.drop_first = drop_first
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, width, kernel_size=(1, 5, 5)),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 3, 3)),
            nn.BatchNorm3d(width),
            nn.Conv3d(width, 2 * width, kernel_size=(2, 3, 3)),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2)),
            nn.BatchNorm3d(2 * width),
            nn.AdaptiveAvgPool3d((1, grid, grid)),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * grid * grid, 2 * dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(2 * dim, dim),
        )

    @classmethod
    def from_config(cls, cfg: MednConfig) -> LEDBackbone:
        """Build from ``cfg.model`` (dim, dropout, motion.width/led_grid/led_drop_first)."""
        m = cfg.model
        return cls(dim=m.dim, width=m.motion.width, grid=m.motion.led_grid, dropout=m.dropout,
                   drop_first=m.motion.led_drop_first)

    def forward(self, flows: Tensor, apex: Tensor | None = None) -> Tensor:
        """F_m (B, D) from the flow sequence (B, T', 2, H, W); ``apex`` is not used."""
        x = self.led(flows)
        if self.drop_first:
            x = x[:, 1:]
        x = x.transpose(1, 2)  # (B, C, T, H, W) for Conv3d
        return self.head(self.features(x))


def led_min_frames(drop_first: bool) -> int:
    """The fewest flow frames T' the LED conv stack accepts (conv t=2, then pool t=2)."""
    return 3 + int(drop_first)
