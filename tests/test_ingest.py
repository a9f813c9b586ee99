"""Ingest keeps every upload, accepts whole files only, and knows which notes count."""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline import ingest as ingest_module
from pipeline.event import Event, load_event
from pipeline.ingest import (
    EVENT_FOLDER,
    current_notes,
    discover_note_files,
    ingest,
    notes_already_in,
    withdraw,
)
from pipeline.readers import read_notes
from pipeline.store import Layout, Manifest, write_parquet
from tests.conftest import FIXTURES, SAMPLE_EVENT
from tests.test_readers import BROKEN, DOCX_HEADER, _docx

GOOD = (FIXTURES / "table-notes.csv").read_bytes()


def _snapshot(layout: Layout) -> dict[str, bytes]:
    """Every stored upload and the current notes: what 'the store' holds."""
    files = {p.name: p.read_bytes() for p in sorted(layout.uploads.glob("*"))}
    files["notes"] = current_notes(layout, load_event(FIXTURES)).to_json().encode()
    return files


def test_upload_is_stored_unchanged_by_sha256(layout: Layout, event: Event) -> None:
    [result] = ingest(layout, event, [("table-notes.csv", GOOD)], who="anna")
    sha = hashlib.sha256(GOOD).hexdigest()
    assert (result.status, result.upload_id, result.n_notes) == ("accepted", sha, 6)
    assert (layout.uploads / f"{sha}.csv").read_bytes() == GOOD
    [upload] = Manifest.load(layout).uploads
    assert (upload.who, upload.status, upload.keys) == (
        "anna",
        "accepted",
        [["green-t03", 1, "green", "needs"]],
    )
    assert upload.received_at


def test_same_file_twice_is_a_no_op(layout: Layout, event: Event) -> None:
    ingest(layout, event, [("table-notes.csv", GOOD)])
    manifest_before = layout.manifest.read_bytes()
    [again] = ingest(layout, event, [("renamed.csv", GOOD)])
    assert again.status == "unchanged"
    assert layout.manifest.read_bytes() == manifest_before


def test_the_same_paste_for_two_tables_is_two_hand_ins(layout: Layout, event: Event) -> None:
    pasted = b"- banks must act\n- media campaigns on climate\n"
    form = {"topic": "green", "question": "actors", "round": "1"}
    first, second = (  # named as the web app names a paste: after its table, round and question
        ingest(layout, event, [(f"pasted-{table}.md", pasted)], defaults={**form, "table": table})[0]
        for table in ("green-t41", "green-t42")
    )
    assert (first.status, second.status) == ("accepted", "accepted") and first.upload_id != second.upload_id
    notes = current_notes(layout, event)
    assert sorted(set(notes["table"])) == ["green-t41", "green-t42"]
    # the bytes are kept once, by their own hash
    assert [p.name for p in layout.uploads.glob("*")] == [f"{hashlib.sha256(pasted).hexdigest()}.md"]
    again = ingest(layout, event, [("pasted-green-t41.md", pasted)], defaults={**form, "table": "green-t41"})[
        0
    ]
    assert again.status == "unchanged"


def test_sending_superseded_notes_again_restores_them(layout: Layout, event: Event) -> None:
    corrected = b"table,round,topic,question,text\ngreen-t03,1,green,needs,only this note now\n"
    ingest(layout, event, [("t03.csv", GOOD)])
    ingest(layout, event, [("t03-fixed.csv", corrected)])
    [back] = ingest(layout, event, [("t03.csv", GOOD)])  # the correction was a mistake
    assert back.status == "accepted" and back.superseded == ["t03-fixed.csv"]
    assert len(current_notes(layout, event)) == 6
    assert ingest(layout, event, [("t03.csv", GOOD)])[0].status == "unchanged"


def test_an_upload_that_adds_joins_its_groups_and_a_withdrawal_brings_back_what_was_replaced(
    layout: Layout, event: Event
) -> None:
    second_sheet = b"table,round,topic,question,text\ngreen-t03,1,green,needs,a seventh note\n"
    ingest(layout, event, [("t03.csv", GOOD)])
    assert notes_already_in(layout, event, [("t03-more.csv", second_sheet)]) == {
        ("green-t03", 1, "green", "needs"): 6
    }
    [added] = ingest(layout, event, [("t03-more.csv", second_sheet)], adds=True)
    assert (added.status, added.superseded) == ("accepted", [])
    assert len(current_notes(layout, event)) == 7
    assert ingest(layout, event, [("t03-more.csv", second_sheet)], adds=True)[0].status == "unchanged"

    [replacing] = ingest(layout, event, [("t03-fixed.csv", second_sheet.replace(b"seventh", b"only"))])
    assert sorted(replacing.superseded) == ["t03-more.csv", "t03.csv"]
    assert current_notes(layout, event)["text"].tolist() == ["a only note"]
    withdrawn = withdraw(layout, event, replacing.upload_id, "anna")
    assert withdrawn.status == "withdrawn"
    assert len(current_notes(layout, event)) == 7  # both earlier uploads count again
    with pytest.raises(ValueError, match="nothing to withdraw"):
        withdraw(layout, event, replacing.upload_id, "anna")
    with pytest.raises(ValueError, match="not handed in through this upload link"):
        withdraw(layout, event, added.upload_id, "someone", link="another-link")
    assert Manifest.load(layout).find(replacing.upload_id).status == "withdrawn"  # kept, for the record
    # read again from an event folder, a withdrawn file stays withdrawn; handed in again, it counts
    again = [("t03-fixed.csv", second_sheet.replace(b"seventh", b"only"))]
    assert ingest(layout, event, again, via=EVENT_FOLDER)[0].status == "withdrawn"
    assert ingest(layout, event, again, via="web")[0].status == "accepted"


def test_corrected_file_supersedes_only_its_groups(layout: Layout, event: Event) -> None:
    other_table = GOOD.replace(b"green-t03", b"green-t04")
    ingest(layout, event, [("t03.csv", GOOD), ("t04.csv", other_table)])
    corrected = b"table,round,topic,question,text\ngreen-t03,1,green,needs,only this note now\n"
    [result] = ingest(layout, event, [("t03-fixed.csv", corrected)])
    assert result.superseded == ["t03.csv"]
    notes = current_notes(layout, event)
    assert notes[notes.table == "green-t03"]["text"].tolist() == ["only this note now"]
    assert len(notes[notes.table == "green-t04"]) == 6
    assert len(list(layout.uploads.glob("*"))) == 3  # the superseded file stays on disk


def test_broken_batch_is_rejected_and_store_unchanged(layout: Layout, event: Event) -> None:
    ingest(layout, event, [("table-notes.csv", GOOD)])
    before = _snapshot(layout)
    results = ingest(layout, event, [(name, data) for name, (data, _) in BROKEN.items()])
    assert [r.status for r in results] == ["rejected"] * len(BROKEN)
    for result in results:
        expected = BROKEN[result.filename][1]
        assert [str(p)[: len(e)] for p, e in zip(result.problems, expected, strict=True)] == expected
    assert _snapshot(layout) == before
    manifest = Manifest.load(layout)
    rejected = [u for u in manifest.uploads if u.status == "rejected"]
    assert len(rejected) == len(BROKEN) and all(u.errors for u in rejected)  # recorded, not lost


def test_a_note_id_may_not_be_reused_by_another_group(layout: Layout, event: Event) -> None:
    ingest(layout, event, [("a.csv", b"table,round,topic,question,text,note_id\nt1,1,green,needs,a b,n1\n")])
    [result] = ingest(
        layout, event, [("b.csv", b"table,round,topic,question,text,note_id\nt2,1,green,needs,c d,n1\n")]
    )
    assert result.status == "rejected"
    assert (
        str(result.problems[0]) == "b.csv, row 2, column 'note_id': note_id 'n1' is already used in a.csv 2"
    )


def test_event_folder_discovery_never_reads_gold_files(tmp_path: Path) -> None:
    shutil.copytree(SAMPLE_EVENT, tmp_path / "ev")
    (tmp_path / "ev" / "gold.csv").write_text("note_id,topic,question,table,round,theme_id,gold,text\n")
    event = load_event(tmp_path / "ev")
    found = discover_note_files(tmp_path / "ev", event)
    assert len(found) == 11 and all(p.parent.name == "notes" for p in found)


def test_cli_ingest_sample_then_broken_files(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "data"
    notes = sorted((SAMPLE_EVENT / "notes").glob("*.csv"))
    first = runner.invoke(app, ["ingest", str(SAMPLE_EVENT), *map(str, notes), "--data-dir", str(data)])
    assert first.exit_code == 0, first.output
    assert "690 notes, 690 statements" in first.output
    statements = pd.read_parquet(data / "processed" / "ecc2020-sample" / "statements.parquet")
    assert statements["note_id"].nunique() == 690 and statements["statement_id"].is_unique
    again = runner.invoke(app, ["ingest", str(SAMPLE_EVENT), str(notes[0]), "--data-dir", str(data)])
    assert again.exit_code == 0 and again.output.startswith("unchanged")

    broken = tmp_path / "unknown-topic.csv"
    broken.write_bytes(BROKEN["unknown-topic.csv"][0])
    bad = runner.invoke(app, ["ingest", str(SAMPLE_EVENT), str(broken), "--data-dir", str(data)])
    assert bad.exit_code == 1
    assert "REJECTED unknown-topic.csv (4 problem(s))" in bad.output
    assert "row 3, column 'topic': unknown topic 'gren' (valid: digital, electronics, green" in bad.output
    assert pd.read_parquet(data / "processed" / "ecc2020-sample" / "statements.parquet").equals(statements)


def test_statements_are_rebuilt_only_for_new_or_changed_notes(layout: Layout, event: Event) -> None:
    from pipeline.ingest import build_statements

    ingest(layout, event, [("t03.csv", GOOD)])
    _, first = build_statements(layout, event)
    changed = GOOD.replace(b"more \xe2\x82\xac\xe2\x82\xac for pilots", b"pilots need money. And time.")
    ingest(
        layout,
        event,
        [
            ("t03-v2.csv", changed),
            ("t04.csv", GOOD.replace(b"green-t03", b"green-t04").replace(b"needs", b"actors")),
        ],
    )
    notes, second = build_statements(layout, event)
    assert len(notes) == 12
    t03 = second[second.table == "green-t03"]
    assert t03["text"].tolist()[:2] == ["pilots need money.", "And time."]
    assert t03["text"].tolist()[2:] == first["text"].tolist()[1:]  # the unchanged notes as before
    assert set(second[second.table == "green-t04"]["question"]) == {"actors"}
    assert second["statement_id"].is_unique


def test_statements_made_by_other_rules_are_made_again(
    layout: Layout, event: Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade that splits or detects languages differently applies to the notes already in, not
    only to new ones: statements kept from a build by other rules are made again, once."""
    from pipeline.ingest import build_statements

    ingest(layout, event, [("t03.csv", GOOD)])
    _, first = build_statements(layout, event)
    as_an_earlier_release_made_them = first.assign(language="fr")
    write_parquet(layout.statements, as_an_earlier_release_made_them, made_by="an earlier release")
    _, again = build_statements(layout, event)
    pd.testing.assert_frame_equal(again, first)
    kept = again.assign(language="fr")  # made by these rules: kept as they are
    write_parquet(layout.statements, kept, made_by=ingest_module._statements_code())
    assert set(build_statements(layout, event)[1]["language"]) == {"fr"}
    monkeypatch.setattr(ingest_module, "_statements_code", lambda: "a later release")
    pd.testing.assert_frame_equal(build_statements(layout, event)[1], first)


def test_current_notes_are_read_from_the_uploads_once_per_manifest_state(
    layout: Layout, event: Event
) -> None:
    other_table = GOOD.replace(b"green-t03", b"green-t04")
    ingest(layout, event, [("t03.csv", GOOD), ("t04.csv", other_table)])
    first = current_notes(layout, event)
    stored = sorted(layout.uploads.glob("*"))
    kept = {p: p.read_bytes() for p in stored}
    for path in stored:  # reading the uploads again would now fail
        path.write_bytes(b"\x00 not notes")
    pd.testing.assert_frame_equal(current_notes(layout, event), first)
    # a new upload changes the manifest: the kept notes follow it without re-reading the others
    ingest(layout, event, [("t05.csv", GOOD.replace(b"green-t03", b"green-t05"))])
    assert sorted(current_notes(layout, event)["table"].unique()) == ["green-t03", "green-t04", "green-t05"]
    # another event definition reads the uploads again
    for path, data in kept.items():
        path.write_bytes(data)
    renamed = event.model_copy(update={"title": "Renamed"})
    assert len(current_notes(layout, renamed)) == 18
    assert len(list((layout.raw / "current").glob("notes-*.parquet"))) == 1  # the older copies are gone


def test_kept_notes_are_read_again_by_a_release_whose_readers_changed(
    layout: Layout, event: Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Czech CSV accepted garbled by an earlier release is read right by this one: the kept parse
    of the uploads depends on the readers' code."""
    czech = "table,round,topic,question,text\ngreen-t03,1,green,needs,Více peněz pro malé podniky\n"
    [result] = ingest(layout, event, [("cz.csv", czech.encode("cp1250"))])
    assert result.read_as == "Central European (cp1250)"  # said on the receipt
    assert current_notes(layout, event)["text"].tolist() == ["Více peněz pro malé podniky"]
    kept = next((layout.raw / "current").glob("notes-*.parquet"))
    garbled = pd.read_parquet(kept).assign(text="Více penìz pro malé podniky")
    garbled.to_parquet(kept)  # as an earlier release, which read every such file as cp1252, kept it
    ingest_module._last_kept.clear()
    assert current_notes(layout, event)["text"].tolist() == ["Více penìz pro malé podniky"]
    monkeypatch.setattr(ingest_module, "_readers_code", lambda: "a release with other readers")
    ingest_module._last_kept.clear()
    assert current_notes(layout, event)["text"].tolist() == ["Více peněz pro malé podniky"]


def test_an_upload_accepted_under_looser_rules_is_read_again_as_then(layout: Layout, event: Event) -> None:
    """A DOCX with a table that is neither notes nor a header is rejected now; one accepted before that
    rule (when such tables were skipped) still counts, and its table is still skipped."""
    data = _docx(*DOCX_HEADER, "a note of the table", [["Idea", "Votes"], ["universities as partners", "3"]])
    [now] = ingest(layout, event, [("notes.docx", data)])
    assert now.status == "rejected"

    [then] = ingest(layout, event, [("notes.docx", data)], reader=partial(read_notes, accepted=True))
    assert then.status == "accepted"
    read_again = event.model_copy(update={"title": "Renamed"})  # the uploads are read again for it
    assert current_notes(layout, read_again)["text"].tolist() == ["a note of the table"]


def test_a_link_bound_to_tables_hands_in_only_those(layout: Layout, event: Event) -> None:
    [ok] = ingest(layout, event, [("t03.csv", GOOD)], link="1", tables={"green-t03"})
    assert ok.status == "accepted"
    other = GOOD.replace(b"green-t03", b"green-t04")
    [refused] = ingest(layout, event, [("t04.csv", other)], link="1", tables={"green-t03"})
    assert refused.status == "rejected"
    assert [str(p) for p in refused.problems] == [
        "t04.csv, row 2, column 'table': this upload link is for tables green-t03, not 'green-t04'"
    ]


def test_replacing_notes_another_link_handed_in_waits_for_an_editor(layout: Layout, event: Event) -> None:
    from pipeline.ingest import decide_pending

    corrected = b"table,round,topic,question,text\ngreen-t03,1,green,needs,only this note now\n"
    ingest(layout, event, [("t03.csv", GOOD)], link="1")
    [own] = ingest(layout, event, [("t03-own-fix.csv", GOOD.replace(b"pilots,2", b"pilots now,2"))], link="1")
    assert own.status == "accepted"  # a link may correct what it handed in itself

    [waiting] = ingest(layout, event, [("t03-other.csv", corrected)], link="2")
    assert waiting.status == "pending" and waiting.superseded == ["t03-own-fix.csv"]
    assert len(current_notes(layout, event)) == 6  # nothing replaced yet
    assert [u.filename for u in Manifest.load(layout).pending()] == ["t03-other.csv"]

    decided = decide_pending(layout, event, waiting.upload_id, accept=True, who="editor")
    assert (decided.status, decided.decided_by) == ("accepted", "editor")
    assert current_notes(layout, event)["text"].tolist() == ["only this note now"]
    with pytest.raises(ValueError, match="waiting for a decision"):
        decide_pending(layout, event, waiting.upload_id, accept=True, who="editor")

    [again] = ingest(layout, event, [("t03-third.csv", GOOD)], link="1")
    assert again.status == "pending"
    assert decide_pending(layout, event, again.upload_id, accept=False, who="editor").status == "discarded"
    assert current_notes(layout, event)["text"].tolist() == ["only this note now"]
    # an editor (no link) replaces directly
    assert ingest(layout, event, [("t03-editor.csv", GOOD)])[0].status == "accepted"


@pytest.mark.parametrize("damage", ["deleted", "cut off", "not json"])
def test_a_lost_or_damaged_manifest_is_rebuilt_from_the_upload_records(
    layout: Layout, event: Event, damage: str
) -> None:
    paste = b"- fund pilots for SMEs\n- share data between clusters\n"
    ingest(layout, event, [("t03.csv", GOOD)], who="anna", via="cli")
    ingest(
        layout,
        event,
        [("pasted.txt", paste)],
        via="web",
        defaults={"table": "green-t07", "topic": "green", "question": "needs"},
    )
    ingest(layout, event, [("t03-fix.csv", GOOD.replace(b"pilots,2", b"pilots now,2"))])
    before = Manifest.load(layout)
    notes = current_notes(layout, event)
    if damage == "deleted":
        layout.manifest.unlink()
    elif damage == "cut off":
        layout.manifest.write_bytes(layout.manifest.read_bytes()[:200])
    else:
        layout.manifest.write_bytes(b"\x00\x01 garbage")
    rebuilt = Manifest.load(layout)
    assert rebuilt.rebuilt_from_records
    assert rebuilt.uploads == before.uploads  # order (later uploads win), statuses, defaults, who
    assert json.loads(layout.manifest.read_text())["uploads"]  # written again
    pd.testing.assert_frame_equal(current_notes(layout, event), notes)  # the pasted notes still count
    assert (layout.raw / "manifest.json.unreadable").exists() == (damage != "deleted")


def test_a_stored_upload_that_changed_on_disk_is_named_not_trusted(layout: Layout, event: Event) -> None:
    from pipeline.store import DamagedUpload

    ingest(layout, event, [("t03.csv", GOOD)])
    [stored] = layout.uploads.glob("*.csv")
    stored.write_bytes(GOOD.replace(b"pilots", b"tanks!"))
    shutil.rmtree(layout.raw / "current")  # no kept copy of the notes: they are read from the upload
    with pytest.raises(DamagedUpload, match=rf"{stored.name}: the stored copy of t03.csv no longer matches"):
        current_notes(layout, event)
    stored.unlink()
    with pytest.raises(DamagedUpload, match=r"the stored copy of t03\.csv is gone"):
        current_notes(layout, event)
