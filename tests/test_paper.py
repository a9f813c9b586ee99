"""The output paper in every format: the sections an organiser publishes (title page, contents, executive
summary, key recommendations, methodology, annexes), the DOCX read back, the PDF rendered to images, the
HTML's anchors in Chromium, and quotes cleaned for reading while the export keeps them verbatim."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from docx import Document

from flows.harvest import harvest_event
from pipeline.config import load_settings
from pipeline.event import load_event
from pipeline.paper import BARS_PER_IMAGE, build_paper, readable_quote
from pipeline.publish import stored_paper, write_documents, write_paper
from pipeline.schema import NOT_IN_PAPER
from pipeline.store import Layout
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_ephemeral")]
SECTIONS = [
    "Executive summary",
    "Introduction",
    "Key recommendations per topic",
    "How this paper was made",
    "World cafe",
    "Annex: every recommendation and its support",
    "Annex: the tables",
]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, prefect_ephemeral: None) -> Path:
    """The mini event with its title page and introductions in event.yaml, run once."""
    root = tmp_path_factory.mktemp("paper")
    event_dir = root / "mini-event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    definition = yaml.safe_load((event_dir / "event.yaml").read_text())
    definition |= {
        "date": "8-9 December 2020",
        "place": "Online",
        "organisers": ["European Commission", "Host city <Berlin>"],
        "introduction": "The **world café** asked *two* questions.\n\n<script>alert('intro')</script>",
    }
    definition["sessions"][0]["introduction"] = "Tables met in two rounds."
    (event_dir / "event.yaml").write_text(yaml.safe_dump(definition))
    (event_dir / "polls").mkdir()
    question = "How can authorities help?"
    (event_dir / "polls" / "support.csv").write_text(
        f"question,option,percent\n{question},Invest,35\n{question},Simplify,14\n"
    )
    (event_dir / "polls" / "broken.csv").write_text("question,option,votes\nA broken poll,Yes,many\n")
    summary = harvest_event(event_dir, root / "data")
    assert (summary["polls"], summary["polls_rejected"]) == (1, 1)
    assert not (root / "data" / "processed" / "mini" / "paper.pdf").exists()  # seconds: made after the run
    settings = load_settings(data_dir=root / "data")
    write_documents(Layout(root / "data", "mini"), load_event(event_dir), settings)
    return root / "data" / "processed" / "mini"


def _paper(published: Path):
    themes = pd.read_parquet(published / "review_themes.parquet")
    event = load_event(published.parents[2] / "mini-event")
    return build_paper(
        event,
        pd.read_parquet(published / "statements.parquet"),
        themes[~themes.status.isin(NOT_IN_PAPER)],
        pd.read_parquet(published / "cross_cutting.parquet"),
        pd.read_parquet(published / "polls.parquet"),
    )


def test_the_markdown_paper_has_every_section_and_marks_itself_a_draft(published: Path) -> None:
    md = (published / "paper.md").read_text()
    for section in SECTIONS:
        assert f"## {section}" in md, section
    assert "*8-9 December 2020 · Online*" in md and "Organised by European Commission" in md
    assert "**DRAFT:" in md  # no editor has approved anything yet
    assert "table sessions" in md and "raised at" in md
    assert "Theme: " not in md  # the machine's keyword labels are for editors, not for the public
    assert "### Live polls" in md and "1. Invest (35 %)" in md and "A broken poll" not in md


def test_the_docx_reads_back_with_its_headings_recommendations_and_charts(published: Path) -> None:
    paper = _paper(published)
    document = Document(io.BytesIO((published / "paper.docx").read_bytes()))
    headings = [p.text for p in document.paragraphs if p.style.name.startswith(("Heading", "Title"))]
    assert headings[0] == paper.title
    for section in SECTIONS:
        assert section in headings, section
    numbered = [p for p in document.paragraphs if p.style.name == "List Number"]
    assert len(numbered) == len(paper.summary) + len(paper.recommendations)
    first = paper.recommendations[0][2]
    assert any(p.text.startswith(first.text) for p in numbered)
    charts = [q for s in paper.sessions for t in s.topics for q in t.questions if q.recommendations]
    polls = [p for s in paper.sessions for p in s.polls]
    images = sum(-(-len(chart.recommendations) // BARS_PER_IMAGE) for chart in charts)
    assert len(document.inline_shapes) == images + len(polls)  # a bar chart per question and poll
    assert len(document.tables) == 2 and len(document.tables[1].rows) == 1 + len(paper.tables)
    body = "\n".join(p.text for p in document.paragraphs)
    assert "<script>alert('intro')</script>" in body  # the editors' text as text, never markup


def test_a_paper_laid_out_in_parts_renders_its_documents_one_after_the_other(
    published: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two renderings at once would hold twice the memory the PDF's parts bound: no second process."""
    import pipeline.publish

    def no_second_process(*_: object, **__: object) -> None:
        raise AssertionError("a paper laid out in parts started a second process")

    monkeypatch.setattr(pipeline.publish, "PART_BYTES", 0)
    monkeypatch.setattr(pipeline.publish, "ProcessPoolExecutor", no_second_process)
    rendered = {name: (published / name).read_bytes() for name in ("paper.docx", "paper.pdf")}
    for name in rendered:
        (published / name).unlink()
    write_documents(
        Layout(published.parents[1], "mini"),
        load_event(published.parents[2] / "mini-event"),
        load_settings(data_dir=published.parents[1]),
    )
    assert (published / "paper.docx").read_bytes()[:2] == rendered["paper.docx"][:2] == b"PK"
    assert (published / "paper.pdf").read_bytes()[:5] == rendered["paper.pdf"][:5] == b"%PDF-"
    document = Document(io.BytesIO((published / "paper.docx").read_bytes()))
    assert [p.text for p in document.paragraphs] == [
        p.text for p in Document(io.BytesIO(rendered["paper.docx"])).paragraphs
    ]


def test_the_pdf_has_its_pages_and_looks_like_the_paper(published: Path) -> None:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument((published / "paper.pdf").read_bytes())
    assert len(pdf) >= 4
    first = pdf[0].get_textpage().get_text_range()
    assert "Mini event" in first and "8-9 December 2020" in first and "DRAFT" in first
    text = "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    for section in ("Executive summary", "Key recommendations per topic", "Annex: the tables"):
        assert section in text
    folder = os.environ.get("HARVEST_SCREENSHOTS")
    if folder:
        for index in (0, 2, 5):
            pdf[min(index, len(pdf) - 1)].render(scale=1.2).to_pil().save(
                Path(folder) / f"paper-pdf-{index + 1}.png"
            )


def test_a_question_s_long_chart_reaches_the_pdf_and_the_docx_bar_by_bar() -> None:
    """A chart taller than a page breaks between its bars in the PDF (as one SVG it was cut at the page's
    foot, and a question's bars past the 29th were lost) and comes as several images in the DOCX."""
    import pypdfium2 as pdfium
    from PIL import Image

    from pipeline.paper import QuestionSection, Recommendation, chart_html, chart_pngs
    from pipeline.paper.pdf import render_pdf

    recommendations = [
        Recommendation(rank, f"t{rank}", "", f"Recommendation number {rank}", 46 - rank, 1, 0, [])
        for rank in range(1, 46)
    ]
    question = QuestionSection("q", "What now?", 45, 90, recommendations, 0, 0, 0)
    pdf = pdfium.PdfDocument(render_pdf(f"<!doctype html><html><body>{chart_html(question)}</body></html>"))
    pages = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    assert len(pages) >= 2
    for rank in (1, 29, 30, 45):
        [page] = [p for p in pages if f"{rank}. Recommendation number {rank}\r\n" in p + "\r\n"]
        assert f"{46 - rank} of 45 table sessions" in page  # each bar with its value, on its page
    images = [Image.open(io.BytesIO(png)) for png in chart_pngs(question)]
    assert len(images) == -(-45 // BARS_PER_IMAGE)
    assert all(image.height <= 1.6 * image.width for image in images)  # each fits a page at 16 cm wide


def test_the_pdf_fetches_nothing_an_editors_text_points_to(tmp_path: Path) -> None:
    """An image in an introduction's Markdown is left out of the PDF, never fetched, and the PDF renders
    (WeasyPrint 70 broke the render on the plain-function fetcher used before)."""
    import functools
    import http.server
    import threading

    import cairosvg
    from weasyprint import HTML
    from weasyprint.urls import URLFetcher

    from pipeline.paper import markdown_html
    from pipeline.paper.pdf import render_pdf

    (tmp_path / "logo.png").write_bytes(
        cairosvg.svg2png(
            bytestring=b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9">'
            b'<rect width="9" height="9" fill="red"/></svg>'
        )
    )
    asked: list[str] = []

    class Recording(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            asked.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Recording, directory=str(tmp_path))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/logo.png"
        html = f"<html><body>{markdown_html(f'Our logo: ![logo]({url})')}</body></html>"
        assert f'src="{url}"' in html
        fetched = HTML(string=html, url_fetcher=URLFetcher(allowed_protocols={"http"})).write_pdf()
        assert asked == ["/logo.png"] and b"/Image" in fetched  # an image in a PDF, when fetched
        pdf = render_pdf(html)
    finally:
        server.shutdown()
    assert pdf.startswith(b"%PDF-") and b"/Image" not in pdf and asked == ["/logo.png"]


def test_a_paper_laid_out_in_parts_keeps_its_pages_numbers_links_and_text(published: Path) -> None:
    """A large paper's PDF is laid out part by part (``pipeline.paper.pdf``); forced here on the mini
    paper with parts of 4 kB: it must read as the one-part PDF does, its links still leading across parts."""
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    from pipeline.paper.pdf import LINK_SCHEME, html_parts, render_pdf

    html = (published / "paper.html").read_text(encoding="utf-8")
    parts = html_parts(html, 4_000)
    assert len(parts) >= 4
    assert all("table.annex" in part for part in parts)  # every part has the paper's styles
    assert any(f'href="{LINK_SCHEME}' in part for part in parts)  # a link reaches into another part
    whole, parted = render_pdf(html), render_pdf(html, part_bytes=4_000)

    reader = PdfReader(io.BytesIO(parted))
    pages = [page.extract_text() for page in reader.pages]
    numbers = [int(text.split()[-1]) for text in pages]  # the footer ends every page
    assert numbers == list(range(1, len(pages) + 1))
    names = set(reader.named_destinations)
    links = [a.get_object() for page in reader.pages for a in page.get("/Annots") or []]
    assert links and all(str(a["/Dest"]) in names for a in links)  # each leads to an anchor of the joined PDF
    one_part = PdfReader(io.BytesIO(whole))
    assert len(links) == sum(len(page.get("/Annots") or []) for page in one_part.pages)

    words = " ".join(pages).split()
    for text in " ".join(page.extract_text() for page in one_part.pages).split():
        assert text in words or text.isdigit() or text == "/"  # nothing lost at a cut; "N / M" is "N"
    assert pages[-1].count("Table") >= 1  # a table cut between parts repeats its header
    assert len(pdfium.PdfDocument(parted)) == len(pages)


def test_the_html_paper_links_every_section_and_escapes_the_editors_text(published: Path, browser) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto((published / "paper.html").as_uri())
    targets = page.eval_on_selector_all("a[href^='#']", "links => links.map(a => a.getAttribute('href'))")
    assert len(targets) > 10
    missing = [t for t in targets if page.locator(f"[id='{t[1:]}']").count() != 1]
    assert missing == []  # the contents, the summary's and the annex's links all land
    assert page.locator("#introduction strong").inner_text() == "world café"  # Markdown rendered
    assert "<script>alert('intro')</script>" in page.locator("#introduction").inner_text()  # shown, not run
    assert page.locator("script").count() == 0
    assert page.locator("#draft-mark").is_visible()
    chart = page.locator("figure.chart:not(.poll)").first
    assert "of " in chart.inner_text() and "table sessions" in chart.inner_text()  # labelled bars
    folder = os.environ.get("HARVEST_SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / "paper-html.png"))
        docx = __import__("mammoth").convert_to_html(io.BytesIO((published / "paper.docx").read_bytes()))
        page.set_content(
            f"<body style='font-family:sans-serif;max-width:50rem;margin:2rem auto'>{docx.value}</body>"
        )
        page.screenshot(path=str(Path(folder) / "paper-docx.png"))
    page.close()


@pytest.mark.parametrize(
    ("written", "quoted"),
    [
        ("agree: the cluster managers", "The cluster managers"),
        ("DATA!! MEASURE YOUR FOOTPRINT FOR THE EU", "Data! measure your footprint for the EU"),
        ("+1 more funding for SMEs", "More funding for SMEs"),
        ("Support the EU DIH network", "Support the EU DIH network"),
    ],
)
def test_quotes_are_cleaned_for_reading(written: str, quoted: str) -> None:
    assert readable_quote(written) == quoted


def test_the_export_keeps_the_notes_verbatim(published: Path) -> None:
    statements = pd.read_csv(published / "statements.csv", keep_default_na=False)
    assert "SMEs + large firms + start-ups = all needed!!" in set(statements.text)


def test_approved_only_publishes_the_editors_approvals_without_a_draft_mark(published: Path) -> None:
    from pipeline.config import Settings
    from pipeline.paper import render_markdown
    from pipeline.publish import in_paper

    themes = pd.read_parquet(published / "review_themes.parquet")
    answers = themes[themes.status == "draft"]
    themes.loc[answers.index[0], "status"] = "approved"
    event = load_event(published.parents[2] / "mini-event")
    statements = pd.read_parquet(published / "statements.parquet")
    paper = build_paper(event, statements, in_paper(themes, Settings(paper_approved_only=True)))
    assert [r.theme_id for _, _, r in paper.recommendations] == [answers.theme_id.iloc[0]]
    assert paper.drafts == 0 and "DRAFT" not in render_markdown(paper)
    everything = build_paper(event, statements, in_paper(themes, Settings()))
    assert everything.drafts == len(answers) - 1 and len(everything.recommendations) == len(answers)


def test_editors_rename_confirm_and_dismiss_a_cross_cutting_theme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from pipeline import db
    from pipeline.config import Settings
    from tests.test_web import _csrf, _sign_in
    from web.app import create_app

    monkeypatch.setenv("HARVEST_CROSS_CUTTING__MIN_SIMILARITY", "0.2")  # the mini event's two topics meet
    event_dir = tmp_path / "mini-event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    settings = Settings(data_dir=tmp_path / "data", secret_key="test-secret")
    harvest_event(event_dir, settings.data_dir)
    out = settings.data_dir / "processed" / "mini"
    cross = pd.read_parquet(out / "cross_cutting.parquet")
    assert len(cross) >= 1 and (cross.n_topics >= 2).all()
    assert "## Cross-cutting recommendations" in (out / "paper.md").read_text()
    cross_id = cross.cross_id.iloc[0]
    with db.session_scope(settings.database_url) as session:
        db.add_user(session, "editor", "correct horse")
    client = TestClient(create_app([event_dir], settings))
    _sign_in(client)

    def act(action: str, label: str = "") -> str:
        page = client.get("/e/mini/review").text
        data = {"csrf": _csrf(page), "action": action, "label": label}
        return client.post(f"/e/mini/cross/{cross_id}", data=data).text

    assert "Cross-cutting themes" in client.get("/e/mini/review").text
    assert "Done: cross-cutting theme rename" in act("rename", "Money must reach SMEs through clusters")
    assert "**Money must reach SMEs through clusters**" in (out / "paper.md").read_text()
    act("approved")
    assert pd.read_csv(out / "cross_cutting.csv").set_index("cross_id").loc[cross_id, "status"] == "approved"
    act("rejected")  # dismissed: not in the paper
    assert "Money must reach SMEs through clusters" not in (out / "paper.md").read_text()
    assert "Not done: unknown action" in act("publish")
    harvest_event(event_dir, settings.data_dir)  # the decisions survive the next run
    again = pd.read_parquet(out / "cross_cutting.parquet").set_index("cross_id").loc[cross_id]
    assert (again.label, again.status) == ("Money must reach SMEs through clusters", "rejected")


def test_a_run_that_leaves_the_paper_as_it_was_keeps_its_documents(published: Path, tmp_path: Path) -> None:
    import dataclasses

    out = tmp_path / "out"
    shutil.copytree(published, out)
    layout = Layout(published.parents[1], "mini", out=out)
    settings = load_settings(data_dir=published.parents[1])
    paper = stored_paper(layout, load_event(published.parents[2] / "mini-event"), settings)
    pdf = (out / "paper.pdf").read_bytes()
    write_paper(layout, paper)  # the same paper: nothing to render again
    assert (out / "paper.pdf").read_bytes() == pdf and (out / "paper.docx").exists()
    write_paper(layout, dataclasses.replace(paper, title="Another title"))
    assert not (out / "paper.pdf").exists() and not (out / "paper.docx").exists()  # never out of date
