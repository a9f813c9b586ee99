"""Words for a theme: a short keyphrase label (c-TF-IDF over spaCy lemmas and noun chunks) and a
recommendation (its most representative statement, cleaned, joined by a second one where together they
say the theme better; see ``compose_recommendations``)."""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing
import os
import re
import sys
import threading
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.encoders import slug, usable_cores
from pipeline.rank import unit_centre
from pipeline.statements import pipeline_id
from pipeline.store import TextShards
from pipeline.themes import text_for_embedding

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from spacy.language import Language
    from spacy.tokens import Doc

log = logging.getLogger(__name__)

_CONTENT = {"NOUN", "PROPN", "ADJ", "VERB"}
_GENERIC = {
    "incl",  # abbreviations the tokenizer leaves as words
    "etc",
    "esp",
    "approx",
    "need",
    "important",
    "key",
    "role",
    "thing",
    "way",
    "more",
    "new",
    "good",
    "have",
    "be",
    "do",
    "make",
    "get",
    "use",
    "should",
    "must",
    "also",
    "agree",
    "level",
}


CHUNK_WEIGHT = 1.15  # a noun chunk names a thing better than one of its words
VERB_WEIGHT = 0.5  # "let", "know", "talked": a label names what, verbs come in only where nothing else does


def keyphrases(doc: Doc) -> list[tuple[str, str, float]]:
    """Candidate terms of one statement as (lemma key, words as written, weight): noun chunks and
    content words.

    Counting by lemma joins "cluster" and "clusters"; showing the written form keeps "media" from
    becoming its lemma "medium"."""
    terms: list[tuple[str, str, float]] = []
    if doc.has_annotation("DEP"):
        for chunk in doc.noun_chunks:
            words = [
                t
                for t in chunk
                if not t.is_stop and not t.is_punct and t.is_alpha and t.lower_ not in _GENERIC
            ]
            if len(words) >= 2:
                key, written = " ".join(t.lemma_.lower() for t in words), " ".join(t.lower_ for t in words)
                terms.append((key, written, CHUNK_WEIGHT))
    for token in doc:
        lemma = token.lemma_.lower() if token.lemma_ else token.lower_
        if (
            token.is_alpha
            and not token.is_stop
            and len(lemma) > 2
            and lemma not in _GENERIC
            and (not doc.has_annotation("TAG") or token.pos_ in _CONTENT)
        ):
            terms.append((lemma, token.lower_, VERB_WEIGHT if token.pos_ == "VERB" else 1.0))
    return terms


def ctfidf_labels(
    terms_per_statement: list[list[str]],
    labels: np.ndarray,
    top: int = 3,
    display: dict[str, str] | None = None,
    weights: dict[str, float] | None = None,
) -> dict[int, str]:
    """Per theme, the terms that are frequent in it and rare in the question's other themes.

    ``display`` maps a term (lemma) to the words shown for it; ``weights`` scales a term's score
    (default: CHUNK_WEIGHT for terms of several words, else 1)."""
    display = display or {}
    weights = weights or {}
    per_theme: dict[int, Counter[str]] = {}
    for terms, label in zip(terms_per_statement, labels, strict=True):
        if label >= 0:
            per_theme.setdefault(int(label), Counter()).update(set(terms))
    if not per_theme:
        return {}
    overall: Counter[str] = Counter()
    for counts in per_theme.values():
        overall.update(counts)
    average_size = sum(sum(c.values()) for c in per_theme.values()) / len(per_theme)
    out = {}
    for label, counts in per_theme.items():
        size = sum(counts.values()) or 1
        scored = sorted(
            (
                (
                    c / size * math.log(1 + average_size / overall[t]) * weights.get(t, _default_weight(t)),
                    t,
                )
                for t, c in counts.items()
                if c >= 1
            ),
            key=lambda x: (-x[0], x[1]),
        )
        chosen: list[str] = []
        for _, term in scored:
            if any(term in c or c in term for c in chosen):
                continue
            chosen.append(term)
            if len(chosen) == top:
                break
        out[label] = ", ".join(display.get(c, c) for c in chosen) if chosen else "(no keywords)"
    return out


def _default_weight(term: str) -> float:
    return CHUNK_WEIGHT if " " in term else 1.0


_TERMS: weakref.WeakKeyDictionary[Language, dict[str, list[tuple[str, str, float]]]] = (
    weakref.WeakKeyDictionary()
)
_TERMS_KEPT = 200_000  # statements whose terms a process remembers (about 100 MB)
#: Held while a thread reads or parses into ``_TERMS``: topic x question groups are labelled side by side
#: (``flows.harvest.LOCAL_WORKERS``), and a spaCy pipeline is not to be run by two threads at once.
_TERMS_LOCK = threading.Lock()
#: Bump when ``keyphrases`` (or what it filters) changes: terms kept on disk are then made anew.
KEYPHRASES_VERSION = 1


class TermCache(TextShards):
    """``keyphrases`` of statement texts kept on disk for one event and spaCy pipeline, so a new process
    re-clustering a question parses only statements no run has parsed (``store.TextShards``)."""

    def __init__(self, folder: Path, nlp: Language) -> None:
        super().__init__(Path(folder) / slug(f"{pipeline_id(nlp)}-v{KEYPHRASES_VERSION}"))

    def decode(self, value: Any) -> list[tuple[str, str, float]]:
        return [(a, b, float(w)) for a, b, w in value]

    def get(self, text: str) -> list[tuple[str, str, float]] | None:
        terms: list[tuple[str, str, float]] | None = super().get(text)
        return terms


@lru_cache(maxsize=8)
def term_cache(folder: Path, nlp: Language) -> TermCache:
    """The process's ``TermCache`` of an event's folder (``Layout.embedding_cache``) and pipeline."""
    return TermCache(Path(folder) / "keyphrases", nlp)


def statement_terms(
    texts: list[str], nlp: Language, stored: TermCache | None = None
) -> list[list[tuple[str, str, float]]]:
    """``keyphrases`` of each text. Remembered per process and pipeline, so a re-run (a scheduled or
    web-triggered run in a long-lived process) parses only statements it has not seen; with ``stored``,
    on disk too, for the next process."""
    with _TERMS_LOCK:
        memo, todo = _remembered(texts, nlp, stored)
        _parse(todo, nlp, memo, stored)
        found = [memo[t] for t in texts]
        _forget_oldest(memo)
    return found


def _remembered(
    texts: list[str], nlp: Language, stored: TermCache | None
) -> tuple[dict[str, list[tuple[str, str, float]]], list[str]]:
    """The process's terms of ``nlp`` (filled from ``stored`` for ``texts``) and the texts not in them."""
    memo = _TERMS.setdefault(nlp, {})
    todo = [t for t in dict.fromkeys(texts) if t not in memo]
    if stored is not None:
        for text in todo:
            terms = stored.get(text)
            if terms is not None:
                memo[text] = terms
        todo = [t for t in todo if t not in memo]
    return memo, todo


def _parse(
    todo: list[str],
    nlp: Language,
    memo: dict[str, list[tuple[str, str, float]]],
    stored: TermCache | None,
) -> None:
    helper = _HELPERS.get(id(nlp))
    if helper is not None and len(todo) >= SHARED_PARSE_FROM:
        found = helper.share(todo, nlp)
    else:
        found = _keyphrases_here(todo, nlp)
    parsed = dict(zip(todo, found, strict=True))
    memo.update(parsed)
    if stored is not None:
        stored.add(parsed)


def _keyphrases_here(texts: list[str], nlp: Language) -> list[list[tuple[str, str, float]]]:
    return [keyphrases(doc) for doc in nlp.pipe(texts, batch_size=256)]


#: The fewest texts a parse shares with the helper of ``shared_parse`` (a round number, not tuned: a cold
#: run's groups parse hundreds, a re-run after one table some tens, all here).
SHARED_PARSE_FROM = 200
#: The helper's share of a shared parse. It parses on a core of its own; this process parses the rest
#: beside the other groups' clustering, which needs the interpreter's lock too.
HELPER_SHARE = 0.5


class _ParseHelper:
    """A forked copy of this process that parses texts for ``statement_terms`` until closed."""

    def __init__(self, nlp: Language) -> None:
        context = multiprocessing.get_context("fork")
        self._connection, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve_parses, args=(nlp, theirs, self._connection), daemon=True
        )
        with warnings.catch_warnings():
            # Python 3.12+ warns at every fork of a process that has threads: the copy runs none of their
            # code (see _serve_parses)
            warnings.filterwarnings(
                "ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning
            )
            self.process.start()
        theirs.close()  # the helper holds its own end: when it ends, this end reads EOF
        self.gone = False

    def share(self, texts: list[str], nlp: Language) -> list[list[tuple[str, str, float]]]:
        """The terms of ``texts``: the first part parsed by the helper while this process parses the
        rest. Once the helper is gone (killed, out of memory), this process parses everything."""
        if self.gone:
            return _keyphrases_here(texts, nlp)
        cut = _cut_by_length(texts, HELPER_SHARE)
        try:
            self._connection.send(texts[:cut])
            ours = _keyphrases_here(texts[cut:], nlp)
            theirs: list[list[tuple[str, str, float]]] = self._connection.recv()
        except (EOFError, OSError):
            self.gone = True
            self.process.join(timeout=1)
            log.warning("the labels' parse helper ended (exit %s); parsing here", self.process.exitcode)
            return _keyphrases_here(texts, nlp)
        return theirs + ours

    def close(self) -> None:
        with suppress(OSError):
            self._connection.send(None)  # its signal to end
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()
        self._connection.close()


def _cut_by_length(texts: list[str], share: float) -> int:
    """Where to cut ``texts`` so that the first part holds about ``share`` of their characters: a parse
    takes time by the word."""
    ends = np.cumsum([len(t) + 1 for t in texts])
    return int(np.searchsorted(ends, share * ends[-1]))


def _serve_parses(nlp: Language, connection: Connection, parents: Connection) -> None:
    """The helper's loop: terms for each list of texts received, until None or the parent's end."""
    parents.close()  # the copy of the parent's end: open here, it would keep this end from reading EOF
    # What it inherited stays out of its collections: walking it would write to, and so copy, every
    # page of the parent's objects.
    gc.freeze()
    # Nothing it parses is for a log: a handler here could wait on a lock another thread of the parent
    # held at the fork, or on a worker thread the copy does not have.
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    code = 1
    try:
        while (texts := connection.recv()) is not None:
            connection.send(_keyphrases_here(texts, nlp))
        code = 0
    except (EOFError, OSError):  # the parent is gone
        pass
    finally:
        # Not multiprocessing's usual end: it flushes the standard streams, whose locks another thread
        # of the parent may have held at the fork.
        os._exit(code)


_HELPERS: dict[int, _ParseHelper] = {}  # by id of the pipeline they parse with, while shared_parse is open


@contextmanager
def shared_parse(nlp: Language) -> Iterator[None]:
    """While open, the labels' parses of ``nlp`` of ``SHARED_PARSE_FROM`` texts or more are shared with a
    forked copy of this process (``_ParseHelper``), for a stage that labels many groups side by side.

    The trained pipeline holds the interpreter's lock for most of a parse, so a parse in a thread takes
    turns with the other groups' clustering, whose merge loop is Python too; two threads each with a
    pipeline took 0.84x the time of one. The copy has the pipeline loaded (fork: nothing loaded again,
    nothing of it pickled) and parses on a core of its own; only texts and terms cross the pipe. Forked
    once for the stage: a fork per parse (tried) was no faster, each fork copying the page tables and
    then every page either process wrote. Linux only (fork is not the platform's way elsewhere), and
    only with a second core."""
    if not sys.platform.startswith("linux") or usable_cores() < 2 or id(nlp) in _HELPERS:
        yield
        return
    try:
        helper = _ParseHelper(nlp)
    except OSError as exc:  # no memory or no process left for a copy
        log.warning("could not fork a process to share the labels' parse (%s)", exc)
        yield
        return
    _HELPERS[id(nlp)] = helper
    try:
        yield
    finally:
        del _HELPERS[id(nlp)]
        helper.close()


def _forget_oldest(memo: dict[str, list[tuple[str, str, float]]]) -> None:
    for oldest in list(memo)[: max(0, len(memo) - _TERMS_KEPT)]:
        del memo[oldest]


def label_themes(
    texts: list[str], labels: np.ndarray, nlp: Language, top: int = 3, stored: TermCache | None = None
) -> dict[int, str]:
    found = statement_terms(texts, nlp, stored)
    written: dict[str, Counter[str]] = {}
    weighed: dict[str, Counter[float]] = {}
    for terms in found:
        for key, surface, weight in terms:
            written.setdefault(key, Counter())[surface] += 1
            weighed.setdefault(key, Counter())[weight] += 1
    display = {key: forms.most_common(1)[0][0] for key, forms in written.items()}
    weights = {key: ws.most_common(1)[0][0] for key, ws in weighed.items()}  # as the term is mostly used
    return ctfidf_labels([[key for key, _, _ in terms] for terms in found], labels, top, display, weights)


def representative(embeddings: np.ndarray) -> int:
    """Index of the member with the highest mean similarity to the others (the medoid)."""
    centroid = embeddings.mean(axis=0)
    return int(np.argmax(embeddings @ centroid))


def phrasing_key(text: str) -> str:
    """Words only, lower case: "X!!" and "x" are one phrasing."""
    return re.sub(r"\W+", " ", text.lower()).strip()


#: "(mgmt, LCA...)": dots saying "and so on" just before the bracket that closes the list anyway
_TRAILING_ELLIPSIS = re.compile(r"\s*(\.{2,}|…)\s*(?=[)\]])")


def _cleaned(statement: str) -> str:
    """A statement without agreement prefix, emphasis or shouting, as written otherwise."""
    statement = _TRAILING_ELLIPSIS.sub("", statement)
    return re.sub(r"\s+", " ", text_for_embedding(statement)).strip(" -–;,")


def recommendation_text(statement: str, spell_out: Callable[[str], str] | None = None) -> str:
    """A statement as a recommendation: cleaned, shorthand spelled out by ``spell_out`` (for the paper's
    readers: ``pipeline.glossary.for_readers``), with a capital first."""
    text = _cleaned(statement)
    if spell_out is not None:
        text = spell_out(text)
    return text[:1].upper() + text[1:] if text else statement


#: Texts -> unit vectors as the theme's embeddings were made (the model's view of a text as written).
Encode = Callable[[list[str]], np.ndarray]
RECOMMENDATION_PARTS = 2  # statements a recommendation joins at most
#: The most central distinct statements a recommendation is composed from (8 or 12 made the same choices
#: on the dev event, with more to encode).
RECOMMENDATION_CANDIDATES = 5
#: Joint texts encoded per theme and step: the candidates whose joint text promises most, estimated from
#: the vectors at hand (see ``compose_recommendations``). Encoding them is most of a theme's cost. One or
#: two gave the same themes and recommendation fidelity within noise (2026-12-06, fidelity with 1 against
#: 2: dev 0.6614/0.6631, its odd and even tables 0.6697/0.6658 and 0.6154/0.6065, dev2 0.5800/0.5788;
#: every other score the same), and one is half the joint texts to encode (the themes stage of a cold run
#: of 8,030 distinct notes: 4.7 s against 7.6 s).
RECOMMENDATION_TRIALS = 1


def _joint_estimate(first: np.ndarray, first_words: int, other: np.ndarray, other_words: int) -> np.ndarray:
    """The vector of "first; other" before encoding it: the mean of the two, each weighed by its words,
    as a mean-pooling encoder weighs its tokens (an estimate: attention mixes the two parts)."""
    joint = np.asarray(first * first_words + other * other_words, dtype=np.float32)
    return np.asarray(joint / max(float(np.linalg.norm(joint)), 1e-12))


def compose_recommendations(
    themes: list[tuple[list[str], np.ndarray]],
    encode: Encode | None = None,
    parts: int = RECOMMENDATION_PARTS,
    candidates: int = RECOMMENDATION_CANDIDATES,
    spell_out: Callable[[str], str] | None = None,
    trials: int = RECOMMENDATION_TRIALS,
) -> list[str]:
    """The recommendation of each theme, given as (member texts, their embeddings).

    A paper's bullet names what a theme's statements share, and each statement says only part of it
    ("Lobbying, visibility and representation for SMEs"). The theme's centre (mean vector) is the best
    estimate of that whole, so the recommendation is the text whose vector is closest to the centre:
    the most central statement alone, or joined ("; ") by the further statement that brings the joint
    text closest, while that gets closer (up to ``parts`` statements, from the ``candidates`` most
    central distinct ones). Vectors of joined texts are no mean of their parts', so a joint text counts
    only as ``encode`` embeds it; the ``trials`` candidates whose joint text the parts' vectors promise
    most are encoded, the others not. Without ``encode``, the most central statement. All themes' texts
    of a step go to ``encode`` at once: one call per step, not per theme. ``spell_out`` writes out
    shorthand in the result (see ``recommendation_text``)."""
    centres, pools, vectors_of, firsts = [], [], [], []
    for texts, embeddings in themes:
        centre = unit_centre(embeddings)
        distinct: dict[str, tuple[str, np.ndarray]] = {}
        order = np.argsort(-(embeddings @ centre), kind="stable")
        for i in order:
            text = _cleaned(texts[i]) or texts[i]
            distinct.setdefault(phrasing_key(text), (text, embeddings[i]))
            if len(distinct) == candidates:
                break
        centres.append(centre)
        pools.append([text for text, _ in distinct.values()])
        vectors_of.append([vector for _, vector in distinct.values()])
        # the most central statement alone: its own vector (cleaning leaves what the model reads)
        firsts.append(embeddings[order[0]] if len(order) else centre)
    chosen = [[recommendation_text(pool[0])] for pool in pools]
    growing = [i for i, pool in enumerate(pools) if len(pool) > 1] if encode is not None else []
    best = {i: float(firsts[i] @ centres[i]) for i in growing}
    current = {i: firsts[i] for i in growing}  # the vector of each growing theme's text so far
    while growing and encode is not None:
        trials_: list[tuple[int, int]] = []
        for i in growing:
            words = len("; ".join(chosen[i]).split())
            open_ = [j for j in range(1, len(pools[i])) if pools[i][j] not in chosen[i]]
            promise = [
                float(
                    _joint_estimate(current[i], words, vectors_of[i][j], len(pools[i][j].split()))
                    @ centres[i]
                )
                for j in open_
            ]
            trials_ += [(i, open_[k]) for k in np.argsort(promise, kind="stable")[::-1][:trials]]
        if not trials_:
            break
        vectors = encode(["; ".join([*chosen[i], pools[i][j]]) for i, j in trials_])
        scores: dict[int, tuple[float, int, np.ndarray]] = {}
        for (i, j), vector in zip(trials_, vectors, strict=True):
            score = float(vector @ centres[i])
            if score > scores.get(i, (-np.inf, 0, vector))[0]:
                scores[i] = (score, j, vector)
        still_growing = []
        for i, (score, j, vector) in scores.items():
            if score > best[i]:
                best[i], current[i] = score, vector
                chosen[i].append(pools[i][j])
                if len(chosen[i]) < parts:
                    still_growing.append(i)
        growing = still_growing
    return [recommendation_text("; ".join(parts_), spell_out) for parts_ in chosen]
