"""The Harvest flow: ingest -> statements -> embed -> themes (per topic x question) -> rank -> paper.

Reports to the Prefect API ``flows.server`` finds or starts (``run_event``). Embedding chunks
and topic x question groups are submitted to the flow's task runner: one at a time in this process by
default, in parallel on Dask workers with the setting ``task_runner = "dask"`` (a sub-flow with
prefect-dask's task runner, so every entry point, CLI, schedule and web, follows the setting).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from flows.server import ApiAddress, flush_to_api, run_api
from pipeline import db
from pipeline.config import Settings, load_settings
from pipeline.embed import EmbeddingCache, text_key
from pipeline.encoders import EncoderSpec, load_encoder, usable_cores
from pipeline.event import Event, load_event
from pipeline.incremental import RunPlan, combine, plan_run, save_run, topic_and_question
from pipeline.ingest import EVENT_FOLDER, build_statements, discover_note_files, ingest_paths
from pipeline.labels import shared_parse
from pipeline.languages import place_languages, with_translations
from pipeline.polls import read_event_polls
from pipeline.publish import Published, publish
from pipeline.schema import Flag, ThemeStatus, UploadStatus
from pipeline.statements import load_nlp
from pipeline.store import Generation, Layout, remove_stale_temp_files, write_parquet
from pipeline.synthesis import SynthesisParams, event_flags, models_id, synthesise_question
from pipeline.themes import clustering_bytes, model_views

# Every task runs with NO_CACHE: Prefect's default cache policy hashes a task's inputs on every call
# (JSON, else a cloudpickle of them), which for a million statements is a transient copy of the frame
# and its vectors; and its results are not persisted, so no later run could use the key.


@task(retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)  # the lock or a file may be busy for a moment
def ingest_event_folder(event_dir: Path, event: Event, layout: Layout, max_bytes: int) -> dict[str, int]:
    results = ingest_paths(
        layout,
        event,
        discover_note_files(event_dir, event),
        who="harvest run",
        via=EVENT_FOLDER,
        max_bytes=max_bytes,
    )
    logger = get_run_logger()
    for r in results:
        if not r.ok:
            logger.warning("rejected %s:\n%s", r.filename, "\n".join(f"  {p}" for p in r.problems))
    counted = (UploadStatus.ACCEPTED, UploadStatus.UNCHANGED, UploadStatus.REJECTED)
    return {s.value: sum(r.status == s for r in results) for s in counted}


@task(cache_policy=NO_CACHE)
def split_statements(event: Event, layout: Layout) -> pd.DataFrame:
    _, statements = build_statements(layout, event)
    return statements


ENCODE_CHUNK = 4096  # texts per encoding task: big enough to amortise a task, small enough to resume


@task(retries=1, task_run_name="encode-{first}", cache_policy=NO_CACHE)
def encode_chunk(texts: list[str], encoder: EncoderSpec, first: int) -> np.ndarray:
    return load_encoder(encoder).encode(texts, encoder.batch, show_progress=False)


def embed(
    texts: list[str], encoder: EncoderSpec, cache: EmbeddingCache, keys: list[str] | None = None
) -> np.ndarray:
    """Vectors of ``texts`` (float16, as cached): texts not in ``cache`` (the run's, of ``encoder``) are
    encoded in chunks on the task runner, and each chunk is stored as it arrives, so a killed run
    resumes where it stopped. ``keys``: the texts' ``text_key``s, where the caller has them."""
    keys = [text_key(t) for t in texts] if keys is None else keys
    todo = list(cache.missing(texts, keys).items())
    chunks = [todo[start : start + ENCODE_CHUNK] for start in range(0, len(todo), ENCODE_CHUNK)]
    futures = [
        encode_chunk.submit([t for _, t in c], encoder, i * ENCODE_CHUNK) for i, c in enumerate(chunks)
    ]
    for done, (chunk, future) in enumerate(zip(chunks, futures, strict=True), start=1):
        cache.add([k for k, _ in chunk], future.result())
        if len(chunks) > 1:
            get_run_logger().info("encoded %d of %d chunks", done, len(chunks))
    return cache.get(keys, dtype=np.float16)


def editors_translations(settings: Settings, event_id: str) -> dict[str, str]:
    with db.session_scope(settings.database_url) as session:
        return db.load_translations(session, event_id)


@task(cache_policy=NO_CACHE)
def place_other_languages(
    statements: pd.DataFrame, embeddings: np.ndarray, params: SynthesisParams, cache: Path
) -> tuple[pd.DataFrame, np.ndarray]:
    """Routes of statements in other languages; the multilingual bridge (``pipeline.languages``)."""
    return place_languages(
        statements, embeddings, params.model_language, params.bridge, params.multilingual_model, cache
    )


@task(task_run_name="themes-{key}", cache_policy=NO_CACHE)
def synthesise(
    key: str,
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    flags: np.ndarray,
    glossary: Mapping[str, str],
    encoder: EncoderSpec,
    spacy_model: str,
    params: SynthesisParams,
    phrases: Path | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One topic x question (``key``): names and data only, so a Dask worker loads its own models.
    ``phrases``: the event's phrase cache, for tasks in the flow's process (a Dask worker may not see
    the data root)."""
    return synthesise_question(statements, embeddings, flags, glossary, encoder, spacy_model, params, phrases)


@task(cache_policy=NO_CACHE)  # writes the outputs: nothing to cache (and a generation holds a lock)
def save_and_publish(
    event: Event,
    layout: Layout,
    new: Generation,
    settings: Settings,
    plan: RunPlan,
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    machine: tuple[pd.DataFrame, pd.DataFrame],
) -> Published:
    """Keep the machine's themes (``pipeline.incremental.save_run``), write export and paper with the
    editors' decisions applied, and switch the outputs to this run's generation: under the event's lock,
    so the decisions are as they are at the switch and no editor's publish lands in between."""
    with layout.lock():
        machine = save_run(new.layout, plan, *machine)
        published = publish(
            new.layout, event, settings, statements=statements, embeddings=embeddings, machine=machine
        )
        new.commit()
    return published


#: Statements from which a run hands freed memory back between stages (``release_freed_memory``).
RELEASE_FROM = 100_000


#: Statements to cluster for which their labels' parse is shared with a forked copy of the process
#: (``pipeline.labels.shared_parse``). From 5,000: a cold run, not a re-run after one table (three
#: groups, tens of new statements to parse, where the fork would cost more than it saves). Below
#: 100,000: the copy keeps the pages the process writes meanwhile (at 8,030 notes ~120 MiB of its own
#: and ~140 MiB the process copied, against 1.2 GiB), which grows with the process, and at 100,000 the
#: stage measured no faster with it (34.5 s against 33.2 s; 8,030 distinct notes: 7.9-9.5 s against
#: 10.2-11.3 s; 10,000 statements: 4.3-4.4 s against 4.4-5.0 s; outputs identical).
SHARED_PARSE_STATEMENTS = range(5_000, 100_000)


#: Statements from which the groups clustered side by side in the flow's process are only as many as
#: ``CLUSTERING_MEMORY`` holds (``_room_for``).
MEMORY_BOUNDED_FROM = 500_000

#: What the groups clustered side by side in the flow's process may allocate at once, by
#: ``themes.clustering_bytes``, from ``MEMORY_BOUNDED_FROM`` statements. Measured on a million statements
#: in groups of ~3,000, the process tree with `time -v` and its children: one group at a time, the themes
#: stage held at most 3,331 MiB (~3,120 without the group's 216 MB) and took 317 s, and the publish
#: peaked at 3,583 MiB. This budget keeps the stage under that peak: ~450 MB of what clustering allocates,
#: which the bound (a third above it) counts as 600 MB. Two groups of 3,000 (288 MB each by the bound)
#: fit: the stage then held at most 3,487 MiB and took 268 s, the peak 3,610 MiB; a 3,000 and a 4,000
#: (512 MB) do not, and run one at a time.
CLUSTERING_MEMORY = 600_000_000


def _ahead(settings: Settings) -> int:
    """Groups submitted ahead of their results: enough to keep every worker busy, and no more, since a
    submitted group holds a copy of its statements and vectors (all groups at once would copy the event's
    every vector, 0.8 GB at a million statements)."""
    return 2 * settings.dask_workers if settings.task_runner == "dask" else LOCAL_WORKERS


def _room_for(settings: Settings, statements: int, pending: list[int], group: int) -> bool:
    """Whether a group of ``group`` statements may be submitted beside the ``pending`` groups (their
    sizes), in a run of ``statements``: ``_ahead`` of them, and in the flow's process from
    ``MEMORY_BOUNDED_FROM`` statements only while their clustering fits ``CLUSTERING_MEMORY`` (100,000
    statements side by side peaked at 1.7 GiB; the bound is for a process already near 3.5 GiB)."""
    if len(pending) >= _ahead(settings):
        return False
    if settings.task_runner == "dask" or statements < MEMORY_BOUNDED_FROM:
        return True
    params = settings.synthesis.themes
    return sum(clustering_bytes(n, params) for n in [*pending, group]) <= CLUSTERING_MEMORY


def release_freed_memory(statements: int) -> None:
    """Collect garbage and hand freed heap pages back to the system: glibc keeps them otherwise, and
    after a large stage (splitting a million notes; clustering their groups) that is gigabytes the
    process no longer uses but still holds. Only for runs of ``RELEASE_FROM`` statements or more: a full
    collection walks every live object (~0.5 s in a long-lived process), more than a re-run after one
    table costs otherwise, for megabytes."""
    if statements < RELEASE_FROM:
        return
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc and hasattr(ctypes.CDLL(libc), "malloc_trim"):  # glibc only
        ctypes.CDLL(libc).malloc_trim(0)


def blas_on_one_thread() -> None:
    """Run the process's BLAS (OpenBLAS, under numpy and scikit-learn) on one thread, from now on.

    The pipeline's matrix products are small (a question's statements; the remark classifier's few
    thousand examples), and OpenBLAS's second thread waits spinning after each one, taking the core the
    next step needs: on a re-run after one new table of an 8,030-note event, the classifier's fit took
    0.23 s with two threads and 0.06 s with one, and the flow 2.65 s against 2.28 s (medians of three
    re-runs, alternated), outputs the same but for float rounding in suggestion scores. ONNX Runtime keeps
    its own threads."""
    import scipy.linalg  # noqa: F401  # SciPy's own OpenBLAS: loaded now, so that the limit reaches it
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def task_runner_for(settings: Settings) -> TaskRunner[Any]:
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        # one thread per worker process: torch, HDBSCAN and BLAS then use one core each
        workers = {"n_workers": settings.dask_workers, "threads_per_worker": 1, "dashboard_address": None}
        return DaskTaskRunner(cluster_kwargs=workers)
    return ThreadPoolTaskRunner(max_workers=LOCAL_WORKERS)


#: Topic x question groups clustered side by side in the flow's process (``_room_for``): one a core.
#: Clustering one is mostly single-threaded (HDBSCAN, the merge), so one at a time left a core idle for
#: most of the themes stage (8,030 distinct notes, 2 cores: 5.6-5.8 s against 4.2 s). The models they
#: share are loaded once per process and guarded where they keep state (keyphrases, phrase vectors).
LOCAL_WORKERS = usable_cores()


# Prefect's task runners are generic in their futures, which its own annotations do not line up
@flow(name="harvest-event", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=LOCAL_WORKERS))  # type: ignore[arg-type]
def harvest_event(event_dir: Path, data_dir: Path | None = None, out: Path | None = None) -> dict:
    """Run the whole pipeline on an event folder; returns counts and where the outputs are.

    One run per event at a time (a file lock); a second run waits for the first. Incremental: only
    new statements are embedded, only topic x question groups whose statements changed are clustered
    again, and reviewed themes keep their ids (``pipeline.review``).
    """
    started = time.perf_counter()
    blas_on_one_thread()
    settings = load_settings(data_dir=data_dir) if data_dir is not None else load_settings()
    event = load_event(event_dir)
    layout = Layout(settings.data_dir, event.id, out)
    with layout.run_lock():
        remove_stale_temp_files(layout.processed)  # left by a run that was killed mid-write
        if settings.task_runner == "local":
            summary = _run(Path(event_dir), event, layout, settings)
        else:
            steps = flow(name="harvest-steps", task_runner=task_runner_for(settings))(_run)
            summary = steps(Path(event_dir), event, layout, settings)
    summary["seconds"] = round(time.perf_counter() - started, 3)
    get_run_logger().info("harvest %s: %s", event.id, summary)
    return summary


def run_event(
    event_dir: Path,
    data_dir: Path | None = None,
    out: Path | None = None,
    api: ApiAddress | None = None,
    keep_server: bool = False,
) -> dict[str, Any]:
    """``harvest_event`` as the CLI, the web app and the benchmarks start it, reporting to ``api``
    (``flows.server.run_api``; by default the one found or started for this run, kept for the next run
    with ``keep_server``). Raises PrefectDidNotStart, with one line to say, if no server answers."""
    if api is None:
        root = data_dir if data_dir is not None else load_settings().data_dir
        with run_api(root, keep=keep_server) as api:
            return run_event(event_dir, data_dir, out, api)
    url = api()
    if url is None:  # PREFECT_API_URL: Prefect's own setting
        return harvest_event(event_dir, data_dir, out)
    with _reporting_to(url, api.temporary):
        try:
            return harvest_event(event_dir, data_dir, out)
        finally:
            flush_to_api()  # while the server still listens


#: Prefect's settings per (settings they were made from, API address, temporary server), for
#: ``_reporting_to``; a process meets one or two addresses in its life.
_REPORTING: dict[tuple[int, str, bool], tuple[Any, Any]] = {}


@contextmanager
def _reporting_to(url: str, temporary: bool) -> Iterator[None]:
    """Prefect's settings of this process with its API at ``url``, for the run inside. Made once per
    address, not per run as ``prefect.settings.temporary_settings`` makes them: validating every Prefect
    setting anew took ~0.04 s, each re-run of a long-lived process (the web app's button)."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    current = prefect.context.get_settings_context()
    key = (id(current.settings), url, temporary)
    made = _REPORTING.get(key)  # the web app runs events side by side: this thread keeps its own
    if made is None or made[0] is not current.settings:
        updates: dict[Any, Any] = {PREFECT_API_URL: url}
        if temporary:
            # Heartbeats tell a server's services that a run crashed; a temporary server runs none. And
            # the heartbeat thread sleeps in one-second steps that the end of every run waits out (~0.5 s).
            updates[PREFECT_FLOWS_HEARTBEAT_FREQUENCY] = None
        made = (current.settings, current.settings.copy_with_update(updates=updates))
        if len(_REPORTING) >= 8:
            _REPORTING.clear()
        _REPORTING[key] = made
    with prefect.context.SettingsContext(profile=current.profile, settings=made[1]):
        yield


class _Laps:
    """Seconds per stage, for the run summary and the benchmarks."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._last, 3)
        self._last = now


def _run(event_dir: Path, event: Event, layout: Layout, settings: Settings) -> dict:
    lap = _Laps()
    ingest_counts = ingest_event_folder(event_dir, event, layout, settings.max_upload_bytes)
    lap("ingest")
    with layout.generation() as new:  # the outputs switch to this run's at its end, all at once
        polls, poll_errors = read_event_polls(event_dir, event)
        for error in poll_errors:
            get_run_logger().warning("poll file rejected, fix it and run again:\n%s", error)
        write_parquet(new.layout.polls, polls)
        counts = {
            **ingest_counts,
            "polls": int(polls[["session", "question"]].drop_duplicates().shape[0]),
            "polls_rejected": len(poll_errors),
        }
        return _synthesise(event, layout, new, settings, counts, lap)


def _embedded_and_flagged(
    event: Event, layout: Layout, settings: Settings, statements: pd.DataFrame, lap: _Laps
) -> tuple[pd.DataFrame, np.ndarray, dict[tuple[str, str], Mapping[str, str]], np.ndarray]:
    """Statements (with translations, languages placed), their vectors, each question's glossary and
    the statements' flags. The texts the model read and the cache's index (a string and a key per
    statement) stay in here: the themes and the publish do not need them."""
    vectors = EmbeddingCache(layout.embedding_cache, settings.encoder.id)  # its index serves every step
    statements = with_translations(statements, editors_translations(settings, event.id))
    texts, glossaries = model_views(statements, event.glossary_for)
    embeddings = embed(texts, settings.encoder, vectors, [text_key(t) for t in texts])
    lap("embed")
    params = settings.synthesis
    statements, embeddings = place_other_languages(statements, embeddings, params, layout.embedding_cache)
    lap("languages")
    flags = event_flags(
        statements,
        embeddings,
        event.question_prompts(),
        lambda texts: embed(texts, settings.encoder, vectors),
        load_nlp(settings.spacy_model),
        params,
        layout.embedding_cache,
    )
    return statements, embeddings, glossaries, flags


def _synthesised(
    plan: RunPlan,
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    flags: np.ndarray,
    glossaries: dict[tuple[str, str], Mapping[str, str]],
    settings: Settings,
    cache: Path,
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """The themes of each group the plan clusters, submitted as ``_room_for`` allows. A group is
    submitted as soon as any submitted one is done, not the first submitted: waiting for that one left a
    worker idle whenever a later group finished first (5 % of the themes stage's group work at 100,000
    statements in 33 groups of one size; more where sizes differ)."""
    results = {}
    pending: dict[PrefectFuture[tuple[pd.DataFrame, pd.DataFrame]], str] = {}
    for key in plan.to_cluster:
        rows = plan.groups[key]
        while pending and not _room_for(
            settings, len(statements), [len(plan.groups[k]) for k in pending.values()], len(rows)
        ):
            done = next(as_completed(list(pending)))
            results[pending.pop(done)] = done.result()
        future = synthesise.submit(
            key,
            statements.iloc[rows],
            embeddings[rows],
            flags[rows],
            glossaries[topic_and_question(key)],
            settings.encoder,
            settings.spacy_model,
            settings.synthesis,
            cache if settings.task_runner == "local" else None,
        )
        pending[future] = key
    results.update((key, future.result()) for future, key in pending.items())
    return results


def _synthesise(
    event: Event, layout: Layout, new: Generation, settings: Settings, counts: dict[str, int], lap: _Laps
) -> dict:
    statements = split_statements(event, new.layout)
    release_freed_memory(len(statements))  # spaCy's and the note frames' churn
    lap("statements")

    statements, embeddings, glossaries, flags = _embedded_and_flagged(
        event, layout, settings, statements, lap
    )
    nlp, params, cache = load_nlp(settings.spacy_model), settings.synthesis, layout.embedding_cache
    plan = plan_run(
        new.layout,
        statements,
        event.questions(),
        flags,
        models_id(settings.encoder, nlp),
        params,
        event.glossary_settings,
    )
    clustered = sum(len(plan.groups[key]) for key in plan.to_cluster)
    # Dask's workers are processes of their own, with pipelines of their own
    sharing = settings.task_runner == "local" and clustered in SHARED_PARSE_STATEMENTS
    with shared_parse(nlp) if sharing else nullcontext():
        results = _synthesised(plan, statements, embeddings, flags, glossaries, settings, cache)
    assignment_frame, themes_frame = combine(plan, results)
    release_freed_memory(len(statements))
    lap("themes")

    published = save_and_publish(
        event, layout, new, settings, plan, statements, embeddings, (assignment_frame, themes_frame)
    )
    lap("publish")
    export, themes_frame = published.statements, published.themes
    return {
        **counts,
        "statements": len(export),
        "themes": int((themes_frame["status"] != ThemeStatus.OFF_TOPIC).sum()),
        "off_topic": int((export["flag"] == Flag.OFF_TOPIC).sum()),
        "unassigned": int((export["theme_id"] == "").sum()),
        "groups_clustered": len(plan.to_cluster),
        "groups_reused": len(plan.reused),
        "unmatched_decisions": len(published.unmatched_decisions),
        "stage_seconds": lap.seconds,
        "out": str(layout.processed),
    }
