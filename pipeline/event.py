"""The event definition (``EVENT_DIR/event.yaml``): sessions, topics and their questions."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from pipeline.glossary import DEFAULT_AMBIGUOUS, DEFAULT_GLOSSARY, resolve_ambiguous, with_plurals

EVENT_FILE = "event.yaml"

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
Meanings = Annotated[list[str], Field(min_length=2)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Question(_Strict):
    id: Slug
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


#: "green-t01..green-t12": a run of table ids that differ in their trailing number, as wide as written
_TABLE_RUN = re.compile(r"^(?P<prefix>.*?)(?P<first>\d+)\.\.(?P=prefix)(?P<last>\d+)$")
MAX_TABLES_PER_TOPIC = 10_000


def expand_tables(entries: Iterable[str]) -> list[str]:
    """Table ids as ``event.yaml`` lists them, runs ("green-t01..green-t12") written out in order."""
    tables: list[str] = []
    for entry in entries:
        entry = entry.strip()
        run = _TABLE_RUN.match(entry)
        if run is None:
            tables.append(entry)
            continue
        first, last = int(run["first"]), int(run["last"])
        if last < first or last - first >= MAX_TABLES_PER_TOPIC:
            raise ValueError(f"table run {entry!r} must count up, by at most {MAX_TABLES_PER_TOPIC:,}")
        width = len(run["first"])
        tables.extend(f"{run['prefix']}{n:0{width}d}" for n in range(first, last + 1))
    return tables


class Topic(_Strict):
    id: Slug
    kind: Literal["challenge", "ecosystem"]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    questions: list[Question] = Field(min_length=1)
    tables: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]] = Field(
        default_factory=list,
        description="The tables expected to hand in notes on this topic, e.g. [green-t01..green-t12, "
        "green-extra]: the hand-in board shows which have not yet, and a note from a table not listed is "
        "refused with the closest listed id. Empty: any table id is taken.",
    )

    @model_validator(mode="after")
    def _unique_questions(self) -> Topic:
        _no_duplicates([q.id for q in self.questions], f"question id in topic '{self.id}'")
        _no_duplicates(self.expected_tables, f"table in topic '{self.id}'")
        return self

    @property
    def expected_tables(self) -> list[str]:
        return expand_tables(self.tables)

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


class Session(_Strict):
    id: Slug
    title: str = ""
    introduction: str = Field(
        default="", description="The paper's introduction to this session, written by the editors (Markdown)."
    )
    ends_at: datetime | None = Field(
        default=None,
        description="When the session ends (with its UTC offset): `harvest schedule "
        "--at-session-ends` runs the flow then.",
    )
    topics: list[Topic] = Field(min_length=1)


class Event(_Strict):
    event: Slug
    title: str = ""
    date: str = Field(default="", description="When the event took place, as the paper's title page says it.")
    place: str = Field(default="", description='Where, for the paper\'s title page ("Online", a city).')
    organisers: list[str] = Field(default_factory=list, description="Who organised it, for the title page.")
    introduction: str = Field(
        default="", description="The paper's introduction, written by the editors (Markdown)."
    )
    language: str = "en"
    sessions: list[Session] = Field(min_length=1)
    glossary: dict[str, str | Meanings] = Field(
        default_factory=dict,
        description="Shorthand the embedding model cannot know, e.g. {DIH: digital innovation hub}; "
        "replaced (case-sensitively, whole words) in the text the model sees and, unless every reader "
        "knows it, in the recommendations; statements are quoted as written. A list gives the meanings "
        "of an ambiguous acronym, e.g. {HE: [Horizon Europe, higher education]}: each question's notes "
        "choose. Adds to the built-in glossary of innovation-policy acronyms (pipeline/glossary.py) and "
        "wins over it.",
    )
    use_default_glossary: bool = Field(
        default=True, description="false: only the event's own glossary is spelled out."
    )
    notes: list[str] | None = Field(
        default=None,
        description="Glob patterns, relative to the event folder, of the note files `harvest run` reads. "
        "Default: everything under notes/ if that folder exists, else the note files beside event.yaml.",
    )

    @property
    def model_glossary(self) -> dict[str, str]:
        """Every unambiguous shorthand spelled out for the embedding model: built-in and the event's,
        with plurals."""
        base = DEFAULT_GLOSSARY if self.use_default_glossary else {}
        own = {k: v for k, v in self.glossary.items() if isinstance(v, str)}
        ambiguous = self.ambiguous_glossary  # a property: built once here, not once per key
        return with_plurals({k: v for k, v in {**base, **own}.items() if k not in ambiguous})

    @property
    def ambiguous_glossary(self) -> dict[str, tuple[str, ...]]:
        """Acronyms with several meanings, built-in and the event's; an event's plain entry wins."""
        base = DEFAULT_AMBIGUOUS if self.use_default_glossary else {}
        merged = {**base, **{k: tuple(v) for k, v in self.glossary.items() if not isinstance(v, str)}}
        return {k: v for k, v in merged.items() if not isinstance(self.glossary.get(k, ()), str)}

    def glossary_for(self, texts: Iterable[str]) -> dict[str, str]:
        """The glossary for one question's statements: ``model_glossary`` and each ambiguous acronym
        they use, read as the meaning their words point to (``pipeline.glossary.resolve_ambiguous``)."""
        return {**self.model_glossary, **with_plurals(resolve_ambiguous(texts, self.ambiguous_glossary))}

    @property
    def glossary_settings(self) -> dict[str, str | tuple[str, ...]]:
        """Every glossary entry the model's view of a statement can depend on (for fingerprints)."""
        return {**self.model_glossary, **self.ambiguous_glossary}

    @model_validator(mode="after")
    def _unique_ids(self) -> Event:
        _no_duplicates([s.id for s in self.sessions], "session id")
        _no_duplicates([t.id for s in self.sessions for t in s.topics], "topic id")
        return self

    @property
    def id(self) -> str:
        return self.event

    @property
    def topics(self) -> dict[str, Topic]:
        return {t.id: t for s in self.sessions for t in s.topics}

    def session_of(self, topic_id: str) -> Session:
        return next(s for s in self.sessions if any(t.id == topic_id for t in s.topics))

    def questions(self) -> list[tuple[str, str]]:
        """Every (topic, question) pair in the order the event declares them."""
        return [(t.id, q.id) for s in self.sessions for t in s.topics for q in t.questions]

    def question_prompts(self) -> dict[tuple[str, str], str]:
        """What each (topic, question) asks about, as the model reads it beside a statement:
        "<topic title>: <question text>"."""
        return {
            (t.id, q.id): f"{t.title}: {q.text}" for s in self.sessions for t in s.topics for q in t.questions
        }


class EventDefinitionError(ValueError):
    """event.yaml is missing or invalid; the message lists every problem."""


def _no_duplicates(ids: list[str], what: str) -> None:
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate {what}: {', '.join(dupes)}")


def parse_event(data: object, source: str = EVENT_FILE) -> Event:
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"  {where}: {err['msg']}")
        raise EventDefinitionError(f"{source}: invalid event definition\n" + "\n".join(problems)) from None


def load_event(event_dir: Path) -> Event:
    """Read and validate ``event_dir/event.yaml``."""
    path = Path(event_dir) / EVENT_FILE
    if not path.is_file():
        raise EventDefinitionError(f"{path}: no event definition (expected {EVENT_FILE} in {event_dir})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise EventDefinitionError(f"{path}: not valid YAML: {exc}") from None
    return parse_event(data, str(path))
