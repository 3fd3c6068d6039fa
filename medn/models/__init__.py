"""MEDN models: the whole network (``build_model``), its configuration check, and the parts.

Backbones are looked up by name in ``medn.models.registry`` (``led``, ``resnet18``, ``resnet34``,
``vit_b16``); importing this package imports every module of it, which registers them. A new
backbone is its module here (``@register_backbone("name")``) and its config class (a subclass
of ``medn.config.BackboneConfig``, which joins ``model.motion``'s union by itself).
"""

from __future__ import annotations

import importlib
import pkgutil

from medn.config import ConfigError, MednConfig

for _module in pkgutil.iter_modules(__path__):  # register every backbone module's classes
    importlib.import_module(f"{__name__}.{_module.name}")

from medn.models.cofm import CoFM, WeightedSumFusion, create_fusion  # noqa: E402
from medn.models.cost import ModelCost, flops_per_clip, model_cost  # noqa: E402
from medn.models.led import LEDBackbone, LEDFilter, led_min_frames  # noqa: E402
from medn.models.medn import MEDN, MednOutput  # noqa: E402
from medn.models.registry import (  # noqa: E402
    backbone_names,
    create_backbone,
    register_backbone,
)
from medn.models.sevit import SEVit, SparseVideoViT  # noqa: E402
from medn.models.vit import VideoViT, ViT  # noqa: E402

__all__ = [
    "MEDN", "MednOutput", "CoFM", "WeightedSumFusion", "LEDBackbone", "LEDFilter", "SEVit",
    "SparseVideoViT", "ViT", "VideoViT", "build_model", "validate_model_config",
    "backbone_names", "create_backbone", "register_backbone", "create_fusion",
    "count_parameters", "ModelCost", "model_cost", "flops_per_clip", "led_min_frames",
]


def _divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


def _heads_problem(field: str, heads: int, width_field: str, width: int) -> str | None:
    if width % heads:
        return (f"{field}: {heads} heads do not divide {width_field} {width}; "
                f"allowed: {_divisors(width)}")
    return None


def model_config_problems(cfg: MednConfig) -> list[str]:
    """Every reason ``cfg`` cannot build a MEDN, one line each, naming the field (empty if OK)."""
    m, size = cfg.model, cfg.data.size
    problems: list[str] = []
    e = m.emotion
    if size % e.patch_size:
        problems.append(f"model.emotion.patch_size: {e.patch_size} does not divide data.size "
                        f"{size}; allowed: {_divisors(size)}")
    else:
        grid = size // e.patch_size
        allowed = _divisors(grid)
        for rate in e.sparsity_rates:
            if grid % rate:
                problems.append(
                    f"model.emotion.sparsity_rates: rate {rate} does not divide the "
                    f"{grid}x{grid} token grid (data.size {size} / patch_size {e.patch_size}); "
                    f"allowed: {allowed}")
    problems.append(_heads_problem("model.emotion.heads", e.heads, "model.dim", m.dim) or "")
    f = m.fusion
    if f.kind == "cofm":
        if m.dim % f.tokens:
            problems.append(f"model.fusion.tokens: {f.tokens} tokens do not divide model.dim "
                            f"{m.dim}; allowed: {_divisors(m.dim)}")
        else:
            width = m.dim // f.tokens
            problems.append(_heads_problem("model.fusion.heads", f.heads,
                                           "the token width model.dim / model.fusion.tokens",
                                           width) or "")
    mo = m.motion
    problems += mo.problems(cfg)
    if mo.backbone not in backbone_names():
        problems.append(f"model.motion.backbone: no model is registered for {mo.backbone!r}; "
                        f"registered: {', '.join(backbone_names())}")
    return [p for p in problems if p]


def validate_model_config(cfg: MednConfig) -> None:
    """Raise ``ConfigError`` listing every model-configuration problem (before any training)."""
    problems = model_config_problems(cfg)
    if problems:
        raise ConfigError("invalid model configuration:\n  " + "\n  ".join(problems))


def build_model(cfg: MednConfig, *, num_classes: int, num_aus: int) -> MEDN:
    """The MEDN network for ``cfg`` (``cfg.model``, T = ``cfg.data.frames``, ``cfg.data.size``).

    Validates the configuration first (``ConfigError``). Parameters are initialised from the
    current torch RNG state: seed it (``torch.manual_seed``) for a reproducible model.
    """
    validate_model_config(cfg)
    if num_classes < 2:
        raise ConfigError(f"num_classes: need at least 2 emotion classes, got {num_classes}")
    if num_aus < 1:
        raise ConfigError(f"num_aus: the motion branch is supervised by AU detection and needs "
                          f"at least 1 AU, got {num_aus} (lower data.au_min_count?)")
    return MEDN(motion=create_backbone(cfg.model.motion.backbone, cfg),
                emotion=SEVit.from_config(cfg), fusion=create_fusion(cfg), dim=cfg.model.dim,
                num_classes=num_classes, num_aus=num_aus, dropout=cfg.model.dropout,
                orth_eps=cfg.loss.orth_eps, head_norm=cfg.model.head_norm,
                input_norm=cfg.model.input_norm, input_scale=cfg.model.input_scale,
                feature_norm=cfg.model.feature_norm)


def count_parameters(model: MEDN) -> dict[str, int]:
    """Trainable parameter counts: ``{"motion", "emotion", "fusion", "head", "total"}``."""

    def n(module) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad)

    motion = sum(p.numel() for p in model.motion_parameters())
    counts = {"motion": motion, "emotion": n(model.emotion), "fusion": n(model.fusion),
              "head": n(model.head_norm) + n(model.classifier)}
    counts["total"] = n(model)
    return counts
