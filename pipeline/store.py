"""The data store: where every file lives, atomic writes, and the upload manifest.

Layout under the data root (``./data``, ``--data-dir`` or ``HARVEST_DATA``)::

    raw/<event>/uploads/<sha256><suffix>   every upload, byte for byte, addressed by content
    raw/<event>/manifest.json              who handed in what, when, and whether it was accepted
    raw/<event>/records/<upload id>.json   the same, one file per upload: the manifest is rebuilt from
                                           them when it is lost or damaged (``Manifest.load``)
    raw/<event>/theme_identity.parquet     each statement's machine theme at the last run
    processed/<event>                      everything derived: notes, statements, themes, paper; a link to
                                           the current generation in processed/.<event>.generations/
                                           (``Generation``: readers never see files of two runs)
    cache/<event>/embeddings/              statements' embeddings, by model (made again when lost)
"""

from __future__ import annotations

import contextvars
import csv
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout

from pipeline.schema import UploadStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Layout:
    """Every path Harvest reads or writes for one event. ``out`` redirects the processed outputs."""

    root: Path
    event: str
    out: Path | None = None

    @property
    def raw(self) -> Path:
        return self.root / "raw" / self.event

    @property
    def uploads(self) -> Path:
        return self.raw / "uploads"

    @property
    def manifest(self) -> Path:
        return self.raw / "manifest.json"

    @property
    def records(self) -> Path:
        """One JSON record per upload (``Upload``): the manifest's second copy, written as it changes."""
        return self.raw / "records"

    @property
    def theme_identity(self) -> Path:
        """Each statement's machine theme at the event's last run: what new themes continue (their ids,
        so the editors' decisions stay with them). Kept with the event's state, not its outputs, so a run
        with ``--out`` or after ``processed/`` was deleted still continues them."""
        return self.raw / "theme_identity.parquet"

    @property
    def identity_reference(self) -> Path:
        """What theme ids continue from: ``theme_identity``, or the output folder's clusters for events
        last run by an earlier release."""
        return self.theme_identity if self.theme_identity.exists() else self.clusters

    @property
    def processed(self) -> Path:
        return self.out if self.out is not None else self.root / "processed" / self.event

    # the data catalog: one name per output
    @property
    def notes(self) -> Path:
        return self.processed / "notes.parquet"

    @property
    def statements(self) -> Path:
        return self.processed / "statements.parquet"

    @property
    def themes(self) -> Path:
        return self.processed / "themes.parquet"

    @property
    def review_themes(self) -> Path:
        """Every theme with the editors' decisions applied, the off-topic ones included: what the review
        pages show (the exported themes leave the off-topic ones out)."""
        return self.processed / "review_themes.parquet"

    @property
    def clusters(self) -> Path:
        """The machine's theme per statement, before editors: the reference for theme identity."""
        return self.processed / "clusters.parquet"

    @property
    def machine_themes(self) -> Path:
        return self.processed / "machine_themes.parquet"

    @property
    def groups(self) -> Path:
        """Fingerprints of each topic x question's input at the last run (incremental re-clustering)."""
        return self.processed / "groups.json"

    @property
    def embedding_cache(self) -> Path:
        """Shared by every generation and every ``out`` of the event: a run embeds only what is new."""
        return self.root / "cache" / self.event / "embeddings"

    @property
    def generations(self) -> Path:
        """Where the output generations live, beside the output folder (a link to the current one)."""
        return self.processed.with_name(f".{self.processed.name}.generations")

    def generation(self) -> Generation:
        """A new generation of the outputs (``Generation``)."""
        return Generation(self)

    @property
    def agreement(self) -> Path:
        """How much the editors changed of the machine's themes (``pipeline.agreement``)."""
        return self.processed / "agreement.json"

    @property
    def suggestions(self) -> Path:
        """Merges and assignments offered to editors (``pipeline.suggestions``)."""
        return self.processed / "suggestions.json"

    @property
    def paper_md(self) -> Path:
        return self.processed / "paper.md"

    @property
    def paper_html(self) -> Path:
        return self.processed / "paper.html"

    @property
    def polls(self) -> Path:
        """The live polls of the event folder's ``polls/`` as the last run read them (``pipeline.polls``)."""
        return self.processed / "polls.parquet"

    @property
    def cross_cutting(self) -> Path:
        """Themes raised under several topics (``pipeline.crosscutting``), with ``cross_cutting.csv``."""
        return self.processed / "cross_cutting.parquet"

    @property
    def paper_docx(self) -> Path:
        return self.processed / "paper.docx"

    @property
    def paper_pdf(self) -> Path:
        return self.processed / "paper.pdf"

    def upload_path(self, sha256: str, suffix: str) -> Path:
        """Where an upload's bytes are kept, named by their SHA-256."""
        return self.uploads / f"{sha256}{suffix.lower()}"

    def current_notes(self, signature: str) -> Path:
        """The current notes as read from the uploads, for the manifest state and event definition
        ``signature`` names, so a run need not parse every upload again."""
        return self.raw / "current" / f"notes-{signature}.parquet"

    @contextmanager
    def run_lock(self, timeout: float = 3600) -> Iterator[None]:
        """One pipeline run per event at a time: overlapping runs never both write; the later waits."""
        self.raw.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.raw / ".run.lock"), timeout=timeout):
            yield

    @contextmanager
    def lock(self, timeout: float = 600) -> Iterator[None]:
        """One writer per event at a time (ingest, runs); other processes wait their turn."""
        self.raw.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.raw / ".lock"), timeout=timeout):
            yield


# --------------------------------------------------------------------------- atomic writes
_SYNCED = contextvars.ContextVar("harvest_synced_writes", default=True)


@contextmanager
def unsynced_writes() -> Iterator[None]:
    """Writes in this block (this thread's) replace files atomically but skip the fsync: for outputs that
    any publish makes again from the database (after an editor's action), where a power cut costs one
    publish, not data, and nine fsyncs would be most of the action's time."""
    token = _SYNCED.set(False)
    try:
        yield
    finally:
        _SYNCED.reset(token)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` in one rename.

    A crash mid-write leaves the previous ``target`` untouched and at most a stray temp file.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if _SYNCED.get():
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files of writes that never finished; call only while holding the event's run lock."""
    if folder.is_dir():
        for stray in folder.rglob(".*.tmp"):
            stray.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: Path, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def shard_name(keys: Iterable[str]) -> str:
    """The name of an append-only cache's shard holding ``keys``: the same keys, the same shard, so a
    write repeated after a crash replaces its own shard instead of adding a second."""
    return hashlib.sha256("".join(keys).encode()).hexdigest()[:16]


class TextShards:
    """Values worked out from texts (a parse's findings), kept on disk so a new process works out only
    texts no run has seen. Append-only, like the embedding cache: each ``add`` writes one JSON shard
    (text key -> value) and opening reads them all; a damaged shard is set aside and its texts are
    worked out again. ``decode`` turns a stored value back into the caller's (and raises ValueError or
    TypeError on one of another shape)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._values: dict[str, Any] = {}
        for shard in sorted(self.folder.glob("*.json")):
            try:
                stored = json.loads(shard.read_text(encoding="utf-8"))
                self._values.update({key: self.decode(value) for key, value in stored.items()})
            except (ValueError, TypeError, AttributeError) as exc:
                set_aside(shard, exc)

    def decode(self, value: Any) -> Any:
        return value

    def get(self, text: str) -> Any:
        """The value kept for ``text``, or None."""
        return self._values.get(text_shard_key(text))

    def add(self, found: dict[str, Any]) -> None:
        """Keep the values of ``found`` (text -> value) in one more shard."""
        if not found:
            return
        stored = {text_shard_key(text): value for text, value in found.items()}
        write_text(self.folder / f"{shard_name(stored)}.json", json.dumps(stored))
        self._values.update(stored)


def text_shard_key(text: str) -> str:
    """A text's key in ``TextShards``: as written, since what a parse finds depends on case."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def set_aside(path: Path, problem: BaseException | str) -> Path:
    """Move a damaged file out of the way (``<name>.unreadable``), saying so; returns where it went.
    What it held is derived, so the step that made it makes it again."""
    aside = path.with_name(path.name + ".unreadable")
    os.replace(path, aside)
    log.warning("%s is unreadable (%s): set aside as %s, made again", path, problem, aside.name)
    return aside


def read_derived(path: Path, columns: list[str] | None = None) -> pd.DataFrame | None:
    """A derived parquet file, or None when it is missing or unreadable (then set aside, to be made
    again): a truncated or garbled cache never stops a run."""
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises many kinds for damaged files
        set_aside(path, exc)
        return None


def read_derived_json(path: Path) -> object | None:
    """``read_derived`` for a JSON file."""
    if not path.exists():
        return None
    try:
        loaded: object = json.loads(path.read_text(encoding="utf-8"))
        return loaded
    except (ValueError, UnicodeDecodeError) as exc:
        set_aside(path, exc)
        return None


#: The key of a derived parquet file's metadata that says what made it (``write_parquet``'s ``made_by``)
_MADE_BY = b"harvest.made_by"


def write_parquet(target: Path, frame: pd.DataFrame, made_by: str = "") -> None:
    """``frame`` as parquet, atomically, as ``DataFrame.to_parquet(index=False)`` writes it but for the
    frame's ``attrs`` (what a reader said of one file, not data to keep); ``made_by`` (the code and
    versions it was made with) is kept in the file's metadata, for ``made_by`` to read back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if made_by:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), _MADE_BY: made_by.encode()})
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)


def made_by(path: Path) -> str:
    """What made a derived parquet file (``write_parquet``), read from its footer; "" when not said."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except Exception:  # missing or damaged: read_derived sets it aside
        return ""
    return str(metadata.get(_MADE_BY, b"").decode())


def write_csv(target: Path, frame: pd.DataFrame) -> None:
    """``frame`` as CSV, written by Arrow's C++ writer: 8,727 statements in 0.011 s against pandas'
    0.084 s, a sixth of the publish of a re-run after one table. It quotes every text cell (pandas
    quotes only where needed); spreadsheets and CSV readers read the same values. The header is the
    one pandas writes."""
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([str(c) for c in frame.columns])
    table = pa.Table.from_pandas(frame, preserve_index=False)
    options = arrow_csv.WriteOptions(include_header=False, quoting_style="needed")
    with atomic_path(target) as tmp, tmp.open("wb") as out:
        out.write(header.getvalue().encode("utf-8"))
        arrow_csv.write_csv(table, out, options)


# --------------------------------------------------------------------------- output generations
class Generation:
    """The next set of outputs, written beside the current one and switched to in one step.

    ``Layout.processed`` is a symbolic link to the current generation's folder (``Layout.generations``).
    A new generation starts as hard links to the current one's files; writes replace files and never
    change them in place, so the current generation stays as it was. ``commit`` points the link at the
    new one with one rename: a reader sees one run's files or the next one's, never a mix, and a run
    that fails or is killed leaves the outputs as they were. Commit while holding ``Layout.lock``, so
    that two writers switch one after the other; the generation replaced stays for readers still in it,
    older ones are removed.

        with layout.generation() as new:
            write_parquet(new.layout.themes, themes)
            new.commit()
    """

    def __init__(self, layout: Layout) -> None:
        self.current = layout
        self.name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}"
        self.folder = layout.generations / self.name
        self.layout = Layout(layout.root, layout.event, out=self.folder)
        self.committed = False
        # held while the generation is made: a killed writer's folder is then told from a live one's
        self._building = FileLock(str(layout.generations / f"{self.name}.lock"))

    def __enter__(self) -> Generation:
        check_output_folder(self.current.processed)
        self.current.generations.mkdir(parents=True, exist_ok=True)
        self._building.acquire()
        self.folder.mkdir()
        source = self.current.processed
        if source.is_dir():
            _move_legacy_embeddings(source / "embeddings", self.current.embedding_cache)
            for path in source.rglob("*"):
                inside = path.relative_to(source)
                if path.is_file() and not path.name.endswith(".tmp") and inside.parts[0] != "embeddings":
                    _link_or_copy(path, self.folder / inside)
        return self

    def commit(self) -> None:
        """Make this generation the current one."""
        link = self.current.processed
        replaced = link.resolve() if link.is_symlink() else None
        staged_link = link.with_name(f".{link.name}.{self.name}.link")
        os.symlink(os.path.relpath(self.folder, link.parent), staged_link)
        if link.is_dir() and not link.is_symlink():  # an output folder of an earlier release
            replaced = self.current.generations / f"{self.name}-earlier"
            os.rename(link, replaced)
        os.replace(staged_link, link)
        self.committed = True
        self._remove_old(keep={self.folder, *([replaced] if replaced else [])})

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            shutil.rmtree(self.folder, ignore_errors=True)
        self._building.release()
        Path(self._building.lock_file).unlink(missing_ok=True)

    def _remove_old(self, keep: set[Path]) -> None:
        """Every generation but ``keep`` that no live writer is making (a killed run's included)."""
        for folder in self.current.generations.iterdir():
            if not folder.is_dir() or folder in keep:
                continue
            building = FileLock(str(folder.with_name(folder.name + ".lock")))
            try:
                building.acquire(timeout=0)
            except Timeout:
                continue  # another writer's generation, still being made
            try:
                shutil.rmtree(folder, ignore_errors=True)
            finally:
                building.release()
                Path(building.lock_file).unlink(missing_ok=True)


def check_output_folder(output: Path) -> None:
    """Raise ``FileExistsError`` for a folder that cannot hold the outputs. An output folder of an
    earlier release is taken over as the first generation, and later removed: never a folder Harvest
    did not write (``--out`` pointed at a folder of the user's)."""
    if output.is_symlink() or not output.is_dir() or not any(output.iterdir()):
        return
    if not any((output / name).exists() for name in ("statements.parquet", "notes.parquet", "groups.json")):
        raise FileExistsError(
            f"{output} is a folder Harvest did not write: name a new folder for the outputs, or one "
            "Harvest wrote"
        )


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def _move_legacy_embeddings(legacy: Path, cache: Path) -> None:
    """Earlier releases kept the embedding cache in the output folder: moved once, not made again."""
    if legacy.is_dir() and not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(legacy, cache, copy_function=_link_copy)


def _link_copy(source: str, target: str) -> None:
    _link_or_copy(Path(source), Path(target))


# --------------------------------------------------------------------------- manifest


class DamagedUpload(RuntimeError):
    """A stored upload is missing or its bytes no longer match their SHA-256: the notes it holds cannot
    be trusted. ``harvest doctor`` lists such uploads; ``--repair`` stops counting them."""


@dataclass
class Upload:
    """One file handed in. ``keys`` are the (table, round, topic, question) groups it holds: a later
    accepted upload with the same key supersedes this one for that key, unless that one ``adds`` its
    notes to the key's."""

    upload_id: str
    filename: str
    stored_as: str
    size: int
    received_at: str
    who: str
    via: str
    status: UploadStatus
    n_notes: int = 0
    keys: list[list[str | int]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    defaults: dict[str, str] = field(default_factory=dict)  # fields picked on the upload form
    link: str = ""  # the facilitators' upload link it came through (its id); '' = editor, CLI, event folder
    decided_by: str = ""  # the editor who accepted or discarded it while it was pending
    seq: int = 0  # place in arrival order (the manifest's order; later uploads win): records keep it
    adds: bool = False  # its notes join those of its groups instead of replacing them

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Upload:
        return cls(**{**data, "status": UploadStatus(data["status"])})


#: What reading a damaged manifest or record raises (garbled JSON, missing or mistyped fields).
_UNREADABLE_RECORD = (ValueError, KeyError, TypeError, UnicodeDecodeError)
_records_written: dict[Path, str] = {}  # each record's text as this process last wrote or checked it


#: Per (table, round, topic, question) group: the uploads holding its current notes (``current_keys``).
Owners = dict[tuple[str | int, ...], tuple[str, ...]]


class Manifest:
    """Every upload of an event in arrival order: ``manifest.json``, with a record per upload in
    ``records/`` from which it is rebuilt when it is lost or unreadable."""

    def __init__(self, uploads: list[Upload] | None = None) -> None:
        self.uploads = uploads or []
        self.rebuilt_from_records = False
        # current_keys as last worked out, and the uploads it was worked out from
        self._owners: tuple[list[tuple[str, str, bool]], Owners] = ([], {})

    @classmethod
    def read(cls, layout: Layout) -> tuple[Manifest | None, str]:
        """The manifest as written, or None and what is wrong with it ("missing", "unreadable (...)");
        nothing is repaired (``load`` does that)."""
        try:
            data = json.loads(layout.manifest.read_text(encoding="utf-8"))
            return cls([Upload.from_dict(u) for u in data["uploads"]]), ""
        except FileNotFoundError:
            return None, "missing"
        except _UNREADABLE_RECORD as exc:
            return None, f"unreadable ({exc})"

    @classmethod
    def load(cls, layout: Layout) -> Manifest:
        written, problem = cls.read(layout)
        if written is not None:
            return written
        if layout.manifest.exists():
            set_aside(layout.manifest, problem)
        manifest = cls(cls.read_records(layout))
        if manifest.uploads:
            log.warning(
                "%s was %s: rebuilt from %d upload records in %s",
                layout.manifest,
                problem,
                len(manifest.uploads),
                layout.records,
            )
            manifest.rebuilt_from_records = True
            manifest.save(layout)
        return manifest

    @staticmethod
    def read_records(layout: Layout) -> list[Upload]:
        """The uploads as their records hold them, in arrival order."""
        uploads = []
        for path in layout.records.glob("*.json"):
            try:
                uploads.append(Upload.from_dict(json.loads(path.read_text(encoding="utf-8"))))
            except _UNREADABLE_RECORD as exc:
                set_aside(path, exc)  # the manifest still holds it; the next save writes it again
        return sorted(uploads, key=lambda u: (u.seq, u.received_at, u.upload_id))

    def save(self, layout: Layout) -> None:
        """Write the manifest, and the record of every upload that changed (new, decided, re-sent)."""
        last = 0
        for upload in self.uploads:  # keep seq in list order, changing as few as possible
            if upload.seq <= last:
                upload.seq = last + 1
            last = upload.seq
        layout.records.mkdir(parents=True, exist_ok=True)
        # no ``indent``: Python's JSON encoder is C-fast only without it, and a million groups
        # pretty-printed took most of an ingest (the manifest has an upload a line); ``vars``, not
        # ``asdict``, which deep-copies every group first
        records = [json.dumps(vars(upload), ensure_ascii=False) for upload in self.uploads]
        for upload, record in zip(self.uploads, records, strict=True):
            path = layout.records / f"{upload.upload_id}.json"
            if _records_written.get(path) == record and path.exists():
                continue  # written by this process, as it is: a batch of uploads is not O(n²) reads
            if not path.exists() or path.read_text(encoding="utf-8") != record:
                write_text(path, record)
            _records_written[path] = record
        event = json.dumps(layout.event)
        write_text(
            layout.manifest, f'{{"event": {event}, "uploads": [\n  ' + ",\n  ".join(records) + "\n]}\n"
        )

    def stored_bytes(self, layout: Layout, upload: Upload) -> bytes:
        """An upload's bytes as stored, checked against the SHA-256 they are stored under."""
        path = layout.raw / upload.stored_as
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DamagedUpload(
                f"{path}: the stored copy of {upload.filename} is gone ({exc.strerror})"
            ) from None
        if hashlib.sha256(data).hexdigest() != Path(upload.stored_as).stem:
            raise DamagedUpload(
                f"{path}: the stored copy of {upload.filename} no longer matches its SHA-256 (the disk or "
                "someone changed it); run `harvest doctor` to see and repair the event's state"
            )
        return data

    def find(self, upload_id: str) -> Upload | None:
        return next((u for u in self.uploads if u.upload_id == upload_id), None)

    def accepted(self) -> list[Upload]:
        return [u for u in self.uploads if u.status == UploadStatus.ACCEPTED]

    def pending(self) -> list[Upload]:
        return [u for u in self.uploads if u.status == UploadStatus.PENDING]

    def current_keys(self) -> Owners:
        """For each (table, round, topic, question): the uploads that hold its current notes, in arrival
        order: the last that replaced the group's notes, and those that added to them since."""
        uploads = [(u.upload_id, str(u.status), u.adds) for u in self.uploads]
        done, owners = self._owners
        if uploads[: len(done)] != done:  # not only new uploads since: worked out anew
            done, owners = [], {}
        for upload in self.uploads[len(done) :]:  # manifest order is arrival order: later uploads win
            if upload.status != UploadStatus.ACCEPTED:
                continue
            for group in map(tuple, upload.keys):
                earlier = owners.get(group, ()) if upload.adds else ()
                owners[group] = (*earlier, upload.upload_id)
        self._owners = (uploads, owners)  # a batch of uploads adds to it, not O(uploads x groups)
        return dict(owners)
