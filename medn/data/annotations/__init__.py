"""Readers of the official annotation sheets (CASME II, SAMM, CAS(ME)^3 Part A), label protocols
and the validation report behind ``medn data validate``.

``load_annotations(dataset, path)`` reads and checks a sheet; ``apply_protocol(records, dataset,
task)`` keeps and labels the clips of a task; ``validation_report(...)`` summarises both.
"""

from __future__ import annotations

from medn.data.annotations.au_codes import AUParseError, ParsedAUs, parse_au_string
from medn.data.annotations.emotions import DATASET_EMOTIONS, normalise_emotion
from medn.data.annotations.errors import AnnotationError
from medn.data.annotations.protocols import (
    PROTOCOLS,
    LabelledClips,
    Protocol,
    allowed_tasks,
    apply_protocol,
    get_protocol,
)
from medn.data.annotations.reader import (
    LAYOUTS,
    AnnotationTable,
    load_annotations,
    table_from_records,
)
from medn.data.annotations.validation import validation_report

__all__ = [
    "AUParseError",
    "AnnotationError",
    "AnnotationTable",
    "DATASET_EMOTIONS",
    "LAYOUTS",
    "LabelledClips",
    "PROTOCOLS",
    "ParsedAUs",
    "Protocol",
    "allowed_tasks",
    "apply_protocol",
    "get_protocol",
    "load_annotations",
    "normalise_emotion",
    "parse_au_string",
    "table_from_records",
    "validation_report",
]
