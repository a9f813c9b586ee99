"""Markdown and plain text: a ``key: value`` header, then one note per bullet or paragraph.

---
topic: green
question: needs
table: green-t03
round: 1
---
- more EUR for pilots (+2)
- DIH + clusters -> link!! [3 dots]
- moins de bureaucratie pour les PME
  text_en: less red tape for SMEs

A paragraph is one note too. A note in another language may carry an English gloss: a ``text_en:`` line
right after it, or ``[en: ...]`` at its end. A table whose first row names its columns as in a CSV
(``| text | votes |``, a Markdown pipe table) holds one note a row. Word-processor documents read the
same way (``pipeline.readers.documents``).
"""

from __future__ import annotations

import logging
import re

import yaml

from pipeline.readers.common import NoteFileError, Problem, RawNote, decode_text, join_glosses
from pipeline.readers.tabular import notes_from_rows

log = logging.getLogger(__name__)

HEADER_KEYS = ("topic", "question", "table", "round", "facilitator", "language")
# the value is stripped in Python: "(.*?)\s*$" backtracks quadratically over a long run of spaces
_HEADER_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*:(.*)$")
_GLOSS_LINE = re.compile(r"^\s*(?:[-*]\s+)?text_en\s*:(.*)$", re.IGNORECASE)
_TABLE_ROW = re.compile(r"^\s*\|")
#: A Markdown heading ("# Ideas"; a document's headings and title read as one): not a note. "#GreenDeal" is.
_HEADING = re.compile(r"^\s*#{1,6}(?:\s|$)")
#: A list item's mark: the usual glyphs, those Word's lists paste as (its Symbol and Wingdings bullets in
#: the private-use area, "o" and a tab for the second level), or a number
BULLET = re.compile(r"^\s*(?:[-*•‣◦▪+–—·●○■□◆♦►▶»→➢✓☐\uf0b7\uf0a7\uf076\uf0d8\uf0fc]|o(?=\t)|\d{1,3}[.)])\s+")


def is_inline_enumeration(text: str) -> bool:
    """'1) a 2) b': several numbered points in one line, which the statements step splits."""
    numbers = [int(n) for n in re.findall(r"(?:^|\s)(\d{1,2})[.)]\s", text)]
    return len(numbers) >= 2 and numbers == list(range(1, len(numbers) + 1))


def one_note_a_line(text: str) -> str:
    """Pasted notes as the paste form asks for them, one a line: each line that does not start with a
    bullet or a number gets one, so that no line runs on into the line before it (in a text file, lines
    run on until a blank line, as Markdown's paragraphs do)."""
    kept = (BULLET, _TABLE_ROW)  # a pasted pipe table stays a table
    return "\n".join(
        line if not line.strip() or any(k.match(line) for k in kept) else f"- {line.strip()}"
        for line in text.splitlines()
    )


def pasted_upload(text: str, glosses: str = "") -> tuple[str, bytes]:
    """What notes pasted into the upload page are handed in as: the kind of file (``.csv``, ``.txt``) and
    its bytes. Cells copied from a spreadsheet with its header row (tab-separated, one column named
    ``text``) are that table, as a tab-separated CSV; anything else is text, one note a line
    (``one_note_a_line``), with the English typed beside it (``join_glosses``). ``ValueError`` says what
    is wrong with the English."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "\t" in first and "text" in {cell.strip().lower() for cell in first.split("\t")}:
        if glosses.strip():
            raise ValueError("pasted cells take their English in a text_en column, not beside them")
        return ".csv", text[text.index(first) :].encode("utf-8")  # the header row first, for its separator
    return ".txt", one_note_a_line(join_glosses(text, glosses)).encode("utf-8")


def parse_header(
    name: str,
    lines: list[tuple[int, str]],
    line_kind: str,
    defaults: dict[str, str] | None = None,
    as_accepted: bool = False,
) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """Split leading header lines (optionally fenced by ``---``, or below a title) from the body.

    ``defaults`` (e.g. what a facilitator picked on the upload page) stand in for missing header keys.
    ``as_accepted``: a file accepted before titles were read; its header lines start it, as then."""
    problems: list[Problem] = []
    body_start, header, fenced = 0, {}, False
    content = [(n, s) for n, s in lines if s.strip()]
    if content and content[0][1].strip() == "---":
        fenced = True
        end = next((i for i, (_, s) in enumerate(content[1:], 1) if s.strip() in ("---", "...")), None)
        if end is None:
            raise NoteFileError(
                name,
                [
                    Problem(
                        name, "front matter opened with '---' is never closed", content[0][0], None, line_kind
                    )
                ],
            )
        block = "\n".join(s for _, s in content[1:end])
        if end - 1 > MAX_FRONT_MATTER_LINES or len(block) > MAX_FRONT_MATTER_CHARS:
            reason = (
                f"front matter holds {end - 1:,} lines and {len(block):,} characters; a header is at most "
                f"{MAX_FRONT_MATTER_LINES} lines of {MAX_FRONT_MATTER_CHARS:,} characters"
            )
            raise NoteFileError(name, [Problem(name, reason, content[0][0], None, line_kind)])
        try:
            _flat_yaml(block)
            loaded = yaml.load(block, Loader=_SAFE_LOADER) or {}
        except yaml.YAMLError as exc:
            raise NoteFileError(
                name,
                [Problem(name, f"front matter is not valid YAML: {exc}", content[0][0], None, line_kind)],
            ) from None
        if not isinstance(loaded, dict):
            raise NoteFileError(
                name,
                [Problem(name, "front matter must be 'key: value' lines", content[0][0], None, line_kind)],
            )
        header = {str(k).strip().lower(): "" if v is None else str(v) for k, v in loaded.items()}
        for key in header:
            if key not in HEADER_KEYS:
                problems.append(
                    Problem(
                        name,
                        f"unknown header key '{key}' (known: {', '.join(HEADER_KEYS)})",
                        content[0][0],
                        None,
                        line_kind,
                    )
                )
        body_start = end + 1
    else:
        # a title above the header lines (a document's title, a Markdown heading) is not a note either
        untitled = (i for i, (_, text) in enumerate(content) if not _HEADING.match(text))
        first = 0 if as_accepted else next(untitled, len(content))
        for i, (_, text) in enumerate(content[first:], start=first):
            match = _HEADER_LINE.match(text)
            if not match or match.group(1).lower() not in HEADER_KEYS or BULLET.match(text):
                break
            header[match.group(1).lower()] = match.group(2).strip()
            body_start = i + 1
    header = {**(defaults or {}), **{k: v for k, v in header.items() if str(v).strip()}}
    missing = [k for k in ("topic", "question", "table", "round") if not header.get(k, "").strip()]
    if missing:
        problems.append(
            Problem(
                name,
                f"header lacks {', '.join(missing)}: start the file with "
                f"'key: value' lines{' (in the --- block)' if fenced else ''} "
                "for topic, question, table, round",
                content[0][0] if content else 1,
                None,
                line_kind,
            )
        )
    if problems:
        raise NoteFileError(name, problems)
    first_body_line = content[body_start][0] if body_start < len(content) else None
    body = [(n, s) for n, s in lines if first_body_line is not None and n >= first_body_line]
    return header, body


def notes_from_body(
    header: dict[str, str], body: list[tuple[int, str]], bullets_only_split: bool
) -> list[RawNote]:
    """Group body lines into notes: a bullet starts one; a blank line or heading ends one."""
    notes: list[RawNote] = []
    current: tuple[int, list[str]] | None = None

    def flush() -> None:
        nonlocal current
        if current:
            notes.append(RawNote(current[0], {**header, "text": " ".join(current[1])}))
        current = None

    for line, text in body:
        stripped = text.strip()
        gloss = _GLOSS_LINE.match(text)
        if gloss and (current is not None or notes):  # the gloss of the note just read
            flush()
            notes[-1].fields["text_en"] = gloss.group(1).strip()
            continue
        if not stripped or _HEADING.match(stripped) or stripped in ("---", "***"):
            flush()
            continue
        bullet = BULLET.match(text)
        if bullet or current is None or not bullets_only_split:
            flush()
            after = text[bullet.end() :].strip() if bullet else stripped
            if is_inline_enumeration(stripped) and not is_inline_enumeration(after):
                after = stripped  # the '1)' of '1) a 2) b' is part of the note, not list markup
            current = (line, [after])
        else:
            current[1].append(stripped)
    flush()
    return notes


def read_text(
    name: str,
    data: bytes,
    defaults: dict[str, str] | None = None,
    as_accepted: bool = False,
) -> list[RawNote]:
    """A Markdown or text file's notes: its bullets and paragraphs after the header (each line of a text
    file without bullets), and the rows of its notes tables (a pipe table whose first row names the
    columns, one of them ``text``, as in a CSV). Any other pipe table rejects the file, since its rows
    would run into one note. ``as_accepted`` (a file accepted before these rules) reads such a table as
    lines of text, a text file's lines as a Markdown file's, a title as a note and a misread code page
    as it reads, as then."""
    text = decode_text(name, data, strict=not as_accepted)
    lines = list(enumerate(text.splitlines(), start=1))
    header, body = parse_header(name, lines, "line", defaults, as_accepted)
    placed: list[tuple[int, RawNote]] = []
    problems: list[Problem] = []
    in_tables: set[int] = set()
    for rows in _pipe_tables(body):
        first_line, names = rows[0][0], [cell.lower() for cell in rows[0][1]]
        if "text" not in names:
            if not as_accepted:
                problems.append(not_a_notes_table(name, rows[0][1], first_line, "line"))
            continue
        in_tables.update(range(first_line, rows[-1][0] + 1))
        try:
            placed += [(n.line, n) for n in notes_from_rows(name, rows, header, line_kind="line")]
        except NoteFileError as exc:
            problems += exc.problems
    if problems:
        raise NoteFileError(name, problems)
    rest = [(n, "" if n in in_tables else s) for n, s in body]  # a table ends the note before it
    # a text file without a bullet is one note a line, as Notepad users and Word's plain-text export write
    # them; Markdown's lines, and a bulleted list's, run on to the next blank line or bullet
    by_line = name.lower().endswith(".txt") and not as_accepted and not any(BULLET.match(s) for _, s in rest)
    placed += [(n.line, n) for n in notes_from_body(header, rest, bullets_only_split=not by_line)]
    return [note for _, note in sorted(placed, key=lambda item: item[0])]


def _pipe_tables(body: list[tuple[int, str]]) -> list[list[tuple[int, list[str]]]]:
    """The pipe tables in ``body`` (numbered lines, one after another), as GitHub's Markdown reads them
    (markdown-it's table rule): each a list of its rows, ``(line, cells)``, the header row first."""
    if not body or not any("|" in line for _, line in body):
        return []
    from markdown_it import MarkdownIt

    offset = body[0][0]
    tables: list[list[tuple[int, list[str]]]] = []
    rows: list[tuple[int, list[str]]] | None = None
    in_cell = False
    for token in MarkdownIt("commonmark").enable("table").parse("\n".join(line for _, line in body)):
        if token.type == "table_open":
            rows = []
        elif token.type == "tr_open" and rows is not None and token.map is not None:
            rows.append((offset + token.map[0], []))
        elif token.type in ("th_open", "td_open"):
            in_cell = True
        elif token.type in ("th_close", "td_close"):
            in_cell = False
        elif token.type == "inline" and in_cell and rows:
            rows[-1][1].append(token.content.strip())
        elif token.type == "table_close" and rows is not None:
            tables.append(rows)
            rows = None
    return tables


#: The header of a notes file is a handful of key: value lines; PyYAML reads ~12 KB a second in pure
#: Python, so a long block would be a cheap way to hold a worker.
MAX_FRONT_MATTER_LINES = 50
MAX_FRONT_MATTER_CHARS = 10_000
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML was built with it


def _flat_yaml(block: str) -> None:
    """Front matter is flat ``key: value`` lines: refuse anchors and aliases (a few hundred bytes of
    aliases expand to gigabytes) and nesting (1,000 levels overflow the parser's stack) before loading."""
    depth = 0
    for event in yaml.parse(block, Loader=_SAFE_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.YAMLError("anchors and aliases (&, *) are not allowed")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > 2:
                raise yaml.YAMLError("only 'key: value' lines are allowed, not nested blocks")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def not_a_notes_table(name: str, first_row: list[str], where: int, kind: str) -> Problem:
    """The problem of a table that holds text but no notes Harvest can read (``where``: its number or
    line, as ``kind`` says)."""
    found = ", ".join(repr(cell) for cell in first_row[:6])
    reason = (
        "a table that is not a notes table: its first row must name its columns as in a CSV, one of them "
        f"'text' (found {found}). Name its columns, or make its notes bullets"
    )
    if kind == "table":  # a DOCX's
        reason += " or paragraphs; a table of 'topic | green' rows may hold the header"
    return Problem(name, reason, where, None, kind)
