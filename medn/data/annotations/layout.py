"""What differs between the datasets' sheets: sheet, columns, fps, subject and clip naming."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from medn.data.annotations.sheet import Column


@dataclass(frozen=True)
class SheetLayout:
    """How one dataset's official sheet is laid out and how its rows become ``ClipRecord``s.

    ``sheet`` is a sheet name, or 0 for "the first sheet"; ``fps`` drives the onset = apex rule;
    ``subject_width`` zero-pads all-digit subject ids that Excel stored as numbers (1 -> '01');
    ``clip_name(filename, sheet_onset)`` names the clip (unique within a subject); ``extras`` maps
    optional fields to ``ClipRecord.extra`` keys.
    """

    dataset: str
    title: str
    sheet: str | int
    columns: tuple[Column, ...]
    fps: float
    subject_width: int | None
    clip_name: Callable[[str, str], str]
    extras: tuple[tuple[str, str], ...] = ()
    several_clips_per_video: bool = False


def common_columns(onset: str, apex: str, offset: str, aus: str, emotion: str) -> list[Column]:
    """The seven columns every sheet has, under the given official names (aliases accepted)."""
    return [
        Column("subject", "Subject", ("Subject ID",)),
        Column("filename", "Filename", ("File name", "Video")),
        Column("onset", onset, ("OnsetFrame", "Onset Frame", "Onset")),
        Column("apex", apex, ("ApexFrame", "Apex Frame", "Apex")),
        Column("offset", offset, ("OffsetFrame", "Offset Frame", "Offset")),
        Column("aus", aus, ("Action Units", "AU", "AUs")),
        Column("emotion", emotion, ("Estimated Emotion", "Emotion")),
    ]
