"""Signing in and out: the home page, editors' sign-in (locked after repeated failures) and sign-out."""

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from pipeline import db
from web.common import check_csrf, harvest, local_path, redirect, render

router = APIRouter()


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> HTMLResponse:
    return render(request, "home.html")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=local_path(next))


@router.post("/login", dependencies=[Depends(check_csrf)])
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
    limits = harvest(request).settings.access
    window = timedelta(minutes=limits.sign_in_window_minutes)
    with db.session_scope(harvest(request).database) as session:
        if db.sign_in_locked(session, keys, limits.sign_in_failures, window):
            # the password is not even checked: a locked name or address learns nothing
            return render(
                request,
                "login.html",
                status_code=429,
                next=local_path(next),
                error=f"too many failed sign-ins: try again in {limits.sign_in_window_minutes:g} minutes",
            )
        ok = db.check_password(session, username, password)
        db.record_sign_in(session, keys, ok, window)
        secret = db.start_session(session, username) if ok else None
    if secret is None:
        return render(
            request, "login.html", status_code=401, next=local_path(next), error="wrong name or password"
        )
    request.session.clear()  # a fresh session on sign-in
    request.session["editor_session"] = secret
    return redirect(local_path(next))


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request) -> Response:
    secret = request.session.get("editor_session")
    if secret:
        with db.session_scope(harvest(request).database) as session:
            db.end_session(session, secret)
    request.session.clear()
    return redirect("/")
