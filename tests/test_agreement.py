"""How much the editors changed of the machine's themes."""

from __future__ import annotations

import pandas as pd

from pipeline.agreement import editor_agreement
from pipeline.review import DECISION_COLUMNS, ReviewState


def test_untouched_themes_agree_fully_and_each_change_is_counted() -> None:
    machine = pd.DataFrame(
        {"statement_id": list("abcdef"), "theme_id": ["q.1", "q.1", "q.2", "q.2", "", "q.off-topic"]}
    )
    untouched = editor_agreement(machine, machine.assign(status="draft"), ReviewState.empty())
    assert (untouched.ari, untouched.moved, untouched.themes) == (1.0, 0, 2)

    reviewed = machine.assign(theme_id=["q.1", "q.1", "q.1", "q.1", "q.3", "q.off-topic"], status="")
    decisions = pd.DataFrame(
        [
            {"theme_id": "q.1", "label": "Finance", "status": "approved"},
            {"theme_id": "q.2", "merged_into": "q.1"},
        ]
    ).reindex(columns=DECISION_COLUMNS)
    placements = pd.DataFrame({"statement_id": ["e"], "theme_id": ["q.3"]})  # split off by an editor
    changed = editor_agreement(machine, reviewed, ReviewState(decisions, placements))
    assert (changed.moved, changed.merged, changed.renamed, changed.approved, changed.split_off) == (
        3,
        1,
        1,
        1,
        1,
    )
    assert changed.ari < 1.0
