"""Editors' decisions as state: theme identity across runs, re-application, audit and undo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import db, editing
from pipeline.review import ReviewState, apply_review, carry_identity, relocate


def _assign(pairs: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"statement_id": list(pairs), "theme_id": list(pairs.values()), "flag": ""})


def test_identity_follows_the_statements_not_the_hash() -> None:
    previous = _assign({"a": "T1", "b": "T1", "c": "T1", "d": "T2", "e": "T2", "f": ""})
    # a new run: T1 gained a new statement, T2 lost one and was split differently, a new theme appeared
    new = _assign({"a": "n1", "b": "n1", "c": "n1", "x": "n1", "d": "n2", "y": "n3", "z": "n3", "e": "n4"})
    mapping = carry_identity(new, previous)
    assert mapping["n1"] == "T1"  # 3 of its 4 statements are T1's
    assert mapping["n2"] == "T2" or mapping.get("n4") == "T2"  # one of the halves keeps the id, not both
    assert len({v for v in mapping.values()}) == len(mapping)  # one to one
    assert "n3" not in mapping  # a new theme gets a new id


def test_off_topic_themes_keep_their_fixed_ids() -> None:
    previous = _assign({"a": "g.q.off-topic", "b": "g.q.off-topic", "c": "T1", "d": "T1"})
    new = _assign({"a": "n1", "b": "n1", "c": "g.q.off-topic", "d": "g.q.off-topic"})
    assert carry_identity(new, previous) == {}  # no theme takes the off-topic id, nor it another's


def _statements() -> tuple[pd.DataFrame, np.ndarray]:
    statements = pd.DataFrame(
        {
            "statement_id": list("abcdef"),
            "note_id": list("abcdef"),
            "topic": "green",
            "question": "needs",
            "table": ["t1", "t2", "t3", "t1", "t2", "t4"],
            "round": 1,
            "votes": [1, 0, 2, 0, 0, 0],
            "text": ["banks on board", "banks matter", "investors", "media", "press", "loose idea"],
        }
    )
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8))
    return statements, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _machine() -> tuple[pd.DataFrame, pd.DataFrame]:
    assignments = _assign({"a": "F", "b": "F", "c": "F", "d": "M", "e": "M", "f": ""})
    themes = pd.DataFrame(
        {
            "theme_id": ["F", "M"],
            "label": ["banks", "media"],
            "recommendation": ["Banks on board", "Media"],
            "statement_ids": ["a; b; c", "d; e"],
        }
    )
    return assignments, themes


def _decision(theme_id: str, **decided: object) -> dict:
    row = {
        "theme_id": theme_id,
        "topic": "green",
        "question": "needs",
        "label": None,
        "recommendation": None,
        "status": None,
        "pinned_rank": None,
        "merged_into": None,
    }
    return {**row, **decided}


def test_apply_review_merges_moves_renames_rejects_and_pins() -> None:
    statements, vectors = _statements()
    machine_assign, machine_themes = _machine()
    state = ReviewState(
        pd.DataFrame(
            [
                _decision("M", status="rejected"),
                _decision("F", label="Finance on board", status="approved"),
                _decision("E", label="Loose ideas", pinned_rank=1),
            ]
        ),
        pd.DataFrame({"statement_id": ["f", "c"], "theme_id": ["E", "E"]}),
    )
    assignments, themes = apply_review(statements, vectors, machine_assign, machine_themes, state)
    by_id = themes.set_index("theme_id")
    assert assignments.set_index("statement_id").loc[["c", "f"], "theme_id"].tolist() == ["E", "E"]
    assert by_id.loc["F", "label"] == "Finance on board" and by_id.loc["F", "status"] == "approved"
    assert by_id.loc["F", "n_tables"] == 2 and by_id.loc["F", "votes"] == 1  # c moved out
    assert by_id.loc["E", "rank"] == 1 and by_id.loc["F", "rank"] == 2  # a pin beats approval
    assert by_id.loc["M", "status"] == "rejected" and by_id.loc["M", "rank"] == 3  # rejected last

    merged = ReviewState(pd.DataFrame([_decision("M", merged_into="F")]), ReviewState.empty().placements)
    assignments, themes = apply_review(statements, vectors, machine_assign, machine_themes, merged)
    assert themes["theme_id"].tolist() == ["F"] and themes.iloc[0]["n_statements"] == 5


def test_a_theme_editors_left_alone_keeps_the_machines_support() -> None:
    """Support is counted again only for themes whose members changed, or for every theme once a note
    moved to another question (the answers ``n_tables_near`` counts are then others)."""
    statements, vectors = _statements()
    machine_assign, machine_themes = _machine()
    support = {
        "n_tables": [3, 2],
        "n_tables_near": [3, 2],
        "n_statements": [3, 2],
        "votes": [3, 0],
        "tables": ["t1 r1; t2 r1; t3 r1", "t1 r1; t2 r1"],
    }
    for column, values in support.items():
        machine_themes[column] = values
    machine_themes.loc[machine_themes.theme_id == "M", "votes"] = 7  # as a run counted: kept, not recounted
    moved = ReviewState(ReviewState.empty().themes, pd.DataFrame({"statement_id": ["c"], "theme_id": [""]}))
    _, themes = apply_review(statements, vectors, machine_assign, machine_themes, moved)
    by_id = themes.set_index("theme_id")
    assert by_id.loc["M", "votes"] == 7  # members as the machine left them
    assert by_id.loc["F", "votes"] == 1 and by_id.loc["F", "statement_ids"] == "a; b"  # c left: recounted

    placements = pd.DataFrame(
        {"statement_id": ["f"], "theme_id": [""], "topic": ["green"], "question": ["other"]}
    )
    elsewhere = ReviewState(ReviewState.empty().themes, placements)
    _, themes = apply_review(statements, vectors, machine_assign, machine_themes, elsewhere)
    assert themes.set_index("theme_id").loc["M", "votes"] == 0  # a note changed question: all recounted


def test_a_theme_editors_make_spells_out_shorthand_like_the_machines() -> None:
    statements, vectors = _statements()
    statements.loc[5, "text"] = "long-term PPPs"
    machine_assign, machine_themes = _machine()
    split = ReviewState(ReviewState.empty().themes, pd.DataFrame({"statement_id": ["f"], "theme_id": ["N"]}))

    def glossary_for(texts: list[str]) -> dict[str, str]:
        assert "long-term PPPs" in texts  # read with its own question's statements
        return {"PPPs": "public-private partnerships", "SMEs": "small and medium-sized enterprises"}

    _, themes = apply_review(statements, vectors, machine_assign, machine_themes, split, glossary_for)
    assert themes.set_index("theme_id").loc["N", "recommendation"] == "Long-term public-private partnerships"
    _, themes = apply_review(statements, vectors, machine_assign, machine_themes, split)
    assert themes.set_index("theme_id").loc["N", "recommendation"] == "Long-term PPPs"


DATABASES = ["sqlite", "postgresql"]


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, and PostgreSQL where HARVEST_TEST_POSTGRES_URL names one
    (.ci/run starts a local server and sets it)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'h.db'}"
    url = os.environ.get("HARVEST_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL here: set HARVEST_TEST_POSTGRES_URL (see .ci/postgres.sh)")
    engine = db.engine_for(url)
    db.Base.metadata.drop_all(engine)
    db.Base.metadata.create_all(engine)
    return url


def test_actions_are_audited_and_undone(database_url: str) -> None:
    url = database_url
    with db.session_scope(url) as session:
        editing.rename(session, "ev", "ann", "F", "green", "needs", "Finance")
        editing.move(session, "ev", "ann", ["c"], "")
        new = editing.split(session, "ev", "bob", ["a", "b"], "green", "needs", "Banks")
        editing.set_status(session, "ev", "bob", "F", "green", "needs", "approved")
    with db.session_scope(url) as session:
        state = db.load_state(session, "ev")
        log = db.audit_log(session, "ev")
    assert [e.action for e in log] == ["approved", "split", "move", "rename"]
    assert [e.who for e in log] == ["bob", "bob", "ann", "ann"]
    assert dict(zip(state.placements.statement_id, state.placements.theme_id, strict=True)) == {
        "a": new,
        "b": new,
        "c": "",
    }
    with db.session_scope(url) as session:
        db.undo(session, "ev", log[1].id, "carol")  # undo the split
        db.undo(session, "ev", log[3].id, "carol")  # undo the rename
    with db.session_scope(url) as session:
        state = db.load_state(session, "ev")
        decisions = state.themes.set_index("theme_id")
        assert set(state.placements.statement_id) == {"c"}
        assert new not in decisions.index
        assert decisions.loc["F", "label"] is None and decisions.loc["F", "status"] == "approved"
        assert db.audit_log(session, "ev")[0].action == "undo"


def test_a_statement_moved_to_another_question_stays_there_and_the_move_undoes(database_url: str) -> None:
    statements = pd.DataFrame(
        {"statement_id": ["a", "b", "c"], "topic": "green", "question": ["needs", "needs", "actors"]}
    )
    with db.session_scope(database_url) as session:
        editing.relocate(session, "ev", "ann", ["b"], "green", "actors")
        editing.move(session, "ev", "ann", ["b"], "green.actors.t1")  # then placed in a theme there
    with db.session_scope(database_url) as session:
        state = db.load_state(session, "ev")
        log = db.audit_log(session, "ev")
    assert relocate(statements, state).question.tolist() == ["needs", "actors", "actors"]
    assert state.placements.set_index("statement_id").loc["b", "theme_id"] == "green.actors.t1"
    assert statements.question.tolist() == ["needs", "needs", "actors"]  # the notes' own frame is kept
    with db.session_scope(database_url) as session:
        db.undo(session, "ev", log[0].id, "bob")  # the placement in the theme: still in the other question
        assert relocate(statements, db.load_state(session, "ev")).question.tolist()[1] == "actors"
        db.undo(session, "ev", log[1].id, "bob")  # the move to the question
    with db.session_scope(database_url) as session:
        state = db.load_state(session, "ev")
    assert state.placements.empty and relocate(statements, state).question.tolist()[1] == "needs"


def test_passwords_are_hashed(database_url: str) -> None:
    url = database_url
    with db.session_scope(url) as session:
        db.add_user(session, "ed", "long enough")
    with db.session_scope(url) as session:
        stored = session.query(db.User).one().password_hash
        assert "long enough" not in stored and stored.startswith("$argon2")
        assert db.check_password(session, "ed", "long enough")
        assert not db.check_password(session, "ed", "wrong one!")
        assert not db.check_password(session, "nobody", "long enough")


def test_pin_edit_and_unpin_are_stored_and_bad_values_refused(database_url: str) -> None:
    url = database_url
    with db.session_scope(url) as session:
        editing.pin(session, "ev", "ann", "F", "green", "needs", 2)
        editing.edit_recommendation(session, "ev", "ann", "F", "green", "needs", "  Fund pilot projects  ")
        with pytest.raises(ValueError, match="cannot be empty"):
            editing.edit_recommendation(session, "ev", "ann", "F", "green", "needs", "   ")
        with pytest.raises(ValueError, match="starts at 1"):
            editing.pin(session, "ev", "ann", "F", "green", "needs", 0)
        with pytest.raises(ValueError, match="status must be one of"):
            editing.set_status(session, "ev", "ann", "F", "green", "needs", "aproved")
    with db.session_scope(url) as session:
        decision = db.load_state(session, "ev").themes.set_index("theme_id").loc["F"]
        assert decision["pinned_rank"] == 2 and decision["recommendation"] == "Fund pilot projects"
        assert [e.action for e in db.audit_log(session, "ev")] == ["edit", "pin"]  # refusals leave no trace
        editing.pin(session, "ev", "bob", "F", "green", "needs", None)
    with db.session_scope(url) as session:
        decision = db.load_state(session, "ev").themes.set_index("theme_id").loc["F"]
        assert pd.isna(decision["pinned_rank"]) and decision["recommendation"] == "Fund pilot projects"
        assert db.audit_log(session, "ev")[0].summary == "F unpinned"


def test_undo_edge_cases(database_url: str) -> None:
    url = database_url
    with db.session_scope(url) as session:
        editing.rename(session, "ev", "ann", "F", "green", "needs", "Finance")
        editing.set_status(session, "ev", "ann", "F", "green", "needs", "approved")
        editing.merge(session, "ev", "ann", ["G", "H"], "F", "green", "needs")
        editing.rename(session, "other", "ann", "F", "green", "needs", "Elsewhere")
    with db.session_scope(url) as session:
        rename, _, merge = reversed(db.audit_log(session, "ev"))
        other = db.audit_log(session, "other")[0]
        with pytest.raises(KeyError, match="no audit entry"):
            db.undo(session, "ev", other.id, "carol")  # another event's entry is not this event's to undo
        with pytest.raises(KeyError, match="no audit entry"):
            db.undo(session, "ev", 10**6, "carol")
        db.undo(session, "ev", merge.id, "carol")
        db.undo(session, "ev", rename.id, "carol")  # an earlier action: the later status stays
    with db.session_scope(url) as session:
        decisions = db.load_state(session, "ev").themes.set_index("theme_id")
        assert set(decisions.index) == {"F"}  # G and H are themes of their own again
        assert decisions.loc["F", "label"] is None and decisions.loc["F", "status"] == "approved"
        with pytest.raises(ValueError, match="already undone"):
            db.undo(session, "ev", merge.id, "carol")
        undo_of_rename = db.audit_log(session, "ev")[0]
        assert undo_of_rename.action == "undo" and undo_of_rename.summary.startswith(f"undo #{rename.id}")
        db.undo(session, "ev", undo_of_rename.id, "dave")  # an undo is undone like any action
    with db.session_scope(url) as session:
        assert db.load_state(session, "ev").themes.set_index("theme_id").loc["F", "label"] == "Finance"
        assert db.load_state(session, "other").themes.set_index("theme_id").loc["F", "label"] == "Elsewhere"
