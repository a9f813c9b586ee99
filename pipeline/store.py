"""The data store: where every file lives, atomic writes, and the upload manifest.

Layout under the data root (``./data``, ``--data-dir`` or ``HARVEST_DATA``)::

    raw/<event>/uploads/<sha256><suffix>   every upload, byte for byte, addressed by content
    raw/<event>/manifest.json              who handed in what, when, and whether it was accepted
    processed/<event>/                     everything derived: notes, statements, themes, paper
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from filelock import FileLock

from pipeline.schema import UploadStatus


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
        return self.processed / "embeddings"

    @property
    def paper_md(self) -> Path:
        return self.processed / "paper.md"

    @property
    def paper_html(self) -> Path:
        return self.processed / "paper.html"

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


def write_parquet(target: Path, frame: pd.DataFrame) -> None:
    with atomic_path(target) as tmp:
        frame.to_parquet(tmp, index=False)


def write_csv(target: Path, frame: pd.DataFrame) -> None:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)


# --------------------------------------------------------------------------- manifest


@dataclass
class Upload:
    """One file handed in. ``keys`` are the (table, round, topic, question) groups it holds: a later
    accepted upload with the same key supersedes this one for that key."""

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


class Manifest:
    def __init__(self, uploads: list[Upload] | None = None) -> None:
        self.uploads = uploads or []

    @classmethod
    def load(cls, layout: Layout) -> Manifest:
        if not layout.manifest.exists():
            return cls()
        data = json.loads(layout.manifest.read_text(encoding="utf-8"))
        return cls([Upload(**{**u, "status": UploadStatus(u["status"])}) for u in data["uploads"]])

    def save(self, layout: Layout) -> None:
        payload = {"event": layout.event, "uploads": [asdict(u) for u in self.uploads]}
        write_text(layout.manifest, json.dumps(payload, indent=1, ensure_ascii=False))

    def find(self, upload_id: str) -> Upload | None:
        return next((u for u in self.uploads if u.upload_id == upload_id), None)

    def accepted(self) -> list[Upload]:
        return [u for u in self.uploads if u.status == UploadStatus.ACCEPTED]

    def pending(self) -> list[Upload]:
        return [u for u in self.uploads if u.status == UploadStatus.PENDING]

    def current_keys(self) -> dict[tuple[str | int, ...], str]:
        """For each (table, round, topic, question): the upload that holds its current notes."""
        owner: dict[tuple[str | int, ...], str] = {}
        for upload in self.accepted():  # manifest order is arrival order: later uploads win
            for key in upload.keys:
                owner[tuple(key)] = upload.upload_id
        return owner
