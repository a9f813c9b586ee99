"""Statements of one topic x question -> themes.

The clustering is two stages, so it behaves the same on 30 statements and on 30,000:

1. **HDBSCAN** (``min_cluster_size=2``, ``min_samples=1``, leaf selection) finds tight micro-themes:
   repeated phrasings and close paraphrases. Leaf selection keeps them small and pure; HDBSCAN's
   outliers become micro-themes of one.
2. **Group-average merging** joins micro-themes while the mean cosine similarity between all their
   statements is at least ``merge_similarity`` (0.35 = distance 0.65). Because the vectors are unit
   length, the mean pairwise similarity of two groups is exactly the dot product of their mean vectors,
   so the merge is exact average linkage at the cost of the micro-theme count, not the statement count.

A theme needs statements from at least ``min_tables`` table sessions; the rest stay unassigned.
Parameters were chosen on the dev event (see benchmarks/results/quality.md), not on its wording.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import hdbscan
import numpy as np


@dataclass(frozen=True)
class ThemeParams:
    merge_similarity: float = 0.35
    min_cluster_size: int = 2
    min_tables: int = 1
    #: Above this many statements HDBSCAN runs on vectors (Boruvka KD-tree), below on a cosine matrix.
    dense_limit: int = 4000
    #: ... and on vectors reduced to this many dimensions by PCA.
    reduce_to: int = 32
    #: At most this many micro-themes (the largest) enter the merge, whose similarity matrix is
    #: quadratic in them; the others join the nearest theme afterwards if they fit it (memory stays bounded).
    max_micro_themes: int = 6000


def micro_themes(embeddings: np.ndarray, params: ThemeParams) -> np.ndarray:
    """HDBSCAN labels with every outlier as its own micro-theme (labels 0..m-1)."""
    n = len(embeddings)
    if n < 3:
        return np.arange(n)
    if n <= params.dense_limit:
        distance = np.clip(1.0 - embeddings @ embeddings.T, 0.0, 2.0).astype(np.float64)
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
    labels = labels.copy()
    outliers = np.where(labels < 0)[0]
    labels[outliers] = labels.max() + 1 + np.arange(len(outliers))
    return labels


def merge_average_linkage(embeddings: np.ndarray, micro: np.ndarray, min_similarity: float) -> np.ndarray:
    """Exact group-average agglomeration of micro-themes, stopping below ``min_similarity``."""
    ids, micro = np.unique(micro, return_inverse=True)
    m = len(ids)
    sizes = np.bincount(micro, minlength=m).astype(np.float64)
    sums = np.zeros((m, embeddings.shape[1]))
    np.add.at(sums, micro, embeddings)
    means = sums / sizes[:, None]
    similarity = (means @ means.T).astype(np.float32)  # mean pairwise cosine between two groups' statements
    np.fill_diagonal(similarity, -np.inf)
    alive = np.ones(m, dtype=bool)
    parent = np.arange(m)
    best = similarity.argmax(axis=1)
    while alive.sum() > 1:
        rows = np.where(alive)[0]
        scores = similarity[rows, best[rows]]
        a = rows[int(np.argmax(scores))]
        b = best[a]
        if similarity[a, b] < min_similarity:
            break
        # Lance-Williams update for average linkage: sizes weight the two merged groups
        merged = (similarity[a] * sizes[a] + similarity[b] * sizes[b]) / (sizes[a] + sizes[b])
        similarity[a], similarity[:, a] = merged, merged
        similarity[b], similarity[:, b] = -np.inf, -np.inf
        similarity[a, a] = -np.inf
        sizes[a] += sizes[b]
        alive[b] = False
        parent[parent == b] = a
        stale = alive & ((best == a) | (best == b))
        stale[a] = True
        for row in np.where(stale)[0]:
            best[row] = int(np.argmax(similarity[row]))
        better = alive & (merged > similarity[np.arange(m), best])
        best[better] = a
    return parent[micro]


def cluster_statements(
    embeddings: np.ndarray, tables: np.ndarray, params: ThemeParams | None = None
) -> np.ndarray:
    """Theme label per statement (0..k-1, ordered by first appearance); -1 = unassigned."""
    params = params or ThemeParams()
    n = len(embeddings)
    if n < 2:
        return np.full(n, -1)
    groups = _merge_bounded(embeddings, micro_themes(embeddings, params), params)
    labels = np.full(n, -1)
    next_label = 0
    for group in dict.fromkeys(groups[groups >= 0].tolist()):  # first-appearance order: deterministic
        members = np.where(groups == group)[0]
        if len(members) >= 2 and len(set(tables[members])) >= params.min_tables:
            labels[members] = next_label
            next_label += 1
    return labels


def _merge_bounded(embeddings: np.ndarray, micro: np.ndarray, params: ThemeParams) -> np.ndarray:
    """Merge micro-themes; past ``max_micro_themes``, merge the largest, attach the rest where they fit,
    and merge what is left over the same way, so memory stays bounded and no theme is lost."""
    micro = np.unique(micro, return_inverse=True)[1]
    sizes = np.bincount(micro)
    if len(sizes) <= params.max_micro_themes:
        return merge_average_linkage(embeddings, micro, params.merge_similarity)
    kept = np.isin(micro, np.argsort(-sizes, kind="stable")[: params.max_micro_themes])
    groups = np.full(len(embeddings), -1)
    groups[kept] = merge_average_linkage(embeddings[kept], micro[kept], params.merge_similarity)
    rest = np.where(~kept)[0]
    groups[rest] = _attach(embeddings, groups, rest, params.merge_similarity)
    left = rest[groups[rest] < 0]
    if len(left):
        groups[left] = _merge_bounded(embeddings[left], micro[left], params) + groups.max() + 1
    return groups


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


def text_for_embedding(text: str, glossary: dict[str, str] | None = None) -> str:
    """What the model sees: the point itself, without agreement prefixes, emphasis or shouting."""
    text = _AGREEMENT.sub("", text)
    text = _EMPHASIS_TAIL.sub("", text)
    text = re.sub(r"([!?.])\1+", r"\1", text).strip(" !.")
    if glossary:
        pattern = (
            r"(?<![\w])("
            + "|".join(re.escape(k) for k in sorted(glossary, key=len, reverse=True))
            + r")(?![\w])"
        )
        text = re.sub(pattern, lambda m: glossary[m.group(1)], text)
    return text or "(empty)"
