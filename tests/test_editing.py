"""An editor's action is checked against the question as its page shows it, before anything is stored."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.editing import check_action, theme_version

THEMES = pd.DataFrame(
    {
        "theme_id": ["q.a", "q.b", "q.off-topic"],
        "label": ["money", "skills", "Off-topic remarks"],
        "recommendation": ["More money", "More skills", ""],
        "status": ["draft", "approved", "off-topic"],
        "statement_ids": ["s1; s2", "s3; s4", "s5"],
    }
)
STATEMENTS = pd.DataFrame({"statement_id": ["s1", "s2", "s3", "s4", "s5", "s6"]})
QUESTIONS = [("green", "q"), ("green", "q2")]


def _check(action: str, **kwargs: object) -> int | None:
    return check_action(THEMES, STATEMENTS, action, **kwargs)


def test_actions_within_the_question_pass() -> None:
    seen = theme_version(THEMES.iloc[0])
    assert _check("approved", theme_id="q.a", seen=seen) is None
    assert _check("merge", theme_id="q.a", others=["q.b"]) is None
    assert _check("move", statement_ids=["s5", "s6"], others=["q.off-topic"]) is None  # a remark after all
    assert _check("pin", theme_id="q.b", rank="2") == 2
    assert _check("pin", theme_id="q.b", rank="") is None  # unpin


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("approved", {"theme_id": "ghost.theme.2"}, "no theme ghost.theme.2"),
        ("approved", {}, "choose a theme"),
        ("merge", {"theme_id": "q.a", "others": ["other.question.x"]}, "no theme other.question.x"),
        ("move", {"statement_ids": ["s1"], "others": ["elsewhere.t"]}, "no theme elsewhere.t"),
        ("split", {"statement_ids": ["s9"]}, "no statement s9"),
        ("approved", {"theme_id": "q.off-topic"}, "no theme q.off-topic"),  # remarks are no theme to publish
        ("pin", {"theme_id": "q.a", "rank": "3"}, "from 1 to 2"),
        ("pin", {"theme_id": "q.a", "rank": "1e9"}, "whole number"),
        ("approved", {"theme_id": "q.a", "seen": "an-older-version"}, "changed since this page was opened"),
    ],
)
def test_forged_or_stale_actions_are_refused(action: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _check(action, **kwargs)


def test_every_action_of_the_table_is_checked_then_done(tmp_path) -> None:
    from pipeline import db
    from pipeline.editing import ACTIONS, EditorAction, apply_action

    themes = THEMES.assign(topic="green", question="q")
    statements = STATEMENTS.assign(topic="green", question="q")
    url = f"sqlite:///{tmp_path / 'h.db'}"
    actions = [
        EditorAction("rename", "green", "q", "q.a", label="Money for pilots"),
        EditorAction("edit", "green", "q", "q.a", recommendation="Fund pilots"),
        EditorAction("approved", "green", "q", "q.b", seen=theme_version(THEMES.iloc[1])),
        EditorAction("rejected", "green", "q", "q.a"),
        EditorAction("draft", "green", "q", "q.a"),
        EditorAction("pin", "green", "q", "q.b", rank=" 1 "),
        EditorAction("move", "green", "q", statement_ids=("s6",), target="q.a"),
        EditorAction("split", "green", "q", statement_ids=("s1",), label="Banks"),
        EditorAction("bulk-status", "green", "q", sources=("q.a", "q.b"), target="draft"),
        EditorAction("merge", "green", "q", "q.a", sources=("q.b",)),
        EditorAction("move-to-question", "green", "q", statement_ids=("s5",), target="green/q2"),
    ]
    assert {a.name for a in actions} == set(ACTIONS)  # every action has its test here
    with db.session_scope(url) as session:
        for action in actions:
            apply_action(session, "ev", "ann", action, themes, statements, QUESTIONS)
        for target, message in [("green/nowhere", "no question 'green/nowhere'"), ("green/q", "already")]:
            with pytest.raises(ValueError, match=message):
                apply_action(
                    session,
                    "ev",
                    "ann",
                    EditorAction("move-to-question", "green", "q", statement_ids=("s1",), target=target),
                    themes,
                    statements,
                    QUESTIONS,
                )
        with pytest.raises(ValueError, match="unknown action 'publish'"):
            apply_action(
                session, "ev", "ann", EditorAction("publish", "green", "q", "q.a"), themes, statements
            )
        with pytest.raises(ValueError, match=r"no theme q\.a in this question"):  # another question's page
            apply_action(
                session, "ev", "ann", EditorAction("approved", "green", "q2", "q.a"), themes, statements
            )
    with db.session_scope(url) as session:
        state = db.load_state(session, "ev")
        log = [e.action for e in db.audit_log(session, "ev")]
    assert log == [
        "move",
        "merge",
        "reopen",
        "split",
        "move",
        "pin",
        "reopen",
        "rejected",
        "approved",
        "edit",
        "rename",
    ]
    decisions = state.themes.set_index("theme_id")
    assert decisions.loc["q.a", "label"] == "Money for pilots" and decisions.loc["q.a", "status"] == "draft"
    assert decisions.loc["q.b", "pinned_rank"] == 1 and decisions.loc["q.b", "merged_into"] == "q.a"
    assert decisions.loc["q.b", "status"] == "draft"  # approved, then reopened with q.a in one action
    placements = dict(zip(state.placements.statement_id, state.placements.theme_id, strict=True))
    assert placements["s6"] == "q.a" and placements["s1"].startswith("green.q.e")
    moved = state.placements.set_index("statement_id").loc["s5"]
    assert (moved.theme_id, moved.topic, moved.question) == ("", "green", "q2")
