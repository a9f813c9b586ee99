"""Facilitators: an upload link (``/u/<token>``) lets a browser hand in notes for one event, nothing else.
Editors may hand in notes too, without a link's limits."""

import hashlib
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pipeline import db
from pipeline.ingest import IngestResult, ingest, notes_already_in, withdraw
from pipeline.publish import refresh_after_ingest
from pipeline.readers import SUPPORTED_SUFFIXES
from pipeline.readers.text import pasted_upload
from pipeline.schema import UploadStatus
from pipeline.store import Manifest, Upload
from web.common import EventSite, check_csrf, harvest, local_path, redirect, render, signed_in, site_of

MAX_FILES_PER_UPLOAD = 10
MAX_PASTE_CHARS = 50_000

router = APIRouter()


def may_upload(request: Request, event_id: str) -> db.LinkGrant | None:
    """None for a signed-in editor (no limits), the link's grant for a facilitator, else 403."""
    if signed_in(request):
        return None
    links = request.session.get("upload_links", [])
    if links:
        with db.session_scope(harvest(request).database) as session:
            grant = db.link_grant(session, links, event_id)
        if grant is not None:
            return grant
    raise HTTPException(403, "open the upload link your organiser gave you (links expire and can be revoked)")


def paste_name(defaults: dict[str, str], text: str = "", adds: bool = False, kind: str = ".txt") -> str:
    """Pasted notes become an upload (of ``kind``, ``readers.text.pasted_upload``'s) named after their
    table, round and question: a corrected paste for the same table and question supersedes the earlier
    one. A paste that adds to them is named after its text too, so its notes' ids (file name and line)
    are its own."""
    parts = [defaults.get(k, "") for k in ("table", "round", "topic", "question")]
    if adds:
        parts.append(hashlib.sha256(text.encode()).hexdigest()[:8])
    return "pasted-" + "-".join(p for p in parts if p) + kind


#: What the form's "mode" asks when notes of a table, round and question are in already
MODES = {"add": True, "replace": False}


def my_hand_ins(site: EventSite, grant: db.LinkGrant | None, user: str | None) -> list[Upload]:
    """What this browser handed in, newest first: through its upload link, or as this editor."""
    uploads = Manifest.load(site.layout).uploads
    mine = [u for u in uploads if (u.link == grant.link if grant else u.who == user and u.via == "web")]
    return mine[::-1]


@router.get("/u/{token}")
def upload_link(request: Request, token: str) -> Response:
    with db.session_scope(harvest(request).database) as session:
        event_id = db.token_event(session, token)
    if event_id is None or event_id not in harvest(request).sites:
        raise HTTPException(403, "this upload link is not valid; ask your organiser for a new one")
    # the link itself (its hash) is kept, not the event: revoking the link ends this browser's right too
    granted = set(request.session.get("upload_links", []))
    request.session["upload_links"] = sorted(granted | {db.token_digest(token)})
    return redirect(f"/e/{event_id}/upload")


def table_choices(site: EventSite, grant: db.LinkGrant | None) -> list[str]:
    """The tables the form offers: the link's own, else every table ``event.yaml`` lists."""
    if grant is not None and grant.tables:
        return sorted(grant.tables)
    return [table for topic in site.event.topics.values() for table in topic.expected_tables]


@router.get("/e/{event_id}/upload", response_class=HTMLResponse)
def upload_page(request: Request, event_id: str) -> HTMLResponse:
    grant = may_upload(request, event_id)
    site = site_of(request, event_id)
    return _upload_page(request, site, grant, form={}, results=[])


def _upload_page(
    request: Request, site: EventSite, grant: db.LinkGrant | None, status_code: int = 200, **context: object
) -> HTMLResponse:
    """The upload page, with the tables to pick from and this browser's hand-ins."""
    return render(
        request,
        "upload.html",
        status_code=status_code,
        site=site,
        tables=table_choices(site, grant),
        mine=my_hand_ins(site, grant, signed_in(request)),
        note_suffixes=",".join(SUPPORTED_SUFFIXES),
        **context,
    )


@router.post("/e/{event_id}/upload", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
async def upload(
    request: Request,
    event_id: str,
    topic_question: Annotated[str, Form()] = "",
    table: Annotated[str, Form()] = "",
    round: Annotated[str, Form()] = "1",
    facilitator: Annotated[str, Form()] = "",
    text: Annotated[str, Form()] = "",
    text_en: Annotated[str, Form()] = "",
    mode: Annotated[str, Form()] = "",
    files: Annotated[list[UploadFile] | None, File()] = None,
) -> HTMLResponse:
    grant = may_upload(request, event_id)
    site, settings = site_of(request, event_id), harvest(request).settings
    topic, _, question = topic_question.partition("/")
    form = {
        "topic_question": topic_question,
        "table": table.strip(),
        "round": round.strip(),
        "facilitator": facilitator.strip(),
        "text": text,
        "text_en": text_en,
        "mode": mode if mode in MODES else "",
    }
    adds = MODES.get(mode, False)
    defaults = {
        k: v
        for k, v in {
            "topic": topic,
            "question": question,
            "table": form["table"],
            "round": form["round"],
            "facilitator": form["facilitator"],
        }.items()
        if v
    }
    field_errors = {}
    uploads: list[tuple[str, bytes]] = []
    real_files = [f for f in files or [] if f.filename]
    if len(real_files) > MAX_FILES_PER_UPLOAD:
        field_errors["files"] = f"at most {MAX_FILES_PER_UPLOAD} files at a time"
    for file in real_files[:MAX_FILES_PER_UPLOAD]:
        data = await file.read(settings.max_upload_bytes + 1)  # never read more than the limit
        uploads.append((file.filename or "upload", data))
    if text.strip():
        if len(text) > MAX_PASTE_CHARS:
            field_errors["text"] = f"at most {MAX_PASTE_CHARS:,} characters; upload a file instead"
        elif not form["table"]:
            field_errors["table"] = "which table are these notes from?"
        elif not topic_question:  # never a default: a paste filed under the wrong question replaces its notes
            field_errors["topic_question"] = "which question do these notes answer?"
        else:
            try:
                kind, pasted = pasted_upload(text, text_en)
                uploads.append((paste_name(defaults, text, adds, kind), pasted))
            except ValueError as exc:
                field_errors["text_en"] = str(exc)
    elif text_en.strip():
        field_errors["text_en"] = "translations need the notes they translate, pasted beside them"
    if not uploads and not field_errors:
        field_errors["text"] = "paste notes or choose a file"
    already: list[str] = []
    if not field_errors and not form["mode"]:  # replacing notes is never a silent default
        found = await run_in_threadpool(
            notes_already_in,
            site.layout,
            site.event,
            uploads,
            defaults,
            harvest(request).reader,
            settings.max_upload_bytes,
        )
        already = [f"{n} notes of table {k[0]}, round {k[1]}, for {k[2]}/{k[3]}" for k, n in found.items()]
        if already:
            field_errors["mode"] = "these notes are in already: add yours to them, or replace them?"
    if field_errors:
        return _upload_page(
            request, site, grant, 422, form=form, results=[], field_errors=field_errors, already=already
        )
    who = signed_in(request) or f"facilitator {form['facilitator'] or form['table']}".strip()

    def hand_in() -> tuple[list[IngestResult], pd.DataFrame | None]:
        results = ingest(
            site.layout,
            site.event,
            uploads,
            who=who,
            via="web",
            max_bytes=settings.max_upload_bytes,
            defaults=defaults,
            reader=harvest(request).reader,
            link=grant.link if grant else "",
            tables=grant.tables if grant else None,
            adds=adds,
        )
        accepted = any(r.status == UploadStatus.ACCEPTED for r in results)
        return results, refresh_after_ingest(site.layout, site.event, settings) if accepted else None

    # parsing and the statements step run in a worker thread: other requests go on meanwhile
    results, statements = await run_in_threadpool(hand_in)
    shown = []
    for r in results:
        mine = statements[statements.upload_id == r.upload_id] if statements is not None else pd.DataFrame()
        shown.append(
            {"result": r, "statements": mine.to_dict("records"), "pasted": r.filename.startswith("pasted-")}
        )
    ok = all(r.ok for r in results)
    return _upload_page(
        request,
        site,
        grant,
        200 if ok else 422,
        # after a hand-in the question is chosen again: the next paste is often for another one, and the
        # same question again would replace these notes
        form=form if not ok else {**form, "text": "", "text_en": "", "topic_question": "", "mode": ""},
        results=shown,
    )


@router.post("/e/{event_id}/uploads/{upload_id}/withdraw", dependencies=[Depends(check_csrf)])
async def withdraw_upload(request: Request, event_id: str, upload_id: str) -> Response:
    """Take back a hand-in: a facilitator what came through their link, an editor anything."""
    grant = may_upload(request, event_id)
    site, settings = site_of(request, event_id), harvest(request).settings
    who = signed_in(request) or "facilitator"
    back = local_path(str((await request.form()).get("next") or f"/e/{event_id}/upload"))
    try:
        upload = await run_in_threadpool(
            withdraw, site.layout, site.event, upload_id, who, grant.link if grant else None
        )
    except ValueError as exc:
        return redirect(back, f"Not withdrawn: {exc}", request)
    if site.layout.statements.exists():
        await run_in_threadpool(refresh_after_ingest, site.layout, site.event, settings)
    return redirect(back, f"Withdrawn: {upload.filename} ({upload.n_notes} notes) counts no more", request)
