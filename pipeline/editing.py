"""What an editor can do to the themes of one topic x question; every action is audited and undoable.

Actions change the review state in the database (see ``pipeline.review``); ``publish`` then rebuilds the
export and the paper from the machine's themes and that state.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from pipeline.db import ThemeDecision, audited, load_translations, placement, set_translation
from pipeline.schema import EDITOR_STATUSES, ThemeStatus

THEME_ACTIONS = ("rename", "edit", *EDITOR_STATUSES, "pin", "merge")
#: One status for several themes at once (``set_statuses``): the selected ones, or all drafts left.
BULK_STATUS = "bulk-status"
#: Statements to another question of the event (``relocate``), unassigned there.
MOVE_TO_QUESTION = "move-to-question"


def theme_version(theme: Mapping[Any, object]) -> str:
    """A short fingerprint of what an editor sees of a theme (a review-themes row): its label,
    recommendation, status and members. An action sent from a page that showed another version is
    refused (``check_action``)."""
    seen = "\x1f".join(str(theme[c]) for c in ("label", "recommendation", "status", "statement_ids"))
    return hashlib.sha256(seen.encode()).hexdigest()[:16]


#: The parts of a theme whose change since its approval an editor is shown (``changed_since_approval``)
CONTENT_PARTS = ("label", "recommendation", "statement_ids")


def content_marks(theme: Mapping[Any, object]) -> str:
    """Short fingerprints of a theme's label, recommendation and members, kept with its approval."""
    return ":".join(hashlib.sha256(str(theme[c]).encode()).hexdigest()[:8] for c in CONTENT_PARTS)


def changed_since_approval(theme: Mapping[Any, object], approved_content: object) -> list[str]:
    """What changed of an approved theme since an editor approved it (a re-run moved statements in or
    out, or a colleague renamed it): the names of ``CONTENT_PARTS``, "members" for the statements."""
    if not isinstance(approved_content, str) or not approved_content or theme["status"] != "approved":
        return []
    marks = zip(CONTENT_PARTS, content_marks(theme).split(":"), approved_content.split(":"), strict=False)
    return [("members" if part == "statement_ids" else part) for part, now, then in marks if now != then]


def check_action(
    themes: pd.DataFrame,
    statements: pd.DataFrame,
    action: str,
    theme_id: str = "",
    seen: str = "",
    others: Iterable[str] = (),
    statement_ids: Iterable[str] = (),
    rank: str = "",
) -> int | None:
    """Raise ValueError, naming what is wrong, unless an editor's action fits the question as its page
    shows it now: ``themes`` and ``statements`` are that question's (review themes, export rows).

    The theme (``theme_id``, whose page version was ``seen``), the ``others`` (themes merged in, a move's
    target) and the statements must be this question's; the theme must still be the version the editor
    saw; a theme action never applies to the session remarks; a pinned ``rank`` is a whole number among
    the question's ranks. A forged form, a stale page or a theme another editor just merged away is
    refused, never stored. Returns the rank to pin (None to unpin or for other actions)."""
    by_id = themes.set_index("theme_id")
    answers = set(by_id.index[by_id["status"] != ThemeStatus.OFF_TOPIC])
    if action in THEME_ACTIONS and not theme_id:
        raise ValueError("choose a theme")
    if seen and theme_id in by_id.index and seen != theme_version(by_id.loc[theme_id].to_dict()):
        raise ValueError(
            f"theme {theme_id} changed since this page was opened (another editor or a re-run): "
            "look at it again, then repeat the action"
        )
    # the session remarks are no theme to publish: no theme action applies to them
    pool = answers if action in (*THEME_ACTIONS, BULK_STATUS) else set(by_id.index)
    unknown = sorted({*([theme_id] if theme_id else []), *others} - pool)
    if unknown:
        raise ValueError(
            f"no theme {', '.join(unknown)} in this question (merged or changed meanwhile? reload the page)"
        )
    stray = sorted(set(statement_ids) - set(statements["statement_id"]))
    if stray:
        raise ValueError(f"no statement {', '.join(stray)} in this question")
    if not rank:
        return None
    if not rank.isdigit() or not 1 <= int(rank) <= max(1, len(answers)):
        raise ValueError(f"a rank is a whole number from 1 to {max(1, len(answers))} here, not {rank!r}")
    return int(rank)


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
    if status not in EDITOR_STATUSES:
        raise ValueError(f"status must be one of {', '.join(EDITOR_STATUSES)}")
    value = ThemeStatus(status).value
    action = value if value != ThemeStatus.DRAFT else "reopen"
    _set_field(
        session, event, who, action, f"{theme_id} → {value}", theme_id, topic, question, "status", value
    )


def set_statuses(
    session: Session, event: str, who: str, theme_ids: list[str], topic: str, question: str, status: str
) -> None:
    """One status for several themes of a question, as one audited (and undoable) action."""
    if status not in EDITOR_STATUSES:
        raise ValueError(f"status must be one of {', '.join(EDITOR_STATUSES)}")
    theme_ids = list(dict.fromkeys(theme_ids))
    if not theme_ids:
        raise ValueError("select at least one theme")
    value = ThemeStatus(status).value
    action = value if value != ThemeStatus.DRAFT else "reopen"
    summary = f"{len(theme_ids)} themes → {value}: {', '.join(theme_ids)}"
    with audited(session, event, who, action, summary, set(theme_ids), set()):
        for theme_id in theme_ids:
            _decision(session, event, theme_id, topic, question).status = value


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
            placement(session, event, statement_id).theme_id = theme_id  # its question, if moved, stays


def relocate(
    session: Session, event: str, who: str, statement_ids: list[str], topic: str, question: str
) -> None:
    """Put statements under another question (a note filed under the wrong one), in none of its themes
    yet: the editor places them there. Every later run keeps them there."""
    if not statement_ids:
        raise ValueError("select at least one statement")
    summary = f"{len(statement_ids)} statement(s) → question {topic}/{question}, unassigned"
    with audited(session, event, who, "move", summary, set(), set(statement_ids)):
        for statement_id in statement_ids:
            row = placement(session, event, statement_id)
            row.theme_id, row.topic, row.question = "", topic, question


MAX_TRANSLATION_CHARS = 2_000


def translate(session: Session, event: str, who: str, translations: Mapping[str, str]) -> int:
    """Store the editors' translations, by the original text of the statements they translate ('' takes
    one back); the model reads them from the next run on. Returns how many changed."""
    typed = {text: " ".join(t.split()) for text, t in translations.items() if text.strip()}
    too_long = [t for t in typed.values() if len(t) > MAX_TRANSLATION_CHARS]
    if too_long:
        raise ValueError(f"a translation is at most {MAX_TRANSLATION_CHARS:,} characters")
    current = load_translations(session, event)
    changed = {text: t for text, t in typed.items() if current.get(text, "") != t}
    if not changed:
        raise ValueError("no translation was typed or changed")
    with audited(
        session, event, who, "translate", f"{len(changed)} translation(s)", set(), set(), set(changed)
    ):
        for text, translation in changed.items():
            set_translation(session, event, text, translation)
    return len(changed)


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
            placement(session, event, statement_id).theme_id = new_id
    return new_id


@dataclass(frozen=True)
class EditorAction:
    """One editor action on one topic x question, as a review page sends it. ``name`` is one of
    ``ACTIONS``; which other fields count depends on it (a rename reads ``label``, a merge ``sources``
    into ``theme_id``, a move ``statement_ids`` to ``target``, '' = out of every theme; a bulk status sets
    the status ``target`` on the themes ``sources``). ``seen`` is the
    theme's version on the editor's page (``theme_version``)."""

    name: str
    topic: str
    question: str
    theme_id: str = ""
    seen: str = ""
    label: str = ""
    recommendation: str = ""
    rank: str = ""
    sources: tuple[str, ...] = ()
    statement_ids: tuple[str, ...] = ()
    target: str = ""

    @property
    def questions(self) -> set[tuple[str, str]]:
        """The (topic, question)s whose themes the action changes: its own, and where it moves notes to."""
        changed = {(self.topic, self.question)}
        if self.name == MOVE_TO_QUESTION:
            topic, _, question = self.target.partition("/")
            changed.add((topic, question))
        return changed


Apply = Callable[[Session, str, str, EditorAction, "int | None"], object]

#: What each action does: (session, event, who, action, checked rank) -> the change, audited.
ACTIONS: dict[str, Apply] = {
    "rename": lambda s, ev, who, a, _: rename(s, ev, who, a.theme_id, a.topic, a.question, a.label),
    "edit": lambda s, ev, who, a, _: edit_recommendation(
        s, ev, who, a.theme_id, a.topic, a.question, a.recommendation
    ),
    **{
        status.value: lambda s, ev, who, a, _: set_status(s, ev, who, a.theme_id, a.topic, a.question, a.name)
        for status in EDITOR_STATUSES
    },
    "pin": lambda s, ev, who, a, rank: pin(s, ev, who, a.theme_id, a.topic, a.question, rank),
    "merge": lambda s, ev, who, a, _: merge(s, ev, who, list(a.sources), a.theme_id, a.topic, a.question),
    "move": lambda s, ev, who, a, _: move(s, ev, who, list(a.statement_ids), a.target),
    "split": lambda s, ev, who, a, _: split(s, ev, who, list(a.statement_ids), a.topic, a.question, a.label),
    BULK_STATUS: lambda s, ev, who, a, _: set_statuses(
        s, ev, who, list(a.sources), a.topic, a.question, a.target
    ),
    MOVE_TO_QUESTION: lambda s, ev, who, a, _: relocate(
        s, ev, who, list(a.statement_ids), *a.target.partition("/")[::2]
    ),
}


def apply_action(
    session: Session,
    event: str,
    who: str,
    action: EditorAction,
    themes: pd.DataFrame,
    statements: pd.DataFrame,
    questions: Collection[tuple[str, str]] = (),
) -> None:
    """Check ``action`` against its question as the editor's page showed it (``check_action``; ``themes``
    and ``statements`` are the whole event's review themes and export rows; ``questions`` the event's
    (topic, question) pairs, where statements may move), then do it. Raises ValueError, naming what is
    wrong, and changes nothing, if it does not fit."""
    if action.name not in ACTIONS:
        raise ValueError(f"unknown action {action.name!r}")
    if action.name == MOVE_TO_QUESTION:
        target = tuple(action.target.partition("/")[::2])
        if target not in set(questions):
            raise ValueError(f"no question {action.target!r} in this event")
        if target == (action.topic, action.question):
            raise ValueError("the statements are in this question already")
    # a move's target is a theme; a bulk action's is a status, a move to a question's a question
    target_is_theme = action.name not in (BULK_STATUS, MOVE_TO_QUESTION)
    in_question = (themes["topic"] == action.topic) & (themes["question"] == action.question)
    rank = check_action(
        themes[in_question],
        statements[(statements["topic"] == action.topic) & (statements["question"] == action.question)],
        action.name,
        action.theme_id,
        seen=action.seen,
        others=[*action.sources, *([action.target] if action.target and target_is_theme else [])],
        statement_ids=action.statement_ids,
        rank=action.rank.strip() if action.name == "pin" else "",
    )
    ACTIONS[action.name](session, event, who, action, rank)
    approved = [action.theme_id] if action.name == ThemeStatus.APPROVED else []
    if action.name == BULK_STATUS and action.target == ThemeStatus.APPROVED:
        approved = list(action.sources)
    by_id = themes.set_index("theme_id")
    for theme_id in approved:  # what it was when approved, to show what a later run changes
        theme = {"theme_id": theme_id, **by_id.loc[theme_id].to_dict()}
        _decision(session, event, theme_id, action.topic, action.question).approved_content = content_marks(
            theme
        )
