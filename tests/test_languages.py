"""Every note counts, whatever its language: glosses in every format, editors' translations, the
multilingual bridge (the real model), and what the paper says of them."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest
from docx import Document
from odf.opendocument import OpenDocumentText
from odf.text import P
from playwright.sync_api import expect
from typer.testing import CliRunner

from cli.main import app
from flows.harvest import harvest_event
from pipeline import db, editing
from pipeline.config import Settings
from pipeline.event import Event
from pipeline.languages import BridgeParams, bridge, multilingual_encoder, place_languages, with_translations
from pipeline.paper import build_paper, render_markdown
from pipeline.readers import read_notes
from pipeline.readers.common import join_glosses
from pipeline.schema import STATEMENTS, LanguageRoute, conform
from pipeline.statements import detect_languages, load_nlp, notes_to_statements
from tests.conftest import FIXTURES, serve
from web.app import create_app

HEADER = "topic: green\nquestion: needs\ntable: green-t07\nround: 1\n\n"


def test_a_gloss_is_read_from_every_format(event: Event) -> None:
    csv = (
        "table,round,topic,question,text,text_en\n"
        "green-t07,1,green,needs,moins de bureaucratie pour les PME,less red tape for SMEs\n"
        "green-t07,1,green,needs,more money for pilots,\n"
    )
    markdown = (
        HEADER + "- moins de bureaucratie pour les PME\n  text_en: less red tape for SMEs\n"
        "- banca dati aperta dei fornitori [en: an open database of suppliers]\n- more money for pilots\n"
    )
    document = Document()
    for line in [*HEADER.strip().splitlines(), "moins de bureaucratie pour les PME"]:
        document.add_paragraph(line)
    document.add_paragraph("text_en: less red tape for SMEs")
    document.add_paragraph("more money for pilots")
    docx = io.BytesIO()
    document.save(docx)
    writer = OpenDocumentText()  # LibreOffice Writer's
    for line in [*HEADER.strip().splitlines(), "moins de bureaucratie pour les PME"]:
        writer.text.addElement(P(text=line))
    writer.text.addElement(P(text="text_en: less red tape for SMEs"))
    writer.text.addElement(P(text="more money for pilots"))
    odt = io.BytesIO()
    writer.save(odt)

    formats = [("t.csv", csv.encode()), ("t.md", markdown.encode()), ("t.docx", docx.getvalue())]
    for name, data in [*formats, ("t.odt", odt.getvalue())]:
        notes = read_notes(name, data, event)
        glossed = notes.set_index("text")["text_en"]
        assert glossed["moins de bureaucratie pour les PME"] == "less red tape for SMEs", name
        assert glossed["more money for pilots"] == "", name
        assert len(notes) == (3 if name == "t.md" else 2), name  # the gloss line is no note of its own
    suffixed = read_notes("t.md", markdown.encode(), event).set_index("text")["text_en"]
    assert suffixed["banca dati aperta dei fornitori"] == "an open database of suppliers"


def test_glosses_typed_beside_pasted_notes_join_them_line_for_line(event: Event) -> None:
    text = (
        "- moins de bureaucratie pour les PME (+2)\n\n- more money for pilots\n- banca dati [en: a database]"
    )
    joined = join_glosses(text, "less red tape [for] SMEs\n\n  \n")
    notes = read_notes("pasted.txt", (HEADER + joined).encode(), event).set_index("text")
    assert notes.loc["moins de bureaucratie pour les PME", ["text_en", "votes"]].tolist() == [
        "less red tape (for) SMEs",  # brackets would end the suffix early
        2,
    ]
    assert notes.loc["more money for pilots", "text_en"] == ""
    with pytest.raises(ValueError, match="line 2 of the translations has no note beside it"):
        join_glosses(text, "\nstray")
    with pytest.raises(ValueError, match="line 9 of the translations"):
        join_glosses(text, "\n" * 8 + "beyond the last note")
    with pytest.raises(ValueError, match="on line 4 already ends with"):
        join_glosses(text, "\n\n\ntwice")


def test_a_glossed_note_stays_one_statement_carrying_its_gloss(event: Event) -> None:
    csv = (
        "table,round,topic,question,text,text_en\n"
        "green-t07,1,green,needs,Moins de paperasse. Plus de pilotes.,Less paperwork and more pilots\n"
    )
    statements = notes_to_statements(read_notes("t.csv", csv.encode(), event), load_nlp("x"))
    assert len(statements) == 1
    row = statements.iloc[0]
    assert (row.text_en, row.language_route, row.language) == (
        "Less paperwork and more pilots",
        LanguageRoute.GLOSS,
        "fr",
    )


def test_a_mixed_note_is_in_the_language_of_most_of_its_words() -> None:
    assert detect_languages(
        [
            "Stärkere Zusammenarbeit: more money for the café owners of the region",
            "Förderung der grenzüberschreitenden und branchenübergreifenden Zusammenarbeit",
        ]
    ) == ["en", "de"]


def _statements(rows: list[tuple[str, str]]) -> pd.DataFrame:
    """Statements of one question, one table each, with these (text, language)."""
    defaults = {c: "" if dtype == "string" else 0 for c, dtype in STATEMENTS.columns.items()}
    frame = pd.DataFrame([defaults] * len(rows))
    frame["statement_id"] = [f"s{i}" for i in range(len(rows))]
    frame["table"] = [f"green-t0{i}" for i in range(len(rows))]
    frame[["topic", "question", "round"]] = ["green", "needs", 1]
    frame["text"] = [text for text, _ in rows]
    frame["language"] = [language for _, language in rows]
    return conform(frame, STATEMENTS)


def test_the_bridge_places_a_statement_where_the_same_thing_said_in_english_is() -> None:
    statements = _statements(
        [
            ("less red tape and bureaucracy for small companies", "en"),
            ("hydrogen valleys need investment in infrastructure", "en"),
            ("moins de bureaucratie pour les petites entreprises", "fr"),
            ("Investitionen in die Wasserstoffinfrastruktur", "de"),
            ("le café était froid ce matin", "fr"),  # "the coffee was cold this morning": close to nothing
        ]
    )
    own = np.eye(5, dtype=np.float32)  # stands in for the English model: every statement apart
    read = (statements["language"] == "en").to_numpy()
    encode = multilingual_encoder(BridgeParams().model)  # the real multilingual model
    placed_embeddings, placed = bridge(statements, own, read, encode, BridgeParams())
    # the unrelated one is no closer to either English statement than unrelated texts are: it waits
    assert placed.tolist() == [False, False, True, True, False]
    np.testing.assert_allclose(placed_embeddings[2], own[0])  # with the red-tape statement
    np.testing.assert_allclose(placed_embeddings[3], own[1])  # with the hydrogen one
    np.testing.assert_allclose(placed_embeddings[[0, 1, 4]], own[[0, 1, 4]])

    routed, _ = place_languages(statements, own, "en", BridgeParams(min_similarity=0.99))
    assert routed["language_route"].tolist() == ["", "", "awaiting", "awaiting", "awaiting"]
    routed, _ = place_languages(statements, own, "en", BridgeParams(model=""))
    assert (routed["language_route"] == LanguageRoute.AWAITING).sum() == 3  # no bridge: all listed
    # a model Harvest has no figure for: the floor of models whose cosines spread over the whole range
    assert BridgeParams(model="paraphrase-multilingual-MiniLM-L12-v2").similarity_floor == 0.2


def test_an_editors_translation_takes_the_place_of_a_missing_gloss() -> None:
    statements = _statements([("more pilots", "en"), ("plus de pilotes", "fr"), ("mehr Piloten", "de")])
    statements.loc[2, ["text_en", "language_route"]] = ["more pilots (gloss)", LanguageRoute.GLOSS]
    translated = with_translations(statements, {"plus de pilotes": "more pilots", "mehr Piloten": "x"})
    routed, _ = place_languages(translated, np.eye(3, dtype=np.float32), "en", BridgeParams(model=""))
    assert routed["text_en"].tolist() == ["", "more pilots", "more pilots (gloss)"]  # a gloss stays
    assert routed["language_route"].tolist() == ["", "translation", "gloss"]


def test_translations_are_audited_and_undone(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'harvest.db'}"
    with db.session_scope(url) as session:
        assert editing.translate(session, "ev", "ann", {"plus de pilotes": "  more   pilots "}) == 1
        with pytest.raises(ValueError, match="no translation"):
            editing.translate(session, "ev", "ann", {"plus de pilotes": "more pilots"})
    with db.session_scope(url) as session:
        assert db.load_translations(session, "ev") == {"plus de pilotes": "more pilots"}
        entry = db.audit_log(session, "ev")[0]
        assert (entry.action, entry.who) == ("translate", "ann")
        db.undo(session, "ev", entry.id, "bob")
    with db.session_scope(url) as session:
        assert db.load_translations(session, "ev") == {}


def test_the_paper_quotes_the_original_with_its_translation_and_counts_every_language(event: Event) -> None:
    statements = _statements(
        [("more pilots", "en"), ("plus de pilotes", "fr"), ("mehr Piloten", "de"), ("więcej pilotów", "pl")]
    )
    statements["text_en"] = ["", "more pilots", "", ""]
    statements["language_route"] = ["", "translation", "multilingual", "awaiting"]
    statements["theme_id"] = ["green.needs.a", "green.needs.a", "green.needs.a", ""]
    statements["flag"] = ["", "", "", "language"]
    themes = pd.DataFrame(
        [
            {
                "theme_id": "green.needs.a",
                "topic": "green",
                "question": "needs",
                "rank": 1,
                "label": "pilots",
                "recommendation": "More pilots",
                "n_tables": 3,
                "n_statements": 3,
                "votes": 0,
                "statement_ids": "s2; s1; s0",
            }
        ]
    )
    paper = build_paper(event, statements, themes)
    assert [(c.language, c.n_glossed, c.n_placed, c.n_awaiting) for c in paper.languages] == [
        ("fr", 1, 0, 0),  # by their names, French before German
        ("de", 0, 1, 0),
        ("pl", 0, 0, 1),
    ]
    examples = [e.text for e in paper.sessions[0].topics[0].questions[0].recommendations[0].examples]
    assert examples == ["Plus de pilotes", "More pilots", "Mehr Piloten"]  # the untranslated one last
    text = render_markdown(paper)
    assert '"Plus de pilotes" [en: more pilots]' in text
    assert "1 statement still awaits a translation" in text
    # named for the paper's readers, each with the routes its statements took
    named = "French 1 (1 translated); German 1 (1 placed by the multilingual model); Polish 1 (1 awaiting"
    assert named in text


# --------------------------------------------------------------------------- the whole route, in Chromium
@pytest.mark.slow
@pytest.mark.usefixtures("prefect_ephemeral")
def test_an_editor_translates_in_the_browser_and_the_rerun_keeps_it(
    tmp_path, browser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARVEST_BRIDGE__MODEL", "")  # no bridge: the note waits for an editor
    event_dir = tmp_path / "event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    (event_dir / "notes" / "green-t31.csv").write_text(
        "table,round,topic,question,text\n"
        "green-t31,1,green,actors,sans les banques et les investisseurs rien ne bouge\n"
    )
    settings = Settings(data_dir=tmp_path / "data", secret_key="test-secret")
    harvest_event(event_dir, settings.data_dir)
    status = CliRunner().invoke(app, ["status", str(event_dir), "--data-dir", str(settings.data_dir)])
    assert "1 statements await a translation" in status.output
    assert "sans les banques" in status.output
    with db.session_scope(settings.database_url) as session:
        db.add_user(session, "editor", "correct horse")

    with serve(create_app([event_dir], settings)) as server:
        page = browser.new_page()
        page.goto(f"{server}/login")
        page.fill("#username", "editor")
        page.fill("#password", "correct horse")
        page.click("button:has-text('Sign in')")
        page.goto(f"{server}/e/mini/review")
        assert "1 awaiting translation" in page.locator(".card.row").inner_text()
        page.click("a.awaiting")  # the question's count leads to its translations
        rows = page.locator("#translations tr", has_text="sans les banques")
        assert rows.locator(".badge").inner_text() == "awaiting"
        rows.locator("input[name=translation]").fill("without banks and investors nothing moves")
        page.click("#translations button[type=submit]")
        expect(page.locator(".flash")).to_contain_text("Saved 1 translation(s)")
        page.close()

    harvest_event(event_dir, settings.data_dir)  # the next run reads the translation
    out = settings.data_dir / "processed" / "mini"
    statements = pd.read_csv(out / "statements.csv", keep_default_na=False).set_index("text")
    row = statements.loc["sans les banques et les investisseurs rien ne bouge"]
    assert (row.text_en, row.language_route, row.flag) == (
        "without banks and investors nothing moves",
        "translation",
        "",
    )
    banks = statements.loc["without the banks nothing moves", "theme_id"]
    assert row.theme_id == banks  # it joined the theme that says the same
    paper = (out / "paper.md").read_text()
    assert "French 1 (1 translated)" in paper
    harvest_event(event_dir, settings.data_dir)  # and every run after it
    again = pd.read_csv(out / "statements.csv", keep_default_na=False).set_index("text")
    assert again.loc["sans les banques et les investisseurs rien ne bouge", "text_en"] == row.text_en
