"""Render a synthetic clip: the subject's face warped by its AU bumps frame by frame, plus noise.

Rendering happens at ``max(size, 144)`` px (so motion and texture are specified once, at 144 px)
and is area-downsampled to ``size``; sensor noise and illumination flicker are added at ``size``.
"""

from __future__ import annotations

import cv2
import numpy as np

from medn.data.records import ClipRecord
from medn.data.synth.catalogue import MAX_PEAK_PX, MIN_PEAK_PX
from medn.data.synth.dynamics import ClipDynamics, clip_dynamics, synth_seed_of
from medn.data.synth.face import REFERENCE_SIZE, canonical_to_pixel, render_face, subject_identity
from medn.data.synth.seeding import stable_rng

NOISE_SIGMA = 1.2  # grey levels of Gaussian sensor noise per pixel and frame
FLICKER_SIGMA = 0.004  # relative std of the per-frame global illumination gain


def frame_numbers(record: ClipRecord, num_frames: int) -> np.ndarray:
    """The ``num_frames`` frame numbers sampled uniformly from onset to offset (first = onset)."""
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2, got {num_frames}")
    grid = np.linspace(record.onset, record.offset, num_frames)
    return np.floor(grid + 0.5).astype(np.int64)


def frame_times(record: ClipRecord, num_frames: int) -> np.ndarray:
    """The clip times (0 = onset, 1 = offset) of the sampled frames."""
    return (frame_numbers(record, num_frames) - record.onset) / (record.offset - record.onset)


def _bumps(dynamics: ClipDynamics, record: ClipRecord, res: int) -> np.ndarray:
    """``(C, 2, res, res)``: each component's field at full activation, pixels at ``res``."""
    identity = subject_identity(record.subject, synth_seed_of(record))
    theta = np.deg2rad(identity.roll_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    coords = np.arange(res, dtype=np.float32)
    out = np.zeros((len(dynamics.components), 2, res, res), dtype=np.float32)
    px_scale = res / REFERENCE_SIZE
    for i, comp in enumerate(dynamics.components):
        ax, ay = identity.landmarks[comp.anchor]
        if comp.side == "R":
            ax = 1.0 - ax
        cx, cy = canonical_to_pixel(identity, np.array([ax, ay]), res)
        radius = comp.radius * res * identity.scale
        gx = np.exp(-((coords - cx) ** 2) / (2 * radius**2))
        gy = np.exp(-((coords - cy) ** 2) / (2 * radius**2))
        bump = np.outer(gy, gx)
        direction = rot @ np.asarray(comp.direction, dtype=np.float64)
        direction /= np.linalg.norm(direction)
        out[i, 0] = bump * (direction[0] * comp.amplitude_px * px_scale)
        out[i, 1] = bump * (direction[1] * comp.amplitude_px * px_scale)
    if len(out):
        apex = np.hypot(out[:, 0].sum(0), out[:, 1].sum(0)).max() / px_scale
        # Keep the apex field a micro-expression: its peak within [MIN_PEAK_PX, MAX_PEAK_PX].
        target = np.clip(apex, MIN_PEAK_PX, MAX_PEAK_PX)
        out *= target / max(apex, 1e-9)
    return out


def displacement_fields(record: ClipRecord, res: int, num_frames: int) -> np.ndarray:
    """The injected motion ``(num_frames, 2, res, res)`` (dx, dy in pixels at ``res``) of each
    sampled frame relative to the neutral face; frame 0 (onset) is all zeros."""
    dynamics = clip_dynamics(record)
    bumps = _bumps(dynamics, record, res)
    act = dynamics.activation(frame_times(record, num_frames)).astype(np.float32)
    if bumps.shape[0] == 0:
        return np.zeros((num_frames, 2, res, res), dtype=np.float32)
    out = np.zeros((num_frames, 2, res, res), dtype=np.float32)
    for c in range(bumps.shape[0]):  # a few bumps: faster than a BLAS call with k = C
        out += act[:, c, None, None, None] * bumps[c][None]
    return out


def render_clip(record: ClipRecord, size: int, num_frames: int, seed: int = 0, *,
                noise: bool = True) -> np.ndarray:
    """The clip as ``(num_frames, size, size)`` uint8 grey frames, uniformly sampled from onset to
    offset (first = onset), pre-aligned; deterministic from ``(seed, record)``.

    ``seed`` drives the sensor noise and illumination flicker (``noise=False`` leaves both out,
    for measuring the injected motion); the face and its motion come from the record.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 px, got {size}")
    res = max(size, REFERENCE_SIZE)
    identity = subject_identity(record.subject, synth_seed_of(record))
    face = render_face(identity, res)
    fields = displacement_fields(record, res, num_frames)
    grid = np.arange(res, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    rng = stable_rng("sensor", seed, synth_seed_of(record), record.key)
    frames = np.empty((num_frames, size, size), dtype=np.uint8)
    for i in range(num_frames):
        # Backward warp: the content at x - d(x) appears at x, i.e. it moves by d.
        warped = cv2.remap(face, gx - fields[i, 0], gy - fields[i, 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT101)
        if res != size:
            warped = cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)
        if noise:
            warped = warped * (1.0 + rng.normal(0.0, FLICKER_SIGMA))
            warped = warped + rng.normal(0.0, NOISE_SIGMA, warped.shape).astype(np.float32)
        frames[i] = np.clip(np.rint(warped), 0, 255).astype(np.uint8)
    return frames
