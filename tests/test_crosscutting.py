"""Cross-cutting themes: the same point under several topics, found, carried across runs, reviewed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.crosscutting import CrossCuttingParams, find_cross_cutting, with_decisions

THEMES = pd.DataFrame(
    {
        "theme_id": ["green.q.a", "digital.q.b", "skills.q.c", "green.q.d"],
        "topic": ["green", "digital", "skills", "green"],
        "recommendation": ["Fund SMEs via clusters", "Money to SMEs through clusters", "Train staff", "Bees"],
        "n_tables": [5, 7, 4, 2],
        "tables": ["t1 r1; t2 r1", "t3 r1; t1 r1; t4 r2", "t5 r1", "t6 r1"],
    }
)
STATEMENTS = pd.DataFrame(
    {
        "statement_id": list("pqrstuv"),
        "theme_id": ["green.q.a", "green.q.a", "digital.q.b", "digital.q.b", "skills.q.c", "green.q.d", ""],
    }
)
VECTORS = np.array(
    [
        [1, 0.1, 0, 0],
        [1, 0, 0.1, 0],
        [0.9, 0.2, 0, 0],
        [1, 0, 0, 0.1],
        [0, 1, 0, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 1],
    ],
    dtype=np.float32,
)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)


def test_the_same_point_under_two_topics_is_one_cross_cutting_theme() -> None:
    [cross] = find_cross_cutting(THEMES, STATEMENTS, VECTORS).to_dict("records")
    assert cross["theme_ids"] == "digital.q.b; green.q.a" and cross["topics"] == "green; digital"
    assert cross["label"] == "Money to SMEs through clusters"  # the recommendation raised at most tables
    assert cross["n_tables"] == 4 and cross["tables"] == "t1 r1; t2 r1; t3 r1; t4 r2"  # distinct sessions
    assert cross["rank"] == 1 and cross["cross_id"].startswith("cross.")
    assert find_cross_cutting(
        THEMES, STATEMENTS, VECTORS, params=CrossCuttingParams(min_similarity=0.999)
    ).empty


def test_its_id_and_the_editors_decisions_carry_over_when_a_theme_joins() -> None:
    first = find_cross_cutting(THEMES, STATEMENTS, VECTORS)
    joined = THEMES.assign(topic=["green", "digital", "skills", "health"])  # "Bees" moves under another topic
    vectors = VECTORS.copy()
    vectors[5] = VECTORS[0]  # and now says the same
    again = find_cross_cutting(joined, STATEMENTS, vectors, previous=first)
    assert again.cross_id.tolist() == first.cross_id.tolist() and again.theme_ids.str.count(";").tolist() == [
        2
    ]
    decisions = pd.DataFrame(
        {"theme_id": [first.cross_id[0]], "label": ["Funding through clusters"], "status": ["rejected"]}
    )
    decided = with_decisions(again, decisions)
    assert decided[["label", "status"]].values.tolist() == [["Funding through clusters", "rejected"]]
