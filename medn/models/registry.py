"""Motion-branch backbones by name (timm-style registry).

A backbone is an ``nn.Module`` class with ``from_config(cfg: MednConfig) -> Backbone`` and
``forward(flows (B, T-1, 2, H, W), apex (B,)) -> (B, D)`` where D = ``cfg.model.dim``.
Register one with ``@register_backbone("name")``; build one with ``create_backbone(name, cfg)``.
Its settings are a config class of the same name in ``medn.config`` (``BackboneConfig``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

from medn.config import MednConfig, backbone_config_classes

_BACKBONES: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type[nn.Module])


def register_backbone(name: str) -> Callable[[M], M]:
    """Class decorator registering a motion backbone under ``name``."""

    def decorate(cls: M) -> M:
        if name in _BACKBONES and _BACKBONES[name] is not cls:
            raise ValueError(f"backbone {name!r} is already registered "
                             f"({_BACKBONES[name].__qualname__})")
        if name not in backbone_config_classes():
            raise TypeError(f"backbone {name!r} has no config class: subclass "
                            "medn.config.BackboneConfig with backbone: Literal[...] naming it")
        if not callable(getattr(cls, "from_config", None)):
            raise TypeError(f"backbone {cls.__qualname__} needs a from_config(cfg) classmethod")
        _BACKBONES[name] = cls
        return cls

    return decorate


def backbone_names() -> list[str]:
    """The registered backbone names, sorted."""
    return sorted(_BACKBONES)


def create_backbone(name: str, cfg: MednConfig) -> nn.Module:
    """Build the backbone registered as ``name`` from ``cfg``."""
    try:
        cls = _BACKBONES[name]
    except KeyError:
        raise ValueError(f"model.motion.backbone: unknown backbone {name!r}; "
                         f"allowed: {', '.join(backbone_names())}") from None
    return cls.from_config(cfg)  # type: ignore[attr-defined]
