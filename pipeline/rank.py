"""Support counts and the ranking of themes within a topic x question.

Ranking formula, strongest first (deterministic, no ties left):

1. ``n_tables``: distinct table sessions (table x round) that raised the theme: breadth of support;
2. ``votes``: dots/votes on its notes, each note counted once;
3. ``n_statements``: statements, with near-duplicates from one table session counted once;
4. the label, then the theme id, alphabetically.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

NEAR_DUPLICATE = 0.9  # cosine above which two statements of one table session say the same thing


def distinct_statements(embeddings: np.ndarray, sessions: np.ndarray) -> int:
    """Statements counted once per table session when they are near-duplicates of each other."""
    count = 0
    for session in np.unique(sessions):
        vectors = embeddings[sessions == session]
        kept: list[np.ndarray] = []
        for v in vectors:
            if not kept or float(np.max(np.stack(kept) @ v)) < NEAR_DUPLICATE:
                kept.append(v)
        count += len(kept)
    return count


def rank_themes(themes: pd.DataFrame) -> pd.DataFrame:
    """Add ``rank`` (1 = strongest) within each topic x question."""
    ordered = themes.sort_values(
        ["topic", "question", "n_tables", "votes", "n_statements", "label", "theme_id"],
        ascending=[True, True, False, False, False, True, True],
        kind="stable",
    ).copy()
    ordered["rank"] = ordered.groupby(["topic", "question"]).cumcount() + 1
    return ordered.reset_index(drop=True)
