"""Live polls: read from CSV and XLSX with precise errors, and shown in their session of the paper."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook

from pipeline.event import Event
from pipeline.paper import build_paper, render_markdown
from pipeline.polls import read_poll
from pipeline.readers.common import NoteFileError
from pipeline.schema import STATEMENTS, THEMES

PERCENT = (
    "Session;Question;Option;Percent\n"
    "day1;How can authorities help?;Simplify regulations;14 %\n"
    "day1;How can authorities help?;Increase public investments;35%\n"
)


def test_a_poll_reads_from_csv_and_xlsx_best_first(event: Event) -> None:
    poll = read_poll("support.csv", PERCENT.encode(), event)
    assert poll[["option", "value"]].values.tolist() == [
        ["Increase public investments", 35.0],
        ["Simplify regulations", 14.0],
    ]
    book = Workbook()
    sheet = book.active
    for row in [
        ["question", "option", "rank"],
        ["Adapt how?", "Search new markets", 2],
        ["Adapt how?", "Train staff", 1],
    ]:
        sheet.append(row)
    data = io.BytesIO()
    book.save(data)
    ranked = read_poll("adapt.xlsx", data.getvalue(), event)
    assert ranked.option.tolist() == ["Train staff", "Search new markets"]  # rank 1 first
    assert set(ranked.session) == {event.sessions[0].id}


def test_a_bad_poll_file_is_refused_with_every_problem_named(event: Event) -> None:
    bad = "session,question,option,votes\nnowhere,Q,Yes,3\nday1,,No,-1\nday1,Q,Yes,2\nday1,Q,Yes,4\n"
    with pytest.raises(NoteFileError) as caught:
        read_poll("poll.csv", bad.encode(), event)
    problems = [str(p) for p in caught.value.problems]
    assert any("row 2, column 'session': unknown session 'nowhere'" in p for p in problems)
    assert any("row 3, column 'question': empty question" in p for p in problems)
    assert any("row 3, column 'votes': votes must be a whole number" in p for p in problems)
    assert any(
        "row 5, column 'option': 'Yes' is already listed for this question at row 4" in p for p in problems
    )
    with pytest.raises(NoteFileError, match="give one of the columns votes, percent, rank"):
        read_poll("two.csv", b"question,option,votes,percent\nQ,A,1,2\n", event)
    with pytest.raises(NoteFileError, match="a poll file is CSV or XLSX"):
        read_poll("poll.docx", b"", event)


def test_polls_are_charted_and_listed_in_their_session(event: Event) -> None:
    poll = read_poll("support.csv", PERCENT.encode(), event)
    paper = build_paper(event, STATEMENTS.empty().assign(theme_id=""), THEMES.empty(), polls=poll)
    [shown] = paper.sessions[0].polls
    assert shown.options[0] == ("Increase public investments", 35.0) and shown.shown(35.0) == "35 %"
    md = render_markdown(paper)
    assert "### Live polls" in md and "1. Increase public investments (35 %)" in md
