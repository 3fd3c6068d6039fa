"""Each synthetic subject's face: identity parameters, landmarks, and the neutral rendered image.

The face is drawn procedurally in canonical coordinates (fractions of the aligned crop) from
soft shapes: a shaded skin ellipse with band-limited texture, hair, brows, almond eyes with irises,
nose shading and nostrils, lips and mouth line, nasolabial folds, chin shadow. A subject's head
pose (roll, small yaw, scale, shift) maps canonical to pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from medn.data.synth.seeding import stable_rng

REFERENCE_SIZE = 144  # the size amplitudes and texture scales are specified at


@dataclass(frozen=True)
class FaceIdentity:
    """Everything that makes one subject's face its own (drawn once per subject and seed)."""

    key: str  # "seed/subject", seeds the texture
    tone: float  # skin grey level (0-255)
    face_rx: float
    face_ry: float
    eye_dx: float  # half the distance between eye centres
    eye_y: float
    eye_w: float
    eye_h: float
    brow_y: float  # above the eye centre
    brow_arch: float
    brow_thick: float
    brow_dark: float
    nose_y: float  # nostril height
    nose_w: float
    mouth_y: float
    mouth_w: float  # half width
    lip_h: float
    mouth_curve: float
    hairline: float
    hair_level: float
    light: tuple[float, float]  # lighting gradient (x, y)
    roll_deg: float
    yaw: float
    scale: float
    shift: tuple[float, float]
    landmarks: dict[str, tuple[float, float]] = field(compare=False, hash=False, repr=False)


def _landmarks(p: dict[str, float]) -> dict[str, tuple[float, float]]:
    """Landmarks of the image-right (subject's left) side; AUs mirror them for the other side."""
    ex, ey = 0.5 + p["eye_dx"], p["eye_y"]
    by = ey - p["brow_y"]
    mx, my = 0.5 + p["mouth_w"], p["mouth_y"]
    return {
        "brow_inner": (0.5 + 0.07, by + 0.005),
        "brow_mid": (0.5 + 0.11, by),
        "brow_outer": (ex + 0.08, by - p["brow_arch"] * 0.5),
        "upper_lid": (ex, ey - p["eye_h"]),
        "lower_lid": (ex, ey + p["eye_h"] * 1.1),
        "eye": (ex, ey),
        "cheek": (ex + 0.01, ey + 0.12),
        "nose_side": (0.5 + p["nose_w"] * 0.9, p["nose_y"] - 0.06),
        "mouth_corner": (mx, my),
        "upper_lip": (0.5, my - p["lip_h"] * 0.8),
        "lower_lip": (0.5, my + p["lip_h"] * 1.2),
        "chin": (0.5, my + 0.13),
    }


def subject_identity(subject: str, synth_seed: int = 0) -> FaceIdentity:
    """The face of ``subject`` in the dataset generated with ``synth_seed`` (deterministic)."""
    rng = stable_rng("identity", synth_seed, subject)
    u = rng.uniform
    p = {
        "tone": u(95, 190), "face_rx": u(0.37, 0.43), "face_ry": u(0.49, 0.55),
        "eye_dx": u(0.155, 0.185), "eye_y": u(0.38, 0.42), "eye_w": u(0.065, 0.082),
        "eye_h": u(0.022, 0.032), "brow_y": u(0.075, 0.1), "brow_arch": u(0.005, 0.03),
        "brow_thick": u(0.015, 0.026), "brow_dark": u(0.35, 0.65), "nose_y": u(0.6, 0.64),
        "nose_w": u(0.04, 0.055), "mouth_y": u(0.73, 0.77), "mouth_w": u(0.095, 0.125),
        "lip_h": u(0.018, 0.028), "mouth_curve": u(-0.012, 0.012), "hairline": u(0.1, 0.2),
        "hair_level": u(0.15, 0.5),
    }
    return FaceIdentity(
        key=f"{synth_seed}/{subject}", light=(u(-0.25, 0.25), u(-0.15, 0.1)),
        roll_deg=u(-5, 5), yaw=u(-0.025, 0.025), scale=u(0.95, 1.05),
        shift=(u(-0.02, 0.02), u(-0.02, 0.02)), landmarks=_landmarks(p), **p)


def canonical_to_pixel(identity: FaceIdentity, points: np.ndarray, res: int) -> np.ndarray:
    """Map canonical points ``(..., 2)`` to pixel coordinates of a ``res`` image (head pose)."""
    theta = np.deg2rad(identity.roll_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    q = np.asarray(points, dtype=np.float64)
    q = q.copy()
    q[..., 0] = q[..., 0] + identity.yaw * np.exp(-((q[..., 0] - 0.5) / 0.25) ** 2)
    centred = (q - 0.5) * identity.scale
    out = centred @ rot.T + 0.5 + np.asarray(identity.shift)
    return out * res - 0.5


def _pixel_to_canonical(identity: FaceIdentity, res: int) -> tuple[np.ndarray, np.ndarray]:
    theta = np.deg2rad(identity.roll_deg)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    grid = (np.arange(res, dtype=np.float64) + 0.5) / res
    px, py = np.meshgrid(grid, grid)
    pts = np.stack([px, py], -1) - 0.5 - np.asarray(identity.shift)
    q = pts @ rot / identity.scale + 0.5  # inverse rotation (rot is orthonormal)
    x = q[..., 0]
    x = x - identity.yaw * np.exp(-((x - 0.5) / 0.25) ** 2)  # first-order inverse of the yaw
    return x, q[..., 1]


def _blurred_noise(rng: np.random.Generator, res: int, sigma_ref: float) -> np.ndarray:
    noise = rng.standard_normal((res, res)).astype(np.float32)
    sigma = sigma_ref * res / REFERENCE_SIZE
    out = cv2.GaussianBlur(noise, (0, 0), sigma)
    return out / (out.std() + 1e-8)


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """A soft indicator of ``d < 0`` with a transition ``width`` wide."""
    return 1.0 / (1.0 + np.exp(np.clip(d / max(width, 1e-6), -40, 40)))


def _curve_distance(x: np.ndarray, y: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                    margin: float = 0.08) -> np.ndarray:
    """Distance of every pixel to a polyline sampled densely at ``(xs, ys)`` (computed within
    ``margin`` of the curve's bounding box; ``margin`` beyond it)."""
    out = np.full(x.shape, margin, dtype=np.float64)
    near = ((x > xs.min() - margin) & (x < xs.max() + margin) & (y > ys.min() - margin)
            & (y < ys.max() + margin))
    px, py = x[near], y[near]
    d2 = (px[None] - xs[:, None]) ** 2 + (py[None] - ys[:, None]) ** 2
    out[near] = np.minimum(np.sqrt(d2.min(axis=0)), margin)
    return out


@lru_cache(maxsize=256)
def render_face(identity: FaceIdentity, res: int) -> np.ndarray:
    """The subject's neutral face as a float32 ``(res, res)`` grey image (0-255), cached."""
    x, y = _pixel_to_canonical(identity, res)
    rng = stable_rng("texture", identity.key, res)
    px = 1.0 / res  # one pixel in canonical units, the minimal edge softness
    edge = max(px, 0.004)
    f = identity

    # Face ellipse, shading and lighting.
    fx, fy = (x - 0.5) / f.face_rx, (y - 0.53) / f.face_ry
    rho = np.sqrt(fx**2 + fy**2)
    face = _soft(rho - 1.0, 0.02)
    shade = 0.7 + 0.3 * np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0))
    light = 1.0 + f.light[0] * (x - 0.5) * 2 + f.light[1] * (y - 0.5) * 2
    coarse, fine = _blurred_noise(rng, res, 6.0), _blurred_noise(rng, res, 1.2)
    skin = f.tone * shade * light * (1.0 + 0.03 * coarse + 0.035 * fine)

    background = 45.0 + 25.0 * _blurred_noise(rng, res, 10.0) + 20.0 * (1 - y)
    img = face * skin + (1 - face) * background

    # Hair above the hairline (inside the face ellipse), with strands.
    strands = cv2.GaussianBlur(rng.standard_normal((res, res)).astype(np.float32), (0, 0),
                               sigmaX=0.6 * res / REFERENCE_SIZE, sigmaY=4 * res / REFERENCE_SIZE)
    hairline = f.hairline + 0.06 * ((x - 0.5) / 0.4) ** 2
    hair = _soft(y - hairline, 0.012)
    hair_tone = f.tone * f.hair_level * (1 + 0.25 * strands / (strands.std() + 1e-8))
    img = hair * hair_tone + (1 - hair) * img

    darken = np.zeros_like(img)
    lighten = np.zeros_like(img)
    for sign in (1.0, -1.0):
        ex, ey = 0.5 + sign * f.eye_dx, f.eye_y
        # Eye socket shadow and eyelid crease.
        socket = np.exp(-(((x - ex) / (f.eye_w * 1.5)) ** 2 + ((y - ey + 0.01) / 0.05) ** 2))
        darken += 0.12 * socket
        # Almond eye: sclera, iris, pupil, dark upper lid line.
        ax = (x - ex) / f.eye_w
        half_h = f.eye_h * np.sqrt(np.clip(1 - ax**2, 0, 1))
        inside = _soft(np.abs(y - ey) - half_h, edge * 0.6) * _soft(np.abs(ax) - 1, 0.05)
        iris_r = f.eye_h * 1.05
        iris = _soft(np.hypot(x - ex, y - ey) - iris_r, edge * 0.6)
        pupil = _soft(np.hypot(x - ex, y - ey) - iris_r * 0.45, edge * 0.5)
        img = img * (1 - inside) + inside * (f.tone * 1.05 + 30 - iris * 0.55 * f.tone
                                             - pupil * 0.3 * f.tone)
        lid = np.exp(-(((y - (ey - half_h)) / max(edge * 1.2, 0.006)) ** 2)) * (np.abs(ax) < 1.1)
        darken += 0.45 * lid
        crease = np.exp(-(((y - (ey - f.eye_h - 0.018)) / 0.006) ** 2)) * np.exp(-ax**2 / 0.8)
        darken += 0.15 * crease
        # Brow: an arc from the inner to the outer end, tapering.
        t = np.linspace(0, 1, 28)
        bx = 0.5 + sign * (0.065 + t * (f.eye_dx + 0.1 - 0.065))
        by = ey - f.brow_y - f.brow_arch * np.sin(np.pi * np.clip(t * 1.2, 0, 1)) + 0.01 * t
        dist = _curve_distance(x, y, bx, by)
        tx = np.clip((x - 0.5) * sign / (f.eye_dx + 0.1), 0, 1)
        thick = f.brow_thick * (1.1 - 0.5 * tx)
        brow = _soft(dist - thick, edge) * (1 + 0.12 * fine)
        darken += f.brow_dark * np.clip(brow, 0, 1.2)
        # Nostril and nose-side shading, nasolabial fold, cheek highlight.
        nostril = np.exp(-(((x - 0.5 - sign * f.nose_w * 0.55) / 0.016) ** 2
                           + ((y - f.nose_y) / 0.009) ** 2))
        darken += 0.55 * nostril
        side = np.exp(-(((x - 0.5 - sign * (0.028 + 0.015 * (y - 0.42) / 0.2)) / 0.01) ** 2))
        darken += 0.06 * side * _soft(f.eye_y + 0.02 - y, 0.02) * _soft(y - f.nose_y + 0.01, 0.02)
        t = np.linspace(0, 1, 24)
        fold_x = 0.5 + sign * (f.nose_w + 0.025 + t * (f.mouth_w + 0.03 - f.nose_w - 0.025)
                               + 0.025 * np.sin(np.pi * t))
        fold_y = f.nose_y - 0.01 + t * (f.mouth_y + 0.03 - f.nose_y)
        fade = np.sin(np.pi * np.clip((y - f.nose_y + 0.01) / (f.mouth_y - f.nose_y + 0.05),
                                      0, 1))
        darken += 0.07 * fade * np.exp(-(_curve_distance(x, y, fold_x, fold_y) / 0.01) ** 2)
        lighten += 0.06 * np.exp(-(((x - ex) / 0.07) ** 2 + ((y - ey - 0.12) / 0.05) ** 2))

    # Nose tip highlight and the shadow below it.
    lighten += 0.1 * np.exp(-(((x - 0.5) / 0.025) ** 2 + ((y - f.nose_y + 0.025) / 0.02) ** 2))
    darken += 0.12 * np.exp(-(((x - 0.5) / 0.04) ** 2 + ((y - f.nose_y - 0.012) / 0.008) ** 2))
    # Lips: darker region, dark mouth line, lower-lip highlight.
    mx = (x - 0.5) / f.mouth_w
    line_y = f.mouth_y - f.mouth_curve * (mx**2)
    lip_shape = np.sqrt(np.clip(1 - mx**2, 0, 1))
    upper = _soft(np.maximum(line_y - y - f.lip_h * 0.9 * lip_shape, y - line_y), edge)
    lower = _soft(np.maximum(y - line_y - f.lip_h * 1.3 * lip_shape, line_y - y), edge)
    lips = np.clip(upper + lower, 0, 1) * _soft(np.abs(mx) - 1, 0.04)
    darken += 0.38 * lips
    mouth_line = np.exp(-(((y - line_y) / max(edge, 0.004)) ** 2)) * _soft(np.abs(mx) - 1.0, 0.06)
    darken += 0.4 * mouth_line
    lighten += 0.08 * np.exp(-(((x - 0.5) / (f.mouth_w * 0.5)) ** 2
                                 + ((y - line_y - f.lip_h * 0.8) / 0.006) ** 2))
    # Chin shadow under the lower lip.
    darken += 0.1 * np.exp(-(((x - 0.5) / 0.05) ** 2 + ((y - f.mouth_y - 0.06) / 0.012) ** 2))

    img = img * np.clip(1 - darken * face, 0.05, 1) * (1 + lighten * face)
    out = np.clip(img, 0, 255).astype(np.float32)
    out.setflags(write=False)
    return out
