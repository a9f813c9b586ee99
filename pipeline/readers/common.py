"""What every note reader shares: the error type, decoding, vote markers and row validation."""

from __future__ import annotations

import codecs
import difflib
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

import pandas as pd

from pipeline.event import Event
from pipeline.readers.codepages import (
    ACCENTED_RUN,
    CODE_PAGE_NAMES,
    LATIN_CODE_PAGES,
    SYMBOL_IN_WORD,
    legacy_reading,
)
from pipeline.schema import NOTES, OPTIONAL_NOTE_FIELDS, REQUIRED_NOTE_FIELDS, conform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an uploaded file, precise enough for a facilitator to fix it."""

    file: str
    reason: str
    line: int | None = None  # spreadsheet row, text line or docx paragraph (1-based)
    column: str | None = None
    line_kind: str = "row"

    def __str__(self) -> str:
        where = [self.file]
        if self.line is not None:
            where.append(f"{self.line_kind} {self.line}")
        if self.column:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.reason}"


@dataclass
class NoteFileError(Exception):
    """A file was rejected whole; ``problems`` lists everything wrong with it at once."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


@dataclass
class RawNote:
    """A note as a reader found it, before validation; values are stripped strings. ``place``: what
    ``line`` counts in, when not the file's own rows, lines or paragraphs ("table 2, row" of a DOCX)."""

    line: int
    fields: dict[str, str]
    place: str = ""


# --------------------------------------------------------------------------- containers
#: What a DOCX or XLSX may unpack to: a real table's notes are a few MB; a zip bomb is gigabytes.
MAX_UNPACKED_BYTES = 100 * 1024 * 1024
MAX_ZIP_ENTRIES = 10_000


def check_zip(name: str, data: bytes, what: str) -> None:
    """Refuse a DOCX/XLSX whose entries would unpack past MAX_UNPACKED_BYTES, before anything is
    unpacked: the sizes are read from the zip's directory (and a lying directory is caught by zipfile,
    which stops at the declared size)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise NoteFileError(name, [Problem(name, f"not a readable {what} ({exc})")]) from None
    unpacked = sum(e.file_size for e in entries)
    if len(entries) > MAX_ZIP_ENTRIES or unpacked > MAX_UNPACKED_BYTES:
        raise NoteFileError(
            name,
            [
                Problem(
                    name,
                    f"the {what} unpacks to {unpacked:,} bytes in {len(entries):,} parts, over the limit of "
                    f"{MAX_UNPACKED_BYTES:,} bytes",
                )
            ],
        )


# --------------------------------------------------------------------------- decoding
#: Byte-order marks of the Unicode encodings other than UTF-8 that editors save text in (Notepad's and
#: Word's "Unicode", LibreOffice's UTF-16 CSV). UTF-32 first: its little-endian mark starts with UTF-16's.
_MARKED_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16"),
)


def decode_text(name: str, data: bytes, strict: bool = True) -> str:
    """UTF-8 (with or without BOM), UTF-16 / UTF-32 with their byte-order mark, or the Windows code page
    Excel's "CSV" was saved in (``codepages.legacy_reading``: Western, Central European, Baltic, Turkish,
    Cyrillic or Greek). Anything else is rejected, unless ``strict`` is off (a file accepted before that
    rule) and it decodes in a Latin code page."""
    marked = next((found for found in _MARKED_ENCODINGS if data.startswith(found[0])), None)
    if marked is not None:
        mark, codec, label = marked
        try:
            data = data[len(mark) :].decode(codec).encode("utf-8")  # then checked as any UTF-8 file
        except UnicodeDecodeError as exc:
            line = data[len(mark) : len(mark) + exc.start].decode(codec, errors="replace").count("\n") + 1
            raise NoteFileError(
                name, [Problem(name, f"unreadable {label}: {exc.reason}", line, None, "line")]
            ) from None
    if not data.strip():
        raise NoteFileError(name, [Problem(name, "the file is empty")])
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        problem = "binary data (NUL byte): not text in UTF-8, a Windows code page, or UTF-16 with its mark"
        raise NoteFileError(name, [Problem(name, problem, line, None, "line")])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as utf8_error:
        not_utf8 = utf8_error.start
    found = legacy_reading(data)
    if found is not None:
        code_page, reading = found
        if code_page != "cp1252":
            log.info("%s is not UTF-8: read as %s", name, CODE_PAGE_NAMES[code_page])
        return reading
    text = next((t for t in map(partial(_decoded, data), LATIN_CODE_PAGES) if t is not None), None)
    if text is None:
        problem = f"unreadable encoding: byte 0x{data[not_utf8]:02x} is neither UTF-8 nor a Windows code page"
        line = data[:not_utf8].count(b"\n") + 1
        raise NoteFileError(
            name, [Problem(name, f"{problem}; save the file as UTF-8", line, None, "line")]
        ) from None
    if not strict:  # accepted before such files were refused: read as then
        return text
    # no reading was plausible, so this one holds a word of accented letters or a symbol inside a word
    misread = ACCENTED_RUN.search(text) or SYMBOL_IN_WORD.search(text)
    where = misread.start() if misread is not None else 0
    problem = (
        f"unreadable encoding: '{_word_at(text, where)}' reads as no language in any Windows code "
        "page (Western, Central European, Baltic, Turkish, Cyrillic or Greek); save the file as UTF-8 (in "
        "Excel: Save As, 'CSV UTF-8')"
    )
    line = text[:where].count("\n") + 1
    raise NoteFileError(name, [Problem(name, problem, line, None, "line")])


def read_as(data: bytes) -> str:
    """The legacy code page ``decode_text`` reads ``data`` in, by name ("Central European (cp1250)"),
    for the upload's receipt: a facilitator who sees garbled notes then knows why. "" for Unicode text
    (and for what is no text)."""
    if b"\x00" in data or any(data.startswith(mark) for mark, _, _ in _MARKED_ENCODINGS):
        return ""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        found = legacy_reading(data)
        return CODE_PAGE_NAMES[found[0]] if found is not None else ""
    return ""


def _decoded(data: bytes, code_page: str) -> str | None:
    try:
        return data.decode(code_page)
    except UnicodeDecodeError:
        return None


_WORD_ENDS = ' \t\r\n,;"'


def _word_at(text: str, index: int) -> str:
    """The word of ``text`` around ``index`` (between white space, quotes, commas and semicolons)."""
    start = max(text.rfind(c, 0, index) for c in _WORD_ENDS) + 1
    ends = [end for end in (text.find(c, index) for c in _WORD_ENDS) if end != -1]
    return text[start : min(ends, default=len(text))]


# --------------------------------------------------------------------------- votes
_VOTE_MARKERS = re.compile(
    r"\(\s*\+\s*([0-9]{1,6})\s*\)"  # (+2); ASCII digits only (\d is any script's), at most 999,999
    # "\s*(?:\+\s*)?", not "\s*\+?\s*": two runs that can share the same spaces backtrack quadratically
    r"|\[\s*(?:\+\s*)?([0-9]{1,6})\s*(?:dots?|votes?|points?|stickers?)?\s*\]",  # [3 dots], [3], [+3]
    re.IGNORECASE,
)


def split_vote_markers(text: str) -> tuple[str, int | None]:
    """Strip ``(+2)`` / ``[3 dots]`` markers from a note; return the text and their sum (None if none)."""
    found = [int(a or b) for a, b in _VOTE_MARKERS.findall(text)]
    if not found:
        return text, None
    cleaned = re.sub(r"\s{2,}", " ", _VOTE_MARKERS.sub(" ", text)).strip()
    return cleaned, sum(found)


# --------------------------------------------------------------------------- validation
def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "notes"


def derive_note_id(file_name: str, line: int, place: str = "") -> str:
    """A stable id for a note that came without one: from the file name and its row/line (and the
    ``place`` that counts it, such as a DOCX's table)."""
    return f"{_slug(file_name)}:{_slug(place) + '-' if place else ''}{line}"


def _valid(ids: Iterable[str]) -> str:
    return ", ".join(sorted(ids))


def validate_notes(
    name: str, raw: list[RawNote], event: Event, upload_id: str, line_kind: str = "row"
) -> pd.DataFrame:
    """Check every raw note against the event; return the notes frame or raise with all problems."""
    problems: list[Problem] = []

    def bad(note: RawNote, column: str | None, reason: str) -> None:
        problems.append(Problem(name, reason, note.line, column, note.place or line_kind))

    topics = event.topics
    expected = {t.id: set(t.expected_tables) for t in topics.values() if t.tables}
    questions = {t.id: {q.id for q in t.questions} for t in topics.values()}  # looked up per note
    rows: list[dict[str, object]] = []
    seen_ids: dict[str, str] = {}  # where each was first
    for note in raw:
        f = {k: (note.fields.get(k) or "").strip() for k in (*REQUIRED_NOTE_FIELDS, *OPTIONAL_NOTE_FIELDS)}
        text, suffix_gloss = split_gloss(f["text"])
        text, marker_votes = split_vote_markers(text)
        if not text:
            bad(note, "text", "empty text")
        topic = topics.get(f["topic"].lower())
        if not f["topic"]:
            bad(note, "topic", f"missing topic (valid: {_valid(topics)})")
        elif topic is None:
            bad(note, "topic", f"unknown topic '{f['topic']}' (valid: {_valid(topics)})")
        elif f["question"].lower() not in questions[topic.id]:
            valid_q = _valid(q.id for q in topic.questions)
            what = f"unknown question '{f['question']}'" if f["question"] else "missing question"
            bad(note, "question", f"{what} for topic '{topic.id}' (valid: {valid_q})")
        if not f["table"]:
            bad(note, "table", "missing table")
        elif topic is not None and topic.id in expected and f["table"] not in expected[topic.id]:
            bad(note, "table", _unknown_table(f["table"], topic.id, expected[topic.id]))
        round_ = whole_number(f["round"])
        if round_ is None or round_ < 1:
            bad(
                note,
                "round",
                f"round must be a whole number from 1 to {MAX_COUNT:,}, got '{f['round']}'",
            )
        votes = whole_number(f["votes"]) if f["votes"] else marker_votes or 0
        if votes is None or not 0 <= votes <= MAX_COUNT:  # markers add up
            bad(
                note,
                "votes",
                f"votes must be a whole number from 0 to {MAX_COUNT:,}, got '{f['votes']}'",
            )
        note_id = f["note_id"] or derive_note_id(name, note.line, note.place)
        if note_id in seen_ids:
            bad(note, "note_id", f"note_id '{note_id}' already used at {seen_ids[note_id]}")
        seen_ids.setdefault(note_id, f"{note.place or line_kind} {note.line}")
        rows.append(
            {
                "note_id": note_id,
                "topic": f["topic"].lower(),
                "question": f["question"].lower(),
                "table": f["table"],
                "round": round_ or 0,
                "text": text,
                "text_en": f["text_en"] or suffix_gloss,
                "votes": votes or 0,
                "facilitator": f["facilitator"],
                "language": f["language"].lower(),
                "source_file": name,
                "source_line": note.line,
                "upload_id": upload_id,
            }
        )
    if problems:
        raise NoteFileError(name, problems)
    if not rows:
        raise NoteFileError(name, [Problem(name, "no notes found in the file")])
    return conform(pd.DataFrame(rows), NOTES)


def _unknown_table(table: str, topic: str, expected: set[str]) -> str:
    """Why a table id is refused, with the listed id it is closest to: the same but for leading zeros
    and case ("Green-T3" → "green-t03"), else the most similar one."""

    def plain(value: str) -> str:
        return re.sub(r"\d+", lambda number: str(int(number.group())), value.casefold())

    same = [t for t in sorted(expected) if plain(t) == plain(table)]
    close = same or difflib.get_close_matches(table, sorted(expected), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f" ({len(expected)} tables are listed in event.yaml)"
    return f"table '{table}' is not listed for topic '{topic}'{hint}"


# "... [en: the gloss]" at the end of a note; no '[' or ']' inside, so one scan finds it
_GLOSS_SUFFIX = re.compile(r"\[\s*en\s*:([^\[\]]*)\]\s*$", re.IGNORECASE)


def split_gloss(text: str) -> tuple[str, str]:
    """A note and the English gloss a facilitator added at its end as ``[en: ...]`` ('' = none)."""
    match = _GLOSS_SUFFIX.search(text)
    if match is None or not match.group(1).strip():
        return text, ""
    return text[: match.start()].rstrip(), match.group(1).strip()


def join_glosses(text: str, glosses: str) -> str:
    """Pasted notes with the English glosses typed beside them, line for line, as ``[en: ...]`` suffixes.

    Line N of ``glosses`` glosses line N of ``text``; blank gloss lines gloss nothing. ``ValueError`` names
    the first gloss line with no note beside it, or whose note already ends with a gloss."""
    lines = text.splitlines()
    for number, gloss in enumerate(glosses.splitlines(), start=1):
        gloss = " ".join(gloss.replace("[", "(").replace("]", ")").split())  # one line, no suffix inside
        if not gloss:
            continue
        if number > len(lines) or not lines[number - 1].strip():
            raise ValueError(f"line {number} of the translations has no note beside it")
        if split_gloss(lines[number - 1])[1]:
            raise ValueError(f"the note on line {number} already ends with [en: ...]")
        lines[number - 1] = f"{lines[number - 1].rstrip()} [en: {gloss}]"
    return "\n".join(lines)


#: Largest round number or vote count a note may carry: more is a typo or an attack, and votes rank themes.
MAX_COUNT = 1_000_000
# ASCII digits, optionally ".0" as spreadsheets write 2 (not "1e30", "inf", "1_000", "١٢" that float() takes)
_WHOLE_NUMBER = re.compile(r"[0-9]{1,7}(?:\.0*)?")


def whole_number(value: str) -> int | None:
    """A whole number from 0 to MAX_COUNT written in ASCII digits, else None."""
    value = str(value).strip()
    if not _WHOLE_NUMBER.fullmatch(value):
        return None
    number = int(value.split(".")[0])
    return number if number <= MAX_COUNT else None
