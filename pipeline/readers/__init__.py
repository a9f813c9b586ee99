"""Note readers: every supported format becomes the same validated notes frame (see ``schema.NOTES``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from pathlib import PurePath

import pandas as pd

from pipeline.event import Event
from pipeline.readers.common import NoteFileError, Problem, RawNote, read_as, validate_notes
from pipeline.readers.documents import read_docx, read_odt
from pipeline.readers.tabular import read_csv, read_ods, read_xlsx
from pipeline.readers.text import read_text

__all__ = ["READERS", "READ_AS", "SUPPORTED_SUFFIXES", "NoteFileError", "Problem", "read_notes"]

READERS: dict[str, tuple[Callable[[str, bytes, dict[str, str] | None], list[RawNote]], str]] = {
    ".csv": (read_csv, "row"),
    ".xlsx": (read_xlsx, "row"),
    ".ods": (read_ods, "row"),
    ".md": (read_text, "line"),
    ".markdown": (read_text, "line"),
    ".txt": (read_text, "line"),
    ".docx": (read_docx, "paragraph"),
    ".odt": (read_odt, "paragraph"),
}
SUPPORTED_SUFFIXES = tuple(READERS)
#: The key of a read file's notes' ``attrs`` naming the legacy code page it was read in (``read_as``)
READ_AS = "read_as"
log = logging.getLogger(__name__)


def read_notes(
    name: str,
    data: bytes,
    event: Event,
    upload_id: str = "",
    max_bytes: int | None = None,
    defaults: dict[str, str] | None = None,
    accepted: bool = False,
) -> pd.DataFrame:
    """Parse and validate one uploaded file; raise :class:`NoteFileError` listing every problem.

    ``defaults`` fill fields the file leaves out (topic, question, table, round picked on a form).
    ``accepted``: the file was accepted before, perhaps under looser rules, and is read again: as then
    where a later rule would reject it or renumber its notes (the ``as_accepted`` of ``read_csv``,
    ``read_docx``, ``read_odt`` and ``read_text``)."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in READERS:
        raise NoteFileError(
            name,
            [
                Problem(
                    name,
                    f"unsupported file type '{suffix or '(none)'}' "
                    f"(supported: {', '.join(SUPPORTED_SUFFIXES)})",
                )
            ],
        )
    if max_bytes is not None and len(data) > max_bytes:
        raise NoteFileError(
            name, [Problem(name, f"file is {len(data):,} bytes, over the limit of {max_bytes:,} bytes")]
        )
    reader, line_kind = READERS[suffix]
    if accepted and reader in (read_csv, read_docx, read_odt, read_text):
        reader = partial(reader, as_accepted=True)
    try:
        raw = reader(name, data, defaults)
    except NoteFileError:
        raise
    except (Exception, RecursionError) as exc:
        # a malformed part inside a DOCX/XLSX (broken XML, a missing sheet, an index out of range) fails deep
        # in the parser; for the facilitator it is one thing: this file cannot be read
        log.warning("%s: %s while reading: %s", name, type(exc).__name__, exc)
        kind = suffix.lstrip(".").upper()
        raise NoteFileError(
            name, [Problem(name, f"not a readable {kind} file ({type(exc).__name__}: {str(exc)[:200]})")]
        ) from None
    notes = validate_notes(name, raw, event, upload_id, line_kind)
    # said where the file was read: in the web app, a worker process with limits (``guarded``)
    notes.attrs[READ_AS] = read_as(data)
    return notes
