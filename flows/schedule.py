"""Scheduled and upload-triggered runs of the Harvest flow, served as a Prefect deployment.

``harvest schedule EVENT_DIR`` serves the flow with the chosen schedules (cron, an interval, or the end
time of each session in event.yaml) and, unless ``--no-watch``, watches the event for new notes: note
files added to the event folder or uploads through the web app. A change that stays quiet for
``debounce`` seconds triggers one run through the deployment. The deployment runs one flow run at a time
and the flow itself holds the event's run lock, so overlapping runs never both write.

Flow runs execute warm by default: in the serving process (``WarmRunner``), one after the other, so the
embedding model, spaCy and what each run remembers stay loaded from one run to the next. A run after
one new table then takes a fraction of a second of pipeline time instead of a new Python process that
imports and loads everything again. The serving process loads the models before the first run is due
(``pipeline.warmup``), so the first run after a session costs what the next one does. The trade-offs
against Prefect's own runner (``warm=False``, one subprocess per flow run): a run cannot be cancelled
from the Prefect UI once it has started (it finishes or the server is stopped), and a crash inside a
run (out of memory) takes the serving process with it.

A ``harvest run`` of the served event, from the same data root with the same settings, hands its run to
the warm process instead of starting cold (``flows.server.run_in_serving_process``): while it serves, the
process leaves a record of itself under the data root's ``prefect/`` (``flows.server.serving_file``); the
command starts a flow run of the deployment, tagged ``HANDED_OVER``, and waits for it; the runner keeps
that run's summary (JSON under ``prefect/results``) for the command to print. A ``harvest run`` that ran in
its own process leaves such a process behind (``flows.server.keep_warm``): ``serve_event`` with
``idle_exit``, which serves only handed-over runs and stops after that long without one.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from filelock import FileLock, Timeout
from prefect.schedules import Cron, Interval, RRule, Schedule
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.harvest import harvest_event
from flows.server import (
    HANDED_OVER,
    SERVER_ADDRESS_FILE,
    ServingProcess,
    flush_to_api,
    forget_kept_warm,
    keep_warm_lock,
    prefect_server_answers,
    runs_alike,
    serving_file,
    serving_record,
    stop_kept_warm,
    stopping_with_this_process,
    summary_file,
    wake_file,
)
from pipeline.config import load_settings
from pipeline.event import Event, load_event
from pipeline.ingest import discover_note_files
from pipeline.store import Layout, Manifest, write_text
from pipeline.warmup import warm_up

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.deployments.runner import RunnerDeployment

log = logging.getLogger(__name__)
FLOW_NAME = "harvest-event"


def deployment_name(event: Event) -> str:
    return f"harvest-{event.id}"


def build_schedules(
    event: Event, cron: list[str], interval: float | None, at_session_ends: bool, timezone: str = "UTC"
) -> list[Schedule]:
    schedules: list[Schedule] = [Cron(c, timezone=timezone) for c in cron]
    if interval:
        schedules.append(Interval(timedelta(seconds=interval), timezone=timezone))
    if at_session_ends:
        ends = [s.ends_at for s in event.sessions if s.ends_at is not None]
        if not ends:
            raise ValueError(
                "no session in event.yaml has ends_at; add e.g. `ends_at: 2020-11-10T17:30:00+01:00`"
            )
        for end in ends:  # one run right after each session
            start = end.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
            schedules.append(RRule(f"DTSTART:{start}\nRRULE:FREQ=DAILY;COUNT=1", timezone="UTC"))
    return schedules


def new_notes_signature(event_dir: Path, event: Event, layout: Layout) -> tuple:
    """Changes when facilitators hand in notes: files in the event folder, or web uploads.

    The runs' own ingest of event-folder files is left out, so a run does not trigger the next."""
    files = tuple(
        (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in discover_note_files(event_dir, event)
    )
    web = tuple(u.upload_id for u in Manifest.load(layout).uploads if u.via == "web")
    return files, web


class UploadWatcher(threading.Thread):
    """Calls ``trigger`` once new notes have stopped arriving for ``debounce`` seconds."""

    def __init__(
        self,
        signature: Callable[[], tuple],
        trigger: Callable[[], object],
        debounce: float,
        poll: float = 2.0,
    ) -> None:
        super().__init__(daemon=True, name="harvest-upload-watcher")
        self.signature, self.trigger, self.debounce, self.poll = signature, trigger, debounce, poll
        self.stopped = threading.Event()
        self.triggered = 0
        # Prefect's settings (the API URL) live in context variables, which a new thread does not inherit
        self._context = contextvars.copy_context()

    def run(self) -> None:
        self._context.run(self._watch)

    def _watch(self) -> None:
        seen = handled = self.signature()
        changed_at: float | None = None
        while not self.stopped.wait(self.poll):
            try:
                current = self.signature()
            except OSError:  # a file being written or moved right now; look again next time
                continue
            if current != seen:
                seen, changed_at = current, time.monotonic()
            elif (
                changed_at is not None
                and current != handled
                and time.monotonic() - changed_at >= self.debounce
            ):
                log.info("new notes for the event: starting a run")
                try:
                    self.trigger()
                    self.triggered += 1
                    handled = current
                except Exception:  # keep watching: the next change tries again
                    log.exception("could not start a run")
                changed_at = None

    def stop(self) -> None:
        self.stopped.set()


@contextmanager
def prefect_api(home: Path) -> Iterator[str]:
    """The Prefect API to serve against: PREFECT_API_URL if set, else a local Prefect server started here.

    Prefect's ephemeral mode runs flows but has no scheduler, so schedules need a real server; on a
    laptop this starts one on a free loopback port (its database under ``home``) and stops it on exit."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    log_file = open(home / "server.log", "ab")  # noqa: SIM115 - open for the server's whole life
    server = subprocess.Popen(
        stopping_with_this_process("prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)),
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        # Its own process group: Ctrl-C in a terminal reaches the whole foreground group, and the server
        # must outlive the runner's shutdown (which still reports to it); it is stopped below.
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not prefect_server_answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the local Prefect server did not start; see {home / 'server.log'}")
            time.sleep(0.5)
        log.info("local Prefect server on %s", url)
        os.environ["PREFECT_API_URL"] = url  # flow runs started by the runner inherit it
        write_text(home / SERVER_ADDRESS_FILE, url)  # for `harvest run`s meanwhile (run_event)
        with temporary_settings(updates={PREFECT_API_URL: url}):
            try:
                yield url
            finally:
                flush_to_api()
    finally:
        address = home / SERVER_ADDRESS_FILE
        with suppress(OSError):  # not there, or not ours: one another server wrote since is left
            if address.read_text(encoding="utf-8").strip() == url:
                address.unlink()
        os.environ.pop("PREFECT_API_URL", None)
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log_file.close()


class WarmRunner:
    """Runs the flow runs of one deployment in this process, one at a time, oldest first.

    Prefect's runner starts each flow run in a fresh subprocess (``flow_engine.run_flow_in_subprocess``),
    which imports and loads everything again; here the runs share the process and so its loaded models.
    The deployment is registered with its schedules as ``flow.serve`` registers it; Prefect's server still
    creates the scheduled runs, and they show in its UI as usual. Runs tagged ``HANDED_OVER`` keep their
    summary under ``results`` (``flows.server.summary_file``) for ``RESULTS_KEPT`` seconds: the command
    that handed the run over reads it as soon as the run ends."""

    RESULTS_KEPT = 24 * 3600.0

    #: Seconds between looks at the wake file (a ``stat``) while waiting for the next poll of the API.
    WAKE_CHECK = 0.05

    def __init__(
        self,
        flow: Any,
        deployment_id: UUID,
        poll: float = 1.0,
        results: Path | None = None,
        wake: Path | None = None,
        idle_exit: float | None = None,
    ) -> None:
        self.flow, self.deployment_id, self.poll = flow, deployment_id, poll
        self.results = results
        self.idle_exit = idle_exit  # seconds without a run after which ``serve`` returns (None: never)
        # wall time, so that a machine's sleep counts as idle time; from the start of ``serve``
        self.last_run = time.time()
        self.wake = wake  # touched by a `harvest run` that has handed a run over (ServingProcess.wake_up)
        self.stopped = threading.Event()
        # the runs a `harvest run` handed over keep their summary, which that command prints
        self.reporting_flow = flow.with_options(on_completion=[*flow.on_completion_hooks, self._keep_summary])

    def run_due(self, client: SyncPrefectClient) -> int:
        """Run every flow run of the deployment that is due; returns how many ran."""
        from prefect.flow_engine import run_flow
        from prefect.states import Pending
        from prefect.types._datetime import now
        from prefect.utilities.engine import propose_state_sync

        due = client.get_scheduled_flow_runs_for_deployments(
            deployment_ids=[self.deployment_id], scheduled_before=now("UTC")
        )
        ran = 0
        for flow_run in sorted(due, key=lambda r: r.next_scheduled_start_time or now("UTC")):
            if self.stopped.is_set():
                break
            if not propose_state_sync(client, Pending(), flow_run_id=flow_run.id).is_pending():
                continue  # taken or cancelled meanwhile
            log.info("flow run %s: running in this process (pid %d)", flow_run.name, os.getpid())
            handed_over = HANDED_OVER in flow_run.tags
            if handed_over:
                self.prune_results()
            flow = self.reporting_flow if handed_over else self.flow
            run_flow(flow, flow_run=client.read_flow_run(flow_run.id), return_type="state")
            ran += 1
        return ran

    def _keep_summary(self, flow: Any, flow_run: Any, state: Any) -> None:
        """A completion hook: it runs as soon as the run's state is Completed, before Prefect's end of
        the run (which waits for its heartbeat thread, ~0.5 s), so the waiting command reads the summary
        at once; and as JSON of Harvest's own, which that command reads without importing Prefect."""
        if self.results is not None:
            summary = json.dumps(state.result(), default=str)
            write_text(summary_file(self.results, str(flow_run.id)), summary)

    def prune_results(self) -> int:
        """Remove the kept results older than ``RESULTS_KEPT`` (their commands have long read them);
        returns how many. Without this they would pile up, one a handed-over run."""
        if self.results is None or not self.results.is_dir():
            return 0
        oldest = time.time() - self.RESULTS_KEPT
        old = [f for f in self.results.iterdir() if f.is_file() and f.stat().st_mtime < oldest]
        for file in old:
            file.unlink(missing_ok=True)
        return len(old)

    def serve(self) -> None:
        """Poll until ``stop``, or until ``idle_exit`` seconds have passed without a run. In the main
        thread, Ctrl-C and SIGTERM stop it once the run under way has finished (a run that is interrupted
        inside Prefect's engine ends as crashed and does not stop the process); a second Ctrl-C stops at
        once."""
        from prefect.client.orchestration import get_client

        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                signal.signal(number, self._on_signal)
        # idle from now: the models' load after the runner was made (``warm_up``, seconds on a busy
        # machine) is no time without a run, and counting it cut a short ``idle_exit`` shorter still
        self.last_run = time.time()
        while not self.stopped.is_set():
            # One client for the polls while they work: opening one asks the server its version, ~45 ms of
            # CPU each time; at a poll a second the idle process took 5 % of a core, now 0.3 % (measured).
            try:
                with get_client(sync_client=True) as client:
                    while not self.stopped.is_set():
                        woken = self._woken()  # before the look: a wake-up during it is not missed
                        if self.run_due(client):
                            self.last_run = time.time()
                        elif self._idle_for_long():
                            return
                        self._until_next_look(woken)
            except Exception:  # the API may be busy or restarting: a new client tries again
                log.exception("could not fetch or run the due flow runs")
                self.stopped.wait(self.poll)

    def _idle_for_long(self) -> bool:
        if self.idle_exit is None or time.time() - self.last_run < self.idle_exit:
            return False
        print(f"No run for {time.time() - self.last_run:.0f} s: stopping.", flush=True)
        self.stop()
        return True

    def _woken(self) -> int:
        try:
            return self.wake.stat().st_mtime_ns if self.wake is not None else 0
        except OSError:  # not touched yet
            return 0

    def _until_next_look(self, woken: int) -> None:
        """Wait ``poll`` seconds, or until the wake file is touched after ``woken`` (its time then)."""
        if self.wake is None:
            self.stopped.wait(self.poll)
            return
        deadline = time.monotonic() + self.poll
        while self._woken() == woken and not self.stopped.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.stopped.wait(min(self.WAKE_CHECK, left))

    def stop(self) -> None:
        self.stopped.set()

    def _on_signal(self, number: int, frame: object) -> None:
        if self.stopped.is_set():
            raise KeyboardInterrupt
        log.warning("stopping once the run under way has finished (Ctrl-C again: now)")
        self.stop()


def serve_event(
    event_dir: Path,
    data_dir: Path,
    cron: list[str],
    interval: float | None,
    at_session_ends: bool,
    watch: bool = True,
    debounce: float = 60.0,
    poll: float = 2.0,
    warm: bool = True,
    idle_exit: float | None = None,
) -> None:
    """Serve the flow for one event until interrupted (Ctrl-C / SIGTERM); ``warm`` runs the flow runs in
    this process (``WarmRunner``), else each in a subprocess of Prefect's runner. With ``idle_exit``
    (warm only; ``flows.server.keep_warm``), it stops after that many seconds without a run.

    A process that ``keep_warm`` left serving the event is stopped first: one process serves an event."""
    if threading.current_thread() is threading.main_thread():
        # A process started in the background of a script (`cmd &`) inherits SIGINT as ignored; Ctrl-C
        # or `kill -INT` must stop it all the same (SIGTERM is handled by Prefect's runner).
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if idle_exit is not None and not warm:
        raise ValueError("--idle-exit needs --warm: only a warm process has runs to wait for")
    data_dir = Path(data_dir).resolve()
    event = load_event(Path(event_dir))
    with ExitStack() as stack:
        if idle_exit is None:
            stop_kept_warm(data_dir, event.id)
        else:
            stack.callback(forget_kept_warm, data_dir, event.id)
            try:  # one such process an event; another one may be ending (keep_warm stopped it)
                stack.enter_context(FileLock(str(keep_warm_lock(data_dir, event.id)), timeout=60))
            except Timeout:
                log.info("another process keeps %s warm: nothing to do", event.id)
                return
        api = stack.enter_context(prefect_api(data_dir / "prefect"))
        triggers = (cron, interval, at_session_ends, watch, debounce)
        _serve(api, event, event_dir, data_dir, *triggers, poll, warm, idle_exit)


def _serve(
    api: str,
    event: Event,
    event_dir: Path,
    data_dir: Path,
    cron: list[str],
    interval: float | None,
    at_session_ends: bool,
    watch: bool,
    debounce: float,
    poll: float,
    warm: bool,
    idle_exit: float | None,
) -> None:
    from prefect.deployments import run_deployment

    event_dir = Path(event_dir).resolve()
    layout = Layout(data_dir, event.id)
    name = deployment_name(event)
    parameters = {"event_dir": str(event_dir), "data_dir": str(data_dir)}
    watcher = None
    if watch:
        watcher = UploadWatcher(
            lambda: new_notes_signature(event_dir, event, layout),
            lambda: run_deployment(f"{FLOW_NAME}/{name}", parameters=parameters, timeout=0),
            debounce,
            poll,
        )
        watcher.start()
    schedules = build_schedules(event, cron, interval, at_session_ends)
    description = f"Harvest runs for {event.title or event.id}"
    try:
        if warm:
            deployment = cast(
                "RunnerDeployment",
                harvest_event.to_deployment(
                    name=name, schedules=schedules, parameters=parameters, description=description
                ),
            )
            results = data_dir / "prefect" / "results"
            # a handed-over run wakes the runner (a file it looks at 20 times a second); the API is asked
            # once a second, for runs Prefect's schedules make
            wake = wake_file(data_dir, event.id)
            runner = WarmRunner(
                harvest_event, cast(UUID, deployment.apply()), min(poll, 1.0), results, wake, idle_exit
            )
            # before the first run is due: it then costs what any later run costs
            settings = load_settings(data_dir=data_dir)
            loaded = warm_up(settings, event.language)
            log.info("models loaded for the warm runs in %.1f s: %s", sum(loaded.values()), loaded)
            log.info("%s/%s is being served; its flow runs run in this process", FLOW_NAME, name)
            print(f"Your deployment '{FLOW_NAME}/{name}' is being served, warm (runs in this process).")
            serving = ServingProcess(
                api,
                f"{FLOW_NAME}/{name}",
                runs_alike(settings),
                os.getpid(),
                str(wake),
                str(results),
                idle_exit or 0.0,
            )
            record = serving_file(data_dir, event.id)
            write_text(record, json.dumps(asdict(serving)))  # `harvest run`s of the event hand over to us
            try:
                runner.serve()
            finally:
                runner.stop()
                if serving_record(data_dir, event.id) == serving:  # not one another server wrote since
                    record.unlink(missing_ok=True)
                    wake.unlink(missing_ok=True)
        else:
            harvest_event.serve(
                name=name,
                schedules=schedules,
                parameters=parameters,
                global_limit=1,
                description=description,
            )
    finally:
        if watcher is not None:
            watcher.stop()
