"""TV-L1 optical flow (OpenCV contrib ``DualTVL1OpticalFlow``) of each frame vs the first.

Parameters (``FlowParams``; every field enters the cache key). On noisy frames TV-L1 rarely meets
its stopping tolerance, so OpenCV's defaults (5 scales, 5 warps, epsilon 0.01) cost ~0.2-0.8 s
per 144 px pair on one core. Micro-expression motion is a few pixels, so a shallow pyramid
suffices. ``benchmarks/bench_prepare_synth.py`` measures time and end-point error (EPE) against
the known motion of synthetic clips; the defaults here (3 scales, 3 warps, epsilon 0.03, the
rest OpenCV's) ran ~5x faster than OpenCV's defaults at 144 px with the same EPE where the face
moves (~0.13-0.15 px) and ~0.01 px more EPE on still skin (numbers in docs/data.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class FlowParams:
    """The TV-L1 settings (names as in OpenCV's ``DualTVL1OpticalFlow_create``)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    nscales: int = 3
    warps: int = 3
    epsilon: float = 0.03
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8
    gamma: float = 0.0
    median_filtering: int = 5

    def as_dict(self) -> dict[str, float | int]:
        """The parameters as a plain dict (for cache keys and logs)."""
        return asdict(self)


DEFAULT_FLOW = FlowParams()


@lru_cache(maxsize=8)
def _tvl1(params: FlowParams) -> cv2.optflow.DualTVL1OpticalFlow:
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=params.tau, lambda_=params.lambda_, theta=params.theta, nscales=params.nscales,
        warps=params.warps, epsilon=params.epsilon, innnerIterations=params.inner_iterations,
        outerIterations=params.outer_iterations, scaleStep=params.scale_step,
        gamma=params.gamma, medianFiltering=params.median_filtering, useInitialFlow=False)


def tvl1_flow(first: np.ndarray, frame: np.ndarray,
              params: FlowParams = DEFAULT_FLOW) -> np.ndarray:
    """TV-L1 flow ``(H, W, 2)`` float32 from uint8 grayscale ``first`` to ``frame``.

    ``first(x) ~ frame(x + flow(x))``: a feature moving right gives a positive u (channel 0).
    """
    if first.shape != frame.shape or first.ndim != 2:
        raise ValueError(f"flow needs two grayscale frames of one shape, got {first.shape} "
                         f"and {frame.shape}")
    return _tvl1(params).calc(first, frame, None)


def sequence_flow(frames: np.ndarray, params: FlowParams = DEFAULT_FLOW) -> np.ndarray:
    """Flow of every frame against the first: ``(T, H, W)`` uint8 -> ``(T-1, 2, H, W)`` float32."""
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"expected (T>=2, H, W) grayscale frames, got shape {frames.shape}")
    first = np.ascontiguousarray(frames[0])
    flows = [tvl1_flow(first, np.ascontiguousarray(f), params) for f in frames[1:]]
    return np.stack(flows).transpose(0, 3, 1, 2).astype(np.float32)
