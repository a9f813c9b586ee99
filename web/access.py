"""Who may do what for an event: facilitators' upload links (created, listed, revoked) and editors."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from pipeline import db
from web.common import EventSite, check_csrf, editor, harvest, redirect, render, site_of

router = APIRouter(prefix="/e/{event_id}/access")
Editor = Annotated[str, Depends(editor)]


def access_page(request: Request, site: EventSite, new_link: str = "") -> HTMLResponse:
    with db.session_scope(harvest(request).database) as session:
        links = db.list_upload_tokens(session, site.event.id)
        users = db.list_users(session)
    days = harvest(request).settings.access.upload_link_days
    return render(
        request, "access.html", site=site, links=links, users=users, new_link=new_link, link_days=days
    )


@router.get("", response_class=HTMLResponse)
def access(request: Request, event_id: str, user: Editor) -> HTMLResponse:
    return access_page(request, site_of(request, event_id))


@router.post("/links", dependencies=[Depends(check_csrf)])
def create_link(
    request: Request,
    event_id: str,
    user: Editor,
    label: Annotated[str, Form()] = "",
    tables: Annotated[str, Form()] = "",
    days: Annotated[int | None, Form(ge=1, le=365)] = None,
) -> HTMLResponse:
    site = site_of(request, event_id)
    days = days or harvest(request).settings.access.upload_link_days
    bound = [t for t in tables.replace(";", ",").split(",") if t.strip()] or None
    with db.session_scope(harvest(request).database) as session:
        secret = db.create_upload_token(session, event_id, label.strip(), timedelta(days=days), bound)
    return access_page(request, site, str(request.base_url).rstrip("/") + f"/u/{secret}")


@router.post("/links/{link_id}/revoke", dependencies=[Depends(check_csrf)])
def revoke_link(request: Request, event_id: str, link_id: int, user: Editor) -> Response:
    site_of(request, event_id)
    with db.session_scope(harvest(request).database) as session:
        known = any(r["id"] == link_id for r in db.list_upload_tokens(session, event_id))
        if known:
            db.revoke_upload_token(session, link_id)
    message = f"link {link_id} revoked" if known else f"Not done: no link {link_id} for this event"
    return redirect(f"/e/{event_id}/access", message, request)


@router.post("/editors/remove", dependencies=[Depends(check_csrf)])
def remove_editor(request: Request, event_id: str, user: Editor, name: Annotated[str, Form()]) -> Response:
    site_of(request, event_id)
    with db.session_scope(harvest(request).database) as session:
        removed = db.remove_user(session, name)
    message = f"editor {name} removed and signed out" if removed else f"Not done: no editor {name!r}"
    return redirect(f"/e/{event_id}/access", message, request)
