"""Face detection (dlib), 68 landmarks, and the one similarity transform that aligns a clip.

The transform is fitted once per clip on its first sampled frame and applied to every frame, so
head jitter between frames is kept out of the alignment (it shows in the flow as it really is).

Crop rule (``ALIGNMENT_VERSION`` names it in the cache key), in the eye-levelled frame (rotated
so the eye centres, means of landmarks 36-41 and 42-47, are level): the square around the box of
the 68 landmarks (brows to chin, jaw to jaw), its side the box's longer side plus
``CROP_MARGIN`` (10%) of it on each side, centred on the box. Where that square runs off the
image (pre-cropped releases whose face fills the frame) it is first moved, by at most the
margin so every landmark stays inside, to lie within the image; if it still runs off, the margin
shrinks in steps to 0; if it still runs off (the jaw line at or past the frame's edge), the same
is tried on the box of the inner landmarks 17-67 (brows, eyes, nose, mouth), and of all these
the crop running least off the image is kept. Whatever still lies outside is not invented: those
crop pixels are black (constant border) and ``outside_mask`` marks them so their flow is set to
0. On a face-filling frame this leaves at most a few % of the crop outside; on full frames
nothing.

Detection: dlib's HOG frontal face detector at its standard threshold (0) on the frame scaled so
its longer side is at most ``DETECT_MAX_SIDE`` px (SAMM frames are 2040 px wide), upsampled once
(dlib's usual ``detector(img, 1)``); if it finds no face it retries with two upsamplings, then on
the frame padded with its mean grey by ``DETECT_PAD`` of its size on each side (a face that fills
the frame leaves the detector no context). Among the faces found the largest box wins (in
``skimage.data.astronaut()`` dlib also reports a face-like patch on the suit, slightly smaller
than the face). Landmarks are fitted on the padded frame when the box runs off the image.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np

ALIGNMENT_VERSION = "landmark-box-m0.10-inner-fit-mask-v2"
CROP_MARGIN = 0.10
MARGIN_STEPS = 5  # CROP_MARGIN, 3/4, 1/2, 1/4 of it, 0
DETECT_MAX_SIDE = 640
DETECT_PAD = 0.3
_AREA_TOLERANCE = 1e-4  # OpenCV intersects polygons in float32
LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"


class NoFaceError(Exception):
    """No face was found in a clip's first frame."""


def landmark_model_path() -> Path:
    """The 68-landmark model file inside the installed ``face_recognition_models`` package.

    Found with ``importlib`` only: that package's own helper imports ``pkg_resources``.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the package face-recognition-models is not installed; "
                                "pip install face-recognition-models (it holds "
                                f"{LANDMARK_MODEL})")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / LANDMARK_MODEL
        if path.is_file():
            return path
    raise FileNotFoundError(f"{LANDMARK_MODEL} not found inside face_recognition_models at "
                            f"{list(spec.submodule_search_locations)}")


@lru_cache(maxsize=1)
def _detector() -> dlib.fhog_object_detector:
    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def _predictor() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(landmark_model_path()))


def detect_faces(gray: np.ndarray, upsample: int = 0,
                 threshold: float = 0.0) -> list[tuple[int, int, int, int]]:
    """Face boxes ``(left, top, right, bottom)`` found by dlib in a uint8 grayscale image."""
    rects, _scores, _kinds = _detector().run(np.ascontiguousarray(gray), upsample, threshold)
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]


def largest_face(gray: np.ndarray) -> tuple[int, int, int, int]:
    """The largest face box in ``gray`` (full-resolution coordinates); ``NoFaceError`` if none."""
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape[:2]))
    small = (gray if scale == 1.0 else
             cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    boxes = detect_faces(small, upsample=1) or detect_faces(small, upsample=2)
    if not boxes:
        pad = round(DETECT_PAD * max(small.shape[:2]))
        padded = _pad(small, pad)
        boxes = [(b[0] - pad, b[1] - pad, b[2] - pad, b[3] - pad)
                 for b in detect_faces(padded, upsample=1)]
    if not boxes:
        raise NoFaceError("no face found in the first frame")
    left, top, right, bottom = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    return (round(left / scale), round(top / scale), round(right / scale), round(bottom / scale))


def _pad(gray: np.ndarray, pad: int) -> np.ndarray:
    """``gray`` with ``pad`` px of its mean grey on every side (context for dlib, no texture)."""
    return cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                              value=int(gray.mean()))


def landmarks(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 dlib landmarks ``(68, 2)`` float (x, y) of the face in ``box``.

    A box that runs off the image is fitted on the image padded with its mean grey.
    """
    h, w = gray.shape[:2]
    pad = max(0, -box[0], -box[1], box[2] - w, box[3] - h)
    if pad:
        pad += 2
        gray = _pad(gray, pad)
        box = (box[0] + pad, box[1] + pad, box[2] + pad, box[3] + pad)
    shape = _predictor()(np.ascontiguousarray(gray), dlib.rectangle(*box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64) - pad


def eye_centres(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centres of the image-left eye (landmarks 36-41) and image-right eye (42-47)."""
    return points[36:42].mean(axis=0), points[42:48].mean(axis=0)


def interocular_distance(points: np.ndarray) -> float:
    """The distance between the eye centres, in the points' pixels."""
    left, right = eye_centres(points)
    return float(np.hypot(*(right - left)))


@dataclass(frozen=True)
class FaceFit:
    """The clip's alignment: ``matrix`` (2x3, source px -> crop px) and what it was made from.

    ``box`` is dlib's face box in the source frame (may run off it); ``interocular_px`` the eye
    centres' distance in source px; ``margin`` the margin used (a share of the landmark box);
    ``outside_share`` the share of crop pixels that lie outside the source image; ``basis``
    which landmarks framed the crop (``all`` 68, or ``inner``: without the jaw line).
    """

    matrix: np.ndarray
    box: tuple[int, int, int, int]
    interocular_px: float
    margin: float
    outside_share: float
    basis: str = "all"


def _rotation(points: np.ndarray) -> np.ndarray:
    """The 2x2 rotation that makes the eye centres level."""
    left, right = eye_centres(points)
    dx, dy = right - left
    if dx == 0 and dy == 0:
        raise NoFaceError("degenerate landmarks: both eye centres coincide")
    angle = np.arctan2(dy, dx)
    c, s = np.cos(-angle), np.sin(-angle)
    return np.array([[c, -s], [s, c]])


def _inner_interval(values: np.ndarray) -> tuple[float, float]:
    """For the 4 corners' coordinates on one axis: the span inside the (rotated) image."""
    ordered = np.sort(values)
    return float(ordered[1]), float(ordered[2])


def _shift(lo: float, hi: float, inner: tuple[float, float], keep: tuple[float, float]) -> float:
    """How far to move the span ``[lo, hi]`` so it lies in ``inner`` while covering ``keep``."""
    if hi - lo <= inner[1] - inner[0]:
        want = min(max(0.0, inner[0] - lo), inner[1] - hi)
    else:
        want = (inner[0] + inner[1]) / 2 - (lo + hi) / 2
    return float(np.clip(want, keep[1] - hi, keep[0] - lo))


def _outside_share(corners: np.ndarray, image_corners: np.ndarray) -> float:
    """The share of the square ``corners`` (4, 2) lying outside the polygon ``image_corners``."""
    area, _ = cv2.intersectConvexConvex(corners.astype(np.float32),
                                        image_corners.astype(np.float32))
    side_sq = float(np.sum((corners[1] - corners[0]) ** 2))
    return float(np.clip(1.0 - area / side_sq, 0.0, 1.0))


def crop_matrix(points: np.ndarray, size: int,
                image_shape: tuple[int, int]) -> tuple[np.ndarray, float, float, str]:
    """The crop rule of this module: ``(2x3 matrix, margin used, outside share, basis)``.

    ``basis`` is ``"all"`` (the box of all 68 landmarks) or ``"inner"`` (landmarks 17-67: brows,
    eyes, nose, mouth), the fallback when the jaw line runs off a tightly cropped frame.
    """
    rot = _rotation(points)
    h, w = image_shape[:2]
    image = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
    image_level = image @ rot.T
    inner_x, inner_y = _inner_interval(image_level[:, 0]), _inner_interval(image_level[:, 1])
    best: tuple[float, float, np.ndarray, float, str] | None = None
    for basis, subset in (("all", points), ("inner", points[17:])):
        level = subset @ rot.T
        (x0, y0), (x1, y1) = level.min(axis=0), level.max(axis=0)
        base = max(x1 - x0, y1 - y0)
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        for step in range(MARGIN_STEPS):
            margin = CROP_MARGIN * (1 - step / (MARGIN_STEPS - 1))
            side = base * (1 + 2 * margin)
            lo = centre - side / 2
            dx = _shift(lo[0], lo[0] + side, inner_x, (x0, x1))
            dy = _shift(lo[1], lo[1] + side, inner_y, (y0, y1))
            origin = lo + np.array([dx, dy])
            corners = origin + np.array([[0, 0], [side, 0], [side, side], [0, side]])
            outside = _outside_share(corners @ rot, image)  # to source px (rot is orthogonal)
            if best is None or outside < best[1] - _AREA_TOLERANCE:
                best = (margin, outside, origin, side, basis)
            if outside <= _AREA_TOLERANCE:
                break
        if best[1] <= _AREA_TOLERANCE:
            break
    margin, outside, origin, side, basis = best
    scale = size / side
    matrix = np.hstack([scale * rot, (-scale * origin)[:, None]])
    return matrix, margin, outside, basis


def fit_alignment(gray: np.ndarray, size: int) -> FaceFit:
    """The clip's alignment from its first frame (face, landmarks, crop rule)."""
    box = largest_face(gray)
    points = landmarks(gray, box)
    matrix, margin, outside, basis = crop_matrix(points, size, gray.shape)
    return FaceFit(matrix, box, interocular_distance(points), margin, outside, basis)


def warp_face(gray: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``gray`` aligned and cropped to ``size`` x ``size`` with ``matrix`` (bilinear); pixels
    outside the source image are black, never a repeated border."""
    return cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def outside_mask(image_shape: tuple[int, int], matrix: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` bool: crop pixels not wholly inside the source image (their value would
    mix in the black border)."""
    ones = np.full(image_shape[:2], 255, np.uint8)
    inside = cv2.warpAffine(ones, matrix, (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return inside < 255
