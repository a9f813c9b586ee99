"""CSV, XLSX and ODS: one note a row, columns ``table, round, topic, question, text``, any order and case."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass

from pipeline.readers.common import NoteFileError, Problem, RawNote, check_zip, decode_text
from pipeline.schema import OPTIONAL_NOTE_FIELDS, REQUIRED_NOTE_FIELDS

#: Excel's first line naming a CSV's separator
_SEPARATOR_LINE = re.compile(r"sep=(.)")

KNOWN_COLUMNS = (*REQUIRED_NOTE_FIELDS, *OPTIONAL_NOTE_FIELDS)


def read_csv(
    name: str,
    data: bytes,
    defaults: dict[str, str] | None = None,
    columns: tuple[tuple[str, ...], tuple[str, ...]] = (REQUIRED_NOTE_FIELDS, KNOWN_COLUMNS),
    as_accepted: bool = False,
) -> list[RawNote]:
    """Rows of a CSV file; ``columns``: those required and all those read (a note file's by default).
    ``as_accepted``: a file accepted before misread code pages were refused (``decode_text``)."""
    text = decode_text(name, data, strict=not as_accepted)
    # the first line ends at \n, \r\n or a lone \r (old Mac Excel's "CSV (Macintosh)")
    first_line = next(iter(text.splitlines()), "")
    said = _SEPARATOR_LINE.fullmatch(first_line.strip())
    if said:  # Excel's "sep=;" line, which tools write for Excel to open the file right
        rest = text[len(first_line) :]
        rest = rest[2:] if rest.startswith("\r\n") else rest[1:]  # the line's end, one of three
        delimiter, text, skipped = said.group(1), rest, 1
    else:
        skipped = 0
        try:  # Excel writes ';' or tabs in some locales: the header line says which
            delimiter = csv.Sniffer().sniff(first_line, delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    # only the delimiter is taken from the sniffer: the rest is RFC 4180 as Excel, LibreOffice and pandas
    # write it (a quote inside a quoted field is doubled), which one header line cannot tell
    reader = csv.reader(io.StringIO(text, newline=""), csv.excel, delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    try:
        start = 1 + skipped
        for cells in reader:
            rows.append((start, cells))
            start = reader.line_num + 1 + skipped
    except csv.Error as exc:
        raise NoteFileError(
            name, [Problem(name, f"malformed CSV: {exc}", reader.line_num + skipped)]
        ) from None
    return notes_from_rows(name, rows, defaults or {}, *columns)


def read_xlsx(
    name: str,
    data: bytes,
    defaults: dict[str, str] | None = None,
    columns: tuple[tuple[str, ...], tuple[str, ...]] = (REQUIRED_NOTE_FIELDS, KNOWN_COLUMNS),
) -> list[RawNote]:
    """Rows of the workbook's visible sheets whose header row names the columns (``columns`` as for
    ``read_csv``; those ``defaults`` do not give), one after another: a sheet of instructions before them
    or of lists beside them holds no notes, and a hidden sheet is none the facilitator sees. Rows of a
    sheet after the first are placed by the sheet's name ("sheet 'Round 2', row 3")."""
    from openpyxl import load_workbook

    if not data.strip():
        raise NoteFileError(name, [Problem(name, "the file is empty")])
    check_zip(name, data, "XLSX workbook")
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise NoteFileError(name, [Problem(name, f"not a readable XLSX workbook ({exc})")]) from None
    if not workbook.worksheets:
        raise NoteFileError(name, [Problem(name, "the workbook has no worksheet")])
    sheets: list[Sheet] = []
    for sheet in workbook.worksheets:
        # the sheet's declared <dimension> ("A1:XFD1048576") would pad every row to 16,384 cells: read the
        # cells that are there
        sheet.reset_dimensions()
        rows = [
            (i, ["" if v is None else _cell_text(v) for v in values])
            for i, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        ]
        sheets.append(Sheet(sheet.title, rows, sheet.sheet_state == "visible"))
    workbook.close()
    return _notes_of_sheets(name, sheets, defaults or {}, columns)


def read_ods(
    name: str,
    data: bytes,
    defaults: dict[str, str] | None = None,
    columns: tuple[tuple[str, ...], tuple[str, ...]] = (REQUIRED_NOTE_FIELDS, KNOWN_COLUMNS),
) -> list[RawNote]:
    """Rows of an OpenDocument spreadsheet (LibreOffice Calc's own format), its sheets as an XLSX's
    (``read_xlsx``), read by pandas with odfpy; hidden sheets too, which pandas does not tell apart."""
    import pandas as pd

    if not data.strip():
        raise NoteFileError(name, [Problem(name, "the file is empty")])
    check_zip(name, data, "ODS spreadsheet")
    try:
        frames = pd.read_excel(io.BytesIO(data), engine="odf", sheet_name=None, header=None, dtype=object)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise NoteFileError(name, [Problem(name, f"not a readable ODS spreadsheet ({exc})")]) from None
    if not frames:
        raise NoteFileError(name, [Problem(name, "the spreadsheet has no sheet")])
    sheets = [
        Sheet(
            str(title),
            [
                (i, ["" if pd.isna(v) else _cell_text(v) for v in values])
                for i, values in enumerate(frame.itertuples(index=False), start=1)
            ],
        )
        for title, frame in frames.items()
    ]
    return _notes_of_sheets(name, sheets, defaults or {}, columns)


@dataclass(frozen=True)
class Sheet:
    """A spreadsheet's sheet as read: its title, its numbered rows of cells, whether it is shown."""

    title: str
    rows: list[tuple[int, list[str]]]
    visible: bool = True


def _notes_of_sheets(
    name: str, sheets: list[Sheet], defaults: dict[str, str], columns: tuple[tuple[str, ...], tuple[str, ...]]
) -> list[RawNote]:
    """The notes of a workbook's visible sheets whose header row names the columns, one after another.
    The first sheet's rows keep their plain numbers (and so its notes their ids, as when only the first
    sheet was read); a later sheet's are placed by its name."""
    required, known = columns
    needed = [c for c in required if not defaults.get(c)]
    placed = [
        (f"sheet '{sheet.title}', row" if position else "", sheet) for position, sheet in enumerate(sheets)
    ]
    named = [
        (place, sheet.rows)
        for place, sheet in placed
        if sheet.visible and _names_columns(sheet.rows, required, needed)
    ]
    if not named:  # the first sheet's problem: no header row
        return notes_from_rows(name, sheets[0].rows, defaults, required, known)
    notes: list[RawNote] = []
    problems: list[Problem] = []
    for place, rows in named:
        try:
            notes += notes_from_rows(name, rows, defaults, required, known, place)
        except NoteFileError as exc:
            problems += exc.problems
    if problems:
        raise NoteFileError(name, problems)
    return notes


#: Rows a sheet may hold above its header row: a title, the event's name, a line of instructions
TITLE_ROWS = 5


def _filled(rows: list[tuple[int, list[str]]]) -> list[tuple[int, list[str]]]:
    return [(i, cells) for i, cells in rows if any(c.strip() for c in cells)]  # blank rows are layout


def _header_row(rows: list[tuple[int, list[str]]], required: tuple[str, ...]) -> int:
    """Where the header row is among ``rows`` (rows with text): the first of the first ``TITLE_ROWS`` + 1
    to name one of the ``required`` columns; 0 if none does, and the first row is then found wanting."""
    for position, (_, cells) in enumerate(rows[: TITLE_ROWS + 1]):
        if any(cell.strip().lower() in required for cell in cells):
            return position
    return 0


def header_names(
    rows: list[tuple[int, list[str]]], required: tuple[str, ...] = REQUIRED_NOTE_FIELDS
) -> set[str]:
    """The column names of the header row ``notes_from_rows`` would take, as it reads them."""
    rows = _filled(rows)
    return {cell.strip().lower() for cell in rows[_header_row(rows, required)][1]} if rows else set()


def _names_columns(rows: list[tuple[int, list[str]]], required: tuple[str, ...], needed: list[str]) -> bool:
    """Whether the header row names every ``needed`` column: a sheet of notes, not one of instructions
    or of the lists a template's drop-downs offer (a ``topic`` column alone)."""
    return bool(needed) and header_names(rows, required).issuperset(needed)


def _cell_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def notes_from_rows(
    name: str,
    rows: list[tuple[int, list[str]]],
    defaults: dict[str, str],
    required: tuple[str, ...] = REQUIRED_NOTE_FIELDS,
    known: tuple[str, ...] = KNOWN_COLUMNS,
    place: str = "",
    line_kind: str = "row",
) -> list[RawNote]:
    """Rows -> notes, a header row naming the columns (below a title, if any: ``_header_row``); a column
    missing from the sheet may come from ``defaults``. ``place``: what the row numbers count in, when not
    the file's own ``line_kind`` (``RawNote.place``)."""
    kind = place or line_kind
    rows = _filled(rows)
    if not rows:
        raise NoteFileError(name, [Problem(name, "the file is empty")])
    rows = rows[_header_row(rows, required) :]
    header_line, header = rows[0]
    columns = [h.strip().lower() for h in header]
    missing = [c for c in required if c not in columns and not defaults.get(c)]
    if not any(c in columns for c in required):
        raise NoteFileError(
            name,
            [
                Problem(
                    name,
                    f"no header row: the first row must name the columns {', '.join(required)} "
                    f"(found {', '.join(repr(h) for h in header[:6])})",
                    header_line,
                    None,
                    kind,
                )
            ],
        )
    problems = [
        Problem(
            name,
            f"missing column '{c}' (columns needed: {', '.join(required)}; "
            f"found: {', '.join(c for c in columns if c)})",
            header_line,
            None,
            kind,
        )
        for c in missing
    ]
    dupes = sorted({c for c in columns if c and columns.count(c) > 1})
    problems += [Problem(name, f"column '{c}' appears twice", header_line, None, kind) for c in dupes]
    if problems:
        raise NoteFileError(name, problems)
    index = {c: columns.index(c) for c in known if c in columns}
    notes = []
    for line, cells in rows[1:]:
        if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
            problem = f"{len(cells)} cells but the header has {len(columns)}"
            problems.append(Problem(name, problem, line, None, kind))
            continue
        cells_by_name = {k: cells[i] if i < len(cells) else "" for k, i in index.items()}
        notes.append(
            RawNote(line, {**defaults, **{k: v for k, v in cells_by_name.items() if v.strip()}}, place)
        )
    if problems:
        raise NoteFileError(name, problems)
    return notes
