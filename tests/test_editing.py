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
