"""Statements + embeddings of one topic x question -> themes with labels, recommendations and support."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipeline.chatter import PROTOTYPES, ChatterParams, chatter_mask, subject_cache
from pipeline.embed import phrase_cache, phrase_encoder
from pipeline.encoders import EncoderSpec
from pipeline.glossary import for_readers
from pipeline.labels import (
    RECOMMENDATION_PARTS,
    RECOMMENDATION_TRIALS,
    Encode,
    TermCache,
    compose_recommendations,
    label_themes,
    representative,
    term_cache,
)
from pipeline.languages import BridgeParams, routed
from pipeline.provenance import code_id
from pipeline.rank import SUPPORT_COLUMNS, session_names, theme_support, unit_centre
from pipeline.schema import (
    OFF_TOPIC_THEME_SUFFIX,
    THEMES,
    Flag,
    LanguageRoute,
    ThemeStatus,
    conform,
)
from pipeline.statements import load_nlp, pipeline_id
from pipeline.themes import ThemeParams, cluster_statements, model_texts

if TYPE_CHECKING:
    from spacy.language import Language

#: Changes when the prototypes or the way remarks are found change (the flags feed every group's themes).
CHATTER_METHOD = "form, meaning, relevance, event classifier"
CHATTER_VERSION = hashlib.sha256("\n".join([CHATTER_METHOD, *PROTOTYPES]).encode()).hexdigest()[:12]
#: The modules whose code makes themes, labels and recommendations: every group's fingerprint includes
#: a hash of their source (``provenance.code_id``), so a release that changes them clusters every group
#: again instead of keeping themes made by other code.
THEME_MODULES = (
    *("pipeline.synthesis", "pipeline.themes", "pipeline.labels", "pipeline.chatter", "pipeline.rank"),
    *("pipeline.languages", "pipeline.glossary", "pipeline.embed", "pipeline.encoders"),
)
#: Libraries whose upgrade may change the themes (their versions are in every fingerprint).
THEME_LIBRARIES = ("hdbscan", "scikit-learn", "spacy", "sentence-transformers", "numpy")


class SynthesisParams(BaseModel):
    """Everything a group's themes are made with besides its data and the models (``Settings.synthesis``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    themes: ThemeParams = Field(default_factory=ThemeParams)
    chatter: ChatterParams = Field(default_factory=ChatterParams)
    model_language: str = "en"
    multilingual_model: bool = False
    bridge: BridgeParams = Field(default_factory=BridgeParams)
    recommendation_parts: int = Field(default=RECOMMENDATION_PARTS, ge=1)
    recommendation_trials: int = Field(default=RECOMMENDATION_TRIALS, ge=1)


def statement_flags(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    chatter_prototypes: np.ndarray,
    question_embeddings: np.ndarray,
    nlp: Language | None,
    params: SynthesisParams,
    question_of: np.ndarray | None = None,
    caches: Path | None = None,
) -> np.ndarray:
    """'' for statements to cluster; otherwise why a statement stays out of the themes.

    Event-wide: pass every statement, with its question's embedding (the row of ``question_embeddings``
    that ``question_of`` names, or the aligned row without it), since session remarks are recognised by
    what the whole event's remarks look like (``pipeline.chatter``). ``nlp`` parses statements in the
    model's language for named subjects, and ``caches`` (the event's ``Layout.embedding_cache``) keeps
    what it found for the next process (``chatter.subject_cache``)."""
    statements = routed(statements, params.model_language, params.multilingual_model)
    flags = np.full(len(statements), "", dtype=object)
    # a gloss or translation is in the model's language too
    in_model_language = (
        (statements["language"] == params.model_language) | (statements["text_en"].astype(str) != "")
    ).to_numpy()
    flags[(statements["language_route"] == LanguageRoute.AWAITING).to_numpy()] = Flag.LANGUAGE
    rows = np.flatnonzero(flags == "")
    texts = model_texts(statements).to_numpy(dtype=object)[rows].tolist()
    chatter = chatter_mask(
        texts,
        embeddings,
        chatter_prototypes,
        question_embeddings,
        nlp,
        in_model_language[rows],
        params.chatter,
        question_of=rows if question_of is None else question_of[rows],
        of=rows,
        subjects=None if caches is None or nlp is None else subject_cache(caches, nlp),
    )
    flags[rows[chatter]] = Flag.OFF_TOPIC
    return flags


def event_flags(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    question_prompts: Mapping[tuple[str, str], str],
    embed: Callable[[list[str]], np.ndarray],
    nlp: Language | None,
    params: SynthesisParams,
    caches: Path | None = None,
) -> np.ndarray:
    """``statement_flags`` of every statement of an event: the chatter prototypes and the questions
    (``Event.question_prompts``) embedded with ``embed``, as the statements were. ``caches``: as
    ``statement_flags`` takes it."""
    prototypes = np.asarray(embed(list(PROTOTYPES)), dtype=np.float32)
    row_of = {key: row for row, key in enumerate(question_prompts)}
    questions = np.asarray(embed(list(question_prompts.values())), dtype=np.float32)
    of_statement = np.array(
        [
            row_of[key]
            for key in zip(statements["topic"].tolist(), statements["question"].tolist(), strict=True)
        ],
        dtype=np.intp,
    )
    # the vectors as stored (float16 from the cache at scale): converted a chunk at a time
    return statement_flags(statements, embeddings, prototypes, questions, nlp, params, of_statement, caches)


def _installed(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def models_id(encoder: EncoderSpec, nlp: Language | None) -> str:
    """Everything outside the data that a group's themes depend on: the embedding model, the spaCy
    pipeline, the versions of the libraries that make themes, and the code that makes them."""
    pipeline = pipeline_id(nlp) if nlp else "none"
    libraries = " ".join(f"{p}={_installed(p)}" for p in THEME_LIBRARIES)
    return f"{encoder.id} | spacy {pipeline} | {libraries} | code {code_id(*THEME_MODULES)}"


def statement_rows(statements: pd.DataFrame) -> pd.Series:
    """What a group's fingerprint reads of each statement (``group_fingerprints``), one string a row."""
    columns = ["statement_id", "text", "text_en", "language", "table", "round", "votes", "note_id"]
    row_text = statements[columns[0]].astype(str)
    for column in columns[1:]:
        row_text = (
            row_text + "\x1f" + statements.get(column, pd.Series("", index=statements.index)).astype(str)
        )
    return row_text


def group_fingerprints(
    rows: pd.Series,
    groups: Mapping[str, np.ndarray],
    models: str,
    params: SynthesisParams,
    glossary: Mapping[str, str | tuple[str, ...]] | None = None,
    flags: np.ndarray | None = None,
) -> dict[str, str]:
    """Per group (positions in ``rows``, the statements' ``statement_rows``), everything its machine
    themes depend on: its statements, their ``flags`` (``statement_flags``), the ``models``
    (``models_id``), parameters and glossary; an unchanged fingerprint means the last run's themes hold.
    One vectorised pass over all statements."""
    row_text = rows
    if flags is not None:
        row_text = row_text + "\x1f" + pd.Series(flags, index=rows.index, dtype=object).astype(str)
    rows_text = row_text.to_numpy(dtype=object)
    settings = json.dumps([models, repr(params), sorted((glossary or {}).items()), CHATTER_VERSION])
    return {
        key: hashlib.sha256("\n".join([settings, *sorted(rows_text[members])]).encode()).hexdigest()
        for key, members in groups.items()
    }


def theme_id(topic: str, question: str, member_ids: list[str]) -> str:
    digest = hashlib.sha1("\n".join(sorted(member_ids)).encode()).hexdigest()[:8]
    return f"{topic}.{question}.{digest}"


def off_topic_theme_id(topic: str, question: str) -> str:
    return f"{topic}.{question}{OFF_TOPIC_THEME_SUFFIX}"


#: Statements of a theme whose words its label is made from: the most central ones. Parsing is the
#: costly part of labelling (tagger and parser, ~2 ms a statement), and a theme's core says what it is
#: about as well as its fringe does; no theme of the dev events is this large.
LABEL_SAMPLE = 40


def labels_sample(
    labels: np.ndarray, embeddings: np.ndarray, readable: np.ndarray, per_theme: int = LABEL_SAMPLE
) -> np.ndarray:
    """Which statements a theme's label reads: its readable members, the ``per_theme`` closest to its
    centre where it has more (statements in no theme are not read: c-TF-IDF counts themes only)."""
    chosen = np.zeros(len(labels), dtype=bool)
    for label in set(labels.tolist()) - {-1}:
        members = np.flatnonzero((labels == label) & readable)
        if len(members) > per_theme:
            closeness = embeddings[members] @ unit_centre(embeddings[members])
            members = members[np.argsort(-closeness, kind="stable")[:per_theme]]
        chosen[members] = True
    return chosen


def synthesise_group(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    flags: np.ndarray,
    nlp: Language,
    params: SynthesisParams | None = None,
    encode: Encode | None = None,
    spell_out: Callable[[str], str] | None = None,
    terms: TermCache | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Themes of one topic x question; ``flags`` are the statements' ``statement_flags``.

    ``encode`` embeds texts as ``embeddings`` were made; recommendations that join statements need it
    (``pipeline.labels.compose_recommendations``), without it each is one statement. ``spell_out``
    writes out the shorthand in recommendations (``pipeline.glossary.for_readers``). ``terms``: statements'
    keyphrases kept on disk (``labels.term_cache``).

    Returns ``(assignments, themes)``: assignments has ``statement_id, theme_id, flag`` for every
    statement (theme_id empty = unassigned); themes follows ``schema.THEMES`` with rank still 0. The
    off-topic statements form one more theme with status ``off-topic`` (see schema.ThemeStatus.OFF_TOPIC):
    session remarks are one kind of thing, which editors see together and can take answers out of.
    """
    params = params or SynthesisParams()
    statements = statements.reset_index(drop=True)
    flags = np.asarray(flags, dtype=object)
    eligible = np.where(flags == "")[0]
    sessions = session_names(statements["table"].to_numpy(), statements["round"].to_numpy())
    labels = np.full(len(statements), -1)
    labels[eligible] = cluster_statements(embeddings[eligible], sessions[eligible], params.themes)
    answers = (embeddings[eligible], sessions[eligible])

    statements = routed(statements, params.model_language, params.multilingual_model)
    texts = model_texts(statements).tolist()
    # a statement the multilingual bridge placed is in a language the labels and recommendations are
    # not written in: it counts for its theme, but its words are not the theme's
    readable = (statements["language_route"] != LanguageRoute.MULTILINGUAL).to_numpy()
    worded = labels_sample(labels, embeddings, readable)
    names = label_themes(
        [t if w else "" for t, w in zip(texts, worded, strict=True)], labels, nlp, stored=terms
    )
    topic, question = statements["topic"].iloc[0], statements["question"].iloc[0]
    theme_of = np.full(len(statements), "", dtype=object)
    columns = {c: statements[c].to_numpy(dtype=object) for c in SUPPORT_COLUMNS}
    rows = []

    def add_theme(tid: str, members: list[int], label: str, recommendation: str, status: str) -> None:
        """One theme row; ``members`` are row positions, the representative first."""
        theme_of[members] = tid
        support = theme_support(
            {c: v[members] for c, v in columns.items()},
            embeddings[members],
            answers,
            params.themes.merge_similarity,
        )
        rows.append(
            {
                "theme_id": tid,
                "topic": topic,
                "question": question,
                "rank": 0,
                "label": label,
                "recommendation": recommendation,
                **support,
                "status": status,
            }
        )

    theme_labels = sorted(set(labels.tolist()) - {-1})
    theme_members = [np.where(labels == label)[0] for label in theme_labels]
    wordings = [m[readable[m]] if readable[m].any() else m for m in theme_members]
    recommendations = compose_recommendations(
        [([texts[m] for m in members], embeddings[members]) for members in wordings],
        encode,
        params.recommendation_parts,
        spell_out=spell_out,
        trials=params.recommendation_trials,
    )
    for label, members, worded, recommendation in zip(
        theme_labels, theme_members, wordings, recommendations, strict=True
    ):
        best = worded[representative(embeddings[worded])]
        ordered = [best, *[m for m in members if m != best]]
        tid = theme_id(topic, question, columns["statement_id"][ordered].tolist())
        add_theme(tid, ordered, names.get(label, ""), recommendation, ThemeStatus.DRAFT)
    off_topic = np.flatnonzero(flags == Flag.OFF_TOPIC).tolist()
    if off_topic:
        add_theme(
            off_topic_theme_id(topic, question), off_topic, "Off-topic remarks", "", ThemeStatus.OFF_TOPIC
        )
    assignments = pd.DataFrame(
        {"statement_id": statements["statement_id"], "theme_id": theme_of, "flag": flags}
    )
    themes = conform(pd.DataFrame(rows), THEMES) if rows else THEMES.empty()
    return assignments, themes


def synthesise_question(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    flags: np.ndarray,
    glossary: Mapping[str, str],
    encoder: EncoderSpec,
    spacy_model: str,
    params: SynthesisParams | None = None,
    caches: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``synthesise_group`` as a run does it, given only names and data, so it can run in any worker
    process: the models are loaded by name (once per process). ``glossary`` is the question's
    (``Event.glossary_for``), for the model's view of joint recommendations and the shorthand the
    recommendations spell out. ``caches``: the event's cache folder (``Layout.embedding_cache``), where
    the process can reach the event's data: joint recommendations' vectors and statements' keyphrases are
    kept there for the next run (``embed.phrase_cache``, ``labels.term_cache``)."""
    encode = phrase_encoder(encoder, None if caches is None else phrase_cache(caches)).with_glossary(glossary)
    nlp = load_nlp(spacy_model)
    return synthesise_group(
        statements,
        np.asarray(embeddings, dtype=np.float32),
        flags,
        nlp,
        params,
        encode,
        for_readers(glossary),
        None if caches is None else term_cache(caches, nlp),
    )
