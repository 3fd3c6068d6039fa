"""Forward+backward time of one training batch of MEDN, per profile and motion backbone.

Every configuration is timed side by side in the same process (best of ``--reps`` after a warm-up)
and printed with its ratio to the ``led`` backbone of the same profile, plus parameter counts.

    .venv/bin/python benchmarks/bench_model.py    # smoke, quick (batch 32), paper (batch 8)
    .venv/bin/python benchmarks/bench_model.py --profiles quick --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch

from medn.config import load_config
from medn.losses import medn_loss
from medn.models import build_model, count_parameters

BATCH = {"smoke": 16, "quick": 32, "quick-paper": 32, "stable": 8, "paper": 8}
BACKBONES = ("led", "resnet18", "resnet34", "vit_b16")


def time_step(profile: str, backbone: str, batch: int, reps: int) -> tuple[float, dict[str, int]]:
    """Best forward+backward seconds of one batch, and the model's parameter counts."""
    cfg = load_config(profile=profile, overrides=[f"model.motion.backbone={backbone}"])
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3, num_aus=8)
    frames, size = cfg.data.frames - 1, cfg.data.size
    flows = torch.randn(batch, frames, 2, size, size)
    apex = torch.randint(0, frames, (batch,))
    # LED on the frames (the paper profile) reads the T aligned grayscale frames too
    video = (torch.randint(0, 256, (batch, cfg.data.frames, size, size), dtype=torch.uint8)
             if model.uses_frames else None)
    labels = torch.arange(batch) % 3
    aus = (torch.rand(batch, 8) > 0.5).float()
    best = float("inf")
    for rep in range(reps + 1):
        start = time.perf_counter()
        model.zero_grad(set_to_none=True)
        medn_loss(model(flows, apex, frames=video), labels, aus, cfg.loss).total.backward()
        if rep:  # the first pass is a warm-up
            best = min(best, time.perf_counter() - start)
    return best, count_parameters(model)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", nargs="+", default=["smoke", "quick", "paper"])
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU; best of {args.reps}")
    print(f"{'profile':11} {'backbone':9} {'batch':>5} {'ms/batch':>9} {'x led':>6} "
          f"{'params':>11} {'motion':>11}")
    for profile in args.profiles:
        reps = 1 if profile in ("paper", "stable") else args.reps
        base = None
        for backbone in args.backbones:
            seconds, counts = time_step(profile, backbone, BATCH[profile], reps)
            base = base or (seconds if backbone == "led" else None)
            ratio = f"{seconds / base:6.2f}" if base else "     -"
            print(f"{profile:11} {backbone:9} {BATCH[profile]:5d} {seconds * 1e3:9.1f} {ratio} "
                  f"{counts['total']:11,d} {counts['motion']:11,d}")


if __name__ == "__main__":
    main()
