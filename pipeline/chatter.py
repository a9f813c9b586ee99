"""Table chatter: remarks about the session rather than answers ("host: Anna", "see flipchart photo",
"Anna presented her cluster first", "breakout room opened late").

Chatter repeats across tables, so left in it would form well-supported "themes" and climb the ranking.
Every writer words it differently, so no list of phrasings can hold; it is found from what it is:

1. **Form**: a role prefix ("host:", "note taker:") or a named person as the subject of the note
   ("Anna presented ...", "Tom took notes"): the note reports who did what at the table. Answers name
   actors too, but as what clusters or authorities should do, rarely with a first name as subject.
2. **Meaning**: close to generic prototypes of world-cafe meta-remarks (time, attendance, connection,
   the question itself), by cosine.
3. **Relevance**: a remark is about the session, an answer about its question. The margin
   ``cosine to the nearest prototype - cosine to the question`` ("<topic title>: <question text>") ranks
   statements from surely-remark to surely-answer without any threshold on wording.
4. **The event's own remarks**: the statements that 1-3 make sure of (and those sure to be answers) teach
   a logistic regression over the embedding, trained on this event alone; what it finds likely a remark
   is flagged too. Each event's writers have their own chatter ("we'll share the board afterwards"),
   and its sure cases are the best examples of it there are.

Flags are event-wide (step 4 learns from every question), then each question's themes leave them out.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.encoders import slug
from pipeline.statements import pipeline_id
from pipeline.store import TextShards

if TYPE_CHECKING:
    from spacy.language import Language

#: Generic kinds of session remarks, not phrases of any one event.
PROTOTYPES = (
    "host: Maria",
    "facilitator: John",
    "note taker: Ana",
    "see the photo of the flipchart",
    "see previous round",
    "same as the other table",
    "same as above",
    "we agree with the previous table",
    "we did not discuss this question",
    "we skipped this question",
    "no time for this question",
    "we ran out of time",
    "time is up",
    "the question was unclear",
    "the question was too broad",
    "internet connection problems",
    "technical issues with the video call",
    "a participant had to leave",
    "only a few people at our table",
    "good discussion",
    "interesting conversation",
    "off topic",
    "nothing to add",
    "nothing new",
    "no consensus",
    "we agreed",
    "lively debate",
    "we talked about something else",
    "to be continued",
    "n/a",
)
_ROLE_PREFIX = re.compile(
    r"^\s*(host|facilitator|moderator|note[ -]?taker|rapporteur|scribe|table lead)\s*:", re.IGNORECASE
)


class ChatterParams(BaseModel):
    """How session remarks are told from answers (module docstring); ``[chatter]`` in harvest.toml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(
        default=0.45,
        ge=-1.0,
        le=2.0,
        description="Cosine to the nearest prototype remark at which a statement is a remark (above 1: "
        "never). Dev event: 108 of 121 remarks found and no answer taken (the closest answer is at "
        "0.42); 7 of 6,000 texts of the public short-text sets flagged.",
    )
    remark_margin: float = Field(
        default=0.4,
        ge=-2.0,
        le=2.0,
        description="Relevance margin (prototype cosine - question cosine) at or above which a statement "
        "is a sure remark, for the event's own classifier. Dev event: no answer at >= 0.4.",
    )
    answer_margin: float = Field(
        default=0.1,
        ge=-2.0,
        le=2.0,
        description="Margin at or below which a statement is a sure answer (margins of answers and "
        "remarks overlap between 0.1 and 0.4 on the dev event).",
    )
    probability: float = Field(
        default=0.8,
        gt=0.0,
        lt=1.0,
        description="Probability at which the event's classifier flags a statement. Chosen on the dev "
        "event as the setting that finds the most remarks while taking at most one answer, away from the "
        "edge: at 0.7 (and regularisation 10) the nine copies of 'give clusters a seat at the table' flip "
        "to remarks. Dev event: 111 of 121 remarks, 1 answer; at 0.9 and 1: 109 and none.",
    )
    regularisation: float = Field(
        default=10.0,
        gt=0.0,
        description="The classifier's inverse regularisation C (examples: tens to thousands; features: 385).",
    )
    min_examples: int = Field(
        default=5, ge=1, description="Fewest sure remarks and sure answers for the classifier to be trained."
    )
    max_examples: int = Field(
        default=5000,
        ge=1,
        description="At most this many of each kind train it (evenly spaced, so deterministic): memory "
        "stays bounded.",
    )

    @model_validator(mode="after")
    def _margins_apart(self) -> ChatterParams:
        if self.answer_margin >= self.remark_margin:
            raise ValueError(
                f"answer_margin ({self.answer_margin}) must be below remark_margin ({self.remark_margin})"
            )
        return self


def _name_like(text: str) -> bool:
    """A capitalised word of letters only opens the text ("Anna", not "B2C", "EU" or "SMEs")."""
    first = text.split(maxsplit=1)[:1]
    return bool(first) and len(first[0]) > 1 and first[0].isalpha() and first[0].istitle()


#: Per pipeline, what ``named_subject`` found for each text parsed: every run judges the whole event,
#: and a long-lived process (a scheduled or web re-run) then parses only texts it has not seen.
_NAMED: weakref.WeakKeyDictionary[Language, dict[str, bool]] = weakref.WeakKeyDictionary()
_NAMED_KEPT = 200_000


def named_subject(texts: Sequence[str], nlp: Language, stored: TextShards | None = None) -> np.ndarray:
    """True where a statement's first word is a person-like name and the parser's subject ("Anna
    presented the cluster first"). Only name-like first words are parsed, so this costs little.
    ``nlp`` must be a pipeline of the texts' language. With ``stored`` (``subject_cache``), what was
    found is kept on disk too, for the next process: the parse is ~1.5 ms a text, and every run judges
    the whole event's."""
    out = np.zeros(len(texts), dtype=bool)
    candidates = [i for i, text in enumerate(texts) if _name_like(text)]
    if not candidates or not nlp.has_pipe("parser"):
        return out
    memo = _NAMED.setdefault(nlp, {})
    todo = list(dict.fromkeys(texts[i] for i in candidates if texts[i] not in memo))
    if stored is not None:
        memo.update((text, found) for text in todo if (found := stored.get(text)) is not None)
        todo = [text for text in todo if text not in memo]
    parsed = {}
    for text, doc in zip(todo, nlp.pipe(todo), strict=True):
        first = doc[0]
        parsed[text] = first.pos_ == "PROPN" and first.dep_ in ("nsubj", "nsubjpass")
    memo.update(parsed)
    if stored is not None:
        stored.add(parsed)
    for i in candidates:
        out[i] = memo[texts[i]]
    for oldest in list(memo)[: max(0, len(memo) - _NAMED_KEPT)]:
        del memo[oldest]
    return out


class SubjectCache(TextShards):
    """``named_subject``'s findings kept on disk for one event and spaCy pipeline (``subject_cache``)."""

    def decode(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"a named subject is true or false, not {value!r}")
        return value


@lru_cache(maxsize=8)
def subject_cache(folder: Path, nlp: Language) -> SubjectCache:
    """The process's ``SubjectCache`` of an event's folder (``Layout.embedding_cache``) and pipeline."""
    return SubjectCache(Path(folder) / "subjects" / slug(pipeline_id(nlp)))


#: Statements whose vectors are worked on at once (as float32, ~100 MB): a million statements never hold a
#: float32 copy of every vector, or of every statement's question.
CHUNK = 65536


def _in_chunks(embeddings: np.ndarray, of: np.ndarray | None = None) -> Iterator[tuple[slice, np.ndarray]]:
    """``(positions, their vectors as float32)``, a chunk at a time, of the statements ``of`` names (rows
    of ``embeddings``; default all of them)."""
    for start in range(0, len(embeddings) if of is None else len(of), CHUNK):
        positions = slice(start, start + CHUNK)
        vectors = embeddings[positions] if of is None else embeddings[of[positions]]
        yield positions, np.asarray(vectors, dtype=np.float32)


def _closeness(
    embeddings: np.ndarray,
    prototype_embeddings: np.ndarray,
    question_embeddings: np.ndarray,
    question_of: np.ndarray | None,
    of: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per statement (those ``of`` names): cosine to the nearest prototype remark, and to its question."""
    n = len(embeddings) if of is None else len(of)
    nearest = np.empty(n, dtype=np.float32)
    own = np.empty(n, dtype=np.float32)
    for rows, chunk in _in_chunks(embeddings, of):
        nearest[rows] = (chunk @ prototype_embeddings.T).max(axis=1)
        which = rows if question_of is None else question_of[rows]
        own[rows] = (chunk * question_embeddings[which]).sum(axis=1)
    return nearest, own


def relevance_margin(
    embeddings: np.ndarray,
    prototype_embeddings: np.ndarray,
    question_embeddings: np.ndarray,
    question_of: np.ndarray | None = None,
) -> np.ndarray:
    """Per statement: cosine to the nearest prototype remark less cosine to its own question: the row of
    ``question_embeddings`` that ``question_of`` names, or the row aligned with it without."""
    nearest, own = _closeness(embeddings, prototype_embeddings, question_embeddings, question_of)
    return np.asarray(nearest - own)


def chatter_mask(
    texts: Sequence[str],
    embeddings: np.ndarray,
    prototype_embeddings: np.ndarray,
    question_embeddings: np.ndarray,
    nlp: Language | None = None,
    parsable: np.ndarray | None = None,
    params: ChatterParams | None = None,
    question_of: np.ndarray | None = None,
    of: np.ndarray | None = None,
    subjects: TextShards | None = None,
) -> np.ndarray:
    """True where a statement is a remark about the session, not an answer to its question.

    Pass every statement of the event at once (step 4 learns from them all): the ``texts`` and the rows
    of ``embeddings`` that ``of`` names (default: every row, aligned with ``texts``; never copied whole).
    Each statement's question, embedded as ``Event.question_prompts`` writes it, is the row of
    ``question_embeddings`` that ``question_of`` names (without it, the row aligned with the statement).
    Named subjects are looked for with ``nlp`` in the statements ``parsable`` marks (those in its
    language; default all), not at all without it; ``subjects``: what was found, kept on disk
    (``subject_cache``)."""
    params = params or ChatterParams()
    n = len(texts)
    if not n:
        return np.zeros(0, dtype=bool)
    by_form = np.array([bool(_ROLE_PREFIX.match(t)) for t in texts])
    if nlp is not None:
        rows = np.flatnonzero(np.ones(n, dtype=bool) if parsable is None else parsable)
        by_form[rows] |= named_subject([texts[int(i)] for i in rows], nlp, subjects)
    nearest, own = _closeness(embeddings, prototype_embeddings, question_embeddings, question_of, of)
    margin = nearest - own
    sure = by_form | (nearest >= params.threshold) | (margin >= params.remark_margin)
    learned = _learned(embeddings, of, margin, sure, ~sure & (margin <= params.answer_margin), params)
    return np.asarray(sure | learned)


def _learned(
    embeddings: np.ndarray,
    of: np.ndarray | None,
    margin: np.ndarray,
    remarks: np.ndarray,
    answers: np.ndarray,
    params: ChatterParams,
) -> np.ndarray:
    """Statements the event's own sure remarks and answers say are remarks (step 4)."""
    remark_rows, answer_rows = np.flatnonzero(remarks), np.flatnonzero(answers)
    if min(len(remark_rows), len(answer_rows)) < params.min_examples:
        return np.zeros(len(margin), dtype=bool)
    from sklearn.linear_model import LogisticRegression

    def spread(rows: np.ndarray) -> np.ndarray:
        if len(rows) <= params.max_examples:
            return rows
        return np.asarray(rows[np.linspace(0, len(rows) - 1, params.max_examples).astype(int)])

    def features(vectors: np.ndarray, margins: np.ndarray) -> np.ndarray:
        return np.hstack([np.asarray(vectors, dtype=np.float32), margins[:, None].astype(np.float32)])

    train = np.concatenate([spread(remark_rows), spread(answer_rows)])
    model = LogisticRegression(C=params.regularisation, class_weight="balanced", max_iter=2000)
    model.fit(features(embeddings[train if of is None else of[train]], margin[train]), remarks[train])
    scores = np.concatenate(
        [model.decision_function(features(chunk, margin[rows])) for rows, chunk in _in_chunks(embeddings, of)]
    )
    return np.asarray(scores >= np.log(params.probability / (1 - params.probability)))
