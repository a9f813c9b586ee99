"""The frames that pass between steps: one column list and dtype map each, in one place.

``conform(df, NOTES)`` orders and casts a frame to its schema and fails loudly on a missing column, so
every step can trust what it is handed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True)
class FrameSchema:
    name: str
    columns: dict[str, str]  # column -> pandas dtype
    #: columns added after a release: frames written before lack them and get "" (they carry no value)
    added: tuple[str, ...] = ()

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def empty(self) -> pd.DataFrame:
        return pd.DataFrame({c: pd.Series(dtype=dtype) for c, dtype in self.columns.items()})


STR: Final = "string"
INT: Final = "int64"
FLOAT: Final = "float64"
BOOL: Final = "bool"

#: One row per note as a facilitator wrote it (a cell, bullet or paragraph).
NOTES = FrameSchema(
    "notes",
    {
        "note_id": STR,
        "topic": STR,
        "question": STR,
        "table": STR,
        "round": INT,
        "text": STR,
        "text_en": STR,  # a gloss in the model's language handed in with the note ('' = none)
        "votes": INT,
        "facilitator": STR,
        "language": STR,  # as declared in the input; empty = detect
        "source_file": STR,  # the name the file was uploaded under
        "source_line": INT,  # spreadsheet row, text line or docx paragraph number
        "upload_id": STR,  # sha256 of the stored upload
    },
    added=("text_en",),
)

#: One row per statement split from a note; keeps the note's provenance.
STATEMENTS = FrameSchema(
    "statements",
    {
        "statement_id": STR,
        "note_id": STR,
        "position": INT,  # index of the statement within its note
        "topic": STR,
        "question": STR,
        "table": STR,
        "round": INT,
        "text": STR,
        "language": STR,
        "text_en": STR,  # what the model reads instead of a text in another language ('' = the text)
        "language_route": STR,  # how the model understands it (``LanguageRoute``)
        "votes": INT,
        "facilitator": STR,
        "source_file": STR,
        "source_line": INT,
        "upload_id": STR,
    },
    added=("text_en", "language_route"),
)

#: Columns every note reader must find in a spreadsheet, and the optional ones it understands.
REQUIRED_NOTE_FIELDS = ("table", "round", "topic", "question", "text")
OPTIONAL_NOTE_FIELDS = ("votes", "note_id", "facilitator", "language", "text_en")


def with_added(df: pd.DataFrame, schema: FrameSchema) -> pd.DataFrame:
    """``df`` with the columns ``schema`` added since a release, empty where a frame written before
    lacks them; every other column kept as it is."""
    absent = [c for c in schema.added if c not in df.columns]
    return df.assign(**dict.fromkeys(absent, "")) if absent else df


def conform(df: pd.DataFrame, schema: FrameSchema) -> pd.DataFrame:
    missing = [c for c in schema.columns if c not in df.columns and c not in schema.added]
    if missing:
        raise KeyError(f"{schema.name} frame lacks columns {missing}")
    out = with_added(df, schema)[schema.names].copy()
    for col, dtype in schema.columns.items():
        column = out[col]
        if column.dtype == dtype and not (dtype == STR and column.hasnans):
            continue  # as it should be already: a copy costs more than the check (publishes conform often)
        if dtype == STR:
            out[col] = column.fillna("").astype(STR)
        else:
            out[col] = column.astype(dtype)  # type: ignore[call-overload]  # a dtype name of this module
    return out.reset_index(drop=True)


#: One row per theme; ``rank`` 1 = strongest within its topic and question. The export contract's
#: columns come first (see EXPORT_THEME_COLUMNS); the rest serve the paper and the editors.
THEMES = FrameSchema(
    "themes",
    {
        "theme_id": STR,
        "topic": STR,
        "question": STR,
        "rank": INT,
        "label": STR,
        "recommendation": STR,
        "n_tables": INT,
        "n_statements": INT,
        "votes": INT,
        "n_tables_near": INT,  # n_tables + sessions that wrote a close answer put elsewhere (pipeline.rank)
        "tables": STR,  # "table r<round>" of every table session that raised it, "; "-separated
        "statement_ids": STR,  # members, "; "-separated, the representative first
        "status": STR,  # draft | approved | rejected (editors' decision) | off-topic (see below)
    },
)


class ThemeStatus(StrEnum):
    """A theme's status. Editors set draft, approved or rejected (``EDITOR_STATUSES``); the machine
    makes drafts, and one theme per question with status off-topic that gathers its off-topic statements
    (session remarks): shown to editors like any theme, ranked last, never in the paper, and no row of
    the exported themes (it is no answer: a tool taking a question's top themes must not find it there);
    the exported statements keep its id, fixed as ``<topic>.<question>.off-topic`` so it stays the same
    across runs."""

    DRAFT = "draft"
    APPROVED = "approved"
    REJECTED = "rejected"
    OFF_TOPIC = "off-topic"


EDITOR_STATUSES = (ThemeStatus.DRAFT, ThemeStatus.APPROVED, ThemeStatus.REJECTED)
NOT_IN_PAPER = (ThemeStatus.REJECTED, ThemeStatus.OFF_TOPIC)  # theme statuses the paper leaves out
OFF_TOPIC_THEME_SUFFIX = ".off-topic"


class Flag(StrEnum):
    """Why a statement is not clustered with the answers although it was read ('' = it is)."""

    NONE = ""
    OFF_TOPIC = "off-topic"  # a remark about the session, not an answer: in its question's off-topic theme
    LANGUAGE = "language"  # not in the embedding model's language; needs an editor or a multilingual model


class LanguageRoute(StrEnum):
    """How the embedding model understands a statement (``pipeline.languages``)."""

    OWN = ""  # written in the model's language
    GLOSS = "gloss"  # the facilitator handed in a gloss (``text_en``)
    TRANSLATION = "translation"  # an editor typed one (``text_en``)
    MULTILINGUAL = "multilingual"  # placed by the multilingual model, untranslated
    AWAITING = "awaiting"  # none of these yet: flagged ``language``, out of the themes until translated


class UploadStatus(StrEnum):
    """What became of a file handed in (the manifest's and the ingest results' vocabulary)."""

    ACCEPTED = "accepted"  # its notes count
    UNCHANGED = "unchanged"  # the same file was received before and still counts: nothing to do
    REJECTED = "rejected"  # an error in it: nothing of it is stored but the file, for the record
    #: came through a facilitators' link and would replace notes another link handed in: kept, not
    #: counted, until an editor accepts it (it becomes ACCEPTED) or discards it (DISCARDED)
    PENDING = "pending"
    DISCARDED = "discarded"
    #: taken back by whoever handed it in, or by an editor: it counts for nothing, and the notes it had
    #: replaced count again; the file stays on disk and in the manifest
    WITHDRAWN = "withdrawn"


#: The export contract read by other tools and by benchmarks: keep these columns and meanings.
EXPORT_STATEMENT_COLUMNS = [
    "statement_id",
    "note_id",
    "topic",
    "question",
    "table",
    "round",
    "text",
    "language",
    "theme_id",
    "status",  # the theme's status; empty when unassigned
    "text_en",  # the gloss or translation the model read ('' = none)
]
EXPORT_THEME_COLUMNS = [
    "theme_id",
    "topic",
    "question",
    "rank",
    "label",
    "recommendation",
    "n_tables",
    "n_statements",
    "votes",
    "status",  # issue "Review": draft | approved | rejected, and off-topic for the session remarks
]


def vectors(embeddings: np.ndarray, rows: npt.ArrayLike) -> np.ndarray:
    """``embeddings[rows]`` as float32. An event's vectors stay float16, as cached (a float32 copy of a
    million statements' is 1.5 GiB); products of float16 vectors are slow and coarse in numpy."""
    return np.asarray(embeddings[np.asarray(rows)], dtype=np.float32)


def is_in(column: pd.Series | pa.Array, values: pd.Series | pa.Array) -> np.ndarray:
    """``column.isin(values)`` for string columns (or Arrow string arrays, taken as they are), by Arrow's
    hash set: pandas' own boxes every one of ``values`` as a Python object first, seconds per million (an
    ingest checks each file's note ids against the event's)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    text = pa.large_string()
    found = pc.is_in(pa.array(column, type=text), value_set=pa.array(values, type=text))
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
