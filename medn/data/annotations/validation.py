"""The report of ``medn data validate``: counts per class, subjects, every repair and exclusion."""

from __future__ import annotations

from typing import Any

from medn.data.annotations.hard import hard_sample_report
from medn.data.annotations.protocols import LabelledClips
from medn.data.annotations.reader import AnnotationTable


def validation_report(dataset: str, task: int, table: AnnotationTable,
                      labelled: LabelledClips) -> dict[str, Any]:
    """The ``--json`` object: ``{"dataset", "task", "total", "subjects", "classes", "excluded",
    "repaired", "hard_samples"}`` (``hard_samples``: ``medn.data.annotations.hard``).

    ``classes`` holds every class of the protocol in its fixed order (zero counts included);
    ``excluded`` is the sheet's exclusions then the protocol's, each sorted by sheet row;
    each issue is ``{"subject", "filename", "reason", "row"}``.
    """
    excluded = sorted(table.excluded, key=lambda i: i.row) + sorted(labelled.excluded,
                                                                    key=lambda i: i.row)
    return {
        "dataset": dataset,
        "task": task,
        "total": len(labelled.records),
        "subjects": len({record.subject for record in labelled.records}),
        "classes": labelled.counts(),
        "excluded": [issue.as_dict() for issue in excluded],
        "repaired": [issue.as_dict() for issue in table.repaired],
        "hard_samples": hard_sample_report(dataset, task, labelled.records, labelled.labels),
    }
