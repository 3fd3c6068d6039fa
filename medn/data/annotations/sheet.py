"""Read one sheet of an annotation workbook (pandas + openpyxl) into rows keyed by field name.

The header row is found by content (the first row, among the first ``HEADER_SEARCH_ROWS``, that
holds every required column), so SAMM's 13 preamble rows need no special case; each returned row
carries its row number as Excel shows it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medn.data.annotations.errors import AnnotationError

HEADER_SEARCH_ROWS = 30


@dataclass(frozen=True)
class Column:
    """One field of a sheet: its name as the official sheet spells it, and accepted aliases."""

    field: str
    name: str
    aliases: tuple[str, ...] = ()
    required: bool = True

    def matches(self, header: str) -> bool:
        """Whether a header cell names this column (case, spaces and underscores ignored)."""
        key = _header_key(header)
        return key in {_header_key(self.name), *(_header_key(a) for a in self.aliases)}


@dataclass(frozen=True)
class SheetRow:
    """One data row: ``row`` as Excel numbers it, ``cells`` the raw values by field name."""

    row: int
    cells: dict[str, object]


@dataclass(frozen=True)
class SheetData:
    """The rows of one sheet, with where they came from."""

    path: Path
    sheet: str
    header_row: int
    rows: list[SheetRow]


def _header_key(text: object) -> str:
    return re.sub(r"[\s_]+", "", str(text)).lower()


def cell_text(value: object) -> str:
    """A cell as trimmed text: Excel numbers lose a ``.0``; empty cells give ``''``."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return ""
        if value.is_integer():
            return str(int(value))
    return str(value).strip()


def read_sheet(path: Path, sheet: str | int, columns: list[Column], dataset: str) -> SheetData:
    """Read ``sheet`` (a name, or an index for "the first sheet") of the workbook at ``path``.

    Raises ``AnnotationError`` naming the file (and sheet / column) when the file is missing or is
    not a workbook, the sheet is absent, no header row holds the required columns, or a required
    column is missing.
    """
    path = Path(path)
    if not path.is_file():
        what = ("is a directory" if path.is_dir() else
                "is not a regular file" if path.exists() else "does not exist")
        raise AnnotationError(f"{dataset} annotation file {path} {what}; expected the "
                              "dataset's .xlsx sheet")
    try:
        book = pd.read_excel(path, sheet_name=None, header=None, dtype=object, engine="openpyxl")
    except Exception as err:  # openpyxl raises several types for non-workbooks
        raise AnnotationError(f"cannot read {path} as an Excel workbook (.xlsx): {err}") from err
    names = list(book)
    if isinstance(sheet, int):
        if sheet >= len(names):
            raise AnnotationError(f"{path}: workbook has {len(names)} sheets, expected at least "
                                  f"{sheet + 1}")
        sheet_name = names[sheet]
    elif sheet in book:
        sheet_name = sheet
    else:
        raise AnnotationError(f"{path}: no sheet {sheet!r} (the {dataset} sheet); the workbook "
                              f"has sheets {names}")
    frame = book[sheet_name]
    required = [c for c in columns if c.required]
    header_index = _find_header(frame, required)
    if header_index is None:
        wanted = ", ".join(repr(c.name) for c in required)
        raise AnnotationError(
            f"{path}, sheet {sheet_name!r}: no header row holding the {dataset} columns "
            f"{wanted} in the first {HEADER_SEARCH_ROWS} rows")
    header = [cell_text(v) for v in frame.iloc[header_index].tolist()]
    positions: dict[str, int] = {}
    for column in columns:
        found = [i for i, h in enumerate(header) if h and column.matches(h)]
        if found:
            positions[column.field] = found[0]
        elif column.required:
            raise AnnotationError(
                f"{path}, sheet {sheet_name!r}, header row {header_index + 1}: missing column "
                f"{column.name!r} (found columns {[h for h in header if h]})")
    rows = []
    for index in range(header_index + 1, len(frame)):
        values = frame.iloc[index].tolist()
        rows.append(SheetRow(row=index + 1,
                             cells={field: values[pos] for field, pos in positions.items()}))
    return SheetData(path=path, sheet=str(sheet_name), header_row=header_index + 1, rows=rows)


def _find_header(frame: pd.DataFrame, required: list[Column]) -> int | None:
    """The index of the first row naming the two identifying columns (subject and filename).

    Only those two are needed to recognise the header, so that a header missing another column
    is still found and reported by that column's name."""
    identifying = [c for c in required if c.field in {"subject", "filename"}] or required
    for index in range(min(HEADER_SEARCH_ROWS, len(frame))):
        cells = [cell_text(v) for v in frame.iloc[index].tolist()]
        if all(any(c and col.matches(c) for c in cells) for col in identifying):
            return index
    return None
