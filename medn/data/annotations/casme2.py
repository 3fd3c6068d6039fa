"""CASME II: ``CASME2-coding-20140508.xlsx`` and ``CASME2-coding-20190701.xlsx`` (first sheet)."""

from __future__ import annotations

from medn.data.annotations.layout import SheetLayout, common_columns
from medn.data.annotations.sheet import Column

LAYOUT = SheetLayout(
    dataset="casme2",
    title="CASME II",
    sheet=0,
    columns=(*common_columns("OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
                             "Estimated Emotion"),
             Column("objective_class", "Objective Classes", ("Objective Class",), required=False)),
    fps=200.0,
    subject_width=2,
    clip_name=lambda filename, onset: filename,
    extras=(("objective_class", "objective_class"),),
)
