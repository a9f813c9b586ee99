"""Suggestions that save editors clicks, each with its evidence and never applied by themselves: themes of
one question that look like one point (merge?), and unassigned statements that fit a theme (assign?).

Both use the closeness the machine merges by (``ThemeParams.merge_similarity``: the mean cosine between
the statements of two groups), without its table-session terms: a pair of themes the machine kept apart,
or an editor split, is offered again only when their statements are that close.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from pipeline.schema import ThemeStatus, vectors

#: At most this many suggestions per question, the closest first. Merges are few: on the dev events only
#: 4 of the 19 pairs offered on the dev event were one point (benchmarks/results/suggestions.md), while a
#: late table's statement was offered its gold theme 93 % (dev) and 79 % (dev2) of the time.
MERGES_PER_QUESTION = 3
ASSIGNMENTS_PER_QUESTION = 10
_DECIDED = (ThemeStatus.APPROVED, ThemeStatus.REJECTED)


@dataclass(frozen=True)
class MergeSuggestion:
    topic: str
    question: str
    into: str  # the theme with more support
    theme_id: str  # the theme to merge into it
    similarity: float  # mean cosine between their statements
    evidence: tuple[str, str]  # their closest pair of statements: one of ``into``, one of ``theme_id``


@dataclass(frozen=True)
class AssignSuggestion:
    topic: str
    question: str
    statement_id: str
    theme_id: str
    similarity: float  # mean cosine between the statement and the theme's statements
    evidence: str  # the theme's statement closest to it


@dataclass(frozen=True)
class Suggestions:
    merges: list[MergeSuggestion]
    assignments: list[AssignSuggestion]

    def as_dict(self) -> dict[str, list[dict[str, object]]]:
        return {
            "merges": [asdict(m) for m in self.merges],
            "assignments": [asdict(a) for a in self.assignments],
        }

    @classmethod
    def from_dict(cls, data: object) -> Suggestions:
        """What ``as_dict`` wrote; none from anything else (an older or damaged file)."""
        try:
            merges = [MergeSuggestion(**{**m, "evidence": tuple(m["evidence"])}) for m in data["merges"]]  # type: ignore[index]
            assignments = [AssignSuggestion(**a) for a in data["assignments"]]  # type: ignore[index]
        except (TypeError, KeyError):
            return cls([], [])
        return cls(merges, assignments)

    def of(self, topic: str, question: str) -> Suggestions:
        return Suggestions(
            [m for m in self.merges if (m.topic, m.question) == (topic, question)],
            [a for a in self.assignments if (a.topic, a.question) == (topic, question)],
        )


def suggest(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    assignments: pd.DataFrame,
    themes: pd.DataFrame,
    min_similarity: float,
) -> Suggestions:
    """Merges and assignments worth an editor's look, per question.

    ``statements`` (``statement_id, topic, question, text``), ``embeddings`` (unit rows) and
    ``assignments`` (``theme_id, flag``) are aligned row by row; ``themes`` are the reviewed themes (status,
    ``n_tables``). A pair of themes both decided by editors (approved or rejected) is not offered, nor a
    rejected or off-topic theme, nor a flagged statement."""
    status = dict(zip(themes["theme_id"].tolist(), themes["status"].tolist(), strict=True))
    support = dict(zip(themes["theme_id"].tolist(), themes["n_tables"].tolist(), strict=True))
    theme_of = assignments["theme_id"].fillna("").to_numpy(dtype=object)
    flags = assignments["flag"].fillna("").to_numpy(dtype=object)
    texts = statements["text"].astype(str).to_numpy(dtype=object)
    ids = statements["statement_id"].astype(str).to_numpy(dtype=object)
    merges: list[MergeSuggestion] = []
    assigns: list[AssignSuggestion] = []
    for key, rows in statements.groupby(["topic", "question"], sort=False).indices.items():
        topic, question = (str(part) for part in key)  # type: ignore[attr-defined]
        members = {
            theme: rows[theme_of[rows] == theme]
            for theme in sorted(set(theme_of[rows]) - {""})
            if status.get(theme) in (ThemeStatus.DRAFT, ThemeStatus.APPROVED)
        }
        if not members:
            continue
        names = list(members)
        centres = np.stack([vectors(embeddings, members[t]).mean(axis=0) for t in names])
        # the mean cosine between two themes' statements is the dot product of their mean vectors
        closeness = centres @ centres.T
        pairs = [
            (float(closeness[i, j]), names[i], names[j])
            for i, j in zip(*np.triu_indices(len(names), k=1), strict=True)
            if closeness[i, j] >= min_similarity
            and not (status[names[i]] in _DECIDED and status[names[j]] in _DECIDED)
        ]
        # the evidence (the closest two statements) only for the pairs offered: a question of many
        # similar themes has hundreds of pairs over the bar
        for similarity, a, b in sorted(pairs, key=lambda pair: -pair[0])[:MERGES_PER_QUESTION]:
            into, other = (a, b) if (support.get(a, 0), b) >= (support.get(b, 0), a) else (b, a)
            pair = vectors(embeddings, members[into]) @ vectors(embeddings, members[other]).T
            x, y = np.unravel_index(int(np.argmax(pair)), pair.shape)
            evidence = (str(texts[members[into][x]]), str(texts[members[other][y]]))
            merges.append(MergeSuggestion(topic, question, into, other, similarity, evidence))

        placed = []
        loose = rows[(theme_of[rows] == "") & (flags[rows] == "")]
        fit = vectors(embeddings, loose) @ centres.T
        for row, scores in zip(loose, fit, strict=True):
            best = int(scores.argmax())
            if scores[best] >= min_similarity:
                near = members[names[best]]
                evidence_row = near[int(np.argmax(vectors(embeddings, near) @ vectors(embeddings, [row])[0]))]
                placed.append(
                    AssignSuggestion(
                        topic, question, ids[row], names[best], float(scores[best]), str(texts[evidence_row])
                    )
                )
        assigns += sorted(placed, key=lambda a: -a.similarity)[:ASSIGNMENTS_PER_QUESTION]
    return Suggestions(merges, assigns)
