"""What every area of the web app shares: the app's state, page rendering, and the checks routes
depend on (CSRF, signed-in editor, upload link, known event)."""

# no `from __future__ import annotations`: FastAPI reads the dependencies' annotations at def time

import secrets
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from pipeline import db
from pipeline.config import Settings
from pipeline.event import Event
from pipeline.publish import PublishWorker, SharedPublish
from pipeline.readers.guarded import GuardedReader
from pipeline.store import Layout

HERE = Path(__file__).parent


@dataclass
class EventSite:
    event: Event
    folder: Path
    layout: Layout
    settings: Settings
    #: the worker process the editors' actions are published in (``SharedPublish``)
    publishing: PublishWorker | None = None
    publish: SharedPublish = field(init=False)  # after an editor's action: export and paper again

    def __post_init__(self) -> None:
        self.publish = SharedPublish(self.layout, self.event, self.settings, self.publishing)


@dataclass
class Harvest:
    """The app's state (``app.state.harvest``): settings, the events it serves, and its worker."""

    settings: Settings
    sites: dict[str, EventSite]
    reader: GuardedReader = field(default_factory=GuardedReader)  # parses uploads with time/memory limits
    templates: Jinja2Templates = field(default_factory=lambda: Jinja2Templates(directory=HERE / "templates"))
    #: Loads the models and Prefect when the app starts (``create_app(warm=True)``); a re-run waits for it
    warming: threading.Thread | None = None

    @property
    def database(self) -> str:
        return self.settings.database_url


def harvest(request: Request) -> Harvest:
    return request.app.state.harvest


def local_path(target: str) -> str:
    """``target`` if it is a path on this site, else "/": "//evil.example", "/\\evil.example",
    "https://evil.example" and the like would send a signed-in editor elsewhere."""
    parts = urlsplit(target)
    on_site = (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and "\\" not in target
        and not parts.scheme
        and not parts.netloc
        and not any(ord(c) < 32 for c in target)
    )
    return target if on_site else "/"


def signed_in(request: Request) -> str | None:
    """The editor of this browser's session, while the database still holds that session."""
    if not hasattr(request.state, "editor"):
        secret = request.session.get("editor_session")
        request.state.editor = None
        if secret:
            with db.session_scope(harvest(request).database) as session:
                age = timedelta(hours=harvest(request).settings.access.session_hours)
                request.state.editor = db.session_user(session, secret, age)
            if request.state.editor is None:
                request.session.pop("editor_session", None)
    return request.state.editor


def render(request: Request, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
    if "csrf" not in request.session:
        request.session["csrf"] = secrets.token_urlsafe(32)
    flash = request.session.pop("flash", None)
    undo = request.session.pop("flash_undo", None)
    return harvest(request).templates.TemplateResponse(
        request,
        name,
        {
            "csrf": request.session["csrf"],
            "user": signed_in(request),
            "flash": flash,
            "flash_undo": undo,
            "sites": harvest(request).sites,
            **context,
        },
        status_code=status_code,
    )


def redirect(
    url: str, flash: str | None = None, request: Request | None = None, undo: str | None = None
) -> RedirectResponse:
    """A "see other" to ``url``; ``flash`` is shown on the page it leads to, with an Undo button posting to
    ``undo`` (an audit entry's undo route) if given."""
    if flash and request is not None:
        request.session["flash"] = flash
        if undo:
            request.session["flash_undo"] = {"url": undo, "back": url}
    return RedirectResponse(url, status_code=303)


async def check_csrf(request: Request) -> None:
    form = await request.form()
    sent = form.get("csrf")
    if not sent or not secrets.compare_digest(str(sent), request.session.get("csrf", "")):
        raise HTTPException(403, "the form has expired or did not come from this site; reload the page")


def site_of(request: Request, event_id: str) -> EventSite:
    sites = harvest(request).sites
    if event_id not in sites:
        raise HTTPException(404, f"no event {event_id!r}")
    return sites[event_id]


def editor(request: Request) -> str:
    """Dependency of every editor route: the signed-in editor, else 401 (the sign-in page)."""
    user = signed_in(request)
    if not user:
        raise HTTPException(401, "sign in as an editor")
    return user


def outputs(site: EventSite) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The event's export rows and review themes (``SharedPublish.current``; callers must not change
    the frames)."""
    current = site.publish.current()
    if current is None:
        raise HTTPException(409, "no themes yet: run the pipeline (button on the event page, or harvest run)")
    return current.statements, current.themes
