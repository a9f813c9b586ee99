"""From the machine's themes and the editors' decisions to the export and the paper.

Used at the end of every run and after every editor action, so both always show the same thing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.agreement import editor_agreement
from pipeline.config import Settings
from pipeline.db import load_state, session_scope
from pipeline.embed import cached_embeddings, embed_texts
from pipeline.event import Event
from pipeline.export import themed_statements, write_exports
from pipeline.ingest import build_statements
from pipeline.paper import build_paper, render_html, render_markdown
from pipeline.review import ReviewState, apply_review, relocate
from pipeline.schema import NOT_IN_PAPER, STATEMENTS, conform
from pipeline.store import Layout, read_derived, write_parquet, write_text
from pipeline.suggestions import suggest
from pipeline.themes import model_views

log = logging.getLogger(__name__)


def save_machine_themes(layout: Layout, assignments: pd.DataFrame, themes: pd.DataFrame) -> None:
    write_parquet(layout.clusters, assignments)
    write_parquet(layout.machine_themes, themes)


@dataclass(frozen=True)
class Published:
    """What ``publish`` wrote: the export's statements and themes, and the editors' decisions that
    matched no theme of the run (``ReviewState.unmatched``)."""

    statements: pd.DataFrame
    themes: pd.DataFrame
    unmatched_decisions: list[str]


def publish(
    layout: Layout,
    event: Event,
    settings: Settings,
    state: ReviewState | None = None,
    statements: pd.DataFrame | None = None,
    embeddings: np.ndarray | None = None,
    machine: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> Published:
    """Apply the review state to the last run's machine themes; write export and paper.

    A run passes what it holds in memory (its statements, their embeddings, and its machine
    ``(assignments, themes)``); after an editor action everything is read from the store. Decisions
    that match no theme are logged as a warning, by theme id."""
    if statements is None:
        statements = _as_handed_in(pd.read_parquet(layout.statements), layout)
    statements = conform(statements, STATEMENTS)
    if state is None:
        with session_scope(settings.database_url) as session:
            state = load_state(session, event.id)
    if embeddings is None:
        texts, _ = model_views(statements, event.glossary_for)
        embeddings = cached_embeddings(texts, settings.encoder.id, layout.embedding_cache)
    embeddings = embeddings.astype(np.float32, copy=False)  # as read from the cache: the same either way
    statements = relocate(statements, state)  # statements an editor moved to another question
    if machine is None:
        machine = (pd.read_parquet(layout.clusters), pd.read_parquet(layout.machine_themes))
    unmatched = state.unmatched(machine[1]["theme_id"])
    if unmatched:
        log.warning(
            "%s: %d editors' decisions match no theme of this run (their themes are gone, e.g. after the "
            "notes changed; see the audit log): %s",
            event.id,
            len(unmatched),
            ", ".join(unmatched[:5]),
        )
    assignments, themes = apply_review(
        statements, embeddings, *machine, state, event.glossary_for, settings.themes.merge_similarity
    )
    export = themed_statements(statements, assignments, themes)
    write_exports(layout, export, themes)
    agreement = editor_agreement(machine[0], export, state)
    write_text(layout.agreement, json.dumps(agreement.as_dict(), indent=1))
    offered = suggest(statements, embeddings, assignments, themes, settings.themes.merge_similarity)
    write_text(layout.suggestions, json.dumps(offered.as_dict(), indent=1))
    paper = build_paper(event, export, themes[~themes.status.isin(NOT_IN_PAPER)])
    write_text(layout.paper_md, render_markdown(paper))
    write_text(layout.paper_html, render_html(paper))
    return Published(export, themes, unmatched)


def _as_handed_in(statements: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """The last export's statements under the questions their notes were handed in under: the export
    shows them where editors moved them (``review.relocate``), and an undone move puts them back."""
    notes = read_derived(layout.notes, ["note_id", "topic", "question"])
    if notes is None:
        return statements
    handed_in = notes.drop_duplicates("note_id").set_index("note_id")
    known = statements["note_id"].isin(handed_in.index)
    for column in ("topic", "question"):
        statements.loc[known, column] = statements.loc[known, "note_id"].map(handed_in[column])
    return statements


def publish_decisions(layout: Layout, event: Event, settings: Settings) -> Published:
    """After an editor's action: export and paper again, as a new generation of the outputs."""
    with layout.lock(), layout.generation() as new:
        published = publish(new.layout, event, settings)
        new.commit()
    return published


def refresh_after_ingest(layout: Layout, event: Event, settings: Settings) -> pd.DataFrame:
    """New notes -> statements; where themes exist, the export keeps them and lists the new statements
    as unassigned until the next run, with the themes they fit offered to editors (so they are embedded
    now, into the cache the next run reads). One new generation of the outputs. Returns the statements."""
    with layout.lock(), layout.generation() as new:
        _, statements = build_statements(new.layout, event, settings.spacy_model, event.language)
        if new.layout.clusters.exists():
            texts, _ = model_views(statements, event.glossary_for)
            embeddings = embed_texts(texts, settings.encoder, layout.embedding_cache, show_progress=False)
            publish(new.layout, event, settings, statements=statements, embeddings=embeddings)
        new.commit()
    return statements
