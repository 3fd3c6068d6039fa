"""Benchmark: generate + prepare the synthetic dataset, cold and warm cache; TV-L1 settings.

Run: ``.venv/bin/python benchmarks/bench_prepare_synth.py [--workers N] [--skip-tvl1]``.

Prints, side by side on this machine:
1. TV-L1 settings on synthetic clips whose true motion is known (``displacement_fields``): time per
   frame pair and end-point error (EPE, px) where the face moves and elsewhere, at 48 and 144 px;
2. ``synth`` profile ``quick`` (48 px) generated + prepared with a cold cache, then warm;
3. ``full``-like settings (144 px) on a few clips, cold then warm.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np

from medn.config import load_config
from medn.data.dataset import prepare_clips, prepare_dataset
from medn.data.flow import DEFAULT_FLOW, FlowParams, sequence_flow
from medn.data.synth import displacement_fields, generate_records, render_clip

SETTINGS: dict[str, FlowParams] = {
    "opencv default (5 scales, 5 warps, eps 0.01)": FlowParams(
        nscales=5, warps=5, epsilon=0.01),
    "medn default": DEFAULT_FLOW,
    "3 scales, 3 warps, eps 0.01": FlowParams(nscales=3, warps=3, epsilon=0.01),
    "3 scales, 3 warps, eps 0.02": FlowParams(nscales=3, warps=3, epsilon=0.02),
    "3 scales, 3 warps, eps 0.05": FlowParams(nscales=3, warps=3, epsilon=0.05),
    "3 scales, 2 warps, eps 0.03": FlowParams(nscales=3, warps=2, epsilon=0.03),
    "2 scales, 2 warps, eps 0.03": FlowParams(nscales=2, warps=2, epsilon=0.03),
    "3 scales, 3 warps, eps 0.03, 10 inner": FlowParams(inner_iterations=10),
}


def true_flow(record, size: int, num_frames: int) -> np.ndarray:
    """The injected motion of frames 1.. against frame 0 at ``size`` px: (T-1, 2, size, size)."""
    res = max(size, 144)
    fields = displacement_fields(record, res, num_frames)
    fields = fields[1:] - fields[:1]
    if res != size:
        fields = np.stack([[cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
                            for c in f] for f in fields]) * (size / res)
    return fields


def bench_tvl1(size: int, clips: int) -> None:
    """Time and EPE of each TV-L1 setting on ``clips`` synthetic clips at ``size`` px."""
    cv2.setNumThreads(1)
    records = generate_records("quick", None, 0)[:clips]
    data = [(render_clip(r, size, 8, 0), true_flow(r, size, 8)) for r in records]
    print(f"\nTV-L1 at {size} px, {clips} clips x 7 pairs, one thread "
          f"(EPE in px; 'moving' = true motion > 0.1 px)")
    print(f"{'setting':45s} {'ms/pair':>8s} {'EPE moving':>11s} {'EPE still':>10s} "
          f"{'x default':>9s}")
    base = None
    for name, params in SETTINGS.items():
        start = time.perf_counter()
        flows = [sequence_flow(frames, params) for frames, _ in data]
        per_pair = (time.perf_counter() - start) / (7 * len(data)) * 1000
        moving, still = [], []
        for flow, (_, truth) in zip(flows, data, strict=True):
            err = np.hypot(*(flow - truth).transpose(1, 0, 2, 3))
            mask = np.hypot(*truth.transpose(1, 0, 2, 3)) > 0.1
            moving.append(err[mask])
            still.append(err[~mask])
        base = base or per_pair
        print(f"{name:45s} {per_pair:8.1f} {np.concatenate(moving).mean():11.3f} "
              f"{np.concatenate(still).mean():10.3f} {base / per_pair:9.2f}")


def bench_prepare(profile: str, overrides: list[str], workers: int, label: str,
                  limit: int | None = None) -> None:
    """Generate + prepare a synth profile in a fresh cache (cold), then again (warm)."""
    with tempfile.TemporaryDirectory() as cache:
        cfg = load_config(profile=profile,
                          overrides=[f"data.cache_dir={cache}", *overrides]).data
        if limit is not None:
            cfg = replace_subjects(cfg, limit)
        for run in ("cold", "warm"):
            start = time.perf_counter()
            if limit is None:
                ds = prepare_dataset(cfg, workers=workers)
                n = len(ds)
            else:
                prep = prepare_clips(cfg, workers=workers)
                n = len(prep.outcomes)
            seconds = time.perf_counter() - start
            print(f"{label:40s} {run}: {n:4d} clips in {seconds:7.2f} s "
                  f"= {n / seconds:8.1f} clips/s ({workers} workers)")


def replace_subjects(cfg, subjects: int):
    """``cfg`` with the synthetic subject count set to ``subjects`` (a few-clip full-like run)."""
    return cfg.model_copy(update={"synth_subjects": subjects})


def main() -> None:
    """Run the benchmarks and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-tvl1", action="store_true")
    parser.add_argument("--tvl1-clips", type=int, default=6)
    parser.add_argument("--full-subjects", type=int, default=2,
                        help="subjects of the 144 px full-like run (about 9 clips each)")
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}, workers: {args.workers}")
    if not args.skip_tvl1:
        bench_tvl1(48, args.tvl1_clips)
        bench_tvl1(144, max(2, args.tvl1_clips // 3))
    print()
    bench_prepare("quick", [], args.workers, "synth quick (48 px), generate+prepare")
    bench_prepare("paper", ["data.synth_profile=full"], args.workers,
                  f"synth full, {args.full_subjects} subjects (144 px)",
                  limit=args.full_subjects)


if __name__ == "__main__":
    main()
