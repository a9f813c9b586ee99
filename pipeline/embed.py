"""Statements -> vectors, through a cache that makes re-runs cheap.

The cache is keyed by the encoder's id (model and backend) and the hash of the normalised text, and is
append-only: each run adds one shard file (``embeddings/<encoder>/<shard>.npz``) with the vectors it had
to compute, so a crash never damages what earlier runs stored and a re-run encodes only text it has not
seen. Vectors are kept as float16 (on disk and in memory): half the memory at a million statements, and
cosine similarities move by less than 1e-3, far below any threshold the themes step uses.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from pipeline.encoders import EncoderSpec, load_encoder, slug
from pipeline.store import atomic_path, set_aside, shard_name
from pipeline.themes import texts_for_embedding

log = logging.getLogger(__name__)
STORED_DTYPE = np.float16


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


#: Texts whose keys a process remembers: a re-run in a long-lived process asks again for every
#: statement's (~8,000 hashes, 0.05 s of a 1.5 s run after one table).
TEXT_KEYS_KEPT = 1 << 16


@lru_cache(maxsize=TEXT_KEYS_KEPT)
def text_key(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:32]


class EmbeddingCache:
    """Every vector an encoder has computed for this event, on disk: a key -> row index in memory, and
    the vectors read from their shards only when asked for, a shard at a time. A million statements'
    vectors then cost their output's memory once, not a loaded copy besides it; and asking for a few
    texts (the chatter prototypes, a question's prompt, an editor's translation) reads a few shards."""

    def __init__(self, folder: Path, encoder_id: str) -> None:
        self.folder = Path(folder) / slug(encoder_id)
        self._row: dict[str, int] = {}
        self._shards: list[Path] = []
        self._starts: list[int] = []  # first row of each shard
        self._rows = 0  # rows in all shards; a key stored twice keeps its first row
        self._width = 0
        for shard in sorted(self.folder.glob("*.npz")):
            try:
                with np.load(shard) as data:  # the zip's directory and keys only: vectors stay on disk
                    keys = data["keys"].tolist()
                    width = _stored_width(data, len(keys))
            except Exception as exc:  # a truncated or garbled shard: its texts are encoded again
                set_aside(shard, exc)
                continue
            self._append(shard, keys, width)

    def _append(self, shard: Path, keys: list[str], width: int) -> None:
        self._shards.append(shard)
        self._starts.append(self._rows)
        for offset, key in enumerate(keys):
            self._row.setdefault(key, self._rows + offset)
        self._rows += len(keys)
        self._width = self._width or width

    def __contains__(self, key: str) -> bool:
        return key in self._row

    def __len__(self) -> int:
        return len(self._row)

    def get(self, keys: Sequence[str], dtype: type = np.float32) -> np.ndarray:
        """The vectors of ``keys`` (every one cached), one row each, in ``dtype``."""
        return self._gather(np.array([self._row[k] for k in keys], dtype=np.int64), dtype)

    def get_or_zeros(self, keys: Sequence[str], dtype: type = np.float32) -> np.ndarray:
        """Cached vectors, with zero rows for keys not in the cache."""
        rows = np.array([self._row.get(k, -1) for k in keys], dtype=np.int64)
        return self._gather(rows, dtype)

    def _gather(self, rows: np.ndarray, dtype: type) -> np.ndarray:
        """Rows of the shards (-1: a zero row), reading each shard that holds one of them once."""
        out: np.ndarray = np.zeros((len(rows), self._width or 1), dtype=dtype)
        if not len(rows):
            return out
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        shard_of[rows < 0] = -1
        order = np.argsort(shard_of, kind="stable")
        shards, first = np.unique(shard_of[order], return_index=True)
        for shard, at in zip(shards, np.split(order, first[1:]), strict=True):
            if shard < 0:
                continue
            with np.load(self._shards[shard]) as data:
                vectors = data["vectors"]
            out[at] = vectors[rows[at] - self._starts[shard]]
        return out

    def missing(self, texts: Sequence[str], keys: Sequence[str] | None = None) -> dict[str, str]:
        """key -> text of every distinct text not in the cache yet, in first-seen order. ``keys``: the
        texts' ``text_key``s, where the caller has them (hashing is most of this at 100,000 texts)."""
        todo: dict[str, str] = {}
        for text, key in zip(texts, keys if keys is not None else map(text_key, texts), strict=True):
            if key not in self._row and key not in todo:
                todo[key] = text
        return todo

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store the vectors of ``keys`` as a new shard (written whole, or not at all)."""
        if not len(keys):
            return
        vectors = np.asarray(vectors, dtype=STORED_DTYPE)
        shard = self.folder / f"{shard_name(keys)}.npz"
        with atomic_path(shard) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, keys=np.asarray(keys), vectors=vectors)
        self._append(shard, list(keys), vectors.shape[1])


def _stored_width(data: np.lib.npyio.NpzFile, rows: int) -> int:
    """The vectors' dimensions, read from the array's header (its data stays on disk); raises if the
    shard holds another number of vectors than keys."""
    assert data.zip is not None  # an NpzFile open on its file
    with data.zip.open("vectors.npy") as member:
        fmt = np.lib.format
        header = fmt.read_array_header_1_0 if fmt.read_magic(member) == (1, 0) else fmt.read_array_header_2_0
        shape, _, _ = header(member)
    if shape[0] != rows:
        raise ValueError(f"{rows} keys but {shape[0]} vectors")
    return int(shape[1]) if len(shape) > 1 else 0


def embed_texts(
    texts: Sequence[str],
    encoder: EncoderSpec | None = None,
    cache_dir: Path | None = None,
    show_progress: bool | None = None,
    dtype: type = np.float32,
) -> np.ndarray:
    """Unit-length vectors, one row per text; only texts missing from the cache are encoded.
    ``dtype=np.float16`` returns them as cached, at half the memory."""
    encoder = encoder or EncoderSpec()
    keys = [text_key(t) for t in texts]
    cache = EmbeddingCache(cache_dir, encoder.id) if cache_dir is not None else None
    todo = cache.missing(texts, keys) if cache is not None else dict(zip(keys, texts, strict=True))
    fresh: dict[str, np.ndarray] = {}
    if todo:
        log.info("encoding %d new texts with %s (%d cached)", len(todo), encoder.id, len(keys) - len(todo))
        vectors = load_encoder(encoder).encode(
            list(todo.values()),
            batch_size=encoder.batch,
            show_progress=len(todo) > 2000 if show_progress is None else show_progress,
        )
        fresh = dict(zip(todo, vectors, strict=True))
        if cache is not None:
            cache.add(list(todo), vectors)
    if cache is not None:
        return cache.get(keys, dtype)
    return np.stack([fresh[k] for k in keys]).astype(dtype) if keys else np.zeros((0, 0), dtype)


def cached_embeddings(texts: Sequence[str], encoder_id: str, cache_dir: Path) -> np.ndarray:
    """Vectors from the cache only, never the model: zero rows for texts no run has embedded yet.

    For re-publishing after an editor action or an upload, where loading the model would only slow
    the page down and new statements are in no theme until the next run anyway."""
    return EmbeddingCache(cache_dir, encoder_id).get_or_zeros([text_key(t) for t in texts], STORED_DTYPE)


class PhraseEncoder:
    """Encodes texts the pipeline writes itself (joint recommendations to choose from) as statements are
    encoded: in the model's view (``texts_for_embedding`` with the question's glossary), by ``spec``'s
    encoder. Remembered by model view for the life of the process, and with ``cache_dir`` on disk too
    (an ``EmbeddingCache`` of its own), so clustering one question again after a new table encodes only
    the texts that are new, in this process or the next. Vectors pass through float16 either way, so a
    remembered vector and a fresh one are the same."""

    KEPT = 100_000  # texts remembered (about 150 MB of float32 vectors at 384 dimensions)

    def __init__(self, spec: EncoderSpec, cache_dir: Path | None = None) -> None:
        self.spec = spec
        self._memo: dict[str, np.ndarray] = {}
        self._cache = EmbeddingCache(cache_dir, spec.id) if cache_dir is not None else None
        # questions are clustered side by side: the memory and the cache's index change under this lock,
        # the encoding runs outside it
        self._lock = threading.Lock()

    def encode(self, texts: list[str], glossary: Mapping[str, str] | None = None) -> np.ndarray:
        views = texts_for_embedding(texts, glossary)
        distinct = list(dict.fromkeys(views))
        with self._lock:
            known = {v: self._memo[v] for v in distinct if v in self._memo}
            todo = [v for v in distinct if v not in known]
            if todo and self._cache is not None:
                stored = [v for v in todo if text_key(v) in self._cache]
                if stored:
                    known.update(zip(stored, self._cache.get([text_key(v) for v in stored]), strict=True))
                    todo = [v for v in todo if v not in known]
        vectors = np.zeros((0, 0), dtype=STORED_DTYPE)
        if todo:
            vectors = load_encoder(self.spec).encode(todo, self.spec.batch, show_progress=False)
            vectors = np.asarray(vectors, dtype=STORED_DTYPE)
            known.update(zip(todo, vectors.astype(np.float32), strict=True))
        with self._lock:
            self._memo.update(known)
            if todo and self._cache is not None:
                self._cache.add([text_key(v) for v in todo], vectors)
            for oldest in list(self._memo)[: max(0, len(self._memo) - self.KEPT)]:
                del self._memo[oldest]
        return np.stack([known[v] for v in views])

    def with_glossary(self, glossary: Mapping[str, str] | None) -> Callable[[list[str]], np.ndarray]:
        """``encode`` for one question's texts, with its glossary."""
        glossary = dict(glossary or {})
        return lambda texts: self.encode(texts, glossary)


def phrase_encoder(spec: EncoderSpec, cache_dir: Path | None = None) -> PhraseEncoder:
    """The process's ``PhraseEncoder`` for an encoder (and an event's phrase cache: ``phrase_cache``)."""
    with _PHRASE_ENCODERS_LOCK:  # one per process, though questions ask for it side by side
        return _phrase_encoder(spec, cache_dir)


_PHRASE_ENCODERS_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _phrase_encoder(spec: EncoderSpec, cache_dir: Path | None) -> PhraseEncoder:
    return PhraseEncoder(spec, cache_dir)


def phrase_cache(embedding_cache: Path) -> Path:
    """Where an event's phrase vectors are kept: beside its statements' vectors, apart, so neither cache
    loads the other's."""
    return Path(embedding_cache) / "phrases"
