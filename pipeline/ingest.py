"""Ingest: accept facilitators' files whole or not at all, keep every upload, and know which notes count.

Rules (the manifest is the record of truth):
- an upload is stored byte for byte under ``raw/<event>/uploads/<sha256><suffix>``;
- the same bytes twice are a no-op;
- a file with any problem is rejected whole: kept under ``raw/<event>/rejected/`` and recorded with its
  errors, while the accepted notes stay exactly as they were;
- notes are grouped by (table, round, topic, question); for each group the latest accepted upload that
  holds it wins, so a corrected file supersedes the earlier one, which stays on disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipeline.event import EVENT_FILE, Event
from pipeline.provenance import code_id
from pipeline.readers import READ_AS, SUPPORTED_SUFFIXES, NoteFileError, Problem, read_notes
from pipeline.schema import NOTES, STATEMENTS, UploadStatus, conform, is_in
from pipeline.store import (
    Layout,
    Manifest,
    Upload,
    made_by,
    read_derived,
    write_bytes,
    write_parquet,
)

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

KEY_COLUMNS = ["table", "round", "topic", "question"]
#: ``via`` of the files ``harvest run`` reads from the event folder: read again at every run, so one that
#: was withdrawn stays withdrawn (sent again through the web or the CLI, it counts again)
EVENT_FOLDER = "event-folder"


@dataclass
class IngestResult:
    filename: str
    upload_id: str
    status: UploadStatus
    n_notes: int = 0
    superseded: list[str] = field(default_factory=list)  # files whose groups this upload replaced
    problems: list[Problem] = field(default_factory=list)
    notes: pd.DataFrame | None = None
    read_as: str = ""  # the legacy code page a text file was read in ("Central European (cp1250)")

    @property
    def ok(self) -> bool:
        return self.status != UploadStatus.REJECTED


def discover_note_files(event_dir: Path, event: Event) -> list[Path]:
    """The note files of an event folder (see ``Event.notes`` for the rule)."""
    event_dir = Path(event_dir)
    if event.notes:
        patterns = event.notes
    elif (event_dir / "notes").is_dir():
        patterns = ["notes/**/*"]
    else:
        patterns = ["*"]
    found = {p for pattern in patterns for p in event_dir.glob(pattern)}
    return sorted(
        p
        for p in found
        if p.is_file()
        and p.suffix.lower() in SUPPORTED_SUFFIXES
        and p.name != EVENT_FILE
        and not p.name.startswith((".", "~$"))  # editor lock and temp files
    )


def group_keys(notes: pd.DataFrame) -> pa.Array:
    """One Arrow string per note naming its (table, round, topic, question) group. Compared by these, not
    by a ``pd.MultiIndex``, which factorises every column anew (a folder of 140 files spent ~2 s of its
    ingest building them, once per file, over the event's notes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = [_strings(notes[c]) for c in KEY_COLUMNS]
    return pc.binary_join_element_wise(*parts, pa.scalar("\x1f", pa.large_string()))


def _strings(column: pd.Series) -> pa.Array:
    """A column as one Arrow array of large strings (a column pandas concatenated is chunked)."""
    import pyarrow as pa

    array = pa.array(column, from_pandas=True).cast(pa.large_string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def in_groups_of(notes: pd.DataFrame, other: pd.DataFrame) -> np.ndarray:
    """Which of ``notes`` are in a group ``other`` has notes in."""
    return is_in(group_keys(notes), group_keys(other))


class BatchNotes:
    """The event's current notes while a batch of uploads is ingested, with their note ids and group keys
    kept beside them as Arrow arrays, updated upload by upload: checking and taking in an upload then
    reads the event's notes through arrays already built, instead of converting their columns again for
    every file (the 8,030-note folder of 140 files: ingest 2.0 -> 1.3 s)."""

    def __init__(self, notes: pd.DataFrame) -> None:
        self.notes = notes
        self.note_ids = _strings(notes["note_id"])
        self.keys = group_keys(notes)

    def holding_ids_of(self, upload: pd.DataFrame) -> pd.DataFrame:
        """The current notes with one of ``upload``'s note ids."""
        return self.notes.loc[is_in(self.note_ids, upload["note_id"])]

    def take(self, upload: pd.DataFrame, adds: bool) -> None:
        """``upload``'s notes are current now: in place of its groups' notes, or beside them (``adds``)."""
        import pyarrow as pa

        upload_keys = group_keys(upload)
        kept = np.ones(len(self.notes), dtype=bool) if adds else ~is_in(self.keys, upload_keys)
        self.notes = pd.concat([self.notes.loc[kept], upload], ignore_index=True)
        self.note_ids = pa.concat_arrays([self.note_ids.filter(pa.array(kept)), _strings(upload["note_id"])])
        self.keys = pa.concat_arrays([self.keys.filter(pa.array(kept)), upload_keys])


def _keys(notes: pd.DataFrame) -> list[list[str | int]]:
    # in Python: a file's few groups are sorted faster than pandas sets up drop_duplicates and a sort
    columns = (notes[column].tolist() for column in KEY_COLUMNS)  # tolist: not a row at a time from Arrow
    groups = sorted({(str(t), int(r), str(tp), str(q)) for t, r, tp, q in zip(*columns, strict=True)})
    return [list(group) for group in groups]


def _signature(event: Event, manifest: Manifest) -> str:
    """What the current notes depend on: the event definition, the accepted uploads in arrival order,
    each by its id (a hash of its bytes, form defaults and whether it adds) and the file name it was read
    with, and the readers' code (a new release reads the same bytes anew). Sized by uploads, not by the
    groups they hold."""
    uploads = [[u.upload_id, u.filename, sorted(u.defaults.items()), u.adds] for u in manifest.accepted()]
    payload = json.dumps([event.model_dump(mode="json"), uploads, _readers_code()])
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _readers_code() -> str:
    """The readers' code: when reading rules change, uploads kept parsed are parsed again."""
    return code_id("pipeline.readers")


@lru_cache(maxsize=1)
def _statements_code() -> str:
    """What a note's statements depend on besides the note: the splitting and language rules
    (``pipeline.statements``, and the readers' bullets and votes it uses) and spaCy's and lingua's
    versions. A release that changes them splits every note again, once."""
    from importlib.metadata import version

    versions = f"spacy {version('spacy')}, lingua {version('lingua-language-detector')}"
    return f"{code_id('pipeline.statements', 'pipeline.readers')} {versions}"


def _in_order(notes: pd.DataFrame) -> pd.DataFrame:
    order = ["topic", "question", "table", "round", "source_file", "source_line"]
    return conform(notes.sort_values(order, kind="stable"), NOTES)


#: The last current notes kept by this process, by path: a run reads them right after ingest, and a
#: long-lived process (a worker, the web app) at its next run. Only events of up to this many notes,
#: so that a million-note run does not hold a second copy.
_last_kept: dict[Path, pd.DataFrame] = {}
REMEMBER_NOTES = 100_000


def _remember(path: Path, notes: pd.DataFrame) -> None:
    _last_kept.clear()
    if len(notes) <= REMEMBER_NOTES:
        _last_kept[path] = notes.copy()  # callers may change the frame they hold


def _keep_current(layout: Layout, signature: str, notes: pd.DataFrame) -> None:
    target = layout.current_notes(signature)
    write_parquet(target, notes)
    _remember(target, notes)
    for older in target.parent.glob("notes-*.parquet"):
        if older != target:
            older.unlink(missing_ok=True)


def current_notes(layout: Layout, event: Event, manifest: Manifest | None = None) -> pd.DataFrame:
    """The notes that count now: for each group, the rows of the latest accepted upload holding it.

    Read from the uploads once per manifest state; later calls read the kept copy."""
    manifest = manifest or Manifest.load(layout)
    signature = _signature(event, manifest)
    kept = layout.current_notes(signature)
    if kept in _last_kept and kept.exists():
        return _last_kept[kept].copy()
    stored = read_derived(kept)
    if stored is not None:
        notes = conform(stored, NOTES)
        _remember(kept, notes)
        return notes
    owners = manifest.current_keys()
    frames = []
    for upload in manifest.accepted():
        owned = {k for k, holders in owners.items() if upload.upload_id in holders}
        if not owned:
            continue
        data = manifest.stored_bytes(layout, upload)
        notes = read_notes(  # as accepted: rules tightened since do not reject it now
            upload.filename, data, event, upload.upload_id, defaults=upload.defaults, accepted=True
        )
        keys = pd.MultiIndex.from_frame(notes[KEY_COLUMNS])
        frames.append(notes.loc[keys.isin(list(owned))])
    notes = _in_order(pd.concat(frames, ignore_index=True)) if frames else NOTES.empty()
    if frames:
        _keep_current(layout, signature, notes)
    return notes


def ingest(
    layout: Layout,
    event: Event,
    files: Sequence[tuple[str, bytes]],
    who: str = "",
    via: str = "cli",
    max_bytes: int | None = None,
    defaults: dict[str, str] | None = None,
    reader: Callable[..., pd.DataFrame] = read_notes,
    link: str = "",
    tables: Iterable[str] | None = None,
    adds: bool = False,
) -> list[IngestResult]:
    """Ingest uploads given as (file name, bytes); each is accepted whole or rejected whole.

    An upload replaces the notes of the (table, round, topic, question) groups it holds, or, with
    ``adds``, joins them (a second sheet of the same table's notes).
    ``defaults`` fill the fields a file leaves out (the upload form's topic, question, table, round).
    ``reader`` parses a new upload as ``read_notes`` does (a server passes
    ``pipeline.readers.guarded.GuardedReader``, which adds time and memory limits).
    ``link``: the facilitators' upload link the files came through. Such an upload may hold only notes of
    ``tables`` (when the link is bound to tables), and one that would replace notes handed in through
    another link, or by an editor, is kept ``pending`` until an editor accepts it (``decide_pending``)."""
    results = []
    with layout.lock():
        manifest = Manifest.load(layout)
        current = BatchNotes(current_notes(layout, event, manifest))
        for name, data in files:
            result = _ingest_one(
                layout,
                event,
                manifest,
                current,
                name,
                data,
                who,
                via,
                max_bytes,
                defaults or {},
                reader,
                link,
                None if tables is None else set(tables),
                adds,
            )
            # its groups now come from it (or from it too): no need to re-read every upload
            if result.status == UploadStatus.ACCEPTED and result.notes is not None:
                current.take(result.notes, adds)
            results.append(result)
        # once per batch, not per file (a folder of 140 files rewrote the manifest 140 times): each
        # upload's bytes are stored before, so a batch cut short is handed in again whole
        recorded = (UploadStatus.ACCEPTED, UploadStatus.PENDING, UploadStatus.REJECTED)
        if any(r.status in recorded for r in results):
            manifest.save(layout)
        if any(r.status == UploadStatus.ACCEPTED for r in results):
            _keep_current(layout, _signature(event, manifest), _in_order(current.notes))
    return results


def ingest_paths(layout: Layout, event: Event, paths: Iterable[Path], **kwargs: object) -> list[IngestResult]:
    return ingest(layout, event, [(Path(p).name, Path(p).read_bytes()) for p in paths], **kwargs)  # type: ignore[arg-type]


def _ingest_one(
    layout: Layout,
    event: Event,
    manifest: Manifest,
    current: BatchNotes,
    name: str,
    data: bytes,
    who: str,
    via: str,
    max_bytes: int | None,
    defaults: dict[str, str],
    reader: Callable[..., pd.DataFrame] = read_notes,
    link: str = "",
    tables: set[str] | None = None,
    adds: bool = False,
) -> IngestResult:
    name = PurePath(name).name  # never trust a client's path
    upload_id = hand_in_id(data, defaults, adds)
    suffix = PurePath(name).suffix.lower()
    known = manifest.find(upload_id)
    if known is not None and known.status == UploadStatus.ACCEPTED and _still_current(manifest, known):
        return IngestResult(name, upload_id, UploadStatus.UNCHANGED, known.n_notes)
    if known is not None and known.status == UploadStatus.WITHDRAWN and via == EVENT_FOLDER:
        return IngestResult(name, upload_id, UploadStatus.WITHDRAWN, known.n_notes)
    try:
        notes = reader(name, data, event, upload_id, max_bytes, defaults)
        _check_tables(name, notes, tables)
        _check_note_ids(name, notes, current, adds)
    except NoteFileError as exc:
        _record_rejection(layout, manifest, known, name, upload_id, suffix, data, who, via, exc, max_bytes)
        return IngestResult(name, upload_id, UploadStatus.REJECTED, problems=exc.problems)
    stored = layout.upload_path(hashlib.sha256(data).hexdigest(), suffix)  # the bytes, by their own hash
    if not stored.exists():
        write_bytes(stored, data)
    keys = _keys(notes)
    owners = manifest.current_keys()
    holders = {
        owner: holder
        for k in keys
        for owner in owners.get(tuple(k), ())
        if (holder := manifest.find(owner)) is not None
    }
    # an upload that adds replaces nothing: it never waits for an editor
    superseded = [] if adds else sorted({h.filename for h in holders.values()})
    waits = bool(link) and not adds and any(h.link != link for i, h in holders.items() if i != upload_id)
    manifest.uploads = [u for u in manifest.uploads if u.upload_id != upload_id]  # a fixed re-try
    manifest.uploads.append(
        Upload(
            upload_id=upload_id,
            filename=name,
            stored_as=str(stored.relative_to(layout.raw)),
            size=len(data),
            received_at=_now(),
            who=who,
            via=via,
            status=UploadStatus.PENDING if waits else UploadStatus.ACCEPTED,
            n_notes=len(notes),
            keys=keys,
            defaults=defaults,
            link=link,
            adds=adds,
        )
    )
    encoding = str(notes.attrs.get(READ_AS, ""))
    if waits:
        log.info("pending %s: it would replace notes handed in otherwise (%s)", name, ", ".join(superseded))
        return IngestResult(name, upload_id, UploadStatus.PENDING, len(notes), superseded, read_as=encoding)
    log.info("accepted %s: %d notes in %d groups", name, len(notes), len(keys))
    return IngestResult(
        name, upload_id, UploadStatus.ACCEPTED, len(notes), superseded, notes=notes, read_as=encoding
    )


def _check_tables(name: str, notes: pd.DataFrame, tables: set[str] | None) -> None:
    """Through a link bound to tables, every note must be of one of them."""
    if tables is None:
        return
    outside = notes[~notes["table"].isin(tables)]
    if len(outside):
        allowed = ", ".join(sorted(tables))
        raise NoteFileError(
            name,
            [
                Problem(name, f"this upload link is for tables {allowed}, not '{table}'", int(line), "table")
                for table, line in outside.drop_duplicates("table")[["table", "source_line"]].to_numpy()
            ],
        )


def decide_pending(layout: Layout, event: Event, upload_id: str, accept: bool, who: str) -> Upload:
    """An editor's decision on a pending upload: accepted, it replaces the notes it holds as if it had
    just arrived; discarded, it stays on disk and in the manifest and counts for nothing."""
    with layout.lock():
        manifest = Manifest.load(layout)
        upload = manifest.find(upload_id)
        if upload is None or upload.status != UploadStatus.PENDING:
            raise ValueError(f"no upload {upload_id[:12]} is waiting for a decision")
        upload.status, upload.decided_by = (UploadStatus.ACCEPTED if accept else UploadStatus.DISCARDED), who
        manifest.uploads = [u for u in manifest.uploads if u.upload_id != upload_id] + [upload]
        manifest.save(layout)
        if accept:
            current_notes(layout, event, manifest)  # the notes that count now, kept for the next run
    return upload


def withdraw(layout: Layout, event: Event, upload_id: str, who: str, link: str | None = None) -> Upload:
    """Take back an accepted or pending upload: its notes count no more, and what it had replaced counts
    again. ``link``: a facilitator's upload link, which may withdraw only what came through it."""
    with layout.lock():
        manifest = Manifest.load(layout)
        upload = manifest.find(upload_id)
        if upload is None or upload.status not in (UploadStatus.ACCEPTED, UploadStatus.PENDING):
            raise ValueError(f"no upload {upload_id[:12]} counts or waits: nothing to withdraw")
        if link is not None and upload.link != link:
            raise ValueError(f"{upload.filename} was not handed in through this upload link")
        upload.status, upload.decided_by = UploadStatus.WITHDRAWN, who
        manifest.save(layout)
        current_notes(layout, event, manifest)  # the notes that count now, kept for the next run
    return upload


def notes_already_in(
    layout: Layout,
    event: Event,
    files: Sequence[tuple[str, bytes]],
    defaults: dict[str, str] | None = None,
    reader: Callable[..., pd.DataFrame] = read_notes,
    max_bytes: int | None = None,
) -> dict[tuple[str | int, ...], int]:
    """Per (table, round, topic, question) group these files hold, the notes it has now, for the groups
    that have some: what handing them in would replace. Files that do not read are left to ``ingest``."""
    keys: set[tuple[str | int, ...]] = set()
    for name, data in files:
        try:
            notes = reader(PurePath(name).name, data, event, "", max_bytes, defaults or {})
        except NoteFileError:
            continue
        keys.update(tuple(k) for k in _keys(notes))
    current = current_notes(layout, event)
    counts = current.groupby(KEY_COLUMNS).size()
    return {key: int(counts[key]) for key in sorted(keys, key=str) if key in counts.index}


def hand_in_id(data: bytes, defaults: dict[str, str] | None = None, adds: bool = False) -> str:
    """The identity of a hand-in: its bytes, what it was filed under (the form's topic, question,
    table and round) and whether it adds to its groups' notes. The same two bullets pasted for two
    tables are two hand-ins, not one "already received". A file that carries all of that itself has no
    defaults: its id is the SHA-256 of its bytes, as before."""
    digest = hashlib.sha256(data)
    if defaults:
        digest.update(b"\0" + json.dumps(defaults, sort_keys=True).encode())
    if adds:
        digest.update(b"\0adds")
    return digest.hexdigest()


def _still_current(manifest: Manifest, upload: Upload) -> bool:
    """True while every group of an accepted upload still comes from it: sent again after a later file
    replaced some of its groups, it is taken again and they come back."""
    owners = manifest.current_keys()
    return all(upload.upload_id in owners.get(tuple(key), ()) for key in upload.keys)


def _check_note_ids(name: str, notes: pd.DataFrame, current: BatchNotes, adds: bool = False) -> None:
    """A note_id may not be taken by a note this upload does not replace (of another group, or of its
    own groups when it adds to them)."""
    # only notes with one of the upload's ids can clash: the check costs the upload, not the event
    holding = current.holding_ids_of(notes)
    replaced = in_groups_of(holding, notes) & (not adds)
    others = holding.loc[~replaced]
    taken = dict(
        zip(others["note_id"], others["source_file"] + " " + others["source_line"].astype(str), strict=True)
    )
    problems = [
        Problem(name, f"note_id '{nid}' is already used in {taken[nid]}", line, "note_id")
        for nid, line in zip(notes["note_id"], notes["source_line"], strict=True)
        if nid in taken
    ]
    if problems:
        raise NoteFileError(name, problems)


def _record_rejection(
    layout: Layout,
    manifest: Manifest,
    known: Upload | None,
    name: str,
    upload_id: str,
    suffix: str,
    data: bytes,
    who: str,
    via: str,
    error: NoteFileError,
    max_bytes: int | None,
) -> None:
    errors = [str(p) for p in error.problems]
    if known is not None and known.errors == errors:
        return  # the same rejected file again: nothing new to record
    oversize = max_bytes is not None and len(data) > max_bytes
    stored = "" if oversize else str(Path("rejected") / f"{upload_id}{suffix}")
    if stored and not (layout.raw / stored).exists():
        write_bytes(layout.raw / stored, data)  # kept so nobody's work is lost, outside the notes store
    manifest.uploads = [u for u in manifest.uploads if u.upload_id != upload_id]
    manifest.uploads.append(
        Upload(
            upload_id=upload_id,
            filename=name,
            stored_as=stored,
            size=len(data),
            received_at=_now(),
            who=who,
            via=via,
            status=UploadStatus.REJECTED,
            errors=errors,
        )
    )
    log.info("rejected %s: %d problems", name, len(errors))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


#: What splitting a note made of it, kept for notes that did not change
_SPLIT_COLUMNS = ["note_id", "statement_id", "position", "text", "language"]


def build_statements(layout: Layout, event: Event) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Current notes -> statements; writes ``notes.parquet`` and ``statements.parquet`` atomically.

    Incremental: a note whose id, text and declared language are as in the last build keeps its
    statements (split and language as before); only new or changed notes go through spaCy and lingua.
    Statements made by other splitting or language rules (``_statements_code``) are made again.
    """
    from pipeline.statements import load_splitter, notes_to_statements

    notes = current_notes(layout, event)
    unchanged = np.zeros(len(notes), dtype=bool)
    reused = STATEMENTS.empty()
    previous_notes = read_derived(layout.notes)
    old = read_derived(layout.statements) if made_by(layout.statements) == _statements_code() else None
    if previous_notes is not None and old is not None:
        before = conform(previous_notes, NOTES).set_index("note_id")
        old = conform(old, STATEMENTS)[[*_SPLIT_COLUMNS, "text_en", "language_route"]]
        known = is_in(notes["note_id"], before.index.to_series())
        same = before.reindex(notes["note_id"])

        def equal(column: str) -> np.ndarray:  # notes new to this build have no earlier value
            earlier = same[column].astype(object).fillna("").to_numpy(dtype=object)
            return np.asarray(earlier == notes[column].astype(object).to_numpy(dtype=object))

        unchanged = known & equal("text") & equal("language") & equal("text_en")
        old = old[is_in(old["note_id"], notes.loc[unchanged, "note_id"])]
        provenance = notes.loc[unchanged].drop(columns=["text", "language", "text_en"])
        reused = conform(old.merge(provenance, on="note_id", how="inner"), STATEMENTS)
    changed = notes.loc[~unchanged]
    fresh = (
        notes_to_statements(changed, load_splitter(event.language), event.language)
        if len(changed)
        else STATEMENTS.empty()
    )
    order = {note_id: i for i, note_id in enumerate(notes["note_id"].tolist())}
    statements = pd.concat([reused, fresh], ignore_index=True)
    statements = (
        statements.assign(_order=statements["note_id"].map(order))
        .sort_values(["_order", "position"], kind="stable")
        .drop(columns="_order")
    )
    statements = conform(statements, STATEMENTS)
    write_parquet(layout.notes, notes)
    write_parquet(layout.statements, statements, made_by=_statements_code())
    return notes, statements
