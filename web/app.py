"""The web app: a thin layer over the same library functions the CLI uses.

- Facilitators open a per-event upload link (``/u/<token>``): they can hand in notes, nothing else.
- Editors sign in (``harvest user add``) and review themes; every action is audited and undoable.
Every form carries a CSRF token bound to the session; all note text is escaped by the templates.
"""

# no `from __future__ import annotations`: FastAPI must see the closures (Depends(editor)) at def time

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import pandas as pd
from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware

from pipeline import db, editing
from pipeline.config import Settings
from pipeline.event import Event, load_event
from pipeline.ingest import decide_pending, ingest
from pipeline.publish import publish, refresh_after_ingest
from pipeline.readers.guarded import GuardedReader
from pipeline.schema import ThemeStatus, UploadStatus
from pipeline.store import Layout, Manifest

HERE = Path(__file__).parent
MAX_FILES_PER_UPLOAD = 10
MAX_PASTE_CHARS = 50_000
SESSION_SECONDS = 12 * 3600  # an editor signs in once a working day
#: Every page: scripts, styles and images from this site only (the pages use no inline script), never
#: framed, no referrer (upload links carry their token in the path).
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
#: The paper quotes what anyone typed: no script at all, and a sandbox (an origin of its own), so even
#: markup that got through could not act as the signed-in editor.
PAPER_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'; sandbox"
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


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


@dataclass
class EventSite:
    event: Event
    folder: Path
    layout: Layout


def _secret_key(settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    path = settings.data_dir / ".secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def create_app(event_dirs: list[Path], settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    sites = {}
    for folder in event_dirs:
        event = load_event(folder)
        sites[event.id] = EventSite(event, Path(folder), Layout(settings.data_dir, event.id))
    reader = GuardedReader()  # uploads are parsed in a worker process with time and memory limits

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        reader.close()  # the worker process ends with the server

    app = FastAPI(title="Harvest", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(
        SessionMiddleware,
        secret_key=_secret_key(settings),
        same_site="lax",
        session_cookie="harvest_session",
        max_age=SESSION_SECONDS,
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

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    database = settings.database_url

    session_age = timedelta(seconds=SESSION_SECONDS)

    # ------------------------------------------------------------------ helpers
    def signed_in(request: Request) -> str | None:
        """The editor of this browser's session, while the database still holds that session."""
        if not hasattr(request.state, "editor"):
            secret = request.session.get("editor_session")
            request.state.editor = None
            if secret:
                with db.session_scope(database) as session:
                    request.state.editor = db.session_user(session, secret, session_age)
                if request.state.editor is None:
                    request.session.pop("editor_session", None)
        return request.state.editor

    def render(request: Request, name: str, status_code: int = 200, **context: object) -> HTMLResponse:
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(32)
        flash = request.session.pop("flash", None)
        return templates.TemplateResponse(
            request,
            name,
            {
                "csrf": request.session["csrf"],
                "user": signed_in(request),
                "flash": flash,
                "sites": sites,
                **context,
            },
            status_code=status_code,
        )

    def redirect(url: str, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
        if flash and request is not None:
            request.session["flash"] = flash
        return RedirectResponse(url, status_code=303)

    async def check_csrf(request: Request) -> None:
        form = await request.form()
        sent = form.get("csrf")
        if not sent or not secrets.compare_digest(str(sent), request.session.get("csrf", "")):
            raise HTTPException(403, "the form has expired or did not come from this site; reload the page")

    def site_of(event_id: str) -> EventSite:
        if event_id not in sites:
            raise HTTPException(404, f"no event {event_id!r}")
        return sites[event_id]

    def editor(request: Request) -> str:
        user = signed_in(request)
        if not user:
            raise HTTPException(401, "sign in as an editor")
        return user

    def may_upload(request: Request, event_id: str) -> db.LinkGrant | None:
        """None for a signed-in editor (no limits), the link's grant for a facilitator, else 403."""
        if signed_in(request):
            return None
        links = request.session.get("upload_links", [])
        if links:
            with db.session_scope(database) as session:
                grant = db.link_grant(session, links, event_id)
            if grant is not None:
                return grant
        raise HTTPException(
            403, "open the upload link your organiser gave you (links expire and can be revoked)"
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 401:
            return redirect(f"/login?next={request.url.path}")
        return render(request, "error.html", status_code=exc.status_code, message=exc.detail)

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> HTMLResponse:
        return render(request, "home.html")

    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", next=local_path(next))

    @app.post("/login", dependencies=[Depends(check_csrf)])
    def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        keys = [
            f"name:{username.strip().lower()}",
            f"address:{request.client.host if request.client else ''}",
        ]
        with db.session_scope(database) as session:
            if db.sign_in_locked(session, keys):
                # the password is not even checked: a locked name or address learns nothing
                return render(
                    request,
                    "login.html",
                    status_code=429,
                    next=local_path(next),
                    error="too many failed sign-ins: try again in 15 minutes",
                )
            ok = db.check_password(session, username, password)
            db.record_sign_in(session, keys, ok)
            secret = db.start_session(session, username) if ok else None
        if secret is None:
            return render(
                request, "login.html", status_code=401, next=local_path(next), error="wrong name or password"
            )
        request.session.clear()  # a fresh session on sign-in
        request.session["editor_session"] = secret
        return redirect(local_path(next))

    @app.post("/logout", dependencies=[Depends(check_csrf)])
    def logout(request: Request) -> Response:
        secret = request.session.get("editor_session")
        if secret:
            with db.session_scope(database) as session:
                db.end_session(session, secret)
        request.session.clear()
        return redirect("/")

    # ------------------------------------------------------------------ facilitators
    @app.get("/u/{token}")
    def upload_link(request: Request, token: str) -> Response:
        with db.session_scope(database) as session:
            event_id = db.token_event(session, token)
        if event_id is None or event_id not in sites:
            raise HTTPException(403, "this upload link is not valid; ask your organiser for a new one")
        # the link itself (its hash) is kept, not the event: revoking the link ends this browser's right too
        granted = set(request.session.get("upload_links", []))
        request.session["upload_links"] = sorted(granted | {db.token_digest(token)})
        return redirect(f"/e/{event_id}/upload")

    @app.get("/e/{event_id}/upload", response_class=HTMLResponse)
    def upload_page(request: Request, event_id: str) -> HTMLResponse:
        may_upload(request, event_id)
        return render(request, "upload.html", site=site_of(event_id), form={}, results=[])

    @app.post("/e/{event_id}/upload", response_class=HTMLResponse, dependencies=[Depends(check_csrf)])
    async def upload(
        request: Request,
        event_id: str,
        topic_question: Annotated[str, Form()] = "",
        table: Annotated[str, Form()] = "",
        round: Annotated[str, Form()] = "1",
        facilitator: Annotated[str, Form()] = "",
        text: Annotated[str, Form()] = "",
        files: Annotated[list[UploadFile] | None, File()] = None,
    ) -> HTMLResponse:
        grant = may_upload(request, event_id)
        site = site_of(event_id)
        topic, _, question = topic_question.partition("/")
        form = {
            "topic_question": topic_question,
            "table": table.strip(),
            "round": round.strip(),
            "facilitator": facilitator.strip(),
            "text": text,
        }
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
            else:
                uploads.append((_paste_name(defaults), text.encode("utf-8")))
        if not uploads and not field_errors:
            field_errors["text"] = "paste notes or choose a file"
        if field_errors:
            return render(
                request,
                "upload.html",
                status_code=422,
                site=site,
                form=form,
                results=[],
                field_errors=field_errors,
            )
        who = signed_in(request) or f"facilitator {form['facilitator'] or form['table']}".strip()

        def hand_in() -> tuple[list, pd.DataFrame | None]:
            results = ingest(
                site.layout,
                site.event,
                uploads,
                who=who,
                via="web",
                max_bytes=settings.max_upload_bytes,
                defaults=defaults,
                reader=reader,
                link=grant.link if grant else "",
                tables=grant.tables if grant else None,
            )
            accepted = any(r.status == UploadStatus.ACCEPTED for r in results)
            return results, refresh_after_ingest(site.layout, site.event, settings) if accepted else None

        # parsing and the statements step run in a worker thread: other requests go on meanwhile
        results, statements = await run_in_threadpool(hand_in)
        shown = []
        for r in results:
            mine = (
                statements[statements.upload_id == r.upload_id] if statements is not None else pd.DataFrame()
            )
            shown.append(
                {
                    "result": r,
                    "statements": mine.to_dict("records"),
                    "pasted": r.filename == _paste_name(defaults),
                }
            )
        ok = all(r.ok for r in results)
        return render(
            request,
            "upload.html",
            status_code=200 if ok else 422,
            site=site,
            form=form if not ok else {**form, "text": ""},
            results=shown,
        )

    # ------------------------------------------------------------------ editors
    @app.get("/e/{event_id}/review", response_class=HTMLResponse)
    def review_event(request: Request, event_id: str, user: Annotated[str, Depends(editor)]) -> HTMLResponse:
        site = site_of(event_id)
        statements, themes = _outputs(site)
        answers = themes[themes.status != ThemeStatus.OFF_TOPIC]  # the session remarks are no theme to count
        counts = {}
        for topic, question in site.event.questions():
            st = statements[(statements.topic == topic) & (statements.question == question)]
            th = answers[(answers.topic == topic) & (answers.question == question)]
            counts[(topic, question)] = {
                "statements": len(st),
                "themes": len(th),
                "approved": int((th.status == ThemeStatus.APPROVED).sum()),
                "unassigned": int((st.theme_id == "").sum()),
            }
        totals = {
            "statements": len(statements),
            "themes": len(answers),
            "unassigned": int((statements.theme_id == "").sum()),
            "approved": int((answers.status == ThemeStatus.APPROVED).sum()),
        }
        manifest = Manifest.load(site.layout)
        return render(
            request,
            "review_event.html",
            site=site,
            counts=counts,
            totals=totals,
            uploads=manifest.uploads[-15:][::-1],
            pending=manifest.pending(),
        )

    @app.post("/e/{event_id}/pending/{upload_id}", dependencies=[Depends(check_csrf)])
    async def decide(
        request: Request, event_id: str, upload_id: str, user: Annotated[str, Depends(editor)]
    ) -> Response:
        site = site_of(event_id)
        accept = str((await request.form()).get("decision", "")) == "accept"
        try:
            upload = await run_in_threadpool(decide_pending, site.layout, site.event, upload_id, accept, user)
        except ValueError as exc:
            return redirect(f"/e/{event_id}/review", f"Not done: {exc}", request)
        if accept:
            await run_in_threadpool(refresh_after_ingest, site.layout, site.event, settings)
        verb = "accepted: its notes replace the earlier ones" if accept else "discarded"
        return redirect(f"/e/{event_id}/review", f"{upload.filename} {verb}", request)

    @app.get("/e/{event_id}/review/{topic}/{question}", response_class=HTMLResponse)
    def review_question(
        request: Request, event_id: str, topic: str, question: str, user: Annotated[str, Depends(editor)]
    ) -> HTMLResponse:
        site = site_of(event_id)
        topic_def = site.event.topics.get(topic)
        if topic_def is None or topic_def.question(question) is None:
            raise HTTPException(404, "no such topic and question")
        statements, themes = _outputs(site)
        mine = statements[(statements.topic == topic) & (statements.question == question)]
        ranked = themes[(themes.topic == topic) & (themes.question == question)].sort_values("rank")
        members = {t: mine[mine.theme_id == t].to_dict("records") for t in ranked.theme_id}
        for t, rows in members.items():  # representative first, as in the paper
            order = {
                s: i for i, s in enumerate(ranked.set_index("theme_id").loc[t, "statement_ids"].split("; "))
            }
            rows.sort(key=lambda r: order.get(r["statement_id"], 1 << 30))
        loose = mine[mine.theme_id == ""]
        return render(
            request,
            "review_question.html",
            site=site,
            topic=topic_def,
            question=topic_def.question(question),
            themes=ranked.to_dict("records"),
            members=members,
            versions={t["theme_id"]: editing.theme_version(t) for t in ranked.to_dict("records")},
            unassigned=loose[loose.flag == ""].to_dict("records"),
            flagged=loose[loose.flag != ""].to_dict("records"),
        )

    @app.post("/e/{event_id}/review/{topic}/{question}", dependencies=[Depends(check_csrf)])
    async def act(
        request: Request, event_id: str, topic: str, question: str, user: Annotated[str, Depends(editor)]
    ) -> Response:
        site = site_of(event_id)
        form = await request.form()
        action = str(form.get("action", ""))
        theme_id = str(form.get("theme_id", ""))
        statement_ids = [str(s) for s in form.getlist("statement_ids")]
        here = f"/e/{event_id}/review/{topic}/{question}"
        topic_def = site.event.topics.get(topic)
        if topic_def is None or topic_def.question(question) is None:
            raise HTTPException(404, "no such topic and question")
        statements, themes = _outputs(site)
        target = str(form.get("target", ""))
        try:
            rank = editing.check_action(
                themes[(themes.topic == topic) & (themes.question == question)],
                statements[(statements.topic == topic) & (statements.question == question)],
                action,
                theme_id,
                seen=str(form.get("seen", "")),
                others=[str(t) for t in form.getlist("sources")] + ([target] if target else []),
                statement_ids=statement_ids,
                rank=str(form.get("rank", "")).strip() if action == "pin" else "",
            )
            with db.session_scope(database) as session:
                if action == "rename":
                    editing.rename(
                        session, event_id, user, theme_id, topic, question, str(form.get("label", ""))
                    )
                elif action == "edit":
                    editing.edit_recommendation(
                        session,
                        event_id,
                        user,
                        theme_id,
                        topic,
                        question,
                        str(form.get("recommendation", "")),
                    )
                elif action in ("approved", "rejected", "draft"):
                    editing.set_status(session, event_id, user, theme_id, topic, question, action)
                elif action == "pin":
                    editing.pin(session, event_id, user, theme_id, topic, question, rank)
                elif action == "merge":
                    editing.merge(
                        session,
                        event_id,
                        user,
                        [str(s) for s in form.getlist("sources")],
                        theme_id,
                        topic,
                        question,
                    )
                elif action == "move":
                    editing.move(session, event_id, user, statement_ids, target)
                elif action == "split":
                    editing.split(
                        session, event_id, user, statement_ids, topic, question, str(form.get("label", ""))
                    )
                else:
                    raise ValueError(f"unknown action {action!r}")
        except ValueError as exc:
            return redirect(here, f"Not done: {exc}", request)
        publish(site.layout, site.event, settings)
        return redirect(f"{here}#{theme_id}" if theme_id else here, f"Done: {action}", request)

    # ------------------------------------------------------------------ links and editors
    def access_page(request: Request, site: EventSite, new_link: str = "") -> HTMLResponse:
        with db.session_scope(database) as session:
            links = db.list_upload_tokens(session, site.event.id)
            users = db.list_users(session)
        return render(request, "access.html", site=site, links=links, users=users, new_link=new_link)

    @app.get("/e/{event_id}/access", response_class=HTMLResponse)
    def access(request: Request, event_id: str, user: Annotated[str, Depends(editor)]) -> HTMLResponse:
        return access_page(request, site_of(event_id))

    @app.post("/e/{event_id}/access/links", dependencies=[Depends(check_csrf)])
    def create_link(
        request: Request,
        event_id: str,
        user: Annotated[str, Depends(editor)],
        label: Annotated[str, Form()] = "",
        tables: Annotated[str, Form()] = "",
        days: Annotated[int, Form(ge=1, le=365)] = db.UPLOAD_LINK_DAYS,
    ) -> HTMLResponse:
        site = site_of(event_id)
        bound = [t for t in tables.replace(";", ",").split(",") if t.strip()] or None
        with db.session_scope(database) as session:
            secret = db.create_upload_token(session, event_id, label.strip(), timedelta(days=days), bound)
        return access_page(request, site, str(request.base_url).rstrip("/") + f"/u/{secret}")

    @app.post("/e/{event_id}/access/links/{link_id}/revoke", dependencies=[Depends(check_csrf)])
    def revoke_link(
        request: Request, event_id: str, link_id: int, user: Annotated[str, Depends(editor)]
    ) -> Response:
        site_of(event_id)
        with db.session_scope(database) as session:
            known = any(r["id"] == link_id for r in db.list_upload_tokens(session, event_id))
            if known:
                db.revoke_upload_token(session, link_id)
        message = f"link {link_id} revoked" if known else f"Not done: no link {link_id} for this event"
        return redirect(f"/e/{event_id}/access", message, request)

    @app.post("/e/{event_id}/access/editors/remove", dependencies=[Depends(check_csrf)])
    def remove_editor(
        request: Request, event_id: str, user: Annotated[str, Depends(editor)], name: Annotated[str, Form()]
    ) -> Response:
        site_of(event_id)
        with db.session_scope(database) as session:
            removed = db.remove_user(session, name)
        message = f"editor {name} removed and signed out" if removed else f"Not done: no editor {name!r}"
        return redirect(f"/e/{event_id}/access", message, request)

    @app.get("/e/{event_id}/audit", response_class=HTMLResponse)
    def audit(request: Request, event_id: str, user: Annotated[str, Depends(editor)]) -> HTMLResponse:
        site = site_of(event_id)
        with db.session_scope(database) as session:
            entries = db.audit_log(session, event_id)
        return render(request, "audit.html", site=site, entries=entries)

    @app.post("/e/{event_id}/audit/{entry_id}/undo", dependencies=[Depends(check_csrf)])
    def undo(
        request: Request, event_id: str, entry_id: int, user: Annotated[str, Depends(editor)]
    ) -> Response:
        site = site_of(event_id)
        try:
            with db.session_scope(database) as session:
                db.undo(session, event_id, entry_id, user)
        except (KeyError, ValueError) as exc:
            return redirect(f"/e/{event_id}/audit", f"Not undone: {exc}", request)
        publish(site.layout, site.event, settings)
        return redirect(f"/e/{event_id}/audit", f"Undone #{entry_id}", request)

    @app.post("/e/{event_id}/run", dependencies=[Depends(check_csrf)])
    def rerun(request: Request, event_id: str, user: Annotated[str, Depends(editor)]) -> Response:
        from flows.harvest import harvest_event

        site = site_of(event_id)
        summary = harvest_event(site.folder, settings.data_dir)
        return redirect(
            f"/e/{event_id}/review",
            f"Run finished: {summary['statements']} statements, {summary['themes']} themes",
            request,
        )

    @app.get("/e/{event_id}/paper")
    def paper(event_id: str, user: Annotated[str, Depends(editor)]) -> FileResponse:
        site = site_of(event_id)
        if not site.layout.paper_html.exists():
            raise HTTPException(404, "no paper yet: run the pipeline first")
        return FileResponse(
            site.layout.paper_html, media_type="text/html", headers={"Content-Security-Policy": PAPER_POLICY}
        )

    def _outputs(site: EventSite) -> tuple[pd.DataFrame, pd.DataFrame]:
        if not site.layout.review_themes.exists():
            raise HTTPException(
                409, "no themes yet: run the pipeline (button on the event page, or harvest run)"
            )
        return pd.read_parquet(site.layout.statements), pd.read_parquet(site.layout.review_themes)

    return app


def _paste_name(defaults: dict[str, str]) -> str:
    """Pasted notes become a text upload named after their table, round and question: a corrected paste
    for the same table and question supersedes the earlier one."""
    parts = [defaults.get(k, "") for k in ("table", "round", "topic", "question")]
    return "pasted-" + "-".join(p for p in parts if p) + ".txt"
