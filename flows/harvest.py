"""The Harvest flow: ingest -> statements -> embed -> themes (per topic x question) -> rank -> paper.

Runs without a Prefect server (ephemeral mode) unless PREFECT_API_URL points at one. Embedding chunks
and topic x question groups are submitted to the flow's task runner: one at a time in this process by
default, in parallel on Dask workers with the setting ``task_runner = "dask"`` (a sub-flow with
prefect-dask's task runner, so every entry point, CLI, schedule and web, follows the setting).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pipeline.config import Settings
from pipeline.embed import EmbeddingCache, phrase_encoder, text_key
from pipeline.encoders import EncoderSpec, load_encoder
from pipeline.event import Event, load_event
from pipeline.glossary import for_readers
from pipeline.ingest import build_statements, discover_note_files, ingest_paths
from pipeline.publish import publish, save_machine_themes
from pipeline.rank import rank_themes
from pipeline.review import carry_identity
from pipeline.schema import FLAG_OFF_TOPIC, STATUS_OFF_TOPIC, THEMES
from pipeline.statements import load_nlp
from pipeline.store import Layout, remove_stale_temp_files, write_text
from pipeline.synthesis import SynthesisParams, event_flags, group_fingerprints, synthesise_group
from pipeline.themes import model_views


@task(retries=2, retry_delay_seconds=1)  # the lock or a file may be busy for a moment
def ingest_event_folder(event_dir: Path, event: Event, layout: Layout, max_bytes: int) -> dict[str, int]:
    results = ingest_paths(
        layout,
        event,
        discover_note_files(event_dir, event),
        who="harvest run",
        via="event-folder",
        max_bytes=max_bytes,
    )
    logger = get_run_logger()
    for r in results:
        if not r.ok:
            logger.warning("rejected %s:\n%s", r.filename, "\n".join(f"  {p}" for p in r.problems))
    return {s: sum(r.status == s for r in results) for s in ("accepted", "unchanged", "rejected")}


@task
def split_statements(event: Event, layout: Layout, spacy_model: str) -> pd.DataFrame:
    _, statements = build_statements(layout, event, spacy_model, event.language)
    return statements


ENCODE_CHUNK = 4096  # texts per encoding task: big enough to amortise a task, small enough to resume


@task(retries=1, task_run_name="encode-{first}")
def encode_chunk(texts: list[str], encoder: EncoderSpec, first: int) -> np.ndarray:
    return load_encoder(encoder).encode(texts, encoder.batch_size, show_progress=False)


def embed(texts: list[str], encoder: EncoderSpec, cache_dir: Path) -> np.ndarray:
    """Vectors of ``texts`` (float16, as cached): texts not in the cache are encoded in chunks on the
    task runner, and each chunk is stored as it arrives, so a killed run resumes where it stopped."""
    cache = EmbeddingCache(cache_dir, encoder.id)
    todo = list(cache.missing(texts).items())
    chunks = [todo[start : start + ENCODE_CHUNK] for start in range(0, len(todo), ENCODE_CHUNK)]
    futures = [
        encode_chunk.submit([t for _, t in c], encoder, i * ENCODE_CHUNK) for i, c in enumerate(chunks)
    ]
    for done, (chunk, future) in enumerate(zip(chunks, futures, strict=True), start=1):
        cache.add([k for k, _ in chunk], future.result())
        if len(chunks) > 1:
            get_run_logger().info("encoded %d of %d chunks", done, len(chunks))
    return cache.get([text_key(t) for t in texts], dtype=np.float16)


@task(task_run_name="themes-{topic}-{question}")
def themes_for_question(
    topic: str,
    question: str,
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    flags: np.ndarray,
    spacy_model: str,
    params: SynthesisParams,
    encoder: EncoderSpec,
    glossary: dict[str, str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``glossary``: the question's (``Event.glossary_for``), for the model's view of joint
    recommendations and the shorthand recommendations spell out."""
    vectors = embeddings.astype(np.float32)
    encode = phrase_encoder(encoder).with_glossary(glossary)
    nlp = load_nlp(spacy_model)
    return synthesise_group(statements, vectors, flags, nlp, params, encode, for_readers(glossary))


@task
def save_and_publish(
    event: Event,
    layout: Layout,
    settings: Settings,
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    assignments: pd.DataFrame,
    themes: pd.DataFrame,
    fingerprints: dict[str, str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the machine's themes, then write export and paper with the editors' decisions applied.

    New machine themes take the ids of the earlier run's themes they continue (``pipeline.review``).
    The fingerprints are written after the themes they describe, so a run killed in between clusters
    those groups again rather than trusting themes that were never saved."""
    if layout.clusters.exists():
        # only the themes of groups clustered again can take an earlier id: a reused group's themes keep
        # theirs, and groups share no statements
        previous = pd.read_parquet(layout.clusters)
        fresh = assignments[~assignments["theme_id"].isin(set(previous["theme_id"]))]
        touched = previous.loc[previous["statement_id"].isin(fresh["statement_id"]), "theme_id"]
        mapping = carry_identity(fresh, previous[previous["theme_id"].isin(set(touched))])
        assignments = assignments.assign(theme_id=assignments["theme_id"].map(lambda t: mapping.get(t, t)))
        themes = themes.assign(theme_id=themes["theme_id"].map(lambda t: mapping.get(t, t)))
    save_machine_themes(layout, assignments, themes)
    write_text(layout.groups, json.dumps(fingerprints, indent=1, sort_keys=True))
    return publish(
        layout, event, settings, statements=statements, embeddings=embeddings, machine=(assignments, themes)
    )


def reuse_unchanged(
    layout: Layout, fingerprints: dict[str, str], statements: pd.DataFrame
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """The previous run's machine themes of every topic x question whose input did not change."""
    if not (layout.groups.exists() and layout.clusters.exists() and layout.machine_themes.exists()):
        return {}
    before = json.loads(layout.groups.read_text())
    same = {g for g, f in fingerprints.items() if before.get(g) == f}
    if not same:
        return {}
    clusters, themes = pd.read_parquet(layout.clusters), pd.read_parquet(layout.machine_themes)
    group_of = dict(
        zip(statements["statement_id"], statements["topic"] + "/" + statements["question"], strict=True)
    )
    clusters_group = clusters["statement_id"].map(group_of)
    themes_group = themes["topic"] + "/" + themes["question"]
    return {g: (clusters[clusters_group == g], themes[themes_group == g]) for g in same}


def task_runner_for(settings: Settings) -> TaskRunner:
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)
        # one thread per worker process: torch, HDBSCAN and BLAS then use one core each
        workers = {"n_workers": settings.dask_workers, "threads_per_worker": 1, "dashboard_address": None}
        return DaskTaskRunner(cluster_kwargs=workers)
    # one task at a time: spaCy and the encoders are shared by the process and not thread-safe
    return ThreadPoolTaskRunner(max_workers=1)


@flow(name="harvest-event", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def harvest_event(event_dir: Path, data_dir: Path | None = None, out: Path | None = None) -> dict:
    """Run the whole pipeline on an event folder; returns counts and where the outputs are.

    One run per event at a time (a file lock); a second run waits for the first. Incremental: only
    new statements are embedded, only topic x question groups whose statements changed are clustered
    again, and reviewed themes keep their ids (``pipeline.review``).
    """
    started = time.perf_counter()
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
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
    statements = split_statements(event, layout, settings.spacy_model)
    lap("statements")

    cache = Layout(settings.data_dir, event.id).embedding_cache  # shared by every --out of the event
    texts, glossaries = model_views(statements, event.glossary_for)
    embeddings = embed(texts, settings.encoder, cache)
    lap("embed")
    params = SynthesisParams(
        model_language=settings.model_language, multilingual_model=settings.multilingual_model
    )
    flags = event_flags(
        statements,
        embeddings,
        event.question_prompts(),
        lambda texts: embed(texts, settings.encoder, cache),
        load_nlp(settings.spacy_model),
        params,
    )
    groups = {
        (topic, question): np.where((statements["topic"] == topic) & (statements["question"] == question))[0]
        for topic, question in event.questions()
    }
    groups = {key: rows for key, rows in groups.items() if len(rows)}
    fingerprints = group_fingerprints(
        statements,
        {f"{t}/{q}": rows for (t, q), rows in groups.items()},
        settings.encoder.id,
        params,
        event.glossary_settings,
        flags,
    )
    previous = reuse_unchanged(layout, fingerprints, statements)

    clustered = {
        (topic, question): themes_for_question.submit(
            topic,
            question,
            statements.iloc[rows],
            embeddings[rows],
            flags[rows],
            settings.spacy_model,
            params,
            settings.encoder,
            glossaries[(topic, question)],
        )
        for (topic, question), rows in groups.items()
        if f"{topic}/{question}" not in previous
    }
    assignments, themes = [], []
    for topic, question in groups:  # event order, whatever order the tasks finish in
        key = f"{topic}/{question}"
        assigned, found = previous[key] if key in previous else clustered[(topic, question)].result()
        assignments.append(assigned)
        themes.append(found)
    lap("themes")
    themes_frame = rank_themes(pd.concat(themes, ignore_index=True)) if themes else THEMES.empty()
    assignment_frame = (
        pd.concat(assignments, ignore_index=True)
        if assignments
        else pd.DataFrame(columns=["statement_id", "theme_id", "flag"])
    )
    export, themes_frame = save_and_publish(
        event, layout, settings, statements, embeddings, assignment_frame, themes_frame, fingerprints
    )
    lap("publish")
    return {
        **ingest_counts,
        "statements": len(export),
        "themes": int((themes_frame["status"] != STATUS_OFF_TOPIC).sum()),
        "off_topic": int((export["flag"] == FLAG_OFF_TOPIC).sum()),
        "unassigned": int((export["theme_id"] == "").sum()),
        "groups_clustered": len(groups) - len(previous),
        "groups_reused": len(previous),
        "stage_seconds": lap.seconds,
        "out": str(layout.processed),
    }
