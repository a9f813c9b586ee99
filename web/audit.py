"""The record and what leaves the app: the audit log with undo, and the published paper."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from pipeline import db
from pipeline.publish import publish_decisions
from web.common import check_csrf, editor, harvest, redirect, render, site_of

#: The paper quotes what anyone typed: no script at all, and a sandbox (an origin of its own), so even
#: markup that got through could not act as the signed-in editor.
PAPER_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'; sandbox"
)

router = APIRouter(prefix="/e/{event_id}")
Editor = Annotated[str, Depends(editor)]


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, event_id: str, user: Editor) -> HTMLResponse:
    site = site_of(request, event_id)
    with db.session_scope(harvest(request).database) as session:
        entries = db.audit_log(session, event_id)
    return render(request, "audit.html", site=site, entries=entries)


@router.post("/audit/{entry_id}/undo", dependencies=[Depends(check_csrf)])
def undo(request: Request, event_id: str, entry_id: int, user: Editor) -> Response:
    site = site_of(request, event_id)
    try:
        with db.session_scope(harvest(request).database) as session:
            db.undo(session, event_id, entry_id, user)
    except (KeyError, ValueError) as exc:
        return redirect(f"/e/{event_id}/audit", f"Not undone: {exc}", request)
    publish_decisions(site.layout, site.event, harvest(request).settings)
    return redirect(f"/e/{event_id}/audit", f"Undone #{entry_id}", request)


@router.get("/paper")
def paper(request: Request, event_id: str, user: Editor) -> FileResponse:
    site = site_of(request, event_id)
    if not site.layout.paper_html.exists():
        raise HTTPException(404, "no paper yet: run the pipeline first")
    return FileResponse(
        site.layout.paper_html, media_type="text/html", headers={"Content-Security-Policy": PAPER_POLICY}
    )
