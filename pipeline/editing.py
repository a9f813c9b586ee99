"""What an editor can do to the themes of one topic x question; every action is audited and undoable.

Actions change the review state in the database (see ``pipeline.review``); ``publish`` then rebuilds the
export and the paper from the machine's themes and that state.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable

from sqlalchemy.orm import Session

from pipeline.db import Placement, ThemeDecision, audited

STATUSES = ("draft", "approved", "rejected")


def theme_version(label: object, recommendation: object, status: object, statement_ids: object) -> str:
    """A short fingerprint of what an editor sees of a theme: its label, recommendation, status and
    members. An action sent from a page that showed another version is refused (``check_version``)."""
    seen = "\x1f".join(str(v) for v in (label, recommendation, status, statement_ids))
    return hashlib.sha256(seen.encode()).hexdigest()[:16]


def check_version(theme_id: str, seen: str, current: str) -> None:
    if seen and seen != current:
        raise ValueError(
            f"theme {theme_id} changed since this page was opened (another editor or a re-run): "
            "look at it again, then repeat the action"
        )


def check_references(
    question_themes: Iterable[str],
    question_statements: Iterable[str],
    theme_ids: Iterable[str] = (),
    statement_ids: Iterable[str] = (),
    rank: int | None = None,
) -> None:
    """Raise ValueError, naming them, unless every theme and statement an action names is one of this
    question's as the editor's page shows them now (``question_themes``, ``question_statements``) and a
    pinned rank is among its themes' ranks: a forged form, a stale page or a theme another editor just
    merged away is refused, never stored."""
    themes, statements = set(question_themes), set(question_statements)
    unknown_themes = sorted(set(theme_ids) - themes)
    if unknown_themes:
        raise ValueError(
            f"no theme {', '.join(unknown_themes)} in this question "
            "(merged or changed meanwhile? reload the page)"
        )
    unknown_statements = sorted(set(statement_ids) - statements)
    if unknown_statements:
        raise ValueError(f"no statement {', '.join(unknown_statements)} in this question")
    if rank is not None and not 1 <= rank <= max(1, len(themes)):
        raise ValueError(f"a rank is between 1 and {max(1, len(themes))} here")


def _decision(session: Session, event: str, theme_id: str, topic: str, question: str) -> ThemeDecision:
    row = session.get(ThemeDecision, (event, theme_id))
    if row is None:
        row = ThemeDecision(event=event, theme_id=theme_id, topic=topic, question=question)
        session.add(row)
    return row


def _set_field(
    session: Session,
    event: str,
    who: str,
    action: str,
    summary: str,
    theme_id: str,
    topic: str,
    question: str,
    column: str,
    value: object,
) -> None:
    """One audited change to one field of a theme's decision."""
    with audited(session, event, who, action, summary, {theme_id}, set()):
        setattr(_decision(session, event, theme_id, topic, question), column, value)


def rename(
    session: Session, event: str, who: str, theme_id: str, topic: str, question: str, label: str
) -> None:
    label = label.strip()
    if not label:
        raise ValueError("a label cannot be empty")
    _set_field(
        session, event, who, "rename", f"{theme_id} → “{label}”", theme_id, topic, question, "label", label
    )


def edit_recommendation(
    session: Session, event: str, who: str, theme_id: str, topic: str, question: str, text: str
) -> None:
    text = text.strip()
    if not text:
        raise ValueError("a recommendation cannot be empty")
    _set_field(
        session,
        event,
        who,
        "edit",
        f"{theme_id}: recommendation edited",
        theme_id,
        topic,
        question,
        "recommendation",
        text,
    )


def set_status(
    session: Session, event: str, who: str, theme_id: str, topic: str, question: str, status: str
) -> None:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    action = status if status != "draft" else "reopen"
    _set_field(
        session, event, who, action, f"{theme_id} → {status}", theme_id, topic, question, "status", status
    )


def pin(
    session: Session, event: str, who: str, theme_id: str, topic: str, question: str, rank: int | None
) -> None:
    if rank is not None and rank < 1:
        raise ValueError("a pinned rank starts at 1")
    summary = f"{theme_id} pinned at rank {rank}" if rank else f"{theme_id} unpinned"
    _set_field(session, event, who, "pin", summary, theme_id, topic, question, "pinned_rank", rank)


def merge(
    session: Session, event: str, who: str, sources: list[str], target: str, topic: str, question: str
) -> None:
    sources = [s for s in dict.fromkeys(sources) if s != target]
    if not sources:
        raise ValueError("choose at least one other theme to merge into this one")
    with audited(session, event, who, "merge", f"{', '.join(sources)} → {target}", {*sources, target}, set()):
        for source in sources:
            _decision(session, event, source, topic, question).merged_into = target


def move(session: Session, event: str, who: str, statement_ids: list[str], theme_id: str) -> None:
    """Put statements into a theme, or take them out of every theme (``theme_id=''``)."""
    if not statement_ids:
        raise ValueError("select at least one statement")
    where = theme_id or "unassigned"
    with audited(
        session, event, who, "move", f"{len(statement_ids)} statement(s) → {where}", set(), set(statement_ids)
    ):
        for statement_id in statement_ids:
            row = session.get(Placement, (event, statement_id))
            if row is None:
                session.add(Placement(event=event, statement_id=statement_id, theme_id=theme_id))
            else:
                row.theme_id = theme_id


def split(
    session: Session,
    event: str,
    who: str,
    statement_ids: list[str],
    topic: str,
    question: str,
    label: str = "",
) -> str:
    """Selected statements become a new theme; returns its id."""
    if not statement_ids:
        raise ValueError("select the statements that form the new theme")
    new_id = f"{topic}.{question}.e{secrets.token_hex(4)}"
    with audited(
        session,
        event,
        who,
        "split",
        f"{len(statement_ids)} statement(s) → new theme {new_id}",
        {new_id},
        set(statement_ids),
    ):
        decision = _decision(session, event, new_id, topic, question)
        decision.label = label.strip() or None
        for statement_id in statement_ids:
            row = session.get(Placement, (event, statement_id))
            if row is None:
                session.add(Placement(event=event, statement_id=statement_id, theme_id=new_id))
            else:
                row.theme_id = new_id
    return new_id
