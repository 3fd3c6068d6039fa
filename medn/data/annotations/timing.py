"""Checks of a row's onset / apex / offset frame numbers, with the documented repairs.

Rules, in order (``docs/annotations.md`` gives the reasons and the rows they hit):

1. onset and offset must be whole frame numbers, else the row is excluded;
2. an apex that is not a frame number (CASME II writes ``/``) excludes the row: the coder found
   no apex, and the MEGC2019 composite list leaves such clips out;
3. offset ``0`` (not coded, CAS(ME)^3) with onset < apex: offset := apex (the clip covers
   onset -> apex);
4. onset after offset with apex <= offset (a mistyped onset, CAS(ME)^3): onset := apex;
5. apex outside [onset, offset]: apex := None (unknown); onset..offset still define the clip;
6. onset = offset (a single frame) is excluded: there is no motion to measure;
7. onset = apex: at >= 100 fps (CASME II, SAMM) a rise shorter than one frame (5 ms) is not a
   muscle movement but a coding error: excluded, as the MEGC2019 composite list does; at 30 fps
   (CAS(ME)^3) a rise can fit inside one frame interval (33 ms): kept unchanged, noted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medn.data.annotations.sheet import cell_text

HIGH_SPEED_FPS = 100.0
_FRAME = re.compile(r"^\d+$")


@dataclass(frozen=True)
class TimingVerdict:
    """The outcome of the timing checks: the (repaired) frames, the notes, or an exclusion."""

    onset: int = 0
    apex: int | None = None
    offset: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)
    exclusion: str | None = None


def parse_frame(value: object) -> int | None:
    """A frame-number cell as an int (``'355'``, ``355``, ``355.0``), or None if it is not one."""
    text = cell_text(value)
    return int(text) if _FRAME.match(text) else None


def _not_a_frame(name: str, cell: object) -> str:
    text = cell_text(cell)
    if text == "":  # a blank cell, or one pandas read as NaN (an error value, a lost formula)
        return f"{name} cell is empty (no frame number)"
    return f"{name} {text!r} is not a frame number"


def check_timing(onset_cell: object, apex_cell: object, offset_cell: object,
                 fps: float) -> TimingVerdict:
    """Apply the timing rules above to one row's three frame cells at the dataset's ``fps``."""
    onset, apex, offset = (parse_frame(v) for v in (onset_cell, apex_cell, offset_cell))
    if onset is None:
        return TimingVerdict(exclusion=_not_a_frame("onset", onset_cell))
    if offset is None:
        return TimingVerdict(exclusion=_not_a_frame("offset", offset_cell))
    if apex is None:
        if cell_text(apex_cell) == "/":
            return TimingVerdict(exclusion="apex '/': the coder gave no apex frame (the MEGC2019 "
                                           "composite list leaves such clips out)")
        return TimingVerdict(exclusion=_not_a_frame("apex", apex_cell))
    notes: list[str] = []
    if offset == 0:
        if apex <= onset:
            return TimingVerdict(exclusion=f"offset 0 (not coded) and apex {apex} is not after "
                                           f"onset {onset}: the clip has no known extent")
        notes.append(f"offset 0 (not coded): offset set to the apex frame {apex}")
        offset = apex
    if onset > offset:
        if apex > offset:
            return TimingVerdict(exclusion=f"onset {onset} and apex {apex} are both after "
                                           f"offset {offset}")
        notes.append(f"onset {onset} is after offset {offset}: onset set to the apex frame {apex}")
        onset = apex
    if not onset <= apex <= offset:
        notes.append(f"apex {apex} is outside [onset {onset}, offset {offset}]: apex dropped "
                     "(unknown)")
        apex_out: int | None = None
    else:
        apex_out = apex
    if onset == offset:
        return TimingVerdict(exclusion=f"onset = offset = {onset}: a single frame has no motion")
    if apex_out is not None and apex_out == onset:
        frame_ms = 1000.0 / fps
        if fps >= HIGH_SPEED_FPS:
            return TimingVerdict(exclusion=(
                f"onset = apex = {onset}: no rise phase; at {fps:g} fps a rise shorter than one "
                f"frame ({frame_ms:g} ms) is a coding error (the MEGC2019 composite list leaves "
                "such clips out)"))
        notes.append(f"onset = apex = {onset}: the rise is shorter than one frame at {fps:g} fps "
                     f"({frame_ms:.0f} ms); kept unchanged")
    return TimingVerdict(onset=onset, apex=apex_out, offset=offset, notes=tuple(notes))
