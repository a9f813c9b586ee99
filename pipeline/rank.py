"""Support counts and the ranking of themes within a topic x question.

Ranking formula, strongest first (deterministic, no ties left):

1. ``n_tables``: distinct table sessions (table x round) that raised the theme: breadth of support;
2. ``n_tables_near``: those sessions plus the ones that wrote an answer close to the theme (cosine to its
   centre >= ``close_similarity``, the merge threshold ``ThemeParams.merge_similarity``: as close as
   statements that join one theme) that the clustering put elsewhere: of two themes raised as widely,
   the one more tables came close to is the broader (it is often a theme split across phrasings);
3. ``votes``: dots/votes on its notes, each note counted once;
4. ``n_statements``: statements, with near-duplicates from one table session counted once;
5. the label, then the theme id, alphabetically.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.schema import ThemeStatus
from pipeline.themes import ThemeParams

NEAR_DUPLICATE = 0.9  # cosine above which two statements of one table session say the same thing


def unit_centre(embeddings: np.ndarray) -> np.ndarray:
    """The mean of a theme's vectors at unit length: its centre, as a direction to compare cosines with."""
    centre = np.asarray(embeddings.mean(axis=0))
    return np.asarray(centre / max(float(np.linalg.norm(centre)), 1e-12))


def session_names(tables: np.ndarray, rounds: np.ndarray) -> np.ndarray:
    """``"<table> r<round>"`` per statement: the table session that wrote it."""
    return np.array([f"{t} r{r}" for t, r in zip(tables, rounds, strict=True)], dtype=object)


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
#: What theme_support writes: a theme's support columns
SUPPORT = ["n_tables", "n_tables_near", "n_statements", "votes", "tables", "statement_ids"]


def tables_near(
    embeddings: np.ndarray,
    sessions: np.ndarray,
    answers: tuple[np.ndarray, np.ndarray],
    close_similarity: float,
) -> int:
    """Table sessions of a theme's members (``embeddings``, ``sessions``) and of the question's
    ``answers`` (vectors, sessions) whose cosine to the theme's centre is at least ``close_similarity``."""
    vectors, answer_sessions = answers
    close = answer_sessions[vectors @ unit_centre(embeddings) >= close_similarity]
    return len(set(sessions) | set(close))


def theme_support(
    members: pd.DataFrame | Mapping[str, np.ndarray],
    embeddings: np.ndarray,
    answers: tuple[np.ndarray, np.ndarray] | None = None,
    close_similarity: float = ThemeParams().merge_similarity,
) -> dict[str, object]:
    """Support columns of one theme from its member statements (the representative first): a frame, or
    its columns as arrays (cheaper when called for every theme of an event). ``answers`` are the vectors
    and sessions of the question's answers, for ``n_tables_near`` (answers as close as
    ``close_similarity``, the merge threshold); without them it is ``n_tables``."""
    sessions = session_names(np.asarray(members["table"]), np.asarray(members["round"]))
    note_ids = np.asarray(members["note_id"], dtype=object)
    _, first_of_note = np.unique(note_ids, return_index=True)  # a note's votes count once
    return {
        "n_tables": len(set(sessions)),
        "n_tables_near": tables_near(embeddings, sessions, answers, close_similarity)
        if answers is not None
        else len(set(sessions)),
        "n_statements": distinct_statements(embeddings, sessions),
        "votes": int(np.asarray(members["votes"])[first_of_note].sum()),
        "tables": "; ".join(sorted(set(sessions))),
        "statement_ids": "; ".join(str(s) for s in members["statement_id"]),
    }


_STATUS_ORDER = {
    ThemeStatus.APPROVED: 0,
    ThemeStatus.DRAFT: 1,
    ThemeStatus.REJECTED: 2,
    ThemeStatus.OFF_TOPIC: 3,
}


def rank_themes(themes: pd.DataFrame) -> pd.DataFrame:
    """Add ``rank`` (1 = strongest) within each topic x question.

    Editors come first: approved themes before drafts, rejected ones and then the off-topic remarks
    last; a pinned rank (``pinned_rank``) puts a theme at that place and the others keep their order
    around it.
    """
    status = themes["status"] if "status" in themes else pd.Series(ThemeStatus.DRAFT, index=themes.index)
    keys = list(
        zip(
            themes["topic"].to_numpy(dtype=object),
            themes["question"].to_numpy(dtype=object),
            status.map(_STATUS_ORDER).fillna(1).to_numpy(),
            # the most first
            *(-themes[c].to_numpy() for c in ("n_tables", "n_tables_near", "votes", "n_statements")),
            themes["label"].to_numpy(dtype=object),
            themes["theme_id"].to_numpy(dtype=object),  # unique: no ties left
            strict=True,
        )
    )
    # Python's sort over plain tuples: pandas' sort_values costs milliseconds of overhead on the ten-odd
    # themes of a question that an editor's action ranks anew
    order = sorted(range(len(keys)), key=keys.__getitem__)
    ordered = themes.take(order)
    placed: Counter[tuple[str, str]] = Counter()
    ranks = []
    for index in order:
        placed[keys[index][:2]] += 1
        ranks.append(placed[keys[index][:2]])
    ordered["rank"] = ranks
    pins = ordered["pinned_rank"].fillna(0).astype(int) if "pinned_rank" in ordered else None
    if pins is not None and (pins > 0).any():  # only questions with a pin need their order rearranged
        pinned = set(zip(ordered.loc[pins > 0, "topic"], ordered.loc[pins > 0, "question"], strict=True))
        out = [
            _apply_pins(group) if key in pinned else group
            for key, group in ordered.groupby(["topic", "question"], sort=False)
        ]
        ordered = pd.concat(out)
    return ordered.reset_index(drop=True)


def _apply_pins(group: pd.DataFrame) -> pd.DataFrame:
    pins = group["pinned_rank"] if "pinned_rank" in group else pd.Series(0, index=group.index)
    pins = pins.fillna(0).astype(int)
    pinned = group[(pins > 0) & (group.get("status", ThemeStatus.DRAFT) != ThemeStatus.REJECTED)]
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
