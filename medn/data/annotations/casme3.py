"""CAS(ME)^3 Part A: ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, sheet ``label``.

One video (``Filename``, e.g. ``e``) can hold several clips, so a clip is named
``f"{filename}_{onset}"`` with the onset as the sheet writes it (``e_62``, ``e_96``); the frames
stay in the video's folder (``ClipRecord.video == filename``).
"""

from __future__ import annotations

from medn.data.annotations.layout import SheetLayout, common_columns
from medn.data.annotations.sheet import Column


def clip_name(filename: str, sheet_onset: str) -> str:
    """The clip id of one CAS(ME)^3 row: the video's name and the sheet's onset frame."""
    return f"{filename}_{sheet_onset}"


LAYOUT = SheetLayout(
    dataset="casme3a",
    title="CAS(ME)^3 Part A",
    sheet="label",
    columns=(*common_columns("Onset", "Apex", "Offset", "AU", "emotion"),
             Column("objective_class", "Objective class", ("Objective Classes",),
                    required=False)),
    fps=30.0,
    subject_width=None,
    clip_name=clip_name,
    extras=(("objective_class", "objective_class"),),
    several_clips_per_video=True,
)
