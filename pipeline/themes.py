"""Statements of one topic x question -> themes.

The clustering is two stages, so it behaves the same on 30 statements and on 30,000:

1. **HDBSCAN** (``min_cluster_size=2``, ``min_samples=1``, leaf selection) finds tight micro-themes:
   repeated phrasings and close paraphrases. Leaf selection keeps them small and pure; HDBSCAN's
   outliers become micro-themes of one.
2. **Group-average merging** joins micro-themes while the mean cosine similarity between all their
   statements, less a penalty for statements written at the same table session, is at least
   ``merge_similarity``. Because the vectors are unit length, the mean pairwise similarity of two groups
   is exactly the dot product of their mean vectors, so the merge is exact average linkage at the cost of
   the micro-theme count, not the statement count.

   The penalty is ``session_penalty`` x (pairs of statements, one from each group, written at the same
   table session) / (the smaller group's size). A table lists its points one note each: two notes of one
   table session are almost never the same point (0 of 404 such pairs in the dev event's gold), so two
   groups that keep meeting at the same tables are two themes however similar their wording ("KPIs for
   sustainability" and "courses on sustainability", written side by side). Near-duplicate notes of one
   table fall in one micro-theme first, where the penalty does not apply.

   The same fact read the other way: two groups that *should* have met at some table session by
   chance, and never did, are likely two phrasings of one point ("market intelligence via clusters" at
   17 tables, "strategic foresight" at 8 others). If statements fell on table sessions at random,
   ``λ = size_a x size_b x P(two statements share a session)`` pairs would be expected; when none
   occurs, the merge score gains ``apart_bonus x min(1, λ / apart_full_at)``. Small groups, which miss
   each other by chance, gain almost nothing; where every statement has its own session (no tables), λ is
   0 and so is the bonus.

A theme needs statements from at least ``min_tables`` table sessions; the rest stay unassigned.
Parameters were chosen on the dev event (see benchmarks/results/quality.md), not on its wording.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipeline.glossary import speller


class ThemeParams(BaseModel):
    """How statements become themes (module docstring); ``[themes]`` in harvest.toml. Chosen on the dev
    event (benchmarks/results/quality.md), not on its wording."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    merge_similarity: float = Field(
        default=0.3,
        ge=-1.0,
        le=1.0,
        description="Mean cosine between two groups' statements (less the session penalty, plus the "
        "apart bonus) at which they merge into one theme. Also how close an answer put elsewhere must be "
        "to a theme's centre to count towards its n_tables_near (pipeline.rank).",
    )
    session_penalty: float = Field(
        default=0.5,
        ge=0.0,
        description="Lowers a merge by this x (same-session pairs between the groups) / (smaller size): "
        "two notes of one table session are almost never the same point.",
    )
    apart_bonus: float = Field(
        default=0.1,
        ge=0.0,
        description="Raises the merge of two groups that never met at a table session although chance "
        "says they should have. apart_bonus 0.05-0.2 x apart_full_at 1-7 on the dev event: a plateau "
        "wherever apart_bonus / apart_full_at is 0.02-0.05; 0.1 and 3 sit inside it.",
    )
    apart_full_at: float = Field(
        default=3.0,
        gt=0.0,
        description="Expected same-session pairs (λ) at which two groups that never met get the whole "
        "apart_bonus.",
    )
    min_cluster_size: int = Field(
        default=2, ge=2, description="HDBSCAN's smallest micro-theme (its outliers are micro-themes of one)."
    )
    min_tables: int = Field(
        default=1,
        ge=1,
        description="Table sessions a theme needs; smaller groups stay unassigned for editors.",
    )
    dense_limit: int = Field(
        default=4000,
        ge=3,
        description="Above this many statements HDBSCAN runs on vectors (Boruvka KD-tree), below on a "
        "cosine matrix.",
    )
    reduce_to: int = Field(
        default=32,
        ge=2,
        description="... and on vectors reduced to this many dimensions by PCA (neighbourhoods survive; "
        "the merge uses the full vectors).",
    )
    max_micro_themes: int = Field(
        default=6000,
        ge=2,
        description="At most this many micro-themes (the largest) enter the merge, whose similarity "
        "matrix is quadratic in them; the others join the nearest theme afterwards if they fit it.",
    )


def clustering_bytes(statements: int, params: ThemeParams | None = None) -> int:
    """At most the memory clustering a group of this many statements allocates at once (numpy's arrays, as
    ``tracemalloc`` counts them): 32 bytes a pair of statements, or of micro-themes, of which there are
    fewer and at most ``max_micro_themes``. Measured: 24-25 bytes a pair, whichever step peaks (HDBSCAN's
    cosine matrix and its copies up to ``dense_limit`` statements, 216 MB at 3,000; the merge's matrices
    when most statements are micro-themes of their own); above ``dense_limit``, 371 MB at 5,000."""
    params = params or ThemeParams()
    return 32 * min(statements, params.max_micro_themes) ** 2


def micro_themes(embeddings: np.ndarray, params: ThemeParams) -> np.ndarray:
    """HDBSCAN labels with every outlier as its own micro-theme (labels 0..m-1)."""
    import hdbscan  # with scikit-learn ~2 s: loaded by the runs that cluster, not by every import

    n = len(embeddings)
    if n < 3:
        return np.arange(n)
    if n <= params.dense_limit:
        # in place: one n x n float32 matrix before HDBSCAN's float64 one, not three (50 MB at 2,500)
        distance = embeddings @ embeddings.T
        np.clip(np.subtract(1.0, distance, out=distance), 0.0, 2.0, out=distance)
        distance = distance.astype(np.float64)
        clusterer = hdbscan.HDBSCAN(
            min_cluster_size=params.min_cluster_size,
            min_samples=1,
            metric="precomputed",
            cluster_selection_method="leaf",
        )
        labels = clusterer.fit_predict(distance)
    else:
        # HDBSCAN's trees are slow in 384 dimensions (300 s for 20,000 statements here); micro-themes
        # only need neighbourhoods, so they are found in a PCA projection (23 s), and the merge that
        # follows uses the full vectors. Euclidean on unit vectors orders pairs as cosine does.
        from sklearn.decomposition import PCA

        reduced = PCA(n_components=min(params.reduce_to, embeddings.shape[1]), random_state=0).fit_transform(
            embeddings
        )
        embeddings = reduced / np.maximum(np.linalg.norm(reduced, axis=1, keepdims=True), 1e-12)
        clusterer = hdbscan.HDBSCAN(
            min_cluster_size=params.min_cluster_size,
            min_samples=1,
            metric="euclidean",
            cluster_selection_method="leaf",
            algorithm="boruvka_kdtree",
            core_dist_n_jobs=1,
        )
        labels = clusterer.fit_predict(embeddings.astype(np.float64))
    labels = np.array(labels, dtype=np.int64)
    outliers = np.where(labels < 0)[0]
    labels[outliers] = labels.max() + 1 + np.arange(len(outliers))
    return labels


_SCORE_ROWS = 1024  # merge-score rows computed at once (8 KiB each per 1,000 micro-themes)


def merge_average_linkage(
    embeddings: np.ndarray,
    micro: np.ndarray,
    min_similarity: float,
    sessions: np.ndarray | None = None,
    session_penalty: float = 0.0,
    apart_bonus: float = 0.0,
    apart_full_at: float = 3.0,
) -> np.ndarray:
    """Exact group-average agglomeration of micro-themes, stopping below ``min_similarity``; with
    ``sessions``, each merge score is lowered by the same-session penalty and raised by the apart bonus
    described above.

    Every pair's merge score is kept (``score``, m x m float64: 29 MB at 2,000 micro-themes, 288 MB at
    ``max_micro_themes``) and only the merged group's row and column are computed again after a merge:
    a score depends on the pair's similarity, sizes and same-session count, which change for no other
    pair. Recomputing the rows whose best partner merged away instead was 36 % of a 3,000-statement
    group's merge, for ~5 rows a merge."""
    ids, micro = np.unique(micro, return_inverse=True)
    m = len(ids)
    sizes = np.bincount(micro, minlength=m).astype(np.float64)
    # a sparse incidence product adds each group's vectors in statement order, as np.add.at did, at a
    # fraction of its time (70 ms of a 3,000-statement group's merge)
    incidence = _incidence(micro, np.arange(len(micro)), m, len(micro), np.float64)
    means = (incidence @ np.asarray(embeddings, dtype=np.float64)) / sizes[:, None]
    similarity = (means @ means.T).astype(np.float32)  # mean pairwise cosine between two groups' statements
    uses_sessions = sessions is not None and bool(session_penalty or apart_bonus)
    same_session = _same_session_pairs(micro, m, sessions) if sessions is not None and uses_sessions else None
    share_chance = _share_chance(sessions) if sessions is not None and uses_sessions else 0.0
    alive = np.ones(m, dtype=bool)
    dead = np.zeros(m)  # -inf for each merged-away group: added to scores, it rules them out

    def scores(rows: slice | int) -> np.ndarray:
        """Merge scores of each of ``rows`` (a block, or one row) with every group (-inf for itself and
        merged-away groups)."""
        out: np.ndarray = similarity[rows].astype(np.float64)
        if same_session is not None:
            pairs, row_sizes = same_session[rows], sizes[rows]
            row_sizes = row_sizes[:, None] if isinstance(rows, slice) else row_sizes
            out -= session_penalty * pairs / np.minimum(row_sizes, sizes)
            bonus = apart_bonus * np.minimum(1.0, row_sizes * sizes * share_chance / apart_full_at)
            bonus[pairs != 0] = 0.0
            out += bonus
        if isinstance(rows, slice):
            block = np.arange(rows.start, rows.stop)
            out[block - rows.start, block] = -np.inf
        else:
            out[rows] = -np.inf
        out += dead
        return out

    score = np.empty((m, m))
    for start in range(0, m, _SCORE_ROWS):  # bounded: a block of rows x every group at a time
        score[start : start + _SCORE_ROWS] = scores(slice(start, min(m, start + _SCORE_ROWS)))
    best = np.argmax(score, axis=1)
    best_score = score[np.arange(m), best]

    def rescore(rows: np.ndarray) -> None:
        best[rows] = np.argmax(score[rows], axis=1)
        best_score[rows] = score[rows, best[rows]]

    parent = np.arange(m)
    left = m
    while left > 1:
        a = int(np.argmax(best_score))  # a merged-away group's best score is -inf
        b = int(best[a])
        if best_score[a] < min_similarity:
            break
        # Lance-Williams update for average linkage: sizes weight the two merged groups; same-session
        # pair counts simply add up
        merged = (similarity[a] * sizes[a] + similarity[b] * sizes[b]) / (sizes[a] + sizes[b])
        similarity[a], similarity[:, a] = merged, merged
        if same_session is not None:
            together = same_session[a] + same_session[b]
            same_session[a], same_session[:, a] = together, together
        sizes[a] += sizes[b]
        alive[b], dead[b] = False, -np.inf
        left -= 1
        score[b], score[:, b] = -np.inf, -np.inf
        with_a = scores(a)  # symmetric: every group's score with the merged group
        score[a], score[:, a] = with_a, with_a
        best_score[b] = -np.inf
        parent[parent == b] = a
        stale = alive & ((best == a) | (best == b))
        stale[a] = True
        rescore(np.flatnonzero(stale))
        better = alive & (with_a > best_score)
        best[better], best_score[better] = a, with_a[better]
    return parent[micro]


def _share_chance(sessions: np.ndarray) -> float:
    """Probability that two statements drawn at random were written at the same table session."""
    counts = np.unique(np.asarray(sessions).astype(str), return_counts=True)[1].astype(np.float64)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1))) if n > 1 else 0.0


def _same_session_pairs(micro: np.ndarray, m: int, sessions: np.ndarray) -> np.ndarray:
    """Pairs of statements written at one table session between every two micro-themes (0 on the diagonal)."""
    _, session = np.unique(np.asarray(sessions).astype(str), return_inverse=True)
    incidence = _incidence(micro, session, m, session.max() + 1, np.float32)
    pairs: np.ndarray = (incidence @ incidence.T).toarray().astype(np.float32)
    np.fill_diagonal(pairs, 0.0)
    return pairs


def _incidence(rows: np.ndarray, columns: np.ndarray, m: int, n: int, dtype: type) -> Any:
    """An m x n sparse matrix with a one at each (``rows[i]``, ``columns[i]``)."""
    from scipy import sparse

    return sparse.csr_matrix((np.ones(len(rows), dtype=dtype), (rows, columns)), shape=(m, n))


def cluster_statements(
    embeddings: np.ndarray, sessions: np.ndarray, params: ThemeParams | None = None
) -> np.ndarray:
    """Theme label per statement (0..k-1, ordered by first appearance); -1 = unassigned.
    ``sessions`` names the table session (table x round) that wrote each statement."""
    params = params or ThemeParams()
    sessions = np.asarray(sessions)
    n = len(embeddings)
    if n < 2:
        return np.full(n, -1)
    groups = _merge_bounded(embeddings, micro_themes(embeddings, params), sessions, params)
    labels = np.full(n, -1)
    next_label = 0
    for group in dict.fromkeys(groups[groups >= 0].tolist()):  # first-appearance order: deterministic
        members = np.where(groups == group)[0]
        if len(members) >= 2 and len(set(sessions[members])) >= params.min_tables:
            labels[members] = next_label
            next_label += 1
    return labels


def _merge_bounded(
    embeddings: np.ndarray, micro: np.ndarray, sessions: np.ndarray, params: ThemeParams
) -> np.ndarray:
    """Merge micro-themes; past ``max_micro_themes``, merge the largest, attach the rest where they fit,
    and merge what is left over the same way, so memory stays bounded and no theme is lost."""
    micro = np.unique(micro, return_inverse=True)[1]
    sizes = np.bincount(micro)
    if len(sizes) <= params.max_micro_themes:
        return _merge(embeddings, micro, sessions, params)
    kept = np.isin(micro, np.argsort(-sizes, kind="stable")[: params.max_micro_themes])
    groups = np.full(len(embeddings), -1)
    groups[kept] = _merge(embeddings[kept], micro[kept], sessions[kept], params)
    rest = np.where(~kept)[0]
    groups[rest] = _attach(embeddings, groups, rest, params.merge_similarity)
    left = rest[groups[rest] < 0]
    if len(left):
        groups[left] = (
            _merge_bounded(embeddings[left], micro[left], sessions[left], params) + groups.max() + 1
        )
    return groups


def _merge(
    embeddings: np.ndarray, micro: np.ndarray, sessions: np.ndarray, params: ThemeParams
) -> np.ndarray:
    return merge_average_linkage(
        embeddings,
        micro,
        params.merge_similarity,
        sessions,
        params.session_penalty,
        params.apart_bonus,
        params.apart_full_at,
    )


def _attach(
    embeddings: np.ndarray, groups: np.ndarray, rows: np.ndarray, min_similarity: float
) -> np.ndarray:
    """Group of the most similar theme (mean similarity to its statements) per row, -1 below the bar."""
    ids = np.unique(groups[groups >= 0])
    means = np.stack([embeddings[groups == g].mean(axis=0) for g in ids])
    out = np.full(len(rows), -1)
    for start in range(0, len(rows), 4096):
        chunk = rows[start : start + 4096]
        similarity = embeddings[chunk] @ means.T
        best = similarity.argmax(axis=1)
        fits = similarity[np.arange(len(chunk)), best] >= min_similarity
        out[start : start + len(chunk)] = np.where(fits, ids[best], -1)
    return out


# --------------------------------------------------------------------------- text for embedding
_AGREEMENT = re.compile(r"^\s*(agree(d)?|same|\+1|yes|also)\s*[:,\-–]\s*", re.IGNORECASE)
_EMPHASIS_TAIL = re.compile(
    r"\s*[-–,:]\s*(very\s+)?(important|key|crucial|essential|priority)\s*[!.]*\s*$", re.IGNORECASE
)


def text_for_embedding(text: str, glossary: Mapping[str, str] | None = None) -> str:
    """What the model sees: the point itself, without agreement prefixes, emphasis or shouting, with
    shorthand spelled out (``glossary``, see pipeline.glossary)."""
    return texts_for_embedding([text], glossary)[0]


#: Per glossary, the model's view of each text seen: every run reads the whole event again, and a
#: long-lived process (a scheduled or web re-run) then writes only the views of new texts.
_VIEWS: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
_VIEWS_KEPT = 100_000  # views remembered in all (about 25 MB)


def texts_for_embedding(texts: Iterable[str], glossary: Mapping[str, str] | None = None) -> list[str]:
    """``text_for_embedding`` of many statements, the glossary compiled once."""
    texts = list(texts)
    memo = _VIEWS.setdefault(tuple(sorted((glossary or {}).items())), {})
    todo = [t for t in dict.fromkeys(texts) if t not in memo]
    if todo:
        spell_out = speller(glossary or {})
        for text in todo:
            view = _AGREEMENT.sub("", text)
            view = _EMPHASIS_TAIL.sub("", view)
            memo[text] = spell_out(re.sub(r"([!?.])\1+", r"\1", view).strip(" !.")) or "(empty)"
    out = [memo[t] for t in texts]
    if sum(map(len, list(_VIEWS.values()))) > _VIEWS_KEPT:  # a copy: another thread may add a glossary
        _VIEWS.clear()
    return out


#: A question's statements -> the glossary to read them with (``pipeline.event.Event.glossary_for``).
GlossaryFor = Callable[[list[str]], Mapping[str, str]]


def model_texts(statements: pd.DataFrame) -> pd.Series:
    """What the embedding model reads of each statement: its gloss or translation, else its text."""
    if "text_en" not in statements:  # statements made outside a run
        return statements["text"].astype(str)
    glossed = statements["text_en"].astype(str).str.strip() != ""
    return statements["text_en"].where(glossed, statements["text"]).astype(str)


def model_views(
    statements: pd.DataFrame, glossary_for: GlossaryFor
) -> tuple[list[str], dict[tuple[str, str], Mapping[str, str]]]:
    """``texts_for_embedding`` of every statement, each read with its own question's glossary (an
    ambiguous acronym means what that question's notes make it mean), and those glossaries by
    (topic, question)."""
    views = [""] * len(statements)
    glossaries: dict[tuple[str, str], Mapping[str, str]] = {}
    texts = model_texts(statements).to_numpy(dtype=object)
    for group, rows in statements.groupby(["topic", "question"], sort=False).indices.items():
        key = (str(group[0]), str(group[1]))  # type: ignore[index]  # a (topic, question) pair
        question_texts = texts[rows].tolist()
        glossaries[key] = glossary_for(question_texts)
        for row, view in zip(rows, texts_for_embedding(question_texts, glossaries[key]), strict=True):
            views[row] = view
    return views, glossaries
