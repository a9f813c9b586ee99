"""The output paper as a Word document for the editorial team (python-docx): the HTML paper's sections as
headings, numbered recommendations, the charts as images and the annexes as tables. Note text goes in as
text runs, which Word never reads as markup."""

from __future__ import annotations

import io
import re

from docx import Document
from docx.document import Document as DocxDocument
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.shared import Cm, Pt, RGBColor
from docx.text.paragraph import Paragraph

from pipeline.paper import Paper, Recommendation, chart_pngs

BLUE = RGBColor(0x00, 0x33, 0x99)
RED = RGBColor(0xB0, 0x00, 0x20)
GREY = RGBColor(0x4A, 0x5A, 0x6A)
# characters XML 1.0 cannot hold: a note carrying one would make the document unreadable
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("", str(value))


def _support(before: Paragraph, text: str) -> None:
    run = before.insert_paragraph_before().add_run(_text(text))
    run.font.size, run.font.color.rgb = Pt(9), GREY


def _recommendation(before: Paragraph, r: Recommendation, n_sessions: int) -> None:
    item = before.insert_paragraph_before(style="List Number")
    item.add_run(_text(r.text)).bold = True
    if r.status == "draft":
        draft = item.add_run("  draft")
        draft.font.color.rgb, draft.font.size = RED, Pt(8)
    votes = f" · {r.votes} vote{'s' if r.votes != 1 else ''}" if r.votes else ""
    _support(
        before,
        f"raised at {r.n_tables} of {n_sessions} table sessions{votes} · {r.n_statements} statements",
    )
    for e in r.examples:
        quote = f"“{e.text}”" + (f" [en: {e.translation}]" if e.translation else "") + f" ({e.table})"
        before.insert_paragraph_before(_text(quote), style="List Bullet 2")


def _heading(before: Paragraph, text: str, level: int) -> Paragraph:
    return before.insert_paragraph_before(text, style="Title" if level == 0 else f"Heading {level}")


def _pictures(before: Paragraph, pngs: list[bytes]) -> None:
    for png in pngs:
        picture = before.insert_paragraph_before()
        picture.add_run().add_picture(io.BytesIO(png), width=Cm(16))
        picture.alignment = WD_ALIGN_PARAGRAPH.LEFT


def _table(doc: DocxDocument, header: list[str], rows: list[list[object]]) -> None:
    table = doc.add_table(rows=1, cols=len(header))
    table.style = "Light List Accent 1"
    for cell, title in zip(table.rows[0].cells, header, strict=True):
        cell.text = title
    for row in rows:
        for cell, value in zip(table.add_row().cells, row, strict=True):
            cell.text = _text(value)


def _markdown_paragraphs(before: Paragraph, text: str) -> None:
    """The editors' Markdown, paragraph by paragraph (emphasis marks dropped)."""
    for block in re.split(r"\n\s*\n", text.strip()):
        plain = re.sub(r"^\s*(#+|>)\s*", "", " ".join(block.split()))  # a heading or quote mark
        plain = re.sub(r"\*\*|__|\*|`", "", plain)  # emphasis and code marks
        if plain:
            before.insert_paragraph_before(_text(plain))


def render_docx(paper: Paper) -> bytes:
    """The document is written front to back by inserting before its annexes' heading, made first:
    python-docx appends a paragraph after searching the whole body for its section properties, which
    makes a paper of ten thousand recommendations quadratic; an insertion before a paragraph is not."""
    doc = Document()
    for section in doc.sections:
        section.left_margin = section.right_margin = Cm(2)
    doc.styles["Normal"].font.name = "Calibri"
    doc.styles["Normal"].font.size = Pt(10.5)
    for heading in ("Title", "Heading 1", "Heading 2", "Heading 3"):  # one colour, set on the styles
        doc.styles[heading].font.color.rgb = BLUE

    before = doc.add_heading("Annex: every recommendation and its support", level=1)
    _heading(before, _text(paper.title), level=0)
    meta = " · ".join(p for p in ("Output paper", paper.date, paper.place) if p)
    _support(before, meta)
    if paper.organisers:
        _support(before, "Organised by " + ", ".join(paper.organisers))
    if paper.drafts:
        mark = before.insert_paragraph_before().add_run(
            f"DRAFT · {paper.drafts} recommendation{'s' if paper.drafts != 1 else ''} not yet approved by "
            "the editors"
        )
        mark.bold, mark.font.color.rgb = True, RED
    before.insert_paragraph_before(
        f"{paper.n_tables} tables · {paper.n_sessions} table sessions · {paper.n_statements} statements · "
        f"{paper.n_themes} recommendation{'s' if paper.n_themes != 1 else ''}"
    )

    _heading(before, "Executive summary", level=1)
    before.insert_paragraph_before(
        "The points raised at the largest share of the table sessions that answered their question, the "
        "strongest of each topic:"
    )
    for k in paper.summary:
        item = before.insert_paragraph_before(style="List Number")
        item.add_run(_text(k.recommendation.text)).bold = True
        item.add_run(
            _text(
                f" ({k.topic}: {k.recommendation.n_tables} of {k.recommendation.n_sessions} table sessions)"
            )
        )
    if paper.introduction:
        _heading(before, "Introduction", level=1)
        _markdown_paragraphs(before, paper.introduction)

    _heading(before, "Key recommendations per topic", level=1)
    for session in paper.sessions:
        for topic in session.topics:
            _heading(before, _text(f"{topic.title} ({topic.kind})"), level=3)
            for k in topic.key:
                r = k.recommendation
                before.insert_paragraph_before(
                    _text(f"{r.text} ({r.n_tables} of {r.n_sessions} table sessions; “{k.question}”)"),
                    style="List Bullet",
                )

    if paper.cross_cutting:
        _heading(before, "Cross-cutting recommendations", level=1)
        before.insert_paragraph_before(
            "Points raised under several topics, by the table sessions that raised them."
        )
        for c in paper.cross_cutting:
            item = before.insert_paragraph_before(style="List Number 2")
            item.add_run(_text(c.label)).bold = True
            _support(before, f"raised at {c.n_tables} table sessions across " + ", ".join(c.topics))
            for m in c.members:
                before.insert_paragraph_before(
                    _text(f"{m.recommendation.text} ({m.topic}, {m.recommendation.n_tables} table sessions)"),
                    style="List Bullet 2",
                )

    _heading(before, "How this paper was made", level=1)
    before.insert_paragraph_before(
        f"Table hosts took notes at {paper.n_tables} tables in {paper.n_sessions} table sessions (a table in "
        f"one round). Harvest split the notes into {paper.n_statements} statements, grouped the statements "
        "that make the same point within each question, and ranked the recommendations by how many table "
        f"sessions raised them; votes break ties. {paper.n_remarks} remarks about the sessions are left out; "
        f"{paper.n_unassigned} statements are in no recommendation. Quotes are lightly cleaned for reading; "
        "the export (statements.csv, themes.csv) keeps them as written."
    )
    if paper.languages:
        before.insert_paragraph_before(
            "Notes in other languages: "
            + "; ".join(f"{c.name} {c.n_statements} ({c.routes})" for c in paper.languages)
            + "."
        )

    for session in paper.sessions:
        _heading(before, _text(session.title or session.id), level=1)
        if session.introduction:
            _markdown_paragraphs(before, session.introduction)
        if session.polls:
            _heading(before, "Live polls", level=2)
        for poll in session.polls:
            _heading(before, _text(poll.question), level=3)
            _pictures(before, chart_pngs(poll))
            for option, value in poll.options:
                before.insert_paragraph_before(
                    _text(f"{option} ({poll.shown(value)})"), style="List Number 3"
                )
        for topic in session.topics:
            _heading(before, _text(f"{topic.title} ({topic.kind})"), level=2)
            for q in topic.questions:
                _heading(before, _text(q.text), level=3)
                _support(before, f"{q.n_sessions} table sessions answered · {q.n_statements} statements")
                if not q.recommendations:
                    before.insert_paragraph_before(
                        "No recommendation was raised at more than one table session."
                    )
                    continue
                _pictures(before, chart_pngs(q))
                for r in q.recommendations:
                    _recommendation(before, r, q.n_sessions)

    _table(
        doc,
        ["Topic", "#", "Recommendation", "Table sessions", "Statements", "Id (export)"],
        [
            [t.title, r.rank, r.text, f"{r.n_tables} of {q.n_sessions}", r.n_statements, r.theme_id]
            for t, q, r in paper.recommendations
        ],
    )
    doc.add_heading("Annex: the tables", level=1)
    _table(
        doc,
        ["Table", "Rounds", "Statements", "Topics"],
        [[t.table, t.rounds, t.n_statements, t.topics] for t in paper.tables],
    )
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()
