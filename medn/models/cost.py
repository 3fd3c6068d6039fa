"""What a configuration's model costs: trainable parameters and forward FLOPs per clip.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one forward pass of one
clip (batch 1, eval mode, zero input: the count depends on shapes only). Convolutions, matrix
products and attention are counted (a multiply-add = 2 FLOPs); element-wise work (norms,
activations, softmax, LED's normaliser) is not, as usual for FLOP tables. torch's counter has
no formula for the CPU kernel of ``scaled_dot_product_attention``, so that op gets the same
formula torch uses for the CUDA kernels (the count is the same on every device).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import flop_counter

from medn.config import MednConfig


@dataclass(frozen=True)
class ModelCost:
    """Trainable ``parameters`` and forward ``flops_per_clip`` of one configuration's model."""

    parameters: int
    flops_per_clip: int

    def as_metrics(self) -> dict[str, float]:
        """``{"params": ..., "flops_per_clip": ...}`` for MLflow metrics."""
        return {"params": float(self.parameters), "flops_per_clip": float(self.flops_per_clip)}


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    """FLOPs of the CPU attention kernel from the (B, heads, L, d) shapes."""
    del args, out_shape, kwargs
    return flop_counter.sdpa_flop_count(query, key, value)


def _custom_mapping() -> dict[Any, Any]:
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _cpu_sdpa_flops} if op is not None else {}


def example_inputs(cfg: MednConfig, batch: int = 1) -> dict[str, torch.Tensor]:
    """Zero inputs shaped like ``cfg``'s clips: ``flows`` (B, T-1, 2, H, W), ``apex`` (B,),
    ``frames`` (B, T, H, W) uint8."""
    t, size = cfg.data.frames, cfg.data.size
    return {"flows": torch.zeros(batch, t - 1, 2, size, size),
            "apex": torch.zeros(batch, dtype=torch.long),
            "frames": torch.zeros(batch, t, size, size, dtype=torch.uint8)}


def flops_per_clip(model: torch.nn.Module, cfg: MednConfig) -> int:
    """Forward FLOPs of ``model`` on one clip shaped like ``cfg`` (the model is left in the
    train/eval mode it was in)."""
    was_training = model.training
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in example_inputs(cfg).items()}
    model.eval()
    try:
        with torch.no_grad(), flop_counter.FlopCounterMode(
                display=False, custom_mapping=_custom_mapping()) as counter:
            model(**inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_cost(cfg: MednConfig, *, num_classes: int, num_aus: int) -> ModelCost:
    """The parameter count and FLOPs per clip of ``cfg``'s model (built on the CPU; the global
    torch RNG is left as it was)."""
    from medn.models import build_model, count_parameters

    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg, num_classes=num_classes, num_aus=num_aus)
    return ModelCost(parameters=count_parameters(model)["total"],
                     flops_per_clip=flops_per_clip(model, cfg))
