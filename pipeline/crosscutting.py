"""Cross-cutting themes: the same point raised under several topics ("funding must reach SMEs through
clusters" under Green, Digital and Electronics), found among the themes of the whole event.

Each theme is its statements' mean vector; themes whose statements are on average as close as
``CrossCuttingParams.min_similarity`` are grouped (average linkage: every pair of a group is that close on
average), and a group that spans at least ``min_topics`` topics is a cross-cutting theme. It is ranked by
the table sessions that raised any of its themes. Its id carries over from the last run while it keeps at
least half of its themes (as a theme's does, ``review.carry_identity``), so editors' decisions on it (a
new label, confirmed, dismissed) stay with it.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipeline.review import carry_identity
from pipeline.schema import vectors

#: the topic of a cross-cutting theme's decisions in the review state (it belongs to no one topic)
CROSS_TOPIC = "cross-cutting"
PREFIX = "cross."
COLUMNS = ["cross_id", "rank", "label", "n_tables", "n_topics", "topics", "theme_ids", "tables", "status"]


class CrossCuttingParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    min_similarity: float = Field(
        default=0.4,
        ge=-1.0,
        le=1.0,
        description="Mean cosine between two themes' statements (average over a group) at which themes "
        "of different topics are one cross-cutting point. On the dev event 81 of 2,449 pairs of themes of "
        "different topics reach 0.4 (8 cross-cutting themes: SMEs, clusters' recognition, money through "
        "intermediaries, lifelong learning...); on the second event 7 of 1,023 (2 themes: recognition of "
        "clusters, trans-European consortia), and none reaches 0.45 there. 0.3, the within-question merge "
        "level, joins themes that share words like 'clusters'.",
    )
    min_topics: int = Field(default=2, ge=2, description="Topics a cross-cutting theme spans at least.")


def find_cross_cutting(
    themes: pd.DataFrame,
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    previous: pd.DataFrame | None = None,
    params: CrossCuttingParams | None = None,
) -> pd.DataFrame:
    """Cross-cutting themes (``COLUMNS``) among ``themes`` (the reviewed ones that may be published:
    theme_id, topic, recommendation, n_tables, tables), from ``statements`` (statement_id, theme_id)
    and their ``embeddings`` aligned row by row. ``previous``: the last run's, whose ids carry over."""
    params = params or CrossCuttingParams()
    themes = themes.reset_index(drop=True)
    if themes["topic"].nunique() < params.min_topics or len(themes) < 2:
        return pd.DataFrame(columns=COLUMNS)
    rows_of = statements.groupby("theme_id").indices
    centres = np.stack([vectors(embeddings, rows_of[t]).mean(axis=0) for t in themes["theme_id"]])
    distance = np.clip(1.0 - centres @ centres.T, 0.0, 2.0)
    np.fill_diagonal(distance, 0.0)
    from sklearn.cluster import AgglomerativeClustering  # ~1 s: only when themes are grouped

    groups = AgglomerativeClustering(
        n_clusters=None,
        metric="precomputed",
        linkage="average",
        distance_threshold=1.0 - params.min_similarity,
    ).fit_predict(distance)
    found = []
    # columns as arrays: a frame (and a sort) per group cost most of a re-run's cross-cutting step
    topics = themes["topic"].to_numpy(dtype=object)
    theme_ids = themes["theme_id"].to_numpy(dtype=object)
    support = themes["n_tables"].to_numpy()
    tables = themes["tables"].astype(str).to_numpy(dtype=object)
    for group in np.unique(groups):
        at = np.flatnonzero(groups == group)
        spanned = set(topics[at])
        if len(spanned) < params.min_topics:
            continue
        strongest = int(min(at, key=lambda i: (-support[i], theme_ids[i])))  # most tables, then first id
        sessions = sorted({s for row in tables[at] for s in row.split("; ") if s})
        ids = sorted(theme_ids[at])
        found.append(
            {
                "cross_id": PREFIX + hashlib.sha256("\x1f".join(ids).encode()).hexdigest()[:8],
                "label": themes["recommendation"].iat[strongest],
                "n_tables": len(sessions),
                "n_topics": len(spanned),
                "topics": "; ".join(dict.fromkeys(topics[at])),
                "theme_ids": "; ".join(ids),
                "tables": "; ".join(sessions),
                "status": "draft",
            }
        )
    if not found:
        return pd.DataFrame(columns=COLUMNS)
    cross = pd.DataFrame(found)
    if previous is not None and len(previous):
        cross["cross_id"] = _carried(cross, previous)
    cross = cross.sort_values(["n_tables", "n_topics", "cross_id"], ascending=[False, False, True])
    cross["rank"] = range(1, len(cross) + 1)
    return cross[COLUMNS].reset_index(drop=True)


def _carried(cross: pd.DataFrame, previous: pd.DataFrame) -> list[str]:
    """The ids of ``cross`` with those that continue one of ``previous`` (most shared themes first)."""

    def membership(frame: pd.DataFrame) -> pd.DataFrame:
        pairs = frame[["cross_id", "theme_ids"]].assign(theme=frame["theme_ids"].str.split("; "))
        exploded = pairs.explode("theme")
        return pd.DataFrame({"statement_id": exploded["theme"], "theme_id": exploded["cross_id"]})

    mapping = carry_identity(membership(cross), membership(previous))
    return [mapping.get(c, c) for c in cross["cross_id"]]


def with_decisions(cross: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """``cross`` with the editors' labels and statuses (``review.DECISION_COLUMNS`` rows by theme id)."""
    if cross.empty or decisions.empty:
        return cross
    decided = decisions.set_index("theme_id")
    out = cross.copy()
    for column in ("label", "status"):
        values = out["cross_id"].map(decided[column]) if column in decided else None
        if values is not None:
            out[column] = values.where(values.notna() & (values != ""), out[column])
    return out
