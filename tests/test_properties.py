"""Properties of the readers, over generated input (Hypothesis): any bytes give notes or a NoteFileError,
never another exception; any table that Python's csv module, pandas or openpyxl writes reads back
identical."""

from __future__ import annotations

import csv
import io

import openpyxl
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.event import load_event
from pipeline.readers import NoteFileError, read_notes
from pipeline.schema import NOTES
from tests.conftest import FIXTURES

EVENT = load_event(FIXTURES)
QUESTIONS = sorted(EVENT.questions())
SUFFIXES = [".csv", ".xlsx", ".docx", ".md", ".txt"]
FIXTURE_FILES = {
    ".csv": (FIXTURES / "table-notes.csv").read_bytes(),
    ".xlsx": (FIXTURES / "table-notes.xlsx").read_bytes(),
    ".docx": (FIXTURES / "table-notes.docx").read_bytes(),
    ".md": (FIXTURES / "table-notes.md").read_bytes(),
    ".txt": (FIXTURES / "table-notes.md").read_bytes(),
}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_or_refuse(name: str, data: bytes) -> pd.DataFrame | None:
    """The notes, or None when the file is refused; any other exception fails the property."""
    try:
        notes = read_notes(name, data, EVENT, max_bytes=1_000_000)
    except NoteFileError as error:
        assert error.problems and all(p.file == name for p in error.problems)
        return None
    assert list(notes.columns) == NOTES.names and len(notes) > 0
    return notes


@FAST
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=4096))
def test_any_bytes_give_notes_or_a_clear_refusal(suffix: str, data: bytes) -> None:
    read_or_refuse(f"random{suffix}", data)


@FAST
@given(
    suffix=st.sampled_from(SUFFIXES),
    edits=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), st.binary(min_size=0, max_size=8)), max_size=6
    ),
)
def test_damaged_real_files_give_notes_or_a_clear_refusal(
    suffix: str, edits: list[tuple[float, bytes]]
) -> None:
    """A file as Excel, Word or an editor wrote it, with bytes overwritten, cut out or put in."""
    data = bytearray(FIXTURE_FILES[suffix])
    for where, what in edits:
        at = int(where * len(data))
        data[at : at + len(what) // 2] = what
    read_or_refuse(f"damaged{suffix}", bytes(data))


# ----------------------------------------------------------------------------- round trips
TEXT = (
    st.text(
        # letters, digits, punctuation, symbols and spaces of any script; no "(" or "[" (a vote marker such
        # as "(+2)" is read as votes, by design) and no line breaks (a cell with a line break is one note)
        alphabet=st.characters(
            categories=["L", "N", "P", "S", "Zs"], exclude_characters="([\x85\u2028\u2029"
        ),
        min_size=1,
        max_size=60,
    )
    .map(str.strip)
    .filter(lambda t: bool(t) and not t.startswith(("=", "+", "-", "@")))
)
ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "table": st.from_regex(r"[a-z]{1,6}-t[0-9]{1,3}", fullmatch=True),
            "round": st.integers(1, 9),
            "question": st.sampled_from(QUESTIONS),
            "text": TEXT,
        }
    ),
    min_size=1,
    max_size=12,
)
HEADER = ["table", "round", "topic", "question", "text"]


def _cells(row: dict) -> list[object]:
    topic, question = row["question"]
    return [row["table"], row["round"], topic, question, row["text"]]


def _written_by_csv_module(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)  # Excel's dialect: quotes doubled, fields with commas or quotes quoted
    writer.writerow(HEADER)
    writer.writerows(_cells(r) for r in rows)
    return out.getvalue().encode("utf-8")


def _written_by_pandas(rows: list[dict]) -> bytes:
    return pd.DataFrame([_cells(r) for r in rows], columns=HEADER).to_csv(index=False).encode("utf-8")


def _written_by_openpyxl(rows: list[dict]) -> bytes:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER)
    for row in rows:
        sheet.append(_cells(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("writer", "suffix"),
    [(_written_by_csv_module, ".csv"), (_written_by_pandas, ".csv"), (_written_by_openpyxl, ".xlsx")],
    ids=["csv module", "pandas", "openpyxl"],
)
@FAST
@given(rows=ROWS)
def test_a_table_reads_back_as_it_was_written(writer, suffix: str, rows: list[dict]) -> None:
    notes = read_notes(f"notes{suffix}", writer(rows), EVENT)
    read_back = list(
        zip(notes["table"], notes["round"], notes["topic"], notes["question"], notes["text"], strict=True)
    )
    assert read_back == [(r["table"], r["round"], *r["question"], r["text"]) for r in rows]


def test_the_fixtures_are_what_the_damage_starts_from() -> None:
    for suffix, data in FIXTURE_FILES.items():
        assert len(read_notes(f"fixture{suffix}", data, EVENT)) > 0, suffix
