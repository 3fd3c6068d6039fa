"""Learnable Eulerian Dynamics (LED, Varanka et al. 2023, ref. [42]): the default motion branch.

LED is linearised Eulerian video magnification with learnable parameters. Its filter is a T x T
upper-triangular matrix ``W``; row ``i`` indexes the INPUT frame, column ``j`` the OUTPUT frame
(as in the original ``einsum("scfhw,fx->scxhw", x, W)``), so output frame j mixes frames i <= j:

    W[i, j] = a (1 - r1)^(j - i) r1^min(1, i) - a (1 - r2)^(j - i) r2^min(1, i)   for j > i
    W[i, i] = a (r1 - r2)
    W[i, j] = 0                                                                  for j < i

with a, r1, r2 learnable and stored as logs (initialised to 10, 0.4, 0.05). The output is
``(x W) / (x |W| + 1)`` per pixel and channel (``denominator="signed"``, the original, exact for
its grayscale frames x >= 0) or ``(x W) / (|x| |W| + 1)`` (``"abs"``, a stabiliser: on signed
optical flow ``x |W| + 1`` can be 0); output frame 0 is input frame 0 unchanged.

The network is the original's (``experiments/benchmarks/LED.ipynb``): frame 0 is dropped
(``model.motion.led_drop_first``), then conv(1,5,5) -> ReLU -> maxpool(1,3,3) -> BN ->
Dropout3d -> conv(2,3,3) -> ReLU -> maxpool(2,2,2) -> BN -> Dropout3d, then (our addition, to
keep 144x144 sane) average pooling to a ``led_grid`` x ``led_grid`` map, and an MLP
(Linear -> ReLU -> dropout -> Linear) to F_m (B, D) where the original's last layer gave AU
logits. Input (``model.motion.led_input``): the T aligned grayscale frames (the original's
input; pixel values 0-255 as stored, so that x |W| dominates the + 1 and the normaliser
removes the lighting level), or the T-1 flows with a zero-motion frame (the onset against
itself) prepended, so that the dropped frame 0 is that zero frame and all T-1 flows reach the
convs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from medn.config import MednConfig
from medn.models.registry import register_backbone

DENOMINATORS: tuple[str, ...] = ("signed", "abs")
INPUTS: tuple[str, ...] = ("frames", "flow")


class LEDFilter(nn.Module):
    """The learnable Eulerian temporal filter over a (B, T, C, H, W) sequence."""

    def __init__(self, alpha: float = 10.0, r1: float = 0.4, r2: float = 0.05,
                 denominator: str = "signed") -> None:
        super().__init__()
        if denominator not in DENOMINATORS:
            raise ValueError(f"model.motion.led_denominator: unknown {denominator!r}; allowed: "
                             f"{', '.join(DENOMINATORS)}")
        self.denominator = denominator
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
            base = x.abs() if self.denominator == "abs" else x
            div = torch.einsum("bfchw,fx->bxchw", base, w.abs())
            out = out / (div + 1.0)
            return torch.cat([x[:, :1], out[:, 1:]], dim=1)


@register_backbone("led")
class LEDBackbone(nn.Module):
    """LED filter + the original's 3D-conv network -> F_m (B, D).

    ``forward(x, apex)`` takes what ``led_input`` names: frames (B, T, H, W) (any dtype; uint8
    as cached) or flows (B, T-1, 2, H, W).
    """

    def __init__(self, *, dim: int, width: int = 32, grid: int = 4, hidden: int = 256,
                 dropout3d: float = 0.5, head_dropout: float = 0.5, drop_first: bool = True,
                 led_input: str = "flow", denominator: str = "signed",
                 zero_frame: bool = True) -> None:
        super().__init__()
        if led_input not in INPUTS:
            raise ValueError(f"model.motion.led_input: unknown {led_input!r}; allowed: "
                             f"{', '.join(INPUTS)}")
        self.led_input = led_input
        self.uses_frames = led_input == "frames"
        self.zero_frame = zero_frame
        self.led = LEDFilter(denominator=denominator)
        self.drop_first = drop_first
        in_channels = 1 if self.uses_frames else 2
        self.features = nn.Sequential(
            nn.Conv3d(in_channels, width, kernel_size=(1, 5, 5)),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 3, 3)),
            nn.BatchNorm3d(width),
            nn.Dropout3d(dropout3d),
            nn.Conv3d(width, 2 * width, kernel_size=(2, 3, 3)),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2)),
            nn.BatchNorm3d(2 * width),
            nn.Dropout3d(dropout3d),
            nn.AdaptiveAvgPool3d((1, grid, grid)),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * grid * grid, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(head_dropout),
            nn.Linear(hidden, dim),
        )

    @classmethod
    def from_config(cls, cfg: MednConfig) -> LEDBackbone:
        """Build from ``cfg.model.dim`` and ``cfg.model.motion`` (an ``LEDConfig``)."""
        m = cfg.model.motion
        return cls(dim=cfg.model.dim, width=m.width, grid=m.led_grid, hidden=m.led_hidden,
                   dropout3d=m.led_dropout3d, head_dropout=m.led_head_dropout,
                   drop_first=m.led_drop_first, led_input=m.led_input,
                   denominator=m.led_denominator, zero_frame=m.led_zero_frame)

    def filter_parameters(self) -> list[nn.Parameter]:
        """(log alpha, log r1, log r2): the filter's own optimiser group."""
        return list(self.led.parameters())

    def sequence(self, x: Tensor) -> Tensor:
        """The sequence LED filters, (B, T, C, H, W): the frames as one channel, or the flows
        behind a zero-motion frame (``zero_frame``; without it (B, T-1, 2, H, W))."""
        if self.uses_frames:
            if x.dim() != 4:
                raise ValueError(f"led_input=frames: expected frames (B, T, H, W), "
                                 f"got {tuple(x.shape)}")
            return x.float().unsqueeze(2)
        if x.dim() != 5:
            raise ValueError(f"led_input=flow: expected flows (B, T-1, 2, H, W), "
                             f"got {tuple(x.shape)}")
        x = x.float()
        if not self.zero_frame:
            return x
        return torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)

    def forward(self, x: Tensor, apex: Tensor | None = None) -> Tensor:
        """F_m (B, D) from the frames or flows (``led_input``); ``apex`` is not used."""
        x = self.led(self.sequence(x))
        if self.drop_first:
            x = x[:, 1:]
        x = x.transpose(1, 2)  # (B, C, T, H, W) for Conv3d
        return self.head(self.features(x))


def led_min_frames(drop_first: bool) -> int:
    """The fewest sampled frames T the LED conv stack accepts (conv t=2, then pool t=2), for
    either input: T frames, or T-1 flows behind a zero frame."""
    return 3 + int(drop_first)
