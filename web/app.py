"""The web app: a thin layer over the same library functions the CLI uses.

- Facilitators open a per-event upload link (``/u/<token>``): they can hand in notes, nothing else
  (``web.facilitators``).
- Editors sign in (``web.signin``; accounts from ``harvest user add``), review themes (``web.editors``),
  manage upload links and editors (``web.access``), and read the audit log and the paper (``web.audit``);
  every action is audited and undoable.
Every form carries a CSRF token bound to the session; all note text is escaped by the templates.
"""

import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from pipeline.config import Settings, load_settings
from pipeline.event import load_event
from pipeline.publish import PublishWorker
from pipeline.store import Layout
from web import access, audit, editors, facilitators, signin
from web.common import HERE, EventSite, Harvest, redirect, render
from web.facilitators import MAX_FILES_PER_UPLOAD, MAX_PASTE_CHARS

log = logging.getLogger(__name__)

#: Every page: scripts, styles and images from this site only (the pages use no inline script), never
#: framed, no referrer (upload links carry their token in the path).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / ".secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def warm_up_runs(settings: Settings, languages: list[str]) -> None:
    """Load what an editor's re-run needs (Prefect and the flow, the Prefect server the re-runs keep, the
    models of each event's language), so the first re-run costs what the next one does."""
    from pipeline.warmup import head_start, kept_for_good

    with kept_for_good():
        import flows.harvest  # noqa: F401 - Prefect (~4 s), imported by the re-run otherwise
    from flows.server import PrefectDidNotStart, run_api

    started = time.perf_counter()
    loaded = False

    def load_models() -> None:
        nonlocal loaded
        for language in dict.fromkeys(languages):
            head_start(settings, language)
        loaded = True

    try:
        # the server the re-runs keep (none when one is configured or `harvest schedule`'s runs)
        with run_api(settings.data_dir, keep=True, meanwhile=load_models) as api:
            if not loaded:  # no server to wait for
                load_models()
            api()
    except PrefectDidNotStart as exc:  # the re-run tries again, and says so
        log.warning("Prefect's server for the re-runs did not start: %s", exc)
    log.info("models and Prefect loaded for the re-runs in %.1f s", time.perf_counter() - started)


def create_app(event_dirs: list[Path], settings: Settings | None = None, warm: bool = False) -> FastAPI:
    """The app for the events in ``event_dirs``. ``warm``: load the models for re-runs in the background
    as it starts (``harvest serve`` does; tests and short-lived apps need not)."""
    settings = settings or load_settings()
    publishing = PublishWorker()
    sites = {}
    for folder in event_dirs:
        event = load_event(folder)
        layout = Layout(settings.data_dir, event.id)
        sites[event.id] = EventSite(event, Path(folder), layout, settings, publishing)
    state = Harvest(settings, sites)
    if warm:
        languages = [site.event.language for site in sites.values()]
        state.warming = threading.Thread(
            target=warm_up_runs, args=(settings, languages), name="harvest-warm-up", daemon=True
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        publishing.start()  # now, not at the first editor's action
        if state.warming is not None:
            state.warming.start()  # pages answer meanwhile; a re-run waits for it
        yield
        for site in sites.values():  # the editors' last actions are in the export before the server ends
            site.publish.settle()
        publishing.close()
        state.reader.close()  # the worker processes end with the server

    app = FastAPI(title="Harvest", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.harvest = state
    app.add_middleware(
        SessionMiddleware,
        secret_key=_secret_key(settings),
        same_site="lax",
        session_cookie="harvest_session",
        max_age=int(settings.access.session_hours * 3600),
        https_only=settings.secure_cookies,
    )

    # largest body a form can need: every file at its limit, the pasted text in 4-byte characters, the rest
    body_limit = MAX_FILES_PER_UPLOAD * (settings.max_upload_bytes + 4096) + 4 * MAX_PASTE_CHARS + 65536

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Refuse a body over the limit before a byte of it is read or spooled to disk (a browser always
        declares its length; a body without one is refused)."""
        if request.method in ("POST", "PUT", "PATCH"):
            declared = request.headers.get("content-length")
            if declared is None and request.headers.get("transfer-encoding"):
                return PlainTextResponse("say how long the request is (Content-Length)", status_code=411)
            if declared is not None and (not declared.isdigit() or int(declared) > body_limit):
                return PlainTextResponse(
                    f"the request is over the limit of {body_limit:,} bytes", status_code=413
                )
        return await call_next(request)

    @app.middleware("http")
    async def security_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
        return response

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401:
            return redirect(f"/login?next={request.url.path}")
        return render(request, "error.html", status_code=exc.status_code, message=exc.detail)

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for area in (signin, facilitators, editors, access, audit):
        app.include_router(area.router)
    return app
