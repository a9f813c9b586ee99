"""The HTML paper as a PDF (WeasyPrint), in bounded memory.

WeasyPrint holds the layout of every page of a document until it writes it: about 500 bytes of memory
per byte of HTML, so the paper of a million statements (15 MB of HTML) would take 7 GiB. A paper larger
than ``PART_BYTES`` is therefore laid out in parts, cut between top-level blocks (a question's section,
rows of an annex table), one part at a time, and the parts' PDFs are joined with pypdf:

- each part continues the page numbers of the one before (``counter-reset: page N`` on its first page);
  the footer then shows the page number without the total, which no part knows;
- a link to an anchor in another part is written as ``harvest-dest:<anchor>`` (WeasyPrint drops internal
  links to anchors it does not see) and turned back into a link to the named destination once the parts
  are joined, so the contents and the annexes still lead to every recommendation;
- a part starts on a new page, so a cut leaves the rest of a page blank, once per part.

A paper that fits in one part is laid out as one document, as before.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator

from lxml import html as lxml_html
from lxml.etree import _Element

PART_BYTES = 1_000_000  # of HTML per WeasyPrint layout: about 0.5 GiB of memory at its peak
LINK_SCHEME = "harvest-dest:"
SPLITTABLE = {"section", "table", "tbody"}  # blocks whose children may go to different parts


def _weasy(html: str):  # type: ignore[no-untyped-def]  # weasyprint has no type hints
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    # no protocol allowed: WeasyPrint refuses every URL (a warning, the resource left out) and fetches
    # nothing. A plain function as fetcher broke the render instead: WeasyPrint 70 asks the fetcher it was
    # given whether to fail on errors, which a function cannot answer (AttributeError).
    return HTML(string=html, url_fetcher=URLFetcher(allowed_protocols=frozenset()))


def render_pdf(html: str, part_bytes: int = PART_BYTES) -> bytes:
    """``html`` (the self-contained paper) as a PDF: A4, page numbers from its print styles. Nothing is
    fetched: any URL in it is refused."""
    if len(html.encode()) <= part_bytes:
        return bytes(_weasy(html).write_pdf())
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    first_page = 1
    for part in html_parts(html, part_bytes):
        document = _weasy(_numbered_from(part, first_page)).render()
        first_page += len(document.pages)
        writer.append(PdfReader(io.BytesIO(document.write_pdf())))
        del document  # its layout is the memory: free it before the next part
    _link_across_parts(writer)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def html_parts(html: str, part_bytes: int) -> list[str]:
    """``html`` as whole documents of at most about ``part_bytes`` each (a block larger than that and not
    splittable makes a part of its own), with links between parts written as ``harvest-dest:`` URIs."""
    root = lxml_html.document_fromstring(html)
    head, body = root.find("head"), root.find("body")
    assert head is not None and body is not None  # lxml adds both to any document
    parts: list[list[_Element]] = [[]]
    size = 0
    for block in _blocks(list(body), part_bytes):
        block_size = len(lxml_html.tostring(block))
        if parts[-1] and size + block_size > part_bytes:
            parts.append([])
            size = 0
        parts[-1].append(block)
        size += block_size
    head_html = lxml_html.tostring(head, encoding="unicode")
    anchors = [{e.get("id") for b in part for e in b.iter() if e.get("id")} for part in parts]
    documents = []
    for blocks, own in zip(parts, anchors, strict=True):
        for block in blocks:
            for link in block.iter("a"):
                href = link.get("href", "")
                if href.startswith("#") and href[1:] not in own:
                    link.set("href", LINK_SCHEME + href[1:])
        inner = "".join(lxml_html.tostring(b, encoding="unicode") for b in blocks)
        documents.append(f'<!doctype html>\n<html lang="en">{head_html}<body>{inner}</body></html>')
    return documents


def _blocks(elements: list[_Element], part_bytes: int) -> Iterator[_Element]:
    """Top-level blocks no larger than ``part_bytes`` where they can be cut: a splittable block too large
    is cut between its children into pieces of its own tag and class; the first piece keeps its id, and
    the pieces of a table repeat its header row."""
    for element in elements:
        if element.tag not in SPLITTABLE or len(lxml_html.tostring(element)) <= part_bytes:
            yield element
            continue
        children = list(element)
        header = [c for c in children[:1] if c.tag == "thead" or c.find("th") is not None]
        piece = _shell(element, keep_id=True)
        size = 0
        for child in _blocks(children[len(header) :], part_bytes):
            child_size = len(lxml_html.tostring(child))
            if len(piece) > len(header) and size + child_size > part_bytes:
                yield piece
                piece, size = _shell(element, keep_id=False), 0
            if not len(piece) and header:
                piece.extend(copy.deepcopy(h) for h in header)
            piece.append(child)
            size += child_size
        yield piece


def _shell(element: _Element, keep_id: bool) -> _Element:
    """An empty copy of ``element``: its tag and attributes, without its id unless ``keep_id``."""
    shell = lxml_html.Element(element.tag, {k: v for k, v in element.attrib.items() if keep_id or k != "id"})
    shell.text = element.text
    return shell


def _numbered_from(part: str, first_page: int) -> str:
    """``part`` with its pages numbered from ``first_page`` and no total in the footer (no part knows it)."""
    style = (
        f"<style>@page:first {{ counter-reset: page {first_page} }}"
        " @page { @bottom-right { content: counter(page) } }</style>"
    )
    return part.replace("</head>", style + "</head>", 1)


def _link_across_parts(writer) -> None:  # type: ignore[no-untyped-def]  # pypdf's writer
    """Links written as ``harvest-dest:<anchor>`` lead to the anchor's named destination once the parts
    are one document; a link to an anchor no part has is removed, as WeasyPrint removes its own."""
    from pypdf.generic import NameObject, TextStringObject

    names = set(writer.named_destinations)  # the joined parts' anchors
    for page in writer.pages:
        annotations = page.get("/Annots")
        if annotations is None:
            continue
        kept = []
        for reference in annotations:
            annotation = reference.get_object()
            action = annotation.get("/A")
            uri = str(action.get("/URI", "")) if action is not None else ""
            if uri.startswith(LINK_SCHEME):
                anchor = uri[len(LINK_SCHEME) :]
                if anchor not in names:
                    continue
                del annotation["/A"]
                annotation[NameObject("/Dest")] = TextStringObject(anchor)
            kept.append(reference)
        annotations.clear()
        annotations.extend(kept)
