"""Turn an official annotation sheet into checked ``ClipRecord``s, every repair and exclusion."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from medn.data.annotations import casme2, casme3, samm
from medn.data.annotations.au_codes import AUParseError, parse_au_string
from medn.data.annotations.emotions import DATASET_EMOTIONS, normalise_emotion
from medn.data.annotations.errors import AnnotationError
from medn.data.annotations.layout import SheetLayout
from medn.data.annotations.sheet import SheetData, SheetRow, cell_text, read_sheet
from medn.data.annotations.timing import check_timing
from medn.data.records import ClipRecord, RowIssue

LAYOUTS: dict[str, SheetLayout] = {
    layout.dataset: layout for layout in (casme2.LAYOUT, samm.LAYOUT, casme3.LAYOUT)
}


@dataclass
class AnnotationTable:
    """The checked rows of one sheet.

    ``records`` are the kept clips in sheet order; ``repaired`` lists every kept row a check
    flagged, with what was done; ``excluded`` lists every row left out, with why. Each sheet row
    with any content is in ``records`` or ``excluded`` (rows with every cell empty are not clips).
    """

    dataset: str
    records: list[ClipRecord]
    repaired: list[RowIssue] = field(default_factory=list)
    excluded: list[RowIssue] = field(default_factory=list)
    path: Path | None = None
    sheet: str | None = None


def load_annotations(dataset: str, path: Path) -> AnnotationTable:
    """Read and check the official sheet of ``dataset`` (``casme2``, ``samm`` or ``casme3a``).

    Raises ``AnnotationError`` (a ``ValueError``) naming the file, sheet, row and column for a file
    that is missing, unreadable, lacks the sheet or a column, or holds an unparseable AU string;
    ``ValueError`` for an unknown dataset.
    """
    if dataset not in LAYOUTS:
        raise ValueError(f"unknown annotated dataset {dataset!r}; expected one of "
                         f"{sorted(LAYOUTS)}")
    layout = LAYOUTS[dataset]
    data = read_sheet(Path(path), layout.sheet, list(layout.columns), layout.title)
    return _check_rows(layout, data)


class _Ledger:
    """Notes per sheet row, turned into one ``RowIssue`` per row at the end."""

    def __init__(self) -> None:
        self.repairs: dict[int, list[str]] = defaultdict(list)
        self.ids: dict[int, tuple[str, str]] = {}
        self.excluded: list[RowIssue] = []

    def exclude(self, row: int, subject: str, filename: str, reason: str) -> None:
        self.excluded.append(RowIssue(subject=subject, filename=filename, reason=reason, row=row))

    def repair(self, row: int, subject: str, filename: str, note: str) -> None:
        self.ids[row] = (subject, filename)
        self.repairs[row].append(note)

    def repaired(self) -> list[RowIssue]:
        return [RowIssue(subject=self.ids[row][0], filename=self.ids[row][1],
                         reason="; ".join(notes), row=row)
                for row, notes in sorted(self.repairs.items())]


def _normalise_subject(text: str, width: int | None) -> str:
    if width is not None and text.isdigit() and len(text) < width:
        return text.zfill(width)
    return text


def _check_rows(layout: SheetLayout, data: SheetData) -> AnnotationTable:
    ledger = _Ledger()
    records: list[ClipRecord] = []
    seen: dict[tuple[str, str], int] = {}
    for sheet_row in data.rows:
        if all(cell_text(v) == "" for v in sheet_row.cells.values()):
            continue
        outcome = _check_row(layout, data, sheet_row)
        if isinstance(outcome, RowIssue):
            ledger.excluded.append(outcome)
            continue
        record, notes = outcome
        first = seen.get((record.subject, record.clip))
        if first is not None:
            ledger.exclude(record.row, record.subject, record.video,
                           f"duplicate of row {first} (same subject and clip {record.clip!r})")
            continue
        seen[(record.subject, record.clip)] = record.row
        records.append(record)
        for note in notes:
            ledger.repair(record.row, record.subject, record.video, note)
    if layout.several_clips_per_video:
        _note_shared_videos(records, ledger)
    excluded = sorted(ledger.excluded, key=lambda issue: issue.row)
    return AnnotationTable(dataset=layout.dataset, records=records, repaired=ledger.repaired(),
                           excluded=excluded, path=data.path, sheet=data.sheet)


def _check_row(layout: SheetLayout, data: SheetData,
               sheet_row: SheetRow) -> RowIssue | tuple[ClipRecord, list[str]]:
    """One row: the kept record and its repair notes, or the exclusion."""
    cells = sheet_row.cells
    row = sheet_row.row
    raw_subject = cell_text(cells["subject"])
    filename = cell_text(cells["filename"])
    subject = _normalise_subject(raw_subject, layout.subject_width)

    def excluded(reason: str) -> RowIssue:
        return RowIssue(subject=subject, filename=filename, reason=reason, row=row)

    if not raw_subject:
        return excluded("no subject")
    if not filename:
        return excluded("no filename")
    for name, text in (("subject", subject), ("filename", filename)):
        # both become folder names under --data-root: a path in a cell must not reach outside
        if "/" in text or "\\" in text or text in (".", "..") or "\0" in text:
            return excluded(f"{name} {text!r} is not a plain folder name")
    notes: list[str] = []
    if subject != raw_subject:
        notes.append(f"subject {raw_subject!r} (stored as a number) read as {subject!r}")
    emotion = normalise_emotion(cells["emotion"])
    allowed = DATASET_EMOTIONS[layout.dataset]
    if not emotion:
        return excluded("no emotion")
    if emotion not in allowed:
        return excluded(f"emotion {cell_text(cells['emotion'])!r} is not a {layout.title} "
                        f"emotion (expected one of {', '.join(allowed)})")
    try:
        parsed = parse_au_string(cells["aus"])
    except AUParseError as err:
        column = next(c.name for c in layout.columns if c.field == "aus")
        raise AnnotationError(f"{data.path}, sheet {data.sheet!r}, row {row}, column "
                              f"{column!r}: {err}") from None
    verdict = check_timing(cells["onset"], cells["apex"], cells["offset"], layout.fps)
    if verdict.exclusion is not None:
        return excluded(verdict.exclusion)
    if parsed.unidentified:
        notes.append(f"AU cell {cell_text(cells['aus'])!r} names no AU: AU set left empty")
    notes.extend(f"{note!r} in the AU cell is a FACS descriptor, not an AU: kept in "
                 "extra['au_descriptors']" for note in parsed.notes)
    notes.extend(verdict.notes)
    extra = {key: cell_text(cells[fld]) for fld, key in layout.extras
             if fld in cells and cell_text(cells[fld])}
    if parsed.notes:
        extra["au_descriptors"] = ", ".join(parsed.notes)
    extra["au_cell"] = cell_text(cells["aus"])  # as written: the Table II rule variants use it
    record = ClipRecord(dataset=layout.dataset, subject=subject,
                        clip=layout.clip_name(filename, cell_text(cells["onset"])),
                        video=filename, emotion=emotion, aus=parsed.aus, onset=verdict.onset,
                        apex=verdict.apex, offset=verdict.offset, row=row, extra=extra)
    return record, notes


def _note_shared_videos(records: list[ClipRecord], ledger: _Ledger) -> None:
    """Note every kept clip whose video holds other clips too (CAS(ME)^3)."""
    by_video: dict[tuple[str, str], list[ClipRecord]] = defaultdict(list)
    for record in records:
        by_video[(record.subject, record.video)].append(record)
    for clips in by_video.values():
        if len(clips) < 2:
            continue
        rows = ", ".join(str(c.row) for c in clips)
        for record in clips:
            ledger.repair(record.row, record.subject, record.video,
                          f"video {record.video!r} holds {len(clips)} clips (rows {rows}): kept "
                          f"as clip {record.clip!r}, frames {record.onset}-{record.offset}")


def table_from_records(dataset: str, records: list[ClipRecord]) -> AnnotationTable:
    """Check records made in code (the ``synth`` generator) like sheet rows.

    A record with an emotion outside the dataset's labels, onset/apex/offset out of order, or a
    repeated subject/clip is excluded with its reason; the others are kept unchanged.
    """
    allowed = DATASET_EMOTIONS.get(dataset)
    if allowed is None:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_EMOTIONS)}")
    kept: list[ClipRecord] = []
    excluded: list[RowIssue] = []
    seen: set[tuple[str, str]] = set()
    for record in records:
        reason = None
        if record.emotion not in allowed:
            reason = f"emotion {record.emotion!r} is not one of {', '.join(allowed)}"
        elif not record.onset < record.offset:
            reason = f"onset {record.onset} is not before offset {record.offset}"
        elif record.apex is not None and not record.onset <= record.apex <= record.offset:
            reason = f"apex {record.apex} is outside [onset {record.onset}, offset {record.offset}]"
        elif (record.subject, record.clip) in seen:
            reason = f"duplicate clip {record.key!r}"
        if reason is not None:
            excluded.append(RowIssue(subject=record.subject, filename=record.clip, reason=reason,
                                     row=record.row))
            continue
        seen.add((record.subject, record.clip))
        kept.append(record)
    return AnnotationTable(dataset=dataset, records=kept, excluded=excluded)
