"""``harvest doctor``: check an event's state and repair what can be repaired, saying what it did.

What is checked, and what ``repair`` does about it:

- the manifest: readable, and every upload in it has its record (``records/``); repair rebuilds a lost
  or damaged manifest from the records, and writes missing records;
- every stored upload still holds the bytes it was stored under (SHA-256); repair stops counting a
  damaged one (it becomes rejected, with the reason) so that runs go on without its notes;
- every derived file (kept notes, statements, clusters, machine themes, fingerprints, theme identity,
  exports, embedding shards) is readable; repair sets damaged ones aside, and the next run makes them
  again;
- the review database opens, and every editor's decision matches a theme (one that matches none is
  reported: its theme is gone, e.g. after the notes changed; nothing is deleted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.schema import UploadStatus
from pipeline.store import DamagedUpload, Layout, Manifest, Upload, set_aside


class Health(StrEnum):
    OK = "ok"
    PROBLEM = "problem"  # found, not repaired (check only, or nothing to repair it with)
    REPAIRED = "repaired"


@dataclass(frozen=True)
class Finding:
    health: Health
    what: str

    def __str__(self) -> str:
        return f"{self.health:8} {self.what}"


def _manifest(layout: Layout, repair: bool) -> tuple[list[Finding], Manifest]:
    findings = []
    _, problem = Manifest.read(layout)
    records = Manifest.read_records(layout)
    if problem and not records:
        if layout.manifest.exists():
            findings.append(Finding(Health.PROBLEM, f"{layout.manifest} is {problem} and no upload records"))
        return findings, Manifest()
    if problem and not repair:
        findings.append(
            Finding(
                Health.PROBLEM, f"{layout.manifest} is {problem}: {len(records)} upload records to rebuild it"
            )
        )
        return findings, Manifest(records)
    manifest = Manifest.load(layout)  # rebuilds from the records when it must
    if problem:
        findings.append(
            Finding(
                Health.REPAIRED,
                f"{layout.manifest} was {problem}: rebuilt from {len(records)} upload records",
            )
        )
    recorded = {u.upload_id for u in records}
    unrecorded = [u.upload_id for u in manifest.uploads if u.upload_id not in recorded]
    if unrecorded:
        if repair:
            manifest.save(layout)
        findings.append(
            Finding(
                Health.REPAIRED if repair else Health.PROBLEM,
                f"{len(unrecorded)} uploads without a record in {layout.records}"
                + (": written" if repair else ""),
            )
        )
    if not findings:
        findings.append(
            Finding(Health.OK, f"manifest: {len(manifest.uploads)} uploads, each with its record")
        )
    return findings, manifest


def _uploads(layout: Layout, manifest: Manifest, repair: bool) -> list[Finding]:
    findings = []
    counted = [u for u in manifest.uploads if u.status in (UploadStatus.ACCEPTED, UploadStatus.PENDING)]
    damaged: list[tuple[Upload, str]] = []
    for upload in counted:
        try:
            manifest.stored_bytes(layout, upload)
        except DamagedUpload as exc:
            damaged.append((upload, str(exc)))
    for upload, problem in damaged:
        if repair:
            upload.status = UploadStatus.REJECTED
            upload.errors = [*upload.errors, f"stored copy damaged, no longer counted: {problem}"]
        findings.append(
            Finding(
                Health.REPAIRED if repair else Health.PROBLEM,
                problem + ("; its notes no longer count: hand the file in again" if repair else ""),
            )
        )
    if damaged and repair:
        manifest.save(layout)
    stored = {str(Path(u.stored_as).name) for u in manifest.uploads}
    strays = sorted(p.name for p in layout.uploads.glob("*") if p.name not in stored)
    if strays:
        findings.append(
            Finding(
                Health.PROBLEM,
                f"{len(strays)} files in {layout.uploads} belong to no upload: {', '.join(strays[:5])}",
            )
        )
    if not damaged:
        findings.append(Finding(Health.OK, f"{len(counted)} counted uploads match their SHA-256"))
    return findings


def _derived(layout: Layout, repair: bool) -> list[Finding]:
    parquets = [
        layout.notes,
        layout.statements,
        layout.themes,
        layout.review_themes,
        layout.clusters,
        layout.machine_themes,
        layout.theme_identity,
        *sorted((layout.raw / "current").glob("*.parquet")),
    ]
    findings = []
    checked = 0
    for path in [p for p in parquets if p.exists()]:
        checked += 1
        try:
            pd.read_parquet(path)
        except Exception as exc:
            findings.append(_damaged(path, exc, repair))
    for path in [layout.groups] if layout.groups.exists() else []:
        checked += 1
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            findings.append(_damaged(path, exc, repair))
    for shard in sorted(layout.embedding_cache.glob("*/*.npz")):
        checked += 1
        try:
            with np.load(shard) as data:
                data["keys"], data["vectors"]
        except Exception as exc:
            findings.append(_damaged(shard, exc, repair))
    if not findings:
        findings.append(Finding(Health.OK, f"{checked} derived files readable"))
    return findings


def _damaged(path: Path, problem: BaseException, repair: bool) -> Finding:
    if repair:
        aside = set_aside(path, problem)
        return Finding(
            Health.REPAIRED,
            f"{path} unreadable ({problem}): set aside as {aside.name}, made again by the next run",
        )
    return Finding(Health.PROBLEM, f"{path} unreadable ({problem}): derived, so repair sets it aside")


def _decisions(layout: Layout, event_id: str, database_url: str) -> list[Finding]:
    from pipeline import db

    try:
        with db.session_scope(database_url) as session:
            state = db.load_state(session, event_id)
    except Exception as exc:
        return [Finding(Health.PROBLEM, f"the review database ({database_url}) cannot be read: {exc}")]
    if not len(state.themes):
        return [Finding(Health.OK, "review database readable: no decisions yet")]
    reference = layout.identity_reference
    if not reference.exists():
        return [Finding(Health.OK, f"review database readable: {len(state.themes)} decisions, no run yet")]
    lost = state.unmatched(pd.read_parquet(reference, columns=["theme_id"])["theme_id"])
    if lost:
        return [
            Finding(
                Health.PROBLEM,
                f"{len(lost)} editors' decisions match no theme of the last run (their themes are gone, e.g. "
                f"after the notes changed; see the audit log): {', '.join(lost[:5])}",
            )
        ]
    return [Finding(Health.OK, f"{len(state.themes)} editors' decisions, each on a theme of the last run")]


def examine(layout: Layout, event_id: str, database_url: str, repair: bool = False) -> list[Finding]:
    """Every finding about one event's state, in the order above; with ``repair``, repaired first."""
    findings, manifest = _manifest(layout, repair)
    return [
        *findings,
        *_uploads(layout, manifest, repair),
        *_derived(layout, repair),
        *_decisions(layout, event_id, database_url),
    ]
