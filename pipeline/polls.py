"""Live-poll results for the paper: CSV or XLSX files in ``EVENT_DIR/polls/``, one row per option.

Columns, in any order and case: ``question``, ``option`` and one measure, ``votes`` (a count),
``percent`` (0-100, "35" or "35 %") or ``rank`` (1 = first); ``session`` (an id of event.yaml) unless
the event has one session. A file with any problem is refused whole, every problem named by file, row and
column, as note files are (``pipeline.readers``).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePath

import pandas as pd

from pipeline.event import Event
from pipeline.readers.common import MAX_COUNT, NoteFileError, Problem, whole_number
from pipeline.readers.tabular import read_csv, read_xlsx

POLL_DIR = "polls"
MEASURES = ("votes", "percent", "rank")
REQUIRED = ("question", "option")
KNOWN = ("session", *REQUIRED, *MEASURES)
COLUMNS = ["session", "question", "option", "measure", "value", "source_file", "source_line"]
_PERCENT = re.compile(r"^\s*(\d{1,3}(?:[.,]\d+)?)\s*%?\s*$")


def read_poll(name: str, data: bytes, event: Event) -> pd.DataFrame:
    """One poll file's rows (``COLUMNS``), best first within each question; ``NoteFileError`` lists every
    problem."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise NoteFileError(name, [Problem(name, "a poll file is CSV or XLSX")])
    reader = read_csv if suffix == ".csv" else read_xlsx
    rows = reader(name, data, {}, (REQUIRED, KNOWN))
    problems: list[Problem] = []
    present = [m for m in MEASURES if any(m in r.fields for r in rows)]
    if len(present) != 1:
        found = ", ".join(present) or "none"
        raise NoteFileError(
            name, [Problem(name, f"give one of the columns {', '.join(MEASURES)} (found: {found})", 1)]
        )
    measure = present[0]
    sessions = {s.id for s in event.sessions}
    default_session = next(iter(sessions)) if len(sessions) == 1 else ""
    records: list[tuple[object, ...]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for row in rows:
        f = row.fields

        def bad(column: str, reason: str, line: int = row.line) -> None:
            problems.append(Problem(name, reason, line, column))

        session = f.get("session", "").strip().lower() or default_session
        if not session:
            bad("session", f"missing session (valid: {', '.join(sorted(sessions))})")
        elif session not in sessions:
            bad("session", f"unknown session '{session}' (valid: {', '.join(sorted(sessions))})")
        question, option = f.get("question", "").strip(), f.get("option", "").strip()
        if not question:
            bad("question", "empty question")
        if not option:
            bad("option", "empty option")
        value = _value(measure, f.get(measure, ""))
        if value is None:
            bad(measure, _expected(measure, f.get(measure, "")))
        key = (session, question.casefold(), option.casefold())
        if question and option and key in seen:
            bad("option", f"'{option}' is already listed for this question at row {seen[key]}")
        seen.setdefault(key, row.line)
        records.append((session, question, option, measure, value, name, row.line))
    if problems:
        raise NoteFileError(name, problems)
    frame = pd.DataFrame(records, columns=COLUMNS)
    ascending = measure == "rank"
    return frame.sort_values(
        ["session", "question", "value"], ascending=[True, True, ascending], kind="stable"
    )


def _value(measure: str, written: str) -> float | None:
    if measure == "percent":
        match = _PERCENT.match(written)
        number = float(match.group(1).replace(",", ".")) if match else None
        return number if number is not None and 0 <= number <= 100 else None
    number = whole_number(written)
    low = 1 if measure == "rank" else 0
    return float(number) if number is not None and number >= low else None


def _expected(measure: str, written: str) -> str:
    what = {
        "votes": f"a whole number from 0 to {MAX_COUNT:,}",
        "percent": "a number from 0 to 100 (35 or 35 %)",
        "rank": "a whole number from 1 (the first)",
    }[measure]
    return f"{measure} must be {what}, got '{written}'"


def read_event_polls(event_dir: Path, event: Event) -> tuple[pd.DataFrame, list[NoteFileError]]:
    """Every poll file of the event folder: the rows of those that read, and the errors of the others."""
    frames, errors = [], []
    folder = Path(event_dir) / POLL_DIR
    for path in sorted(folder.glob("*")) if folder.is_dir() else []:
        if path.name.startswith((".", "~$")) or not path.is_file():
            continue
        try:
            frames.append(read_poll(path.name, path.read_bytes(), event))
        except NoteFileError as exc:
            errors.append(exc)
    polls = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return polls, errors
