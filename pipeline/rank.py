"""Support counts and the ranking of themes within a topic x question.

Ranking formula, strongest first (deterministic, no ties left):

1. ``n_tables``: distinct table sessions (table x round) that raised the theme: breadth of support;
2. ``votes``: dots/votes on its notes, each note counted once;
3. ``n_statements``: statements, with near-duplicates from one table session counted once;
4. the label, then the theme id, alphabetically.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.schema import STATUS_OFF_TOPIC

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


SUPPORT_COLUMNS = ["statement_id", "note_id", "table", "round", "votes"]  # what theme_support reads


def theme_support(
    members: pd.DataFrame | Mapping[str, np.ndarray], embeddings: np.ndarray
) -> dict[str, object]:
    """Support columns of one theme from its member statements (the representative first): a frame, or
    its columns as arrays (cheaper when called for every theme of an event)."""
    tables, rounds = np.asarray(members["table"], dtype=object), np.asarray(members["round"], dtype=object)
    sessions = np.array([f"{t} r{r}" for t, r in zip(tables, rounds, strict=True)], dtype=object)
    note_ids = np.asarray(members["note_id"], dtype=object)
    _, first_of_note = np.unique(note_ids, return_index=True)  # a note's votes count once
    return {
        "n_tables": len(set(sessions)),
        "n_statements": distinct_statements(embeddings, sessions),
        "votes": int(np.asarray(members["votes"])[first_of_note].sum()),
        "tables": "; ".join(sorted(set(sessions))),
        "statement_ids": "; ".join(str(s) for s in members["statement_id"]),
    }


_STATUS_ORDER = {"approved": 0, "draft": 1, "rejected": 2, STATUS_OFF_TOPIC: 3}


def rank_themes(themes: pd.DataFrame) -> pd.DataFrame:
    """Add ``rank`` (1 = strongest) within each topic x question.

    Editors come first: approved themes before drafts, rejected ones and then the off-topic remarks
    last; a pinned rank (``pinned_rank``) puts a theme at that place and the others keep their order
    around it.
    """
    themes = themes.copy()
    status = themes["status"] if "status" in themes else pd.Series("draft", index=themes.index)
    themes["_status"] = status.map(_STATUS_ORDER).fillna(1)
    ordered = themes.sort_values(
        ["topic", "question", "_status", "n_tables", "votes", "n_statements", "label", "theme_id"],
        ascending=[True, True, True, False, False, False, True, True],
        kind="stable",
    )
    ordered["rank"] = ordered.groupby(["topic", "question"], sort=False).cumcount() + 1
    pins = ordered["pinned_rank"].fillna(0).astype(int) if "pinned_rank" in ordered else None
    if pins is not None and (pins > 0).any():  # only questions with a pin need their order rearranged
        pinned = set(zip(ordered.loc[pins > 0, "topic"], ordered.loc[pins > 0, "question"], strict=True))
        out = [
            _apply_pins(group) if key in pinned else group
            for key, group in ordered.groupby(["topic", "question"], sort=False)
        ]
        ordered = pd.concat(out)
    return ordered.drop(columns="_status").reset_index(drop=True)


def _apply_pins(group: pd.DataFrame) -> pd.DataFrame:
    pins = group["pinned_rank"] if "pinned_rank" in group else pd.Series(0, index=group.index)
    pins = pins.fillna(0).astype(int)
    pinned = group[(pins > 0) & (group.get("status", "draft") != "rejected")]
    free = [i for i in group.index if i not in pinned.index]
    slots: list[object] = [None] * len(group)
    for index in pins[pinned.index].sort_values(kind="stable").index:
        place = min(int(pins[index]), len(group)) - 1
        while slots[place] is not None:  # two pins on one place: the later one goes below
            place = place + 1 if place + 1 < len(group) else slots.index(None)
        slots[place] = index
    fill = iter(free)
    order = [slot if slot is not None else next(fill) for slot in slots]
    ranked = group.loc[order].copy()
    ranked["rank"] = range(1, len(ranked) + 1)
    return ranked
