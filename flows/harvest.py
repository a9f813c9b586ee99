"""The Harvest flow: ingest -> statements -> embed -> themes (per topic x question) -> rank -> paper.

Runs without a Prefect server (ephemeral mode) unless PREFECT_API_URL points at one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task

from pipeline.chatter import PROTOTYPES
from pipeline.config import Settings
from pipeline.embed import embed_texts
from pipeline.event import Event, load_event
from pipeline.ingest import build_statements, discover_note_files, ingest_paths
from pipeline.publish import publish, save_machine_themes
from pipeline.rank import rank_themes
from pipeline.review import carry_identity
from pipeline.schema import THEMES
from pipeline.statements import load_nlp
from pipeline.store import Layout
from pipeline.synthesis import SynthesisParams, synthesise_group
from pipeline.themes import text_for_embedding


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


@task(retries=1)
def embed(texts: list[str], settings: Settings, cache_dir: Path) -> np.ndarray:
    return embed_texts(
        texts, settings.embedding_model, cache_dir, settings.embedding_batch_size, settings.embedding_device
    )


@task(task_run_name="themes-{topic}-{question}")
def themes_for_question(
    topic: str,
    question: str,
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    prototypes: np.ndarray,
    spacy_model: str,
    params: SynthesisParams,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return synthesise_group(statements, embeddings, prototypes, load_nlp(spacy_model), params)


@task
def keep_theme_identity(
    layout: Layout, assignments: pd.DataFrame, themes: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """New machine themes take the ids of the earlier run's themes they continue (pipeline.review)."""
    if layout.clusters.exists():
        mapping = carry_identity(assignments, pd.read_parquet(layout.clusters))
        assignments = assignments.assign(theme_id=assignments["theme_id"].map(lambda t: mapping.get(t, t)))
        themes = themes.assign(theme_id=themes["theme_id"].map(lambda t: mapping.get(t, t)))
    save_machine_themes(layout, assignments, themes)
    return assignments, themes


@task
def publish_outputs(
    event: Event, layout: Layout, settings: Settings, statements: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    return publish(layout, event, settings, statements=statements)


@flow(name="harvest-event", log_prints=True)
def harvest_event(event_dir: Path, data_dir: Path | None = None, out: Path | None = None) -> dict:
    """Run the whole pipeline on an event folder; returns counts and where the outputs are."""
    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    event = load_event(event_dir)
    layout = Layout(settings.data_dir, event.id, out)
    ingest_counts = ingest_event_folder(Path(event_dir), event, layout, settings.max_upload_bytes)
    statements = split_statements(event, layout, settings.spacy_model)

    cache = Layout(settings.data_dir, event.id).embedding_cache  # shared by every --out of the event
    texts = [text_for_embedding(t, event.glossary) for t in statements["text"]]
    embeddings = embed(texts, settings, cache)
    prototypes = embed(list(PROTOTYPES), settings, cache)
    params = SynthesisParams(
        model_language=settings.model_language, multilingual_model=settings.multilingual_model
    )

    assignments, themes = [], []
    for topic, question in event.questions():
        rows = np.where((statements["topic"] == topic) & (statements["question"] == question))[0]
        if len(rows) == 0:
            continue
        assigned, found = themes_for_question(
            topic, question, statements.iloc[rows], embeddings[rows], prototypes, settings.spacy_model, params
        )
        assignments.append(assigned)
        themes.append(found)
    themes_frame = rank_themes(pd.concat(themes, ignore_index=True)) if themes else THEMES.empty()
    assignment_frame = (
        pd.concat(assignments, ignore_index=True)
        if assignments
        else pd.DataFrame(columns=["statement_id", "theme_id", "flag"])
    )
    keep_theme_identity(layout, assignment_frame, themes_frame)
    export, themes_frame = publish_outputs(event, layout, settings, statements)
    summary = {
        **ingest_counts,
        "statements": len(export),
        "themes": len(themes_frame),
        "unassigned": int((export["theme_id"] == "").sum()),
        "out": str(layout.processed),
    }
    get_run_logger().info("harvest %s: %s", event.id, summary)
    return summary
