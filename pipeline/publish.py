"""From the machine's themes and the editors' decisions to the export and the paper.

Used at the end of every run and after every editor action, so both always show the same thing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import threading
from collections.abc import Collection
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

import pipeline.paper
from pipeline.agreement import editor_agreement
from pipeline.config import Settings
from pipeline.crosscutting import find_cross_cutting, with_decisions
from pipeline.db import load_state, session_scope
from pipeline.embed import cached_embeddings, embed_texts
from pipeline.event import Event
from pipeline.export import review_themes, spreadsheet_safe, themed_statements, write_exports
from pipeline.ingest import build_statements
from pipeline.paper import Paper, build_paper, render_html, render_markdown
from pipeline.paper.pdf import PART_BYTES, render_pdf
from pipeline.paper.word import render_docx
from pipeline.review import ReviewState, apply_review, relocate
from pipeline.schema import NOT_IN_PAPER, STATEMENTS, ThemeStatus, conform, with_added
from pipeline.store import (
    Layout,
    read_derived,
    unsynced_writes,
    write_bytes,
    write_csv,
    write_parquet,
    write_text,
)
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
    that match no theme are logged as a warning, by theme id. The paper is written as Markdown and HTML;
    its DOCX and PDF take seconds to render and are made apart (``paper_document``)."""
    if statements is None or embeddings is None or machine is None:
        stored = read_inputs(layout, event, settings)
        statements = stored.statements if statements is None else statements
        embeddings = stored.embeddings if embeddings is None else embeddings
        machine = stored.machine if machine is None else machine
    if state is None:
        state = _editors_state(event, settings)
    statements = relocate(conform(statements, STATEMENTS), state)  # notes editors moved to another question
    assignments, themes = _reviewed(statements, embeddings, machine, state, event, settings)
    cross = with_decisions(
        find_cross_cutting(
            in_paper(themes, settings),
            assignments,
            embeddings,
            read_derived(layout.cross_cutting),
            settings.cross_cutting,
        ),
        state.themes,
    )
    unmatched = state.unmatched([*machine[1]["theme_id"], *cross["cross_id"]])
    if unmatched:
        log.warning(
            "%s: %d editors' decisions match no theme of this run (their themes are gone, e.g. after the "
            "notes changed; see the audit log): %s",
            event.id,
            len(unmatched),
            ", ".join(unmatched[:5]),
        )
    export = themed_statements(statements, assignments, themes)
    write_exports(layout, export, themes)
    write_parquet(layout.cross_cutting, cross)
    write_csv(layout.cross_cutting.with_suffix(".csv"), spreadsheet_safe(cross))
    agreement = editor_agreement(machine[0], export, state)
    write_text(layout.agreement, json.dumps(agreement.as_dict(), indent=1))
    offered = suggest(statements, embeddings, assignments, themes, settings.themes.merge_similarity)
    write_text(layout.suggestions, json.dumps(offered.as_dict(), indent=1))
    write_paper(layout, published_paper(layout, event, settings, export, themes, cross))
    return Published(export, themes, unmatched)


def _editors_state(event: Event, settings: Settings) -> ReviewState:
    with session_scope(settings.database_url) as session:
        return load_state(session, event.id)


def _reviewed(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    machine: tuple[pd.DataFrame, pd.DataFrame],
    state: ReviewState,
    event: Event,
    settings: Settings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(assignments, themes)``: the machine's themes with the editors' decisions applied, for the
    statements where editors put them (``relocate``)."""
    return apply_review(
        statements,
        embeddings,
        *machine,
        state,
        event.glossary_for,
        settings.themes.merge_similarity,
    )


@dataclass(frozen=True)
class PublishInputs:
    """What a publish reads from the store besides the editors' state: the statements as handed in, their
    embeddings (the cache's) and the last run's machine ``(assignments, themes)``."""

    statements: pd.DataFrame
    embeddings: np.ndarray
    machine: tuple[pd.DataFrame, pd.DataFrame]


def read_inputs(layout: Layout, event: Event, settings: Settings) -> PublishInputs:
    statements = conform(_as_handed_in(pd.read_parquet(layout.statements), layout), STATEMENTS)
    texts, _ = model_views(statements, event.glossary_for)
    embeddings = cached_embeddings(texts, settings.encoder.id, layout.embedding_cache)  # float16, as cached
    machine = (pd.read_parquet(layout.clusters), pd.read_parquet(layout.machine_themes))
    return PublishInputs(statements, embeddings, machine)


class InputsCache:
    """``read_inputs`` of one event, kept while the files they come from stay the same: a run rewrites
    the machine's themes and an upload the notes (the export's statements are rewritten by every
    publish, from these). A generation's unchanged files are hard links: the same inode."""

    def __init__(self) -> None:
        self._kept: tuple[tuple[int, ...], PublishInputs] | None = None

    def get(self, layout: Layout, event: Event, settings: Settings) -> PublishInputs:
        stats = [f.stat() for f in (layout.clusters, layout.machine_themes, layout.notes)]
        version = tuple(n for s in stats for n in (s.st_ino, s.st_mtime_ns, s.st_size))
        if self._kept is None or self._kept[0] != version:
            self._kept = (version, read_inputs(layout, event, settings))
        return self._kept[1]


def in_paper(themes: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The themes the paper publishes: never rejected ones or session remarks; drafts unless
    ``settings.paper_approved_only``."""
    left_out = [*NOT_IN_PAPER, *([ThemeStatus.DRAFT] if settings.paper_approved_only else [])]
    return themes[~themes.status.isin(left_out)]


def published_paper(
    layout: Layout,
    event: Event,
    settings: Settings,
    statements: pd.DataFrame,
    themes: pd.DataFrame,
    cross: pd.DataFrame | None,
) -> Paper:
    """The paper of the export's ``statements`` and reviewed ``themes``: the themes it publishes
    (``in_paper``), the cross-cutting ones editors did not dismiss, and the polls of the last run."""
    shown = None if cross is None else cross[cross.status != ThemeStatus.REJECTED]
    return build_paper(event, statements, in_paper(themes, settings), shown, read_derived(layout.polls))


def write_paper(layout: Layout, paper: Paper) -> None:
    """The paper as Markdown and HTML. A DOCX or PDF of an earlier publish stays in this generation
    only if it was rendered from the same paper (a run that changed nothing in it), else it is removed,
    never left behind out of date (``paper_document`` makes the new ones)."""
    write_text(layout.paper_md, render_markdown(paper))
    write_text(layout.paper_html, render_html(paper))
    source = _documents_source(layout)
    for name in DOCUMENTS:
        stamp = _source_stamp(layout, name)
        if not stamp.exists() or stamp.read_text(encoding="utf-8") != source:
            document_path(layout, name).unlink(missing_ok=True)
            stamp.unlink(missing_ok=True)


DOCUMENTS = ("paper.docx", "paper.pdf")


def document_path(layout: Layout, name: str) -> Path:
    return {"paper.docx": layout.paper_docx, "paper.pdf": layout.paper_pdf}[name]


def _source_stamp(layout: Layout, name: str) -> Path:
    """Beside a rendered document: what it was rendered from (``_documents_source``)."""
    return document_path(layout, name).with_name(f".{name}.source")


@lru_cache(maxsize=1)
def _renderers() -> bytes:
    """The code and libraries that render the documents: a change to them renders them anew."""
    folder = Path(pipeline.paper.__file__).parent
    code = [
        path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file() and path.suffix != ".pyc"
    ]
    libraries = [version(package).encode() for package in ("python-docx", "weasyprint", "cairosvg")]
    return b"\0".join([*code, *libraries])


def _documents_source(layout: Layout) -> str:
    """The DOCX and PDF render the paper written as Markdown and HTML, with ``_renderers``."""
    digest = hashlib.sha256(_renderers())
    for path in (layout.paper_md, layout.paper_html):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def render_document(paper: Paper, name: str) -> bytes:
    """``paper`` as ``paper.docx`` or ``paper.pdf``."""
    return render_docx(paper) if name == "paper.docx" else render_pdf(render_html(paper))


def stored_paper(layout: Layout, event: Event, settings: Settings) -> Paper:
    """The paper of the export in ``layout``, as the last publish wrote it."""
    return published_paper(
        layout,
        event,
        settings,
        pd.read_parquet(layout.statements),
        pd.read_parquet(layout.review_themes),
        read_derived(layout.cross_cutting),
    )


_RENDERING = threading.Lock()  # one document at a time: rendering takes both cores' worth of seconds


def paper_document(layout: Layout, event: Event, settings: Settings, name: str) -> bytes:
    """The current paper as ``paper.docx`` or ``paper.pdf``: as written already, or rendered now from
    the export and kept in its generation for the next download.

    Rendering takes seconds (WeasyPrint's layout; python-docx with the charts as PNG), more than a run
    after one new table takes to find its themes, so runs leave it to ``harvest run``'s end
    (``write_documents``) and to the first download after a scheduled or web run or an editor's action."""
    # the generation current now: read from and written to, even if another one replaces it meanwhile
    layout = Layout(layout.root, layout.event, out=layout.processed.resolve())
    path = document_path(layout, name)
    if path.exists():
        return path.read_bytes()
    with _RENDERING:
        if path.exists():  # another download rendered it meanwhile
            return path.read_bytes()
        data = render_document(stored_paper(layout, event, settings), name)
        with contextlib.suppress(OSError):  # its generation was removed meanwhile: nothing to keep it in
            write_bytes(path, data)
            write_text(_source_stamp(layout, name), _documents_source(layout))
        return data


def write_documents(layout: Layout, event: Event, settings: Settings) -> None:
    """``paper.docx`` and ``paper.pdf`` of the current export, written beside it.

    The DOCX renders in a second process while this one lays out the PDF: both renderers are
    single-threaded Python, so two cores finish them in about the time of the PDF alone (the second
    process starts and imports while the PDF's layout begins). Not for a paper the PDF lays out in parts
    (over ``PART_BYTES`` of HTML): two renderings at once would hold twice the memory the parts bound."""
    if layout.paper_html.stat().st_size > PART_BYTES:
        for name in DOCUMENTS:
            paper_document(layout, event, settings, name)
        return
    # spawn: a fresh interpreter, not a fork of a process with threads (Prefect's, ONNX Runtime's)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as worker:
        docx = worker.submit(_write_document, layout, event, settings, "paper.docx")
        paper_document(layout, event, settings, "paper.pdf")
        try:
            docx.result()
        except BrokenProcessPool:  # the process died (the OOM killer): render the DOCX here instead
            log.warning("%s: the process rendering paper.docx died; rendering it here", event.id)
            paper_document(layout, event, settings, "paper.docx")


def _write_document(layout: Layout, event: Event, settings: Settings, name: str) -> None:
    paper_document(layout, event, settings, name)  # kept in the generation: no bytes to send back


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


def publish_decisions(
    layout: Layout, event: Event, settings: Settings, cache: InputsCache | None = None
) -> Published:
    """After an editor's action: export and paper again, as a new generation of the outputs (unsynced:
    the decisions are in the database, and any publish makes these files again). ``cache``: inputs a
    long-lived process kept from its last publish."""
    with layout.lock(), layout.generation() as new, unsynced_writes():
        inputs = (cache or InputsCache()).get(new.layout, event, settings)
        published = publish(
            new.layout,
            event,
            settings,
            None,
            inputs.statements,
            inputs.embeddings,
            inputs.machine,
        )
        new.commit()
    return published


@dataclass(frozen=True)
class ReviewedOutputs:
    """The export's statements and the review themes (``Layout.statements``, ``Layout.review_themes``)."""

    statements: pd.DataFrame
    themes: pd.DataFrame


def reviewed_outputs(
    inputs: PublishInputs,
    state: ReviewState,
    event: Event,
    settings: Settings,
    questions: Collection[tuple[str, str]] | None = None,
    before: ReviewedOutputs | None = None,
) -> ReviewedOutputs:
    """The export's statements and review themes as a publish with ``state`` writes them. With
    ``questions`` and the outputs ``before`` a change to those questions only, only they are worked out
    anew (a theme, its ranking and the statements' places never reach beyond their question)."""
    statements = relocate(conform(inputs.statements, STATEMENTS), state)
    embeddings = inputs.embeddings
    if questions is not None and before is not None:
        chosen = _in_questions(statements, questions)
        statements, embeddings = statements[chosen], embeddings[chosen]
    assignments, themes = _reviewed(statements, embeddings, inputs.machine, state, event, settings)
    anew = ReviewedOutputs(themed_statements(statements, assignments, themes), review_themes(themes))
    if questions is None or before is None:
        return anew
    return ReviewedOutputs(
        _spliced(before.statements, anew.statements, questions),
        _spliced(before.themes, anew.themes, questions),
    )


def _question_keys(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """Each row's (topic, question), as plain tuples: pandas' own ways cost milliseconds of overhead on
    the small frames of an editor's action."""
    topics, asked = frame["topic"].to_numpy(dtype=object), frame["question"].to_numpy(dtype=object)
    return list(zip(topics, asked, strict=True))


def _in_questions(frame: pd.DataFrame, questions: Collection[tuple[str, str]]) -> np.ndarray:
    """Which rows of ``frame`` are of one of ``questions``."""
    wanted = set(questions)
    return np.fromiter((k in wanted for k in _question_keys(frame)), dtype=bool, count=len(frame))


def _spliced(old: pd.DataFrame, new: pd.DataFrame, questions: Collection[tuple[str, str]]) -> pd.DataFrame:
    """``old`` with the rows of ``questions`` replaced by ``new``'s. Both are sorted by topic and
    question first, as every export frame is: each question's rows keep their order."""
    both = pd.concat([old[~_in_questions(old, questions)], new], ignore_index=True)
    keys = _question_keys(both)
    return both.take(sorted(range(len(both)), key=keys.__getitem__)).reset_index(drop=True)  # a stable sort


class SharedPublish:
    """``publish_decisions`` of one event for the threads of one server process.

    After an editor's action (``after_change``) the review pages need the reviewed themes at once, the
    paper not: the themes of the questions the action changed are worked out there and then (a sixth of
    a publish on the sample event) and kept in memory for the pages (``current``), and the publish runs
    in the background, in ``worker``'s process. Publishes are shared: one that starts after a call covers
    the decisions stored before it, and calls that come while one runs share the next one. Ten editors
    acting at once cost two publishes, not ten; ``settle`` waits for those asked for (pages that show
    what only the publish makes: the paper, the cross-cutting themes, the downloads)."""

    def __init__(
        self, layout: Layout, event: Event, settings: Settings, worker: PublishWorker | None = None
    ) -> None:
        """``worker``: the process to publish in; without one, publishes run in the caller's thread."""
        self.layout, self.event, self.settings = layout, event, settings
        self._worker = worker
        self._turn = threading.Condition()
        self._asked = 0  # publishes asked for so far
        self._covered = 0  # asks that the last finished publish includes
        self._running = False
        self._inputs = InputsCache()
        self._viewing = threading.Lock()  # one action's themes at a time: the later one includes more
        self._view: tuple[int, ReviewedOutputs] | None = None  # the last action's, by its ask
        self._written: tuple[str, ReviewedOutputs] | None = None  # a generation's, by its folder

    def after_change(self, questions: Collection[tuple[str, str]] | None = None) -> None:
        """After an editor's change is stored: the reviewed themes of the ``questions`` it changed (None:
        of them all) now, its publish in the background."""
        with self._viewing:
            before = self.current()
            inputs = self._inputs.get(self.layout, self.event, self.settings)
            state = _editors_state(self.event, self.settings)
            view = reviewed_outputs(inputs, state, self.event, self.settings, questions, before)
            with self._turn:
                number = self._ask()
                self._view = (number, view)
        threading.Thread(target=self._in_background, args=(number,), daemon=True).start()

    def current(self) -> ReviewedOutputs | None:
        """The export's statements and review themes: the last action's while its publish is under way,
        else the current generation's (read once per generation: it never changes once written); None
        before the first run."""
        with self._turn:
            if self._view is not None and self._view[0] > self._covered:
                return self._view[1]
        if not self.layout.review_themes.exists():
            return None
        generation = os.path.realpath(self.layout.processed)
        kept = self._written
        if kept is None or kept[0] != generation:
            # an earlier release's export may lack columns added since
            statements = with_added(pd.read_parquet(self.layout.statements), STATEMENTS)
            kept = (generation, ReviewedOutputs(statements, pd.read_parquet(self.layout.review_themes)))
            self._written = kept
        return kept[1]

    def __call__(self) -> None:
        """Publish now: returns once a publish that started after this call has finished."""
        with self._turn:
            mine = self._ask()
        self._wait(mine)

    def settle(self) -> None:
        """Returns once the publishes asked for so far have finished (one more runs if one failed)."""
        with self._turn:
            mine = self._asked
        self._wait(mine)

    def _ask(self) -> int:
        self._asked += 1
        return self._asked

    def _in_background(self, mine: int) -> None:
        try:
            self._wait(mine)
        except Exception:  # the decisions are stored: the next action, settle or run publishes them
            log.exception("%s: publishing after an editor's action failed", self.event.id)

    def _wait(self, mine: int) -> None:
        with self._turn:
            while self._covered < mine:
                if self._running:
                    self._turn.wait()
                    continue
                self._running, covers, done = True, self._asked, False
                self._turn.release()
                try:
                    if self._worker is None:
                        publish_decisions(self.layout, self.event, self.settings, self._inputs)
                    else:
                        self._worker.publish(self.layout, self.event, self.settings)
                    done = True
                finally:  # a failed publish covers nobody: the next caller in line tries again
                    self._turn.acquire()
                    self._running = False
                    if done:
                        self._covered = max(self._covered, covers)
                    self._turn.notify_all()


class PublishWorker:
    """A process of its own for a server's publishes (``SharedPublish``): they then use a core of their
    own instead of taking turns with the pages for the interpreter lock, at a lower priority (nice 10) so
    that pages and actions come first where they compete for a core. Spawned by ``start`` or the first
    publish; replaced if it died (a crash, the kernel's OOM killer), and that publish is tried once more."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: a fresh interpreter, not a fork of a server with threads
                self._pool = ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"), initializer=os.nice, initargs=(10,)
                )
                self._pool.submit(_ready)  # imports what a publish needs now, not at the first one
            return self._pool

    def publish(self, layout: Layout, event: Event, settings: Settings) -> None:
        pool = self.start()
        try:
            pool.submit(_publish_in_worker, layout, event, settings).result()
        except BrokenProcessPool:
            log.warning("%s: the publishing process died; publishing in a new one", event.id)
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            self.start().submit(_publish_in_worker, layout, event, settings).result()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None


_WORKER_INPUTS: dict[tuple[Path, str], InputsCache] = {}  # in the publishing process, per event


def _publish_in_worker(layout: Layout, event: Event, settings: Settings) -> None:
    inputs = _WORKER_INPUTS.setdefault((layout.root, event.id), InputsCache())
    publish_decisions(layout, event, settings, inputs)


def _ready() -> None:
    """Sent to a new publishing process: unpickling it imports this module and what a publish needs."""


def refresh_after_ingest(layout: Layout, event: Event, settings: Settings) -> pd.DataFrame:
    """New notes -> statements; where themes exist, the export keeps them and lists the new statements
    as unassigned until the next run, with the themes they fit offered to editors (so they are embedded
    now, into the cache the next run reads). One new generation of the outputs. Returns the statements."""
    with layout.lock(), layout.generation() as new:
        _, statements = build_statements(new.layout, event)
        if new.layout.clusters.exists():
            texts, _ = model_views(statements, event.glossary_for)
            embeddings = embed_texts(texts, settings.encoder, layout.embedding_cache, show_progress=False)
            publish(new.layout, event, settings, statements=statements, embeddings=embeddings)
        new.commit()
    return statements
