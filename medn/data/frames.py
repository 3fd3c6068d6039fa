"""Where a clip's frame files are in a user's copy of a dataset, and which T of them are used.

Layouts under ``--data-root`` (the frame number is the last run of digits in the file name):

- CASME II: ``<root>/sub<subject>/<video>/img<frame>.jpg``, e.g. ``sub01/EP02_01f/img46.jpg``
  (the sheet's subject ``1``/``'01'`` becomes ``sub01``);
- SAMM: ``<root>/<subject>/<video>/<subject>_<frame:05d>.jpg``, e.g. ``006/006_1_2/006_05562.jpg``;
- CAS(ME)^3 Part A: ``<root>/<subject>/<video>/color/<frame>.jpg``, e.g. ``spNO.1/a/color/355.jpg``.

Names from the sheet (subject, video) are single folder names: one holding a path separator, ``..``
or a drive is refused, so no sheet can make medn read outside ``--data-root``.

Sampling (``SAMPLING_RULE`` names it in the cache key): the clip is the frames on disk numbered
``onset..offset`` (both ends must exist). With ``n`` such frames and ``T`` wanted, frame positions
``round(linspace(0, n - 1, T))`` (halves round up) are taken, so the first sampled frame is the
onset and the last the offset. With ``n >= T`` the positions are distinct; with ``2 <= n < T``
(short CAS(ME)^3 clips at 30 fps) every frame is taken and frames repeat (nearest-frame
resampling in time: no frame is invented, a repeated frame has the flow of its original).
Apex anchoring: if the annotated apex frame exists on disk and is not the onset, the sampled
frame nearest to it (after the onset; ties: the earlier) is replaced by the apex frame itself, so
the onset->apex flow is computed against the annotated apex. The replacement keeps the frames in
time order and distinct.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medn.data.records import ClipRecord

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SAMPLING_RULE = "uniform-repeat-apex-v2"
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class FrameError(Exception):
    """A clip whose frames cannot be used; the message is the reason recorded for the clip."""


@dataclass(frozen=True)
class SampledFrames:
    """The T frames of one clip: their frame numbers and file paths, in time order."""

    numbers: tuple[int, ...]
    paths: tuple[Path, ...]


def subject_folder(dataset: str, subject: str) -> str:
    """The folder name of ``subject`` in ``dataset``'s layout (CASME II: ``'01'`` -> ``sub01``)."""
    if dataset == "casme2":
        text = subject.removeprefix("sub")
        return f"sub{int(text):02d}" if text.isdigit() else f"sub{text}"
    return subject


def _folder_name(value: str, what: str, record: ClipRecord) -> str:
    """``value`` if it is one plain folder name; ``FrameError`` if it would leave its parent."""
    if (not value or value in (".", "..") or any(c in value for c in "/\\\0")
            or Path(value).is_absolute() or (len(value) > 1 and value[1] == ":")):
        raise FrameError(f"sheet row {record.row}: {what} {value!r} is not a plain folder name; "
                         "frame folders must lie inside --data-root")
    return value


def clip_folder(record: ClipRecord, data_root: Path) -> Path:
    """The folder that holds ``record``'s frame files under ``data_root``.

    ``FrameError`` if the sheet's subject or video would lead outside ``data_root``.
    """
    subject = _folder_name(subject_folder(record.dataset, record.subject), "subject", record)
    video = _folder_name(record.video, "video/filename", record)
    base = Path(data_root) / subject / video
    if record.dataset == "casme3a":
        return base / "color"
    if record.dataset in ("casme2", "samm"):
        return base
    raise ValueError(f"dataset {record.dataset!r} has no frame layout on disk "
                     "(expected casme2, samm or casme3a)")


def frame_number(path: Path) -> int | None:
    """The frame number written at the end of a frame file's name, or ``None`` if there is none."""
    match = _TRAILING_NUMBER.search(path.stem)
    return int(match.group(1)) if match else None


def list_frames(folder: Path) -> dict[int, Path]:
    """Every frame file in ``folder`` by frame number; an error if two files claim one number."""
    if not folder.is_dir():
        raise FrameError(f"missing folder {folder}")
    frames: dict[int, Path] = {}
    for path in folder.iterdir():
        if path.suffix.lower() not in FRAME_SUFFIXES:
            continue
        number = frame_number(path)
        if number is None:
            continue
        if number in frames:
            raise FrameError(f"frame {number} appears twice in {folder}: "
                             f"{frames[number].name} and {path.name}")
        frames[number] = path
    return frames


def sample_positions(count: int, num_frames: int) -> list[int]:
    """``num_frames`` positions spread uniformly over ``0..count-1`` (ends included).

    Distinct when ``count >= num_frames``; otherwise every position appears and some repeat.
    """
    if count < 2:
        raise FrameError(f"too few frames: {count} between onset and offset, at least 2 needed")
    grid = np.linspace(0, count - 1, num_frames)
    return [int(np.floor(x + 0.5)) for x in grid]


def anchor_apex(picks: list[int], apex: int | None, available: set[int]) -> list[int]:
    """``picks`` (sampled frame numbers) with the one nearest ``apex`` replaced by ``apex``.

    Nothing changes when the apex is unknown, is the onset (``picks[0]``), is not on disk, or is
    already sampled. Only positions after the first are candidates (ties: the earlier).
    """
    if apex is None or apex == picks[0] or apex not in available or apex in picks:
        return picks
    distances = [abs(n - apex) for n in picks[1:]]
    nearest = 1 + int(np.argmin(distances))
    return picks[:nearest] + [apex] + picks[nearest + 1:]


def sample_clip_frames(record: ClipRecord, data_root: Path, num_frames: int) -> SampledFrames:
    """The ``num_frames`` frames of ``record`` sampled uniformly from onset to offset.

    Raises ``FrameError`` (missing folder, missing onset/offset frame, a folder name leaving
    ``data_root``, fewer than 2 frames).
    """
    folder = clip_folder(record, data_root)
    frames = list_frames(folder)
    for end, number in (("onset", record.onset), ("offset", record.offset)):
        if number not in frames:
            raise FrameError(f"missing frame: {end} frame {number} not found in {folder}")
    numbers = sorted(n for n in frames if record.onset <= n <= record.offset)
    picks = [numbers[i] for i in sample_positions(len(numbers), num_frames)]
    picks = anchor_apex(picks, record.apex, set(numbers))
    return SampledFrames(tuple(picks), tuple(frames[n] for n in picks))
