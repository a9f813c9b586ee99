"""The record and what leaves the app: the audit log with undo, and the published paper."""

import json
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from pipeline import db
from web.common import check_csrf, editor, harvest, local_path, outputs, redirect, render, site_of

#: The paper quotes what anyone typed: no script at all, and a sandbox (an origin of its own), so even
#: markup that got through could not act as the signed-in editor.
PAPER_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'; sandbox"
)

router = APIRouter(prefix="/e/{event_id}")
Editor = Annotated[str, Depends(editor)]


@dataclass(frozen=True)
class Change:
    """One field an action changed, as an editor reads it."""

    what: str  # a theme's label, or a statement's text
    field: str
    before: str
    after: str
    link: str = ""  # the question page, at the theme


@dataclass(frozen=True)
class Entry:
    id: int
    at: str
    who: str
    action: str
    summary: str
    undone: bool
    questions: list[str]  # "topic/question" the action touched
    changes: list[Change]


def _question_of(theme_id: str) -> str:
    topic, question, *_ = [*theme_id.split("."), "", ""]
    return f"{topic}/{question}"


def readable(entry: db.AuditEntry, label_of: dict[str, str], text_of: dict[str, str], base: str) -> Entry:
    """An audit entry with labels for theme ids and a field-by-field diff of its rows."""
    before, after = json.loads(entry.before), json.loads(entry.after)

    def name(theme_id: str) -> str:
        return label_of.get(theme_id) or theme_id or "unassigned"

    changes, questions = [], set()
    for theme_id, old in before.get("themes", {}).items():
        new = after.get("themes", {}).get(theme_id) or {}
        questions.add(_question_of(theme_id))
        for field in ("label", "recommendation", "status", "pinned_rank", "merged_into"):
            was, now = (old or {}).get(field), new.get(field)
            if was != now:
                was_shown, now_shown = (
                    name(v) if field == "merged_into" and v else ("" if v is None else str(v))
                    for v in (was, now)
                )
                link = f"{base}/review/{_question_of(theme_id)}#{theme_id}"
                changes.append(Change(name(theme_id), field.replace("_", " "), was_shown, now_shown, link))

    def placed(value: str | dict[str, str] | None) -> tuple[str, str]:
        """A placement as an entry keeps it (``db._placement_value``): where it reads, and its question."""
        if value is None:
            return "as the machine placed it", ""
        if isinstance(value, dict):  # moved to another question
            question = f"{value['topic']}/{value['question']}"
            return f"{name(value['theme_id'])} in {question}", question
        return name(value), _question_of(value) if value else ""

    for statement_id, old_place in before.get("placements", {}).items():
        new_place = after.get("placements", {}).get(statement_id)
        if old_place != new_place:
            (was, was_in), (now, now_in) = placed(old_place), placed(new_place)
            changes.append(Change(text_of.get(statement_id, statement_id), "theme", was, now))
            questions |= {q for q in (was_in, now_in) if q}
    for original, old_translation in before.get("translations", {}).items():
        new_translation = after.get("translations", {}).get(original)
        if old_translation != new_translation:
            changes.append(Change(original, "translation", old_translation or "", new_translation or ""))
    return Entry(
        entry.id,
        entry.at.strftime("%Y-%m-%d %H:%M:%S"),
        entry.who,
        entry.action,
        entry.summary,
        entry.undone,
        sorted(questions),
        changes,
    )


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, event_id: str, user: Editor) -> HTMLResponse:
    """The audit log, newest first, readable: labels, diffs; filtered by editor, action and question."""
    site = site_of(request, event_id)
    with db.session_scope(harvest(request).database) as session:
        entries = db.audit_log(session, event_id)
    label_of, text_of = {}, {}
    if site.layout.review_themes.exists():
        statements, themes = outputs(site)
        label_of = dict(zip(themes["theme_id"], themes["label"], strict=True))
        text_of = dict(zip(statements["statement_id"], statements["text"], strict=True))
    shown = [readable(e, label_of, text_of, f"/e/{event_id}") for e in entries]
    chosen = {k: request.query_params.get(k, "") for k in ("who", "action", "question")}
    kept = [
        e
        for e in shown
        if (not chosen["who"] or e.who == chosen["who"])
        and (not chosen["action"] or e.action == chosen["action"])
        and (not chosen["question"] or chosen["question"] in e.questions)
    ]
    return render(
        request,
        "audit.html",
        site=site,
        entries=kept,
        chosen=chosen,
        editors=sorted({e.who for e in shown}),
        actions=sorted({e.action for e in shown}),
        questions=[f"{t}/{q}" for t, q in site.event.questions()],
    )


@router.post("/audit/{entry_id}/undo", dependencies=[Depends(check_csrf)])
async def undo(request: Request, event_id: str, entry_id: int, user: Editor) -> Response:
    """Undo one audited action; back to the audit log, or to the page whose Undo button was used."""
    site = site_of(request, event_id)
    back = local_path(str((await request.form()).get("next") or f"/e/{event_id}/audit"))
    try:
        with db.session_scope(harvest(request).database) as session:
            db.undo(session, event_id, entry_id, user)
    except (KeyError, ValueError) as exc:
        return redirect(back, f"Not undone: {exc}", request)
    await run_in_threadpool(site.publish.after_change)
    return redirect(back, f"Undone #{entry_id}", request)


@router.get("/paper")
def paper(request: Request, event_id: str, user: Editor) -> FileResponse:
    site = site_of(request, event_id)
    site.publish.settle()
    if not site.layout.paper_html.exists():
        raise HTTPException(404, "no paper yet: run the pipeline first")
    return FileResponse(
        site.layout.paper_html, media_type="text/html", headers={"Content-Security-Policy": PAPER_POLICY}
    )
