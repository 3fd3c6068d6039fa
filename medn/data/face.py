"""Face detection (dlib), 68 landmarks, and the one similarity transform that aligns a clip.

The transform is fitted once per clip on its first sampled frame and applied to every frame, so
head jitter between frames is kept out of the alignment (it shows in the flow as it really is).

Alignment rule (``ALIGNMENT_VERSION`` names it in the cache key): the eye centres (mean of
landmarks 36-41 and 42-47) are mapped by a rotation + uniform scale + shift to
``(EYE_X, EYE_Y)`` and ``(1 - EYE_X, EYE_Y)`` of a ``size`` x ``size`` crop, so the eyes are level,
the inter-ocular distance is ``1 - 2 * EYE_X`` = 40% of the crop, and the crop spans roughly the
brows to the chin with a margin of about a fifth of a face width on each side.

Detection: dlib's HOG frontal face detector at its standard threshold (0) on the frame scaled so
its longer side is at most ``DETECT_MAX_SIDE`` px (SAMM frames are 2040 px wide), upsampled once
(dlib's usual ``detector(img, 1)``); if it finds no face it retries with two upsamplings. Among
the faces found the largest box wins (in ``skimage.data.astronaut()`` dlib also reports a
face-like patch on the suit, slightly smaller than the face).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import cv2
import dlib
import numpy as np

ALIGNMENT_VERSION = "eyes-0.30x0.36-v1"
EYE_X = 0.30
EYE_Y = 0.36
DETECT_MAX_SIDE = 640
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
        raise NoFaceError("no face found in the first frame")
    left, top, right, bottom = max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    return (round(left / scale), round(top / scale), round(right / scale), round(bottom / scale))


def landmarks(gray: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 68 dlib landmarks ``(68, 2)`` float (x, y) of the face in ``box``."""
    shape = _predictor()(np.ascontiguousarray(gray), dlib.rectangle(*box))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def alignment_matrix(points: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 similarity transform taking the eye centres of ``points`` to their crop places."""
    left_eye = points[36:42].mean(axis=0)   # the subject's right eye, on the image's left
    right_eye = points[42:48].mean(axis=0)
    src = np.stack([left_eye, right_eye]).astype(np.float64)
    dst = np.array([[EYE_X * size, EYE_Y * size], [(1 - EYE_X) * size, EYE_Y * size]])
    # Similarity from two point pairs, as complex numbers: z -> a z + b.
    s0, s1 = complex(*src[0]), complex(*src[1])
    d0, d1 = complex(*dst[0]), complex(*dst[1])
    if s1 == s0:
        raise NoFaceError("degenerate landmarks: both eye centres coincide")
    a = (d1 - d0) / (s1 - s0)
    b = d0 - a * s0
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)


def fit_alignment(gray: np.ndarray, size: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The clip's alignment from its first frame: ``(2x3 matrix, face box)``."""
    box = largest_face(gray)
    return alignment_matrix(landmarks(gray, box), size), box


def warp_face(gray: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """``gray`` aligned and cropped to ``size`` x ``size`` with ``matrix`` (bilinear)."""
    return cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
