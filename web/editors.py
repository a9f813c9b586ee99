"""Editors' review: the event's overview, pending hand-ins, a question's themes and the actions on them,
and re-running the pipeline. Every action is audited (``pipeline.editing``) and republishes the paper."""

from collections.abc import Callable
from functools import partial
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from pipeline import db, editing
from pipeline.crosscutting import CROSS_TOPIC
from pipeline.ingest import decide_pending
from pipeline.publish import DOCUMENTS, paper_document, refresh_after_ingest
from pipeline.schema import EDITOR_STATUSES, LanguageRoute, ThemeStatus
from pipeline.store import Manifest, read_derived, read_derived_json
from pipeline.suggestions import Suggestions
from web.common import EventSite, check_csrf, editor, harvest, outputs, redirect, render, site_of

router = APIRouter(prefix="/e/{event_id}")
TRANSLATABLE = (LanguageRoute.AWAITING, LanguageRoute.MULTILINGUAL, LanguageRoute.TRANSLATION)
Editor = Annotated[str, Depends(editor)]


@router.get("/review", response_class=HTMLResponse)
def review_event(request: Request, event_id: str, user: Editor) -> HTMLResponse:
    site = site_of(request, event_id)
    site.publish.settle()  # the cross-cutting themes and the agreement shown here are the publish's
    statements, themes = outputs(site)
    answers = themes[themes.status != ThemeStatus.OFF_TOPIC]  # the session remarks are no theme to count
    changed = _changed_since_approval(_decisions(request, event_id), answers)
    # one pass over plain columns: a filter per question cost more than the rest of the page
    kinds = ("statements", "themes", "approved", "draft", "rejected", "changed", "unassigned", "awaiting")
    counts = {key: dict.fromkeys(kinds, 0) for key in site.event.questions()}
    rows = _columns(statements, "topic", "question", "theme_id", "language_route")
    for topic, question, theme, route in rows:
        if (tally := counts.get((topic, question))) is not None:
            tally["statements"] += 1
            tally["unassigned"] += theme == ""
            tally["awaiting"] += route == LanguageRoute.AWAITING
    for topic, question, theme, status in _columns(answers, "topic", "question", "theme_id", "status"):
        if (tally := counts.get((topic, question))) is not None:
            tally["themes"] += 1
            tally["changed"] += theme in changed
            if status in EDITOR_STATUSES:
                tally[status] += 1
    totals = {
        "statements": len(statements),
        "themes": len(answers),
        "unassigned": int((statements.theme_id == "").sum()),
        "approved": int((answers.status == ThemeStatus.APPROVED).sum()),
        "draft": int((answers.status == ThemeStatus.DRAFT).sum()),
        "rejected": int((answers.status == ThemeStatus.REJECTED).sum()),
        "changed": len(changed),
        "awaiting": int((statements.language_route == LanguageRoute.AWAITING).sum()),
    }
    manifest = Manifest.load(site.layout)
    cross = read_derived(site.layout.cross_cutting)
    needs_review = request.query_params.get("show") == "needs-review"
    agreement = read_derived_json(site.layout.agreement)
    return render(
        request,
        "review_event.html",
        site=site,
        counts=counts,
        totals=totals,
        needs_review=needs_review,
        agreement=agreement if isinstance(agreement, dict) else None,
        downloads=DOWNLOADS,
        uploads=manifest.uploads[-15:][::-1],
        cross=[] if cross is None else cross.to_dict("records"),
        topic_titles={t.id: t.title for t in site.event.topics.values()},
        pending=manifest.pending(),
    )


@router.get("/tables", response_class=HTMLResponse)
def tables(request: Request, event_id: str, user: Editor) -> HTMLResponse:
    """The hand-in board: per topic, its tables (those ``event.yaml`` lists, else those seen so far) and
    how many notes each handed in per question; a table seen but not listed is marked."""
    site = site_of(request, event_id)
    statements, _ = outputs(site)
    notes = statements.drop_duplicates("note_id")
    board = []
    for session in site.event.sessions:
        for topic in session.topics:
            mine = notes[notes.topic == topic.id]
            counts = mine.groupby(["table", "question"]).size()
            listed = topic.expected_tables
            seen = sorted(set(mine.table) - set(listed))
            rows = [
                {
                    "table": table,
                    "listed": not listed or table in listed,
                    "notes": [int(counts.get((table, q.id), 0)) for q in topic.questions],
                }
                for table in [*listed, *seen]
            ]
            missing = sum(n == 0 for row in rows if row["listed"] for n in row["notes"])
            silent = [row["table"] for row in rows if not any(row["notes"])]
            board.append(
                {"topic": topic, "rows": rows, "missing": missing, "silent": silent, "declared": bool(listed)}
            )
    return render(request, "tables.html", site=site, board=board)


@router.get("/tables/{table}", response_class=HTMLResponse)
def table_notes(request: Request, event_id: str, table: str, user: Editor) -> HTMLResponse:
    """One table's statements in the order they were written, round by round, with their themes."""
    site = site_of(request, event_id)
    statements, themes = outputs(site)
    mine = statements[statements.table == table].sort_values(
        ["round", "source_file", "source_line", "position"]
    )
    if mine.empty:
        raise HTTPException(404, "no notes from this table")
    label_of = dict(zip(themes.theme_id, themes.label, strict=True))
    rows = [{**r, "theme_label": label_of.get(r["theme_id"], "")} for r in mine.to_dict("records")]
    return render(request, "table.html", site=site, table=table, rows=rows)


MAX_SEARCH_RESULTS = 200


@router.get("/search", response_class=HTMLResponse)
def search(request: Request, event_id: str, user: Editor, q: str = "") -> HTMLResponse:
    """Statements of the whole event whose text or translation holds every word of ``q`` (any case),
    each with its question and theme."""
    site = site_of(request, event_id)
    words = q.casefold().split()[:10]
    rows: list[dict] = []
    total = 0
    if words:
        statements, themes = outputs(site)
        haystack = (statements["text"] + " \x1f " + statements["text_en"].fillna("")).str.casefold()
        hit = pd.Series(True, index=statements.index)
        for word in words:
            hit &= haystack.str.contains(word, regex=False)
        found = statements[hit].sort_values(["topic", "question", "table", "round"], kind="stable")
        total = len(found)
        label_of = dict(zip(themes.theme_id, themes.label, strict=True))
        rows = [
            {**r, "theme_label": label_of.get(r["theme_id"], "")}
            for r in found.head(MAX_SEARCH_RESULTS).to_dict("records")
        ]
    return render(request, "search.html", site=site, q=q, rows=rows, total=total, limit=MAX_SEARCH_RESULTS)


#: What editors can download from the event page: the export and the paper, as written by the last publish.
DOWNLOADS = {
    "statements.csv": "text/csv",
    "themes.csv": "text/csv",
    "paper.md": "text/markdown",
    "paper.html": "text/html",
    "paper.docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "paper.pdf": "application/pdf",
}


@router.get("/download/{name}")
def download(request: Request, event_id: str, name: str, user: Editor) -> Response:
    site = site_of(request, event_id)
    if name not in DOWNLOADS:
        raise HTTPException(404, "no such file")
    site.publish.settle()
    path = site.layout.processed / name
    if not site.layout.review_themes.exists():
        raise HTTPException(409, "no outputs yet: run the pipeline (the event page's button, or harvest run)")
    data = (
        paper_document(site.layout, site.event, harvest(request).settings, name)
        if name in DOCUMENTS
        else path.read_bytes()
    )
    return Response(
        data,
        media_type=DOWNLOADS[name],
        headers={"Content-Disposition": f'attachment; filename="{event_id}-{name}"'},
    )


@router.post("/pending/{upload_id}", dependencies=[Depends(check_csrf)])
async def decide(request: Request, event_id: str, upload_id: str, user: Editor) -> Response:
    site, settings = site_of(request, event_id), harvest(request).settings
    accept = str((await request.form()).get("decision", "")) == "accept"
    try:
        upload = await run_in_threadpool(decide_pending, site.layout, site.event, upload_id, accept, user)
    except ValueError as exc:
        return redirect(f"/e/{event_id}/review", f"Not done: {exc}", request)
    if accept:
        await run_in_threadpool(refresh_after_ingest, site.layout, site.event, settings)
    verb = "accepted: its notes replace the earlier ones" if accept else "discarded"
    return redirect(f"/e/{event_id}/review", f"{upload.filename} {verb}", request)


def _question(request: Request, event_id: str, topic: str, question: str):
    site = site_of(request, event_id)
    topic_def = site.event.topics.get(topic)
    if topic_def is None or topic_def.question(question) is None:
        raise HTTPException(404, "no such topic and question")
    return site, topic_def


@router.get("/review/{topic}/{question}", response_class=HTMLResponse)
def review_question(request: Request, event_id: str, topic: str, question: str, user: Editor) -> HTMLResponse:
    site, topic_def = _question(request, event_id, topic, question)
    statements, themes = outputs(site)
    mine = statements[(statements.topic == topic) & (statements.question == question)]
    ranked = themes[(themes.topic == topic) & (themes.question == question)].sort_values("rank")
    theme_rows = ranked.to_dict("records")
    members: dict[str, list[dict]] = {t["theme_id"]: [] for t in theme_rows}
    for row in mine.to_dict("records"):  # one pass: a filter per theme costs more than the page's rendering
        members.get(row["theme_id"], []).append(row)
    for t in theme_rows:  # representative first, as in the paper
        order = {s: i for i, s in enumerate(t["statement_ids"].split("; "))}
        members[t["theme_id"]].sort(key=lambda r: order.get(r["statement_id"], 1 << 30))
    order = site.event.questions()
    here = order.index((topic, question))
    decisions = _decisions(request, event_id)
    changed = _changed_since_approval(decisions, ranked)
    offered = Suggestions.from_dict(read_derived_json(site.layout.suggestions)).of(topic, question)
    shown = set(ranked.theme_id)
    loose_ids = set(mine.loc[mine.theme_id == "", "statement_id"])
    text_of = dict(zip(mine.statement_id, mine.text, strict=True))
    pins = decisions["pinned_rank"].dropna()
    loose = mine[mine.theme_id == ""]
    # what an editor may translate: what awaits a translation, and what was placed or read through one
    translatable = mine[mine.language_route.isin(TRANSLATABLE)].drop_duplicates("text")
    return render(
        request,
        "review_question.html",
        site=site,
        topic=topic_def,
        question=topic_def.question(question),
        themes=theme_rows,
        members=members,
        versions={t["theme_id"]: editing.theme_version(t) for t in theme_rows},
        unassigned=loose[loose.flag == ""].to_dict("records"),
        flagged=loose[loose.flag != ""].to_dict("records"),
        translatable=translatable.sort_values("language_route").to_dict("records"),
        model_language=harvest(request).settings.model_language,
        previous=order[here - 1] if here > 0 else None,
        next=order[here + 1] if here + 1 < len(order) else None,
        drafts=ranked[ranked.status == ThemeStatus.DRAFT].theme_id.tolist(),
        bulk=editing.BULK_STATUS,
        move_to_question=editing.MOVE_TO_QUESTION,
        other_questions=[
            (t, q, f"{site.event.topics[t].title}: {site.event.topics[t].question(q).text}")
            for t, q in order
            if (t, q) != (topic, question)
        ],
        changed=changed,
        pinned={str(t): int(r) for t, r in pins.items() if r},
        # what still applies to the page as it is (a later action may have done it already)
        merge_suggestions=[m for m in offered.merges if {m.into, m.theme_id} <= shown],
        assign_suggestions=[
            {"suggestion": a, "text": text_of[a.statement_id]}
            for a in offered.assignments
            if a.statement_id in loose_ids and a.theme_id in shown
        ],
    )


def _columns(frame: pd.DataFrame, *names: str) -> zip:
    """``frame``'s rows as tuples of the ``names`` columns, as plain Python values."""
    return zip(*(frame[name].to_numpy(dtype=object) for name in names), strict=True)


def _decisions(request: Request, event_id: str) -> pd.DataFrame:
    """The editors' decisions on the event's themes, by theme id (``review.DECISION_COLUMNS``)."""
    with db.session_scope(harvest(request).database) as session:
        return db.load_state(session, event_id).themes.set_index("theme_id")


def _changed_since_approval(decisions: pd.DataFrame, themes: pd.DataFrame) -> dict[str, list[str]]:
    """Per approved theme, what changed since its approval (``editing.changed_since_approval``)."""
    approved_content = decisions["approved_content"]
    return {
        theme["theme_id"]: parts
        for theme in themes[themes.status == ThemeStatus.APPROVED].to_dict("records")
        if (parts := editing.changed_since_approval(theme, approved_content.get(theme["theme_id"])))
    }


@router.post("/review/{topic}/{question}/translations", dependencies=[Depends(check_csrf)])
async def translate(request: Request, event_id: str, topic: str, question: str, user: Editor) -> Response:
    """Editors' translations of a question's statements in other languages, all at once."""
    _question(request, event_id, topic, question)
    form = await request.form()
    originals, typed = form.getlist("original"), form.getlist("translation")
    here = f"/e/{event_id}/review/{topic}/{question}"
    if len(originals) != len(typed):
        return redirect(here, "Not done: the form was incomplete", request)
    try:
        with db.session_scope(harvest(request).database) as session:
            count = editing.translate(
                session, event_id, user, {str(o): str(t) for o, t in zip(originals, typed, strict=True)}
            )
    except ValueError as exc:
        return redirect(here + "#translations", f"Not done: {exc}", request)
    return redirect(
        here + "#translations",
        f"Saved {count} translation(s): the themes take them in at the next run (Re-run on the event page)",
        request,
    )


@router.post("/review/{topic}/{question}", dependencies=[Depends(check_csrf)])
async def act(request: Request, event_id: str, topic: str, question: str, user: Editor) -> Response:
    """One editor action (``pipeline.editing.ACTIONS``) from a question's page."""
    site, _ = _question(request, event_id, topic, question)
    form = await request.form()
    name = str(form.get("action", ""))
    action = editing.EditorAction(
        name=name,
        topic=topic,
        question=question,
        theme_id=str(form.get("theme_id", "")),
        seen=str(form.get("seen", "")),
        label=str(form.get("label", "")),
        recommendation=str(form.get("recommendation", "")),
        rank=str(form.get("rank", "")),
        sources=tuple(str(t) for t in form.getlist("sources")),
        statement_ids=tuple(str(s) for s in form.getlist("statement_ids")),
        # a move to another question sends the question in a field of its own, beside the theme select
        target=str(form.get("to_question" if name == editing.MOVE_TO_QUESTION else "target", "")),
    )
    here = f"/e/{event_id}/review/{topic}/{question}"

    def change(session: Session) -> None:
        statements, themes = outputs(site)
        editing.apply_action(session, event_id, user, action, themes, statements, site.event.questions())

    anchor = f"#{action.theme_id}" if action.theme_id else ""
    done = _done(action, site)
    published = partial(site.publish.after_change, action.questions)
    return await _audited_change(request, site, user, change, published, here, here + anchor, done)


async def _audited_change(
    request: Request,
    site: EventSite,
    user: str,
    change: Callable[[Session], None],
    publish: Callable[[], None],
    here: str,
    done_at: str,
    done: str,
) -> Response:
    """Make an editor's ``change`` (audited by ``pipeline.editing``) and ``publish`` it, in a worker thread
    so that other editors' pages are served meanwhile; back to ``done_at`` with the confirmation and its
    Undo, or to ``here`` saying why it was not done."""

    def work() -> int | None:
        with db.session_scope(harvest(request).database) as session:
            change(session)
            entry = db.latest_entry(session, site.event.id, user)
        publish()
        return entry

    try:
        entry = await run_in_threadpool(work)
    except ValueError as exc:
        return redirect(here, f"Not done: {exc}", request)
    undo = f"/e/{site.event.id}/audit/{entry}/undo" if entry else None
    return redirect(done_at, f"Done: {done}", request, undo=undo)


def _done(action: editing.EditorAction, site: EventSite) -> str:
    """What an action did, as its confirmation says it."""
    if action.name == editing.BULK_STATUS:
        return f"{len(action.sources)} themes {action.target}"
    if action.name == editing.MOVE_TO_QUESTION:
        topic, _, question = action.target.partition("/")
        in_topic = site.event.topics.get(topic)
        where = in_topic.question(question) if in_topic else None  # apply_action refuses a stray one
        text = where.text if where else action.target
        return f"{len(action.statement_ids)} statement(s) moved to “{text}”, unassigned there"
    return action.name


@router.post("/cross/{cross_id}", dependencies=[Depends(check_csrf)])
async def cross_cutting(request: Request, event_id: str, cross_id: str, user: Editor) -> Response:
    """Confirm, dismiss, reopen or rename a cross-cutting theme, like any theme (audited, undoable)."""
    site = site_of(request, event_id)
    form = await request.form()
    action, label = str(form.get("action", "")), str(form.get("label", ""))
    here = f"/e/{event_id}/review#cross-cutting"

    def change(session: Session) -> None:
        cross = read_derived(site.layout.cross_cutting)
        if cross is None or cross_id not in set(cross["cross_id"]):
            raise ValueError(f"no cross-cutting theme {cross_id} (a re-run may have changed it)")
        if action == "rename":
            editing.rename(session, event_id, user, cross_id, CROSS_TOPIC, "", label)
        elif action in EDITOR_STATUSES:
            editing.set_status(session, event_id, user, cross_id, CROSS_TOPIC, "", action)
        else:
            raise ValueError(f"unknown action {action!r}")

    done = f"cross-cutting theme {action}"
    # no question's themes change: the publish that makes the cross-cutting themes is waited for here
    return await _audited_change(request, site, user, change, site.publish, here, here, done)


@router.post("/run", dependencies=[Depends(check_csrf)])
def rerun(request: Request, event_id: str, user: Editor) -> Response:
    from flows.harvest import run_event  # Prefect is imported only when needed
    from flows.server import PrefectDidNotStart

    site = site_of(request, event_id)
    warming = harvest(request).warming
    if warming is not None and warming.is_alive():
        warming.join()  # the loads this re-run would otherwise make itself, at the same time
    try:
        # the server stays up for the next re-run, as the models stay loaded
        summary = run_event(site.folder, harvest(request).settings.data_dir, keep_server=True)
    except PrefectDidNotStart as exc:
        return redirect(f"/e/{event_id}/review", f"Not done: {exc}", request)
    return redirect(
        f"/e/{event_id}/review",
        f"Run finished: {summary['statements']} statements, {summary['themes']} themes",
        request,
    )
