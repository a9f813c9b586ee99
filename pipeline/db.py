"""The database (SQLAlchemy): editors, facilitators' upload tokens, editors' decisions and their audit log.

SQLite file by default (``<data>/harvest.db``); any SQLAlchemy URL works, e.g.
``postgresql+psycopg://user:pass@host/harvest`` (set ``HARVEST_DATABASE_URL``).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, overload

import pandas as pd
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import Boolean, DateTime, Integer, String, Text, create_engine, delete, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker, validates

from pipeline.review import DECISION_COLUMNS, PLACEMENT_COLUMNS, ReviewState
from pipeline.schema import EDITOR_STATUSES


class Base(DeclarativeBase):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


@overload
def _aware(moment: datetime) -> datetime: ...
@overload
def _aware(moment: None) -> None: ...
def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every moment stored here is UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class EditorSession(Base):
    """A signed-in browser. The cookie holds the secret, the database its hash: signing out, a new
    password or removing the user deletes the row, and the cookie stops working at once."""

    __tablename__ = "editor_sessions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), index=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class SignInFailure(Base):
    """Failed sign-ins per key ("name:<user>" or "address:<ip>") within the current window."""

    __tablename__ = "sign_in_failures"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class UploadToken(Base):
    """A facilitators' upload link for one event: it can hand in notes, nothing else."""

    __tablename__ = "upload_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(80), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    # nullable: rows of databases made before links expired have neither
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    tables: Mapped[str | None] = mapped_column(Text, nullable=True)  # comma-separated; None = any table


class ThemeDecision(Base):
    __tablename__ = "theme_decisions"
    event: Mapped[str] = mapped_column(String(80), primary_key=True)
    theme_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    topic: Mapped[str] = mapped_column(String(80))
    question: Mapped[str] = mapped_column(String(80))
    label: Mapped[str | None] = mapped_column(Text, nullable=True)
    recommendation: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    pinned_rank: Mapped[int | None] = mapped_column(Integer, nullable=True)
    merged_into: Mapped[str | None] = mapped_column(String(120), nullable=True)
    #: what the theme was when approved (``editing.content_marks``): a later run that changes it is shown
    approved_content: Mapped[str | None] = mapped_column(String(40), nullable=True)

    @validates("status")
    def _known_status(self, _: str, status: str | None) -> str | None:
        _check_status(self.theme_id, status)
        return status


def _check_status(theme_id: str, status: str | None) -> None:
    """A status the editors' vocabulary lacks ("aproved") is an error, never silently a draft."""
    if status is not None and status not in EDITOR_STATUSES:
        known = ", ".join(EDITOR_STATUSES)
        raise ValueError(f"theme {theme_id}: unknown status {status!r} (one of {known})")


class Placement(Base):
    __tablename__ = "placements"
    event: Mapped[str] = mapped_column(String(80), primary_key=True)
    statement_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    theme_id: Mapped[str] = mapped_column(String(120))  # '' = unassigned by an editor
    # the question an editor moved the statement to (None: the one it was handed in under)
    topic: Mapped[str | None] = mapped_column(String(80), nullable=True)
    question: Mapped[str | None] = mapped_column(String(80), nullable=True)


class Translation(Base):
    """An editor's translation of a statement written in a language the model does not read, by the
    statement's text: every statement with that text reads it, in this run and every later one."""

    __tablename__ = "translations"
    event: Mapped[str] = mapped_column(String(80), primary_key=True)
    text_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    translation: Mapped[str] = mapped_column(Text)


def load_translations(session: Session, event: str) -> dict[str, str]:
    """The editors' translations of an event, by original text."""
    rows = session.scalars(select(Translation).where(Translation.event == event)).all()
    return {row.text: row.translation for row in rows}


class AuditEntry(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event: Mapped[str] = mapped_column(String(80), index=True)
    who: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    action: Mapped[str] = mapped_column(String(40))
    summary: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[str] = mapped_column(Text)  # JSON snapshot of every row the action touched
    after: Mapped[str] = mapped_column(Text)
    undone: Mapped[bool] = mapped_column(Boolean, default=False)


# --------------------------------------------------------------------------- engine and sessions
@lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    connect_args = {}
    if url.startswith("sqlite"):
        connect_args = {"check_same_thread": False}
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args=connect_args, future=True)
    Base.metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Columns added to a table since a database was made, added to it (all such columns are nullable):
    create_all makes missing tables only."""
    inspector = inspect(engine)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    connection.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


@contextmanager
def session_scope(url: str) -> Iterator[Session]:
    session = sessionmaker(engine_for(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --------------------------------------------------------------------------- users and tokens
_hasher = PasswordHasher()


def add_user(session: Session, username: str, password: str) -> None:
    if len(password) < 8:
        raise ValueError("a password needs at least 8 characters")
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        session.add(User(username=username, password_hash=_hasher.hash(password)))
    else:
        user.password_hash = _hasher.hash(password)
        end_sessions(session, username)  # a new password signs every browser out


def remove_user(session: Session, username: str) -> bool:
    """Remove an editor and end every session they have; False if there was no such user."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        return False
    session.delete(user)
    end_sessions(session, username)
    return True


def list_users(session: Session) -> list[tuple[str, datetime]]:
    return [(u.username, u.created_at) for u in session.scalars(select(User).order_by(User.username))]


def check_password(session: Session, username: str, password: str) -> bool:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        _hasher.hash(password)  # same time as a real check: no user enumeration by timing
        return False
    try:
        return _hasher.verify(user.password_hash, password)
    except VerificationError:
        return False


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def start_session(session: Session, username: str) -> str:
    """A new signed-in session for ``username``; returns the secret for the browser's cookie."""
    secret = secrets.token_urlsafe(32)
    session.add(EditorSession(username=username, secret_sha256=_sha256(secret)))
    return secret


def session_user(session: Session, secret: str, max_age: timedelta) -> str | None:
    """The editor a session secret belongs to, if that session still exists, is younger than ``max_age``
    and its user still exists."""
    row = session.scalar(select(EditorSession).where(EditorSession.secret_sha256 == _sha256(secret)))
    if row is None:
        return None
    created = _aware(row.created_at)
    if (
        created is None
        or _now() - created > max_age
        or session.scalar(select(User).where(User.username == row.username)) is None
    ):
        session.delete(row)
        return None
    return row.username


def end_session(session: Session, secret: str) -> None:
    session.execute(delete(EditorSession).where(EditorSession.secret_sha256 == _sha256(secret)))


def end_sessions(session: Session, username: str) -> None:
    session.execute(delete(EditorSession).where(EditorSession.username == username))


# Sign-in throttling: after ``max_failures`` for one name or one address within the ``window``, that name
# or address is locked out until the window has passed since its first failure (``Settings.access``).


def _failures(session: Session, key: str, window: timedelta) -> SignInFailure | None:
    row = session.get(SignInFailure, key)
    if row is not None and _now() - _aware(row.first_at) > window:
        session.delete(row)
        session.flush()
        return None
    return row


def sign_in_locked(session: Session, keys: list[str], max_failures: int, window: timedelta) -> bool:
    """True while any of ``keys`` (name and address) has used up its failures in the window."""
    return any((row := _failures(session, k, window)) is not None and row.count >= max_failures for k in keys)


def record_sign_in(session: Session, keys: list[str], ok: bool, window: timedelta) -> None:
    """Count a failure against every key, or clear them after a success."""
    for key in keys:
        row = _failures(session, key, window)
        if ok:
            if row is not None:
                session.delete(row)
        elif row is None:
            session.add(SignInFailure(key=key, count=1, first_at=_now()))
        else:
            row.count += 1


def create_upload_token(
    session: Session,
    event: str,
    label: str,
    valid_for: timedelta,
    tables: Iterable[str] | None = None,
) -> str:
    """A new upload link's secret; with ``tables``, the link hands in notes of those tables only."""
    token = secrets.token_urlsafe(24)
    bound = ",".join(sorted({t.strip() for t in tables if t.strip()})) if tables is not None else None
    session.add(
        UploadToken(
            event=event,
            token_sha256=_sha256(token),
            label=label,
            expires_at=_now() + valid_for,
            tables=bound or None,
        )
    )
    return token


def _usable(row: UploadToken) -> bool:
    expires = _aware(row.expires_at)
    return row.revoked_at is None and (expires is None or expires > _now())


def token_event(session: Session, token: str) -> str | None:
    """The event an upload link is for, while it is neither revoked nor expired."""
    row = session.scalar(select(UploadToken).where(UploadToken.token_sha256 == _sha256(token)))
    return row.event if row is not None and _usable(row) else None


@dataclass(frozen=True)
class LinkGrant:
    """What an upload link lets its holder do: hand in notes for its event, of ``tables`` (None: any)."""

    link: str  # the link's id
    tables: frozenset[str] | None


def link_grant(session: Session, token_digests: list[str], event: str) -> LinkGrant | None:
    """The grant of the first of these links (by SHA-256) that still opens ``event``, None if none does:
    a browser that opened a link loses it the moment the link is revoked or expires."""
    rows = session.scalars(
        select(UploadToken)
        .where(UploadToken.token_sha256.in_(token_digests), UploadToken.event == event)
        .order_by(UploadToken.id)
    )
    row = next((r for r in rows if _usable(r)), None)
    if row is None:
        return None
    return LinkGrant(str(row.id), frozenset(row.tables.split(",")) if row.tables else None)


def token_digest(token: str) -> str:
    return _sha256(token)


def list_upload_tokens(session: Session, event: str | None = None) -> list[dict[str, Any]]:
    """Every upload link (never its secret): id, event, label, created, expires, revoked, usable."""
    query = select(UploadToken).order_by(UploadToken.id)
    if event is not None:
        query = query.where(UploadToken.event == event)
    return [
        {
            "id": row.id,
            "event": row.event,
            "label": row.label,
            "created_at": _aware(row.created_at),
            "expires_at": _aware(row.expires_at),
            "revoked_at": _aware(row.revoked_at),
            "tables": row.tables or "",
            "usable": _usable(row),
        }
        for row in session.scalars(query)
    ]


def revoke_upload_token(session: Session, token_id: int) -> bool:
    """Revoke a link by its id; False if there is no such link."""
    row = session.get(UploadToken, token_id) if _valid_id(token_id) else None
    if row is None:
        return False
    row.revoked_at = row.revoked_at or _now()
    return True


# --------------------------------------------------------------------------- review state
def load_state(session: Session, event: str) -> ReviewState:
    themes = session.scalars(select(ThemeDecision).where(ThemeDecision.event == event)).all()
    placements = session.scalars(select(Placement).where(Placement.event == event)).all()
    for theme in themes:  # rows written around this code (by hand, an old version) are checked too
        _check_status(theme.theme_id, theme.status)
    return ReviewState(
        pd.DataFrame(
            [{c: getattr(t, c) for c in DECISION_COLUMNS} for t in themes], columns=DECISION_COLUMNS
        ),
        pd.DataFrame(
            [
                {
                    "statement_id": p.statement_id,
                    "theme_id": p.theme_id,
                    "topic": p.topic or "",
                    "question": p.question or "",
                }
                for p in placements
            ],
            columns=PLACEMENT_COLUMNS,
        ),
    )


def placement(session: Session, event: str, statement_id: str) -> Placement:
    """The editors' placement of a statement, added (its fields to be set) when it has none yet."""
    row = session.get(Placement, (event, statement_id))
    if row is None:
        row = Placement(event=event, statement_id=statement_id)
        session.add(row)
    return row


def _placement_value(placement: Placement | None) -> str | dict[str, str] | None:
    """A placement as an audit entry keeps it: its theme id, with its question when an editor moved the
    statement to another one."""
    if placement is None:
        return None
    if placement.topic is None:
        return placement.theme_id
    return {"theme_id": placement.theme_id, "topic": placement.topic, "question": placement.question or ""}


def _snapshot(
    session: Session, event: str, theme_ids: set[str], statement_ids: set[str], texts: set[str]
) -> dict[str, dict[str, Any]]:
    themes = {}
    for theme_id in sorted(theme_ids):
        row = session.get(ThemeDecision, (event, theme_id))
        themes[theme_id] = None if row is None else {c: getattr(row, c) for c in DECISION_COLUMNS}
    placements: dict[str, Any] = {}
    for statement_id in sorted(statement_ids):
        placement = session.get(Placement, (event, statement_id))
        placements[statement_id] = _placement_value(placement)
    translations = {}
    for original in sorted(texts):
        translation = session.get(Translation, (event, _sha256(original)))
        translations[original] = None if translation is None else translation.translation
    return {"themes": themes, "placements": placements, "translations": translations}


def _revert(
    session: Session, event: str, before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> None:
    """Put back what one action changed, field by field, leaving later changes to other fields alone."""
    for theme_id, old in before["themes"].items():
        new = after["themes"].get(theme_id)
        old_values = old or {}
        new_values = new or {}
        changed = [c for c in DECISION_COLUMNS[3:] if old_values.get(c) != new_values.get(c)]
        row = session.get(ThemeDecision, (event, theme_id))
        if not changed:
            continue
        if row is None:
            if old is None:
                continue
            row = ThemeDecision(event=event, theme_id=theme_id, topic=old["topic"], question=old["question"])
            session.add(row)
        for column in changed:
            setattr(row, column, old_values.get(column))
        if all(getattr(row, c) is None for c in DECISION_COLUMNS[3:]):
            session.delete(row)  # nothing decided any more
    for statement_id, old_value in before["placements"].items():
        if old_value == after["placements"].get(statement_id):
            continue
        if old_value is None:
            existing = session.get(Placement, (event, statement_id))
            if existing is not None:
                session.delete(existing)
            continue
        # a theme id alone (every entry before moves across questions), or the theme and question
        old = old_value if isinstance(old_value, dict) else {"theme_id": old_value}
        placed = placement(session, event, statement_id)
        placed.theme_id = old["theme_id"]
        placed.topic, placed.question = old.get("topic"), old.get("question")
    for original, old_translation in before.get("translations", {}).items():  # none in older entries
        if old_translation == after["translations"].get(original):
            continue
        set_translation(session, event, original, old_translation)
    session.flush()


def set_translation(session: Session, event: str, text: str, translation: str | None) -> None:
    """Store (None or '': remove) the translation of every statement whose text is ``text``."""
    row = session.get(Translation, (event, _sha256(text)))
    if not translation:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(Translation(event=event, text_sha256=_sha256(text), text=text, translation=translation))
    else:
        row.translation = translation


@contextmanager
def audited(
    session: Session,
    event: str,
    who: str,
    action: str,
    summary: str,
    theme_ids: set[str],
    statement_ids: set[str],
    texts: set[str] | None = None,
) -> Iterator[None]:
    """Record who changed what, with the rows before and after, so that the action can be undone:
    the decisions on ``theme_ids``, the placements of ``statement_ids``, the translations of ``texts``."""
    before = _snapshot(session, event, theme_ids, statement_ids, texts or set())
    yield
    session.flush()
    after = _snapshot(session, event, theme_ids, statement_ids, texts or set())
    session.add(
        AuditEntry(
            event=event,
            who=who,
            action=action,
            summary=summary,
            before=json.dumps(before),
            after=json.dumps(after),
        )
    )


def _valid_id(row_id: int) -> bool:
    """A row id a database can hold (SQLite and PostgreSQL fail on ids past 64 bits, not answer 'none')."""
    return 0 < row_id < 2**63


def undo(session: Session, event: str, entry_id: int, who: str) -> AuditEntry:
    entry = session.get(AuditEntry, entry_id) if _valid_id(entry_id) else None
    if entry is None or entry.event != event:
        raise KeyError(f"no audit entry {entry_id} for event {event}")
    if entry.undone:
        raise ValueError(f"audit entry {entry_id} is already undone")
    before, after = json.loads(entry.before), json.loads(entry.after)
    with audited(
        session,
        event,
        who,
        "undo",
        f"undo #{entry.id}: {entry.summary}",
        set(before["themes"]),
        set(before["placements"]),
    ):
        _revert(session, event, before, after)
    entry.undone = True
    return entry


def latest_entry(session: Session, event: str, who: str) -> int | None:
    """The id of the last action ``who`` took on ``event`` (to offer its undo), None before any."""
    session.flush()
    return session.scalar(
        select(AuditEntry.id)
        .where(AuditEntry.event == event, AuditEntry.who == who)
        .order_by(AuditEntry.id.desc())
        .limit(1)
    )


def audit_log(session: Session, event: str) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry).where(AuditEntry.event == event).order_by(AuditEntry.id.desc())
        ).all()
    )
