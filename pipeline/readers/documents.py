"""Word-processor documents, DOCX (Word) and ODT (LibreOffice Writer): a header, then one note a paragraph.

Both read as a Markdown file does (``pipeline.readers.text``): a ``topic: green`` header, then a note per
paragraph or list item, a heading ending one. A table whose first row names its columns as in a CSV (one
of them ``text``) holds one note a row; a table of ``topic | green`` rows may hold the header. Any other
table with text rejects the file, since its notes would be lost unseen. Tracked changes read as accepted.
"""

from __future__ import annotations

import io
import logging
import zipfile
from typing import TYPE_CHECKING

from pipeline.readers.common import NoteFileError, Problem, RawNote, check_zip
from pipeline.readers.tabular import header_names, notes_from_rows
from pipeline.readers.text import HEADER_KEYS, not_a_notes_table, notes_from_body, parse_header

if TYPE_CHECKING:
    from collections.abc import Iterator

    from docx.blkcntnr import BlockItemContainer
    from docx.oxml.xmlchemy import BaseOxmlElement
    from docx.styles.style import ParagraphStyle
    from docx.table import Table, _Cell
    from docx.text.paragraph import Paragraph
    from odf.element import Element

log = logging.getLogger(__name__)

#: A document's paragraphs, numbered from 1 (a heading's text after "# "), and its tables, each with the
#: number of paragraphs before it and its rows of cell texts.
Paragraphs = list[tuple[int, str]]
Tables = list[tuple[int, list[list[str]]]]


def _document_notes(
    name: str, paragraphs: Paragraphs, tables: Tables, defaults: dict[str, str] | None, as_accepted: bool
) -> list[RawNote]:
    """The notes of a document's paragraphs and tables, in the order they stand."""
    headers = [_header_table(rows) for _, rows in tables]
    from_tables = {key: value for pairs in headers if pairs for key, value in pairs.items()}
    header, body = parse_header(
        name, paragraphs, "paragraph", {**(defaults or {}), **from_tables}, as_accepted
    )
    # every paragraph is its own note (a word processor has no soft continuation lines); a table's notes
    # come after the paragraphs before it
    placed = [((note.line, 0, 0), note) for note in notes_from_body(header, body, bullets_only_split=False)]
    problems: list[Problem] = []
    for number, ((before, rows), pairs) in enumerate(zip(tables, headers, strict=True), start=1):
        if pairs is not None or not any(cell for row in rows for cell in row):
            continue  # the header, or an empty table
        try:
            numbered = list(enumerate(rows, start=1))
            if "text" not in header_names(numbered):
                if as_accepted:
                    log.warning("%s: table %d is neither notes nor a header; skipped", name, number)
                    continue
                first_row = next(row for row in rows if any(row))
                raise NoteFileError(name, [not_a_notes_table(name, first_row, number, "table")])
            for note in notes_from_rows(name, numbered, header, place=f"table {number}, row"):
                placed.append(((before, number, note.line), note))
        except NoteFileError as exc:
            problems += exc.problems
    if problems:
        raise NoteFileError(name, problems)
    return [note for _, note in sorted(placed, key=lambda item: item[0])]


def _header_table(rows: list[list[str]]) -> dict[str, str] | None:
    """A table of ``topic | green`` rows (the first cell a header key, a colon allowed): its keys and
    values; None for any other table."""
    pairs: dict[str, str] = {}
    for row in (row for row in rows if any(row)):
        key = row[0].rstrip(":").strip().lower()
        if key not in HEADER_KEYS:
            return None
        # a merged cell is listed once per column it spans: the value is the first other text
        pairs[key] = next((cell for cell in row[1:] if cell and cell != row[0]), "")
    return pairs or None


# --------------------------------------------------------------------------- DOCX
def read_docx(
    name: str,
    data: bytes,
    defaults: dict[str, str] | None = None,
    as_accepted: bool = False,
) -> list[RawNote]:
    """A DOCX's notes (see the module): paragraphs read with their tracked changes accepted and with what
    is typed into content controls.

    ``as_accepted``: the file was accepted before these rules, and is read as then where the rules would
    reject it or number its paragraphs otherwise (its notes keep their ids): other tables are skipped, and
    paragraphs inside block content controls are not read."""
    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from docx.table import Table

    if not data.strip():
        raise NoteFileError(name, [Problem(name, "the file is empty")])
    check_zip(name, data, "DOCX document")
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise NoteFileError(name, [Problem(name, f"not a readable DOCX document ({exc})")]) from None
    paragraphs: Paragraphs = []
    tables: Tables = []
    for block in _blocks(document.element.body, document._body, into_controls=not as_accepted):
        if isinstance(block, Table):
            rows = [[_cell_text(cell) for cell in row.cells] for row in block.rows]
            tables.append((len(paragraphs), rows))
            continue
        text = _paragraph_text(block)
        if _is_heading(block.style, inherited=not as_accepted):
            text = "# " + text  # headings structure the page; they are not notes
        paragraphs.append((len(paragraphs) + 1, text))
    return _document_notes(name, paragraphs, tables, defaults, as_accepted)


#: A paragraph's runs as they read with its tracked changes accepted: inserted runs (``w:ins``, ``w:moveTo``,
#: which python-docx's ``Paragraph.text`` leaves out) count; moved-away ones do not, and deleted ones hold
#: ``w:delText``, which no run's text reads. Text boxes' own paragraphs are not this paragraph's.
_ACCEPTED_RUNS = ".//w:r[not(ancestor::w:moveFrom) and not(ancestor::w:txbxContent)]"


def _blocks(
    container: BaseOxmlElement, parent: BlockItemContainer, into_controls: bool = True
) -> Iterator[Paragraph | Table]:
    """The paragraphs and tables of a document's body in order, with ``into_controls`` those inside block
    content controls too (a template's ``w:sdt`` fields, which python-docx's ``iter_inner_content``
    passes over)."""
    from docx.oxml.ns import qn
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for child in container.iterchildren():
        if child.tag == qn("w:p"):
            yield Paragraph(child, parent)
        elif child.tag == qn("w:tbl"):
            yield Table(child, parent)
        elif child.tag == qn("w:sdt") and into_controls:
            content = child.find(qn("w:sdtContent"))
            if content is not None:
                yield from _blocks(content, parent, into_controls)


def _is_heading(style: ParagraphStyle | None, inherited: bool = True) -> bool:
    """A title, subtitle or heading style, or with ``inherited`` one based on such a style (a template's
    "Table heading" based on Heading 2). A file accepted before reads as then: its own style's name
    only, a subtitle being a note."""
    names = ("heading", "title", "subtitle") if inherited else ("heading", "title")
    for _ in range(20 if inherited else 1):  # a style's base chain is short; a file may make it a loop
        if style is None:
            return False
        if (style.name or "").lower().startswith(names):
            return True
        style = style.base_style
    return False


def _paragraph_text(paragraph: Paragraph) -> str:
    from docx.text.run import Run

    return "".join(Run(run, paragraph).text for run in paragraph._p.xpath(_ACCEPTED_RUNS))


def _cell_text(cell: _Cell) -> str:
    return "\n".join(_paragraph_text(paragraph) for paragraph in cell.paragraphs).strip()


# --------------------------------------------------------------------------- ODT
_TEXT_NS = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE_NS = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_STYLE_NS = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
#: Inside a paragraph, what is not its text: footnotes and endnotes, comments, frames (images, text boxes)
_NOT_PARAGRAPH_TEXT = {"note", "annotation", "frame", "ruby-text"}
#: Beside the paragraphs, what holds no note: deleted text of tracked changes, declarations, forms, frames
#: anchored to the page (images, text boxes: a DOCX's are not read either), and tables of contents or
#: indexes (copies of the headings)
_NOT_BODY = {
    "tracked-changes",
    "frame",
    "sequence-decls",
    "variable-decls",
    "user-field-decls",
    "forms",
    "table-of-content",
    "alphabetical-index",
    "illustration-index",
    "table-index",
    "object-index",
    "user-index",
    "bibliography",
}
#: A cell or row repeated more than this is an empty run to the sheet's edge (LibreOffice writes "1,024
#: empty columns" as one cell); a file cannot blow up by declaring millions.
_MAX_REPEAT = 64


def read_odt(
    name: str,
    data: bytes,
    defaults: dict[str, str] | None = None,
    as_accepted: bool = False,
) -> list[RawNote]:
    """An ODT's notes (see the module), as LibreOffice Writer saves them: its paragraphs, headings, list
    items and tables in order. Tracked changes read as accepted: ODF keeps deleted text apart, in the
    document's change log, and inserted text in place. ``as_accepted`` as in ``read_docx``."""
    from odf.opendocument import load

    if not data.strip():
        raise NoteFileError(name, [Problem(name, "the file is empty")])
    check_zip(name, data, "ODT document")
    try:
        document = load(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise NoteFileError(name, [Problem(name, f"not a readable ODT document ({exc})")]) from None
    # a text document, a template (.ott), a master document or Writer/Web's: all hold office:text
    if not str(document.mimetype).startswith("application/vnd.oasis.opendocument.text"):
        raise NoteFileError(
            name, [Problem(name, f"not a text document (an ODF file of type {document.mimetype})")]
        )
    headings = _heading_styles(document)
    paragraphs: Paragraphs = []
    tables: Tables = []
    for kind, element in _odt_blocks(document.text):
        if kind == "table":
            tables.append((len(paragraphs), _odt_rows(element)))
            continue
        text = _odt_text(element)
        if kind == "h" or element.getAttrNS(_TEXT_NS, "style-name") in headings:
            text = "# " + text  # headings structure the page; they are not notes
        paragraphs.append((len(paragraphs) + 1, text))
    return _document_notes(name, paragraphs, tables, defaults, as_accepted)


def _local(element: Element) -> str:
    return element.qname[1] if element.nodeType == element.ELEMENT_NODE else ""


def _odt_blocks(container: Element) -> Iterator[tuple[str, Element]]:
    """The paragraphs (``p``), headings (``h``) and tables of a text body in order, those in lists and
    sections included."""
    for child in container.childNodes:
        kind = _local(child)
        if kind in ("p", "h"):
            yield kind, child
        elif kind == "table" and child.qname[0] == _TABLE_NS:
            yield "table", child
        elif kind and kind not in _NOT_BODY:  # list, list-item, list-header, section, ...
            yield from _odt_blocks(child)


def _odt_text(element: Element) -> str:
    """A paragraph's text: spans and links read through, ``text:s`` as its spaces, tabs and line breaks
    as such."""
    parts: list[str] = []
    for child in element.childNodes:
        if child.nodeType == child.TEXT_NODE:
            parts.append(str(child.data))
            continue
        kind = _local(child)
        if kind == "s":
            parts.append(" " * min(int(child.getAttrNS(_TEXT_NS, "c") or 1), _MAX_REPEAT))
        elif kind == "tab":
            parts.append("\t")
        elif kind == "line-break":
            parts.append("\n")
        elif kind and kind not in _NOT_PARAGRAPH_TEXT:
            parts.append(_odt_text(child))
    return "".join(parts)


def _odt_rows(table: Element) -> list[list[str]]:
    """A table's rows of cell texts (a cell's paragraphs joined by line breaks; a merged cell's text in
    its first column, the columns it covers empty)."""
    rows: list[list[str]] = []
    for row in _odt_descendants(
        table, "table-row", within={"table-header-rows", "table-rows", "table-row-group"}
    ):
        cells: list[str] = []
        for cell in row.childNodes:
            if _local(cell) not in ("table-cell", "covered-table-cell"):
                continue
            text = "\n".join(_odt_text(p) for kind, p in _odt_blocks(cell) if kind != "table").strip()
            # covered cells of a merged one come as one repeated element: each stands for a column
            cells += [text] * _repeat(cell, "number-columns-repeated")
        rows += [cells] * (_repeat(row, "number-rows-repeated") if any(cells) else 1)
    return rows


def _odt_descendants(element: Element, kind: str, within: set[str]) -> Iterator[Element]:
    for child in element.childNodes:
        if _local(child) == kind:
            yield child
        elif _local(child) in within:
            yield from _odt_descendants(child, kind, within)


def _repeat(element: Element, attribute: str) -> int:
    """How many times a cell or row stands: as declared, up to ``_MAX_REPEAT``."""
    return min(int(element.getAttrNS(_TABLE_NS, attribute) or 1), _MAX_REPEAT)


def _heading_styles(document: object) -> set[str]:
    """The names of the paragraph styles that make a paragraph a title or heading (Title, Subtitle,
    Heading n), and of the automatic styles LibreOffice derives from them when one is formatted by hand
    or comes from another format (an HTML h1 is a paragraph of such a style)."""

    def heading(style_name: str) -> bool:
        return style_name in ("Title", "Subtitle") or style_name.startswith("Heading")

    names = set()
    for family in ("styles", "automaticstyles"):
        container = getattr(document, family, None)
        for style in container.childNodes if container is not None else []:
            if _local(style) != "style":
                continue
            name = str(style.getAttrNS(_STYLE_NS, "name") or "")
            parent = str(style.getAttrNS(_STYLE_NS, "parent-style-name") or "")
            if heading(name) or heading(parent):
                names.add(name)
    return names
