"""A real face with a known micro-motion: scikit-image's astronaut, a mouth corner pushed.

Shared by the preprocessing and dataset tests: frames as arrays, and written as jpgs in the
real datasets' folder layouts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import skimage.data

from medn.data.face import landmarks, largest_face
from medn.data.records import ActionUnit, ClipRecord

# The injected motion: up and to the image's right (a smile-like pull of the mouth corner).
DIRECTION = np.array([1.0, -1.0]) / np.sqrt(2.0)
PEAK_PX = 3.0     # displacement at the corner in the last frame, original-image pixels
SIGMA_PX = 6.0    # spatial extent (Gaussian sigma) of the displacement


@dataclass(frozen=True)
class MovingFace:
    """Eight RGB frames of the astronaut and where/how the motion was injected."""

    frames: tuple[np.ndarray, ...]
    corner: np.ndarray   # (x, y) of the moved mouth corner in the original image
    direction: np.ndarray


@lru_cache(maxsize=1)
def moving_face(num_frames: int = 8) -> MovingFace:
    """The astronaut with its mouth corner (landmark 54) displaced by 0 .. PEAK_PX over the clip."""
    rgb = skimage.data.astronaut()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    corner = landmarks(gray, largest_face(gray))[54]
    h, w = gray.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bump = np.exp(-((xx - corner[0]) ** 2 + (yy - corner[1]) ** 2) / (2 * SIGMA_PX ** 2))
    frames = []
    for t in range(num_frames):
        amp = PEAK_PX * t / (num_frames - 1)
        # Backward map: output(x) = input(x - d(x)), so the content moves by +d.
        map_x = (xx - amp * DIRECTION[0] * bump).astype(np.float32)
        map_y = (yy - amp * DIRECTION[1] * bump).astype(np.float32)
        frames.append(cv2.remap(rgb, map_x, map_y, cv2.INTER_CUBIC,
                                borderMode=cv2.BORDER_REFLECT))
    return MovingFace(tuple(frames), corner, DIRECTION)


def write_frames(folder: Path, names: list[str], frames=None) -> list[Path]:
    """Write the moving face's frames (or ``frames``) as jpgs named ``names`` into ``folder``."""
    frames = moving_face().frames if frames is None else frames
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, frame in zip(names, frames, strict=True):
        path = folder / name
        ok = cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok, path
        paths.append(path)
    return paths


def casme2_record(subject: str = "01", video: str = "EP01_01", onset: int = 10,
                  emotion: str = "happiness", aus=(12,), row: int = 2) -> ClipRecord:
    """A CASME II-like record of an 8-frame clip ``onset .. onset + 7`` with apex ``onset + 4``."""
    return ClipRecord(dataset="casme2", subject=subject, clip=video, video=video,
                      emotion=emotion, aus=frozenset(ActionUnit(n) for n in aus), onset=onset,
                      apex=onset + 4, offset=onset + 7, row=row)


def write_casme2_clip(root: Path, record: ClipRecord) -> list[Path]:
    """The moving face written as ``root/sub<subject>/<video>/img<n>.jpg``, one per frame."""
    names = [f"img{n}.jpg" for n in range(record.onset, record.offset + 1)]
    return write_frames(root / f"sub{record.subject}" / record.video, names)
