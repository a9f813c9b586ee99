"""Loading, once per process, what a run needs, before the first run needs it.

Every model and heavy library loads where it is first used (a run that clusters nothing never loads
the encoder). A long-lived process that serves runs (``harvest schedule``, ``harvest serve``) calls
``warm_up`` when it starts, so the first run after a session does not pay the loads on top of its work:
it costs what any later run costs. That includes lingua's full language models (~3.7 s, ~850 MiB): a run
loads all of them when the quick screening doubts one of its texts is in the event's language, and
English shorthand is often doubted ("academia; host: Lukas" screens Finnish), so a served process would
load them during its first runs anyway, on a run's clock.

A fresh ``harvest run`` warms up too, without the full language models, while Prefect's temporary
server starts: a wait it would otherwise spend idle.

What a warm-up loads stays to the process's end, so Python's cyclic collector is kept off it
(``kept_for_good``): no collection while it loads, none that walks it afterwards.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipeline.config import Settings
from pipeline.encoders import load_encoder
from pipeline.statements import detect_languages, load_nlp, load_splitter, preload_language_models

log = logging.getLogger(__name__)

#: A text for each model's first call, which builds its buffers and sessions: not a real note.
_FIRST_CALL = "Clusters should help small firms find skilled staff and funding."


def warm_up(
    settings: Settings, language: str = "en", language_models: bool | None = None
) -> dict[str, float]:
    """Load the encoder, spaCy's splitter and trained pipeline, the language screener, the full language
    models (by ``language_models``, default ``settings.preload_language_models``) and the clustering
    libraries, each used once; returns the seconds each took (near zero if already loaded)."""
    seconds: dict[str, float] = {}

    def timed(name: str, load: Callable[[], object]) -> None:
        started = time.perf_counter()
        load()
        seconds[name] = round(time.perf_counter() - started, 3)

    with kept_for_good():
        timed("encoder", lambda: load_encoder(settings.encoder).encode([_FIRST_CALL], 1, show_progress=False))
        timed("splitter", lambda: list(load_splitter(language).pipe([_FIRST_CALL])))
        timed("spacy", lambda: list(load_nlp(settings.spacy_model).pipe([_FIRST_CALL])))
        timed("languages", lambda: detect_languages([_FIRST_CALL], language))
        if settings.preload_language_models if language_models is None else language_models:
            timed("language models", lambda: preload_language_models(language))
        timed("clustering", _import_clustering)
    return seconds


@contextmanager
def kept_for_good() -> Iterator[None]:
    """For a block that loads what the process keeps to its end (modules, models): Python's cyclic
    collector does not run in it, and what exists after it is frozen (``gc.freeze``), so no later
    collection walks it either.

    Every full collection walks every object the process holds, and a process that imports and loads
    grows fast enough to set off one after another: a fresh `harvest run` after one new table of an
    8,030-note event ran seven, 0.63 s in all (12 to 155 ms each, growing with the heap), five of them
    during its imports and loads. What is frozen is never collected: garbage cycles made before the
    block ends stay in memory (a few, at load time). A threshold of 0 rather than ``gc.disable``: spaCy's
    load unpacks msgpack, which turns the collector off and on again around its work. Blocks may nest or
    overlap (the web app warms up in a thread): the collector comes back when the last one ends."""
    global _keeping, _thresholds
    with _KEEPING:
        if _keeping == 0:
            _thresholds = gc.get_threshold()
            gc.set_threshold(0)
        _keeping += 1
    try:
        yield
    finally:
        with _KEEPING:
            _keeping -= 1
            if _keeping == 0:
                gc.freeze()
                gc.set_threshold(*_thresholds)


_KEEPING = threading.Lock()
_keeping = 0  # blocks of kept_for_good under way
_thresholds: tuple[int, ...] = gc.get_threshold()  # the collector's, as the first of them found it


def head_start(settings: Settings, language: str = "en", language_models: bool | None = None) -> None:
    """``warm_up`` where it is only a head start for a run (a fresh ``harvest run``, the web app): a model
    that fails to load is logged and left to load, and to fail, where a run needs it, as without it."""
    try:
        warm_up(settings, language, language_models)
    except Exception as exc:  # any failure here is the run's to report, if it needs the model
        log.warning("could not load the models ahead of the run (%s); the run loads what it needs", exc)


def _import_clustering() -> None:
    """The libraries themes import where they are used (~2 s together)."""
    import hdbscan  # noqa: F401
    from sklearn.cluster import AgglomerativeClustering  # noqa: F401
    from sklearn.decomposition import PCA  # noqa: F401
    from sklearn.linear_model import LogisticRegression  # noqa: F401
