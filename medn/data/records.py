"""Plain records shared by every dataset reader: one annotated clip, one action unit."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class ActionUnit:
    """One FACS action unit as written in a sheet.

    ``number`` is the AU number (12 for ``R12C``); ``side`` is ``"L"``/``"R"`` (unilateral),
    ``"A"`` (asymmetric), ``"T"``/``"B"`` (top/bottom lip), alternatives joined by ``/``
    (``"A/L"``), or ``None``; ``intensity`` is the FACS letter ``"A"``..``"E"`` (or ``"A/B"``)
    or ``None``; ``uncertain`` marks forms such as ``(R6 or R12)``, ``ref(24)`` or ``?``
    suffixes, whose presence the coder was unsure of (see docs/annotations.md).
    """

    number: int
    side: str | None = None
    intensity: str | None = None
    uncertain: bool = False


@dataclass(frozen=True)
class ClipRecord:
    """One annotated micro-expression clip, in the same schema for every dataset.

    ``subject`` stays text ('01', '006', 'spNO.1'); ``clip`` is unique within a subject (the
    sheet's file name, suffixed where one video holds several clips); ``video`` is the folder that
    holds the clip's frames; ``emotion`` is the normalised fine label ('happiness', 'disgust',
    'others', ...); ``onset``/``apex``/``offset`` are frame numbers as they appear in frame file
    names (``apex`` is ``None`` when the dataset gives none); ``row`` is the sheet row (1-based,
    as a spreadsheet shows it) the record came from, for messages.
    """

    dataset: str
    subject: str
    clip: str
    video: str
    emotion: str
    aus: frozenset[ActionUnit]
    onset: int
    apex: int | None
    offset: int
    row: int = 0
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def au_numbers(self) -> frozenset[int]:
        """The AU numbers present in the clip, side and intensity dropped."""
        return frozenset(au.number for au in self.aus)

    @property
    def key(self) -> str:
        """A dataset-unique id of the clip: ``subject/clip``."""
        return f"{self.subject}/{self.clip}"


@dataclass(frozen=True)
class RowIssue:
    """A repaired or excluded sheet row and why."""

    subject: str
    filename: str
    reason: str
    row: int = 0

    def as_dict(self) -> dict[str, str | int]:
        """The issue as a JSON-ready dict (the shape ``medn data validate --json`` prints)."""
        return {"subject": self.subject, "filename": self.filename, "reason": self.reason,
                "row": self.row}
