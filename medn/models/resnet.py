"""ResNet-18/34 (He et al. 2016, BasicBlock) over the single onset->apex flow (paper Table VII).

Written here (no torchvision): 2 input channels (u, v), base width ``model.motion.width``
(64 in the original ResNet), the usual 7x7/2 stem and 3x3/2 max-pool, four stages of widths
w, 2w, 4w, 8w, global average pooling and a linear map to F_m (B, D).
"""

from __future__ import annotations

from torch import Tensor, nn

from medn.config import MednConfig
from medn.models.layers import select_apex
from medn.models.registry import register_backbone


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x: Tensor) -> Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A BasicBlock ResNet mapping (B, C, H, W) to (B, out_dim)."""

    def __init__(self, layers: tuple[int, int, int, int], *, width: int, out_dim: int,
                 in_channels: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1))
        stages: list[nn.Module] = []
        channels = width
        for index, blocks in enumerate(layers):
            out_channels = width * 2 ** index
            stride = 1 if index == 0 else 2
            for b in range(blocks):
                stages.append(BasicBlock(channels, out_channels, stride if b == 0 else 1))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, out_dim)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, out_dim)."""
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


class _ApexResNet(nn.Module):
    """A ResNet over the onset->apex flow ``flows[b, apex[b]]``."""

    layers: tuple[int, int, int, int] = (2, 2, 2, 2)

    def __init__(self, *, dim: int, width: int) -> None:
        super().__init__()
        self.net = ResNet(self.layers, width=width, out_dim=dim)

    @classmethod
    def from_config(cls, cfg: MednConfig) -> _ApexResNet:
        """Build from ``cfg.model.dim`` and ``cfg.model.motion.width``."""
        return cls(dim=cfg.model.dim, width=cfg.model.motion.width)

    def forward(self, flows: Tensor, apex: Tensor) -> Tensor:
        """F_m (B, D) from the apex flow of each clip in ``flows`` (B, T', 2, H, W)."""
        return self.net(select_apex(flows, apex).float())


@register_backbone("resnet18")
class ResNet18Backbone(_ApexResNet):
    """ResNet-18: BasicBlock x [2, 2, 2, 2]."""

    layers = (2, 2, 2, 2)


@register_backbone("resnet34")
class ResNet34Backbone(_ApexResNet):
    """ResNet-34: BasicBlock x [3, 4, 6, 3]."""

    layers = (3, 4, 6, 3)
