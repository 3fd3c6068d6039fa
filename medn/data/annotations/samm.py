"""SAMM: ``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet ``MICRO_ONLY``, header on row 14."""

from __future__ import annotations

from medn.data.annotations.layout import SheetLayout, common_columns
from medn.data.annotations.sheet import Column

LAYOUT = SheetLayout(
    dataset="samm",
    title="SAMM",
    sheet="MICRO_ONLY",
    columns=(*common_columns("Onset Frame", "Apex Frame", "Offset Frame", "Action Units",
                             "Estimated Emotion"),
             Column("objective_class", "Objective Classes", ("Objective Class",), required=False),
             Column("inducement_code", "Inducement Code", required=False),
             Column("notes", "Notes", required=False)),
    fps=200.0,
    subject_width=3,
    clip_name=lambda filename, onset: filename,
    extras=(("objective_class", "objective_class"), ("inducement_code", "inducement_code"),
            ("notes", "notes")),
)
