"""Suggestions to editors: which themes look like one point, which unassigned statements fit a theme."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.suggestions import Suggestions, suggest


def _unit(*rows: list[float]) -> np.ndarray:
    vectors = np.array(rows, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


STATEMENTS = pd.DataFrame(
    {
        "statement_id": [f"s{i}" for i in range(7)],
        "topic": "green",
        "question": "needs",
        "text": ["banks", "loans", "finance", "credit", "skills", "a loan fund", "host: Anna"],
    }
)
EMBEDDINGS = _unit([1, 0.1, 0], [1, 0.2, 0], [1, 0, 0.1], [1, 0, 0.2], [0, 1, 0], [1, 0.15, 0.1], [1, 0, 0])
ASSIGNMENTS = pd.DataFrame(
    {"theme_id": ["A", "A", "B", "B", "C", "", ""], "flag": ["", "", "", "", "", "", "off-topic"]}
)
THEMES = pd.DataFrame(
    {"theme_id": ["A", "B", "C"], "status": ["draft", "approved", "draft"], "n_tables": [2, 3, 1]}
)


def test_close_themes_and_a_fitting_loose_statement_are_offered_with_their_evidence() -> None:
    offered = suggest(STATEMENTS, EMBEDDINGS, ASSIGNMENTS, THEMES, min_similarity=0.5)
    [merge] = offered.merges
    assert (merge.into, merge.theme_id) == ("B", "A")  # into the theme raised at more tables
    assert merge.similarity > 0.9 and merge.evidence == ("finance", "banks")
    [fit] = offered.assignments  # the flagged remark is never offered
    assert (fit.statement_id, fit.evidence) == ("s5", "loans")
    assert fit.theme_id in {"A", "B"} and fit.similarity > 0.9
    assert Suggestions.from_dict(offered.as_dict()) == offered
    assert Suggestions.from_dict({"merges": [{"bad": 1}]}) == Suggestions([], [])  # a damaged file
    assert offered.of("green", "other") == Suggestions([], [])


def test_nothing_is_offered_below_the_threshold_or_between_decided_themes() -> None:
    assert suggest(STATEMENTS, EMBEDDINGS, ASSIGNMENTS, THEMES, min_similarity=0.999) == Suggestions([], [])
    decided = THEMES.assign(status=["rejected", "approved", "draft"])
    assert suggest(STATEMENTS, EMBEDDINGS, ASSIGNMENTS, decided, min_similarity=0.5).merges == []
