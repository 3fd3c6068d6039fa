"""Replica frame trees: the real datasets' folder layouts, filled with synthetic faces.

For clips of a real annotation sheet (subject, video, onset, apex, offset as the sheet gives
them), ``build_replica_tree`` writes, per video, the frames ``onset - PAD .. offset + PAD`` of
every clip the video holds (CAS(ME)^3 videos hold several) as the release names them, at the
release's resolution. The face is the synth renderer's neutral face of the subject, moved by a
smooth bump at a mouth corner and a brow that rises from the onset to the apex and falls towards
the offset; sensor noise differs per frame. Nothing is real but the sheet: it exercises the
layouts, the sampling, the detector, the crop and the cache at the datasets' real sizes.

Synthetic faces sit at the edge of what dlib's HOG detector accepts (about 1 in 10 identities is
missed at a given place, where real faces are found reliably), so each subject gets the first
synth identity (generator seed 0, 1, ...) that dlib detects with ``medn.data.face.largest_face``
in six probe frames (neutral and at full activation, three noise draws each): the replica tests
the pipeline, not the renderer's realism.

Release forms (``RELEASES``): CASME II raw (640x480, ``sub01/EP02_01f/img46.jpg``) and cropped
(face-filling, ``reg_img46.jpg``), SAMM full frames (960x650, ``006/006_1_2/006_05562.jpg``,
grey) and cropped (face-filling), CAS(ME)^3 Part A colour (1280x720,
``spNO.1/a/color/355.jpg``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from medn.data.frames import clip_folder
from medn.data.records import ClipRecord
from medn.data.synth.face import canonical_to_pixel, render_face, subject_identity
from medn.data.synth.seeding import stable_rng

PAD = 2  # frames written before each onset and after each offset
PEAK_PX = 2.5  # bump displacement at the apex, in pixels of the rendered face
NOISE_SIGMA = 1.5


@dataclass(frozen=True)
class ReleaseForm:
    """How one release ships its frames: resolution (``None`` = the face fills the frame)."""

    name: str
    dataset: str
    size: tuple[int, int] | None  # (width, height)
    face_px: int  # side of the rendered face square
    colour: bool
    prefix: str  # before the frame number
    digits: int  # zero-padding of the frame number (0 = none)

    def file_name(self, record: ClipRecord, number: int) -> str:
        """The frame file's name as the release writes it."""
        prefix = self.prefix.format(subject=record.subject)
        return f"{prefix}{number:0{self.digits}d}.jpg" if self.digits else f"{prefix}{number}.jpg"


RELEASES: dict[str, ReleaseForm] = {form.name: form for form in (
    ReleaseForm("casme2-raw", "casme2", (640, 480), 240, True, "img", 0),
    ReleaseForm("casme2-cropped", "casme2", None, 240, True, "reg_img", 0),
    ReleaseForm("samm-full", "samm", (960, 650), 320, False, "{subject}_", 5),
    ReleaseForm("samm-cropped", "samm", None, 320, False, "{subject}_", 5),
    ReleaseForm("casme3a-color", "casme3a", (1280, 720), 300, True, "", 0),
)}


MAX_IDENTITY_TRIES = 16
PROBES = 3


@lru_cache(maxsize=256)
def identity_seed(form_name: str, subject: str) -> int:
    """The first synth seed whose face dlib detects in every probe frame of ``subject`` in the
    form: neutral and at full activation, each with ``PROBES`` different noise draws (a face
    found in one noisy frame only is too marginal: a clip's first frame may then be missed)."""
    from medn.data.face import NoFaceError, largest_face

    form = RELEASES[form_name]
    for seed in range(MAX_IDENTITY_TRIES):
        try:
            for level in (0.0, 1.0):
                for probe in range(PROBES):
                    image = render_frame(form, subject, level, ("probe", probe), None, seed=seed)
                    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
                    largest_face(gray)
        except NoFaceError:
            continue
        return seed
    raise RuntimeError(f"no synth identity of {subject} is detected in {form_name}")


@lru_cache(maxsize=64)
def _face(subject: str, face_px: int, seed: int) -> np.ndarray:
    return render_face(subject_identity(subject, seed), face_px)


@lru_cache(maxsize=64)
def _bump_field(subject: str, face_px: int, seed: int) -> np.ndarray:
    """``(2, face_px, face_px)``: the displacement at full activation (mouth corner up/out,
    inner brow up)."""
    identity = subject_identity(subject, seed)
    coords = np.arange(face_px, dtype=np.float32)
    out = np.zeros((2, face_px, face_px), np.float32)
    for name, direction in (("mouth_corner", (0.7, -0.7)), ("brow_inner", (0.0, -1.0))):
        cx, cy = canonical_to_pixel(identity, np.array(identity.landmarks[name]), face_px)
        radius = 0.05 * face_px
        bump = np.outer(np.exp(-((coords - cy) ** 2) / (2 * radius ** 2)),
                        np.exp(-((coords - cx) ** 2) / (2 * radius ** 2)))
        out[0] += PEAK_PX * direction[0] * bump
        out[1] += PEAK_PX * direction[1] * bump
    return out


def activation(number: int, clips: Iterable[ClipRecord]) -> float:
    """0 before the onset, rising to 1 at the apex (or midway), falling to 0.3 at the offset."""
    level = 0.0
    for clip in clips:
        if not clip.onset <= number <= clip.offset:
            continue
        apex = clip.apex if clip.apex is not None and clip.onset < clip.apex else \
            (clip.onset + clip.offset) / 2
        if number <= apex:
            value = (number - clip.onset) / max(apex - clip.onset, 1)
        else:
            value = 1.0 - 0.7 * (number - apex) / max(clip.offset - apex, 1)
        level = max(level, value)
    return level


def _crop_box(subject: str, face_px: int, seed: int) -> tuple[int, int, int, int]:
    """The face-filling crop of the rendered face (as pre-cropped releases cut it: cheek to
    cheek, forehead to chin)."""
    identity = subject_identity(subject, seed)
    lm = identity.landmarks
    xs = [0.5 - 0.92 * identity.face_rx, 0.5 + 0.92 * identity.face_rx]
    ys = [lm["brow_inner"][1] - 0.1, lm["chin"][1] + 0.06]
    corners = canonical_to_pixel(identity, np.array([[xs[0], ys[0]], [xs[1], ys[1]]]), face_px)
    left, top = np.floor(corners.min(axis=0)).astype(int)
    right, bottom = np.ceil(corners.max(axis=0)).astype(int)
    return max(left, 0), max(top, 0), min(right, face_px), min(bottom, face_px)


def _placement(form: ReleaseForm, subject: str) -> tuple[int, int]:
    """Where the face square's top-left corner lies in a full frame (per subject)."""
    width, height = form.size
    rng = stable_rng("replica-place", form.name, subject)
    x = int(rng.integers(width // 4, width - width // 4 - form.face_px + 1))
    y = int(rng.integers(max(height // 10, 0), max(height - form.face_px - height // 10, 1)))
    return x, y


def render_frame(form: ReleaseForm, subject: str, level: float, noise_key: Sequence[object],
                 background: np.ndarray | None = None, seed: int | None = None) -> np.ndarray:
    """One frame of ``subject``'s face at activation ``level``, as the release stores it.

    The face gets fresh Gaussian noise per frame; the backdrop a window, shifted per frame, of
    one fixed noise field (full-HD Gaussian draws per frame would dominate building a tree).
    """
    seed = identity_seed(form.name, subject) if seed is None else seed
    if background is None and form.size is not None:
        background = _background(form, subject)
    face = _face(subject, form.face_px, seed)
    field = _bump_field(subject, form.face_px, seed) * level
    grid = np.arange(form.face_px, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)
    moved = cv2.remap(face, gx - field[0], gy - field[1], cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_REFLECT101)
    rng = stable_rng("replica-noise", *noise_key)
    moved = moved + rng.normal(0.0, NOISE_SIGMA, moved.shape).astype(np.float32)
    face_u8 = np.clip(np.rint(moved), 0, 255).astype(np.uint8)
    if form.size is None:
        left, top, right, bottom = _crop_box(subject, form.face_px, seed)
        gray = np.ascontiguousarray(face_u8[top:bottom, left:right])
    else:
        height, width = background.shape
        noise = _noise_field(form)
        dy, dx = (int(v) for v in rng.integers(0, NOISE_MARGIN, 2))
        frame = background + noise[dy:dy + height, dx:dx + width]
        gray = np.clip(frame, 0, 255).astype(np.uint8)
        x, y = _placement(form, subject)
        gray[y:y + form.face_px, x:x + form.face_px] = face_u8
    if not form.colour:
        return gray
    # B, G, R: a warm cast as in the videos (saturating uint8 arithmetic)
    return cv2.merge([cv2.convertScaleAbs(gray, alpha=0.92), gray,
                      cv2.convertScaleAbs(gray, alpha=1.06)])


NOISE_MARGIN = 32


@lru_cache(maxsize=8)
def _noise_field(form: ReleaseForm) -> np.ndarray:
    """A fixed int16 Gaussian noise field a little larger than the release's frame."""
    width, height = form.size
    rng = stable_rng("replica-noise-field", form.name)
    field = rng.normal(0.0, NOISE_SIGMA, (height + NOISE_MARGIN, width + NOISE_MARGIN))
    return np.rint(field).astype(np.int16)


@lru_cache(maxsize=8)
def _background(form: ReleaseForm, subject: str) -> np.ndarray:
    """A static, smooth backdrop (a lit wall) as int16: the face is the only thing that moves."""
    width, height = form.size
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = stable_rng("replica-bg", form.name, subject)
    level = rng.uniform(80, 140)
    wall = level + 25 * (xx / width - 0.5) * rng.uniform(-1, 1) + 15 * (yy / height - 0.5)
    return np.rint(wall).astype(np.int16)


def video_frames(clips: Sequence[ClipRecord]) -> list[int]:
    """The frame numbers written for a video: each clip's onset - PAD .. offset + PAD."""
    numbers: set[int] = set()
    for clip in clips:
        numbers.update(range(max(clip.onset - PAD, 0), clip.offset + PAD + 1))
    return sorted(numbers)


def build_replica_tree(records: Sequence[ClipRecord], root: Path, form: str | ReleaseForm,
                       jpeg_quality: int = 90) -> int:
    """Write the frames of ``records`` under ``root`` in the release ``form``; frames written.

    Existing files are kept (a second call only adds what is missing).
    """
    release = RELEASES[form] if isinstance(form, str) else form
    by_video: dict[tuple[str, str], list[ClipRecord]] = defaultdict(list)
    for record in records:
        if record.dataset != release.dataset:
            raise ValueError(f"record {record.key} is {record.dataset}, the release "
                             f"{release.name} is {release.dataset}")
        by_video[(record.subject, record.video)].append(record)
    written = 0
    for (subject, video), clips in by_video.items():
        folder = clip_folder(clips[0], Path(root))
        folder.mkdir(parents=True, exist_ok=True)
        background = None if release.size is None else _background(release, subject)
        for number in video_frames(clips):
            path = folder / release.file_name(clips[0], number)
            if path.exists():
                continue
            image = render_frame(release, subject, activation(number, clips),
                                 (release.name, subject, video, number), background)
            tmp = path.with_suffix(".tmp.jpg")
            if not cv2.imwrite(str(tmp), image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]):
                raise OSError(f"cannot write {tmp}")
            tmp.replace(path)
            written += 1
    return written
