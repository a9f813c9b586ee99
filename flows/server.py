"""The Prefect API a run reports to, found or started without importing Prefect.

A flow run needs a Prefect API. In order: ``PREFECT_API_URL`` when set; the server ``harvest schedule``
runs for the same data root, when it answers; else a temporary server for this run, the one Prefect
itself would start in ephemeral mode (its API app under uvicorn, no UI, no background services), stopped
when the run ends. This module imports nothing of Prefect, so the CLI starts that server first and
imports the pipeline while it comes up: two start-ups of several seconds each that overlap on two
cores instead of following one another.
"""

from __future__ import annotations

import atexit
import base64
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.config import Settings

log = logging.getLogger(__name__)

#: Where ``harvest schedule`` leaves the API address of the Prefect server it started (under the data
#: root's ``prefect/``), so a ``harvest run`` meanwhile uses it instead of starting one of its own.
SERVER_ADDRESS_FILE = "api-url"


@dataclass(frozen=True)
class ApiAddress:
    """The Prefect API of a run: calling it returns the address once it answers (None: PREFECT_API_URL is
    set, and Prefect uses it). ``temporary``: a server started for Harvest's runs (``TemporaryServer``),
    which runs none of Prefect's services, so nothing there acts on a flow run's heartbeats."""

    address: Callable[[], str | None]
    temporary: bool = False

    def __call__(self) -> str | None:
        return self.address()


class PrefectDidNotStart(RuntimeError):
    """Prefect's temporary server did not answer in time, twice: the machine is too busy for it."""


def server_address_file(data_dir: Path) -> Path:
    return Path(data_dir) / "prefect" / SERVER_ADDRESS_FILE


def prefect_server_answers(url: str) -> bool:
    """Whether the Prefect API at ``url`` answers its health check now."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return bool(answer.status == 200)
    except (OSError, ValueError):  # not (or no longer) listening, or not a URL
        return False


#: The tag of the flow runs a ``harvest run`` hands to a warm serving process: their summary is kept
#: (JSON, under the data root's ``prefect/results``) for the ``harvest run`` waiting to print it.
HANDED_OVER = "harvest-run"


class HandOverFailed(RuntimeError):
    """A run handed to a serving process did not complete there (failed, crashed or was cancelled)."""


@dataclass(frozen=True)
class ServingProcess:
    """A warm ``harvest schedule`` process: the Prefect API and deployment it serves, the digest of its
    settings and code (``runs_alike``), its process id, the file it watches to look for due
    runs at once (``wake_file``; empty: it finds them at its next poll), the folder where it keeps
    the summaries of handed-over runs (``summary_file``; empty: it takes none), and the seconds without
    a run after which it stops (0: it serves until stopped; more: a process ``keep_warm`` started)."""

    api: str
    deployment: str
    settings: str
    pid: int
    wake: str = ""
    results: str = ""
    idle_exit: float = 0.0

    def wake_up(self) -> None:
        """Have it look for due runs now: a handed-over run would otherwise wait for its next poll of
        the API (up to a second; half of it on average, an eighth of a handed-over run)."""
        if self.wake:
            with suppress(OSError):  # it then finds the run at its next poll
                Path(self.wake).touch()

    def alive(self) -> bool:
        return process_alive(self.pid)


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's too)."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def runs_alike(settings: Settings) -> str:
    """What a ``harvest run`` and a serving process must share for the run to be handed over: their
    settings (``pipeline.config.settings_id``) and their code, so that a run after an upgrade does not
    go to a process still running the release before."""
    from pipeline.config import settings_id
    from pipeline.provenance import code_id

    code = code_id("pipeline", "pipeline.readers", "pipeline.paper", "flows")
    return f"{settings_id(settings)}-{code}"


def wake_file(data_dir: Path, event_id: str) -> Path:
    """The file a warm ``harvest schedule`` serving ``event_id`` watches (``ServingProcess.wake_up``)."""
    return Path(data_dir) / "prefect" / f"wake-{event_id}"


def serving_file(data_dir: Path, event_id: str) -> Path:
    """Where a warm ``harvest schedule`` describes itself while it serves ``event_id`` (under the data
    root's ``prefect/``), so a ``harvest run`` of that event can hand its run to it."""
    return Path(data_dir) / "prefect" / f"serving-{event_id}.json"


def serving_record(data_dir: Path, event_id: str) -> ServingProcess | None:
    """What ``serving_file`` says, as written: None if there is no record or one of another shape."""
    try:
        return ServingProcess(**json.loads(serving_file(data_dir, event_id).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):  # none serves it, or a record from another version
        return None


def live_serving_record(data_dir: Path, event_id: str) -> ServingProcess | None:
    """What ``serving_file`` says, if that process still runs and its API answers now (a record left by
    a process that was killed is not)."""
    serving = serving_record(data_dir, event_id)
    if serving is None or not serving.alive() or not prefect_server_answers(serving.api):
        return None
    return serving


def serving_process(data_dir: Path, event_id: str, settings: str) -> ServingProcess | None:
    """The warm ``harvest schedule`` process serving ``event_id`` from this data root with the settings
    and code whose digest is ``settings`` (``runs_alike``), if it still runs and its API answers now."""
    serving = live_serving_record(data_dir, event_id)
    if serving is None or not serving.results or serving.settings != settings:
        return None
    return serving


def run_in_serving_process(
    serving: ServingProcess, parameters: dict[str, Any], poll: float = 0.02
) -> dict | None:
    """Hand one run of the event to the warm ``harvest schedule`` process ``serving`` (a flow run of its
    deployment, tagged ``HANDED_OVER``) and wait for it: the run's summary, as ``harvest_event`` returns
    it. None when that process's API does not take the run (no such deployment: it is no longer served),
    or when that process stopped before it took the run (the run is withdrawn): run it here. Raises
    HandOverFailed when the run did not complete there, or its API stopped answering meanwhile.

    It speaks Prefect's REST API itself: importing Prefect's client took ~1 s, a third of a handed-over
    run after one new table."""
    api = serving.api.rstrip("/")
    try:
        deployment = _call_api("GET", f"{api}/deployments/name/{urllib.parse.quote(serving.deployment)}")
        run = _call_api(
            "POST",
            f"{api}/deployments/{deployment['id']}/create_flow_run",
            {"parameters": parameters, "tags": [HANDED_OVER]},
        )
    except OSError as exc:  # urllib's errors, an HTTP status among them
        log.warning(
            "the serving process (pid %d) did not take the run (%s): running it here", serving.pid, exc
        )
        return None
    serving.wake_up()
    try:
        return _awaited(serving, api, run["id"], poll)
    except OSError as exc:
        raise HandOverFailed(
            f"the serving process's API (pid {serving.pid}) stopped answering: {exc}"
        ) from exc


def _awaited(serving: ServingProcess, api: str, run_id: str, poll: float) -> dict | None:
    """The summary of the flow run ``run_id`` handed to ``serving``, once it has ended (see
    ``run_in_serving_process``). The summary's file is looked for every ``poll`` seconds (a ``stat``);
    the run's state is asked of the API at the start, every ``STATE_EVERY`` seconds and when the serving
    process is gone, to tell a run that failed or was never taken. Each answer costs the API's server
    CPU that the run needs: asked every 0.1 s, handed-over runs after one table took 2.5 s (median of
    five), 2.15 s asked every second (alternated, 8,030 distinct notes)."""
    kept = summary_file(Path(serving.results), run_id)
    asked: float | None = None
    completed: float | None = None
    while True:
        now, alive = time.monotonic(), serving.alive()
        if asked is None or not alive or now - asked >= STATE_EVERY:
            asked = now
            state = _call_api("GET", f"{api}/flow_runs/{run_id}").get("state") or {}
            kind = state.get("type")
            if kind == "COMPLETED":
                completed = now if completed is None else completed
            elif kind in FINAL_STATES:
                raise HandOverFailed(
                    f"the run in the serving process (pid {serving.pid}) ended {state.get('name')}: "
                    f"{state.get('message')}"
                )
            elif not alive:
                if kind in (None, "SCHEDULED"):
                    _call_api("DELETE", f"{api}/flow_runs/{run_id}")
                    return None
                raise HandOverFailed(f"the serving process (pid {serving.pid}) stopped during the run")
        if kept.exists():  # written by a hook of the Completed state, just after it is set
            break
        if completed is not None and (not alive or now - completed > SUMMARY_WAIT):
            raise HandOverFailed(f"the serving process (pid {serving.pid}) kept no summary of the run")
        time.sleep(poll)
    summary: dict = json.loads(kept.read_text(encoding="utf-8"))
    return summary


#: Seconds a completed handed-over run's summary may take to appear (it takes milliseconds).
SUMMARY_WAIT = 30.0

#: Seconds between the questions about a handed-over run's state while its summary is awaited.
STATE_EVERY = 1.0

#: The states a flow run ends in (Prefect's ``StateType``s that ``is_final``).
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def summary_file(results: Path, flow_run_id: str) -> Path:
    """Where the warm runner keeps the summary (JSON) of a handed-over run, for the command waiting."""
    return Path(results) / f"{flow_run_id}.json"


def _call_api(method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    """One call of a Prefect server's REST API: the answer's JSON (None when it has no body). With the
    credentials Prefect's client sends, where they are set in the environment (a server with basic
    auth, Prefect Cloud); set in a Prefect profile only, the API refuses the run, which then runs here."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if os.environ.get("PREFECT_API_AUTH_STRING"):
        token = base64.b64encode(os.environ["PREFECT_API_AUTH_STRING"].encode("utf-8")).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    elif os.environ.get("PREFECT_API_KEY"):
        headers["Authorization"] = f"Bearer {os.environ['PREFECT_API_KEY']}"
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode("utf-8"),
        method=method,
        headers=headers,
    )
    attempts = 0
    while True:
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                payload = answer.read()
            return json.loads(payload) if payload else None
        except urllib.error.URLError as exc:  # an HTTP error status among them
            attempts += 1
            if not _worth_again(exc) or attempts == API_ATTEMPTS:
                raise
            after = exc.headers.get("Retry-After", "") if isinstance(exc, urllib.error.HTTPError) else ""
            time.sleep(float(after) if after.isdigit() else 0.25 * 2 ** (attempts - 1))


def _worth_again(error: urllib.error.URLError) -> bool:
    """Whether a failed API call is worth sending again, as Prefect's client would: a busy server's
    answer, or a connection the server reset (not one it refused: nothing listens there)."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code in RETRIED_STATUSES
    return isinstance(error.reason, ConnectionResetError)


#: Answers of a Prefect server to a request worth sending again, as Prefect's client retries them: a
#: busy SQLite database is a 503 (``prefect.server.api.server.is_client_retryable_exception``).
RETRIED_STATUSES = frozenset({408, 429, 502, 503})

#: Tries of one API call (waits of 0.25, 0.5, 1, 2 and 4 s between them, unless the server says).
API_ATTEMPTS = 6


def keep_warm_lock(data_dir: Path, event_id: str) -> Path:
    """The lock a process ``keep_warm`` started holds while it lives: one such process an event."""
    return Path(data_dir) / "prefect" / f"keep-warm-{event_id}.lock"


def keep_warm_pid(data_dir: Path, event_id: str) -> Path:
    """The process id of the last process ``keep_warm`` started for the event: while it lives, and
    before it serves (its imports and loads take seconds), no other one is started."""
    return Path(data_dir) / "prefect" / f"keep-warm-{event_id}.pid"


def _started_and_alive(data_dir: Path, event_id: str) -> bool:
    pid = _kept_warm_pid(data_dir, event_id)
    return pid is not None and process_alive(pid)


def _kept_warm_pid(data_dir: Path, event_id: str) -> int | None:
    try:
        return int(keep_warm_pid(data_dir, event_id).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none started, or a file cut short
        return None


def forget_kept_warm(data_dir: Path, event_id: str) -> None:
    """For the process ``keep_warm`` started, as it ends: its process id file goes, unless a newer one's."""
    if _kept_warm_pid(data_dir, event_id) == os.getpid():
        keep_warm_pid(data_dir, event_id).unlink(missing_ok=True)


def keep_warm(event_dir: Path, data_dir: Path, event_id: str, settings: str, idle_exit: float) -> int | None:
    """Leave a warm process serving the event's next ``harvest run``s (``harvest schedule --idle-exit``),
    unless one serves it already; returns its process id, or None when none was started.

    Python's imports, Prefect's server start and the model loads take a fresh ``harvest run`` several
    seconds however little is new (a run after one table of an 8,030-note event: 8.7 s, 29.5 % of the
    cold run); a warm process does that run in 2.4 s (``benchmarks/incremental.py``). It stops after
    ``idle_exit`` seconds without a run, as build tools' daemons do (Gradle's: 3 hours), holding ~1.5 GiB
    meanwhile. A process of other settings or code (an upgrade) that ``keep_warm`` started is stopped for
    the new one; one that ``harvest schedule`` serves by hand is left alone, and none is started beside
    it."""
    serving = live_serving_record(data_dir, event_id)
    if serving is not None:
        if serving.settings == settings or not serving.idle_exit:
            return None
        os.kill(serving.pid, signal.SIGTERM)  # it stops once a run under way has ended
    elif _started_and_alive(data_dir, event_id):  # it is loading, or stopping
        return None
    log_file = Path(data_dir) / "prefect" / f"keep-warm-{event_id}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "cli.main", "schedule", str(Path(event_dir).resolve())]
    command += ["--data-dir", str(Path(data_dir).resolve()), "--no-watch", "--idle-exit", f"{idle_exit:g}"]
    with log_file.open("ab") as log_output:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped with the terminal's foreground group (Ctrl-C, hang-up)
        )
    keep_warm_pid(data_dir, event_id).write_text(str(process.pid), encoding="utf-8")
    return process.pid


def stop_kept_warm(data_dir: Path, event_id: str, timeout: float = 60) -> None:
    """Stop the process ``keep_warm`` left serving the event, if one does, and wait until it has ended
    (``harvest schedule`` takes the event over)."""
    serving = live_serving_record(data_dir, event_id)
    if serving is None or not serving.idle_exit:
        return
    os.kill(serving.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while serving.alive() and time.monotonic() < deadline:
        time.sleep(0.2)


def running_local_server(data_dir: Path) -> str | None:
    """The API address ``harvest schedule`` left for this data root, if that server answers now."""
    try:
        url = server_address_file(data_dir).read_text(encoding="utf-8").strip()
    except OSError:  # no server was left
        return None
    return url if prefect_server_answers(url) else None


def _startup_timeout() -> float:
    # the variable Prefect's own ephemeral server waits by (flows/__init__ sets Harvest's default)
    return float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180"))


#: Settings of the temporary server that the environment may override. Block types are not registered
#: at its start: Harvest uses no blocks, and before Prefect decides that its memo of the last registration
#: still holds, it imports every installed Prefect collection (prefect-dask: dask and distributed),
#: ~10 % of the server's start-up by py-spy. Measured alone, three starts each, alternated: 3.53-3.84 s
#: to its first answer with the registration, 3.33 s without. A ``prefect server start`` on the same
#: Prefect home still registers them, for its UI.
TEMPORARY_SERVER_DEFAULTS = {
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "0",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "0",  # else it loads the collections to decide
}


#: ``python -m MODULE ARGS`` run by ``python -c`` with this process's pid first: it stops itself (SIGTERM,
#: as ``terminate`` would) once that process is gone (``stopping_with_this_process``).
_STOPS_WITH_ITS_PARENT = """
import os, runpy, signal, sys, threading, time
parent, module = int(sys.argv[1]), sys.argv[2]
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os.kill(os.getpid(), signal.SIGTERM)
threading.Thread(target=watch, daemon=True).start()
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def stopping_with_this_process(module: str, *args: str) -> list[str]:
    """The command ``python -m module args``, whose process stops itself within a second of this one's
    end, however this one ends. A process that is killed (``kill -9``, the OOM killer) runs no exit
    handler, so a Prefect server it started would otherwise run on for good (~250 MiB); its end leaves
    the server to another parent, which the server sees. (Linux's parent-death signal comes when the
    thread that started the child ends, not the process.)"""
    return [sys.executable, "-c", _STOPS_WITH_ITS_PARENT, str(os.getpid()), module, *args]


class TemporaryServer:
    """Prefect's ephemeral API server in a subprocess, started at once; ``address`` waits for it; it
    stops with the process that started it, however that process ends.

    The command and environment are those of ``prefect.server.api.server.SubprocessASGIServer``, which
    Prefect starts when no API is configured; launching it here needs no Prefect import (~4 s)."""

    def __init__(self, attempts: int = 2) -> None:
        self.attempts = attempts
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._launch()

    def command(self, port: int) -> list[str]:
        spec = importlib.util.find_spec("prefect")
        if spec is None or not spec.submodule_search_locations:
            raise PrefectDidNotStart("Prefect is not installed")
        app_dir = str(Path(next(iter(spec.submodule_search_locations))).parent)
        return stopping_with_this_process(
            "uvicorn",
            *("--app-dir", app_dir, "--factory", "prefect.server.api.server:create_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"),
        )

    def _launch(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/api"
        environment = {
            **TEMPORARY_SERVER_DEFAULTS,
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",  # Prefect's own marks of its ephemeral server
            "PREFECT__SERVER_FINAL": "1",
        }
        self.process = subprocess.Popen(self.command(port), env=environment, stdin=subprocess.DEVNULL)

    def address(self) -> str:
        """The API address once the server answers. A server that exits, or does not answer within
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (a busy machine), is stopped and a fresh one
        gets the remaining tries; raises PrefectDidNotStart, with one line to say, if none answers."""
        for attempt in range(1, self.attempts + 1):
            deadline = time.monotonic() + _startup_timeout()
            while self.process is not None and self.process.poll() is None and time.monotonic() < deadline:
                if prefect_server_answers(self.url):
                    return self.url
                time.sleep(0.1)
            self.stop()
            if attempt < self.attempts:
                log.warning("Prefect's temporary server did not start; trying again")
                self._launch()
        raise PrefectDidNotStart(
            f"Prefect's temporary server did not start in time, {self.attempts} times (a busy machine: "
            "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or run a Prefect server and set "
            "PREFECT_API_URL)"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


_kept: TemporaryServer | None = None  # the long-lived process's server (the web app's re-runs)


@contextmanager
def run_api(
    data_dir: Path, keep: bool = False, meanwhile: Callable[[], object] | None = None
) -> Iterator[ApiAddress]:
    """The Prefect API of one run (see the module's docstring), as a function that waits for it.

    A temporary server starts on entry and stops on exit; with ``keep`` (a long-lived process, such as
    the web app) it stays up for the next run and stops when the process exits. ``meanwhile`` is called
    while a temporary server starts (only then: otherwise nothing is waited for)."""
    global _kept
    if os.environ.get("PREFECT_API_URL"):
        yield ApiAddress(lambda: None)
        return
    url = running_local_server(data_dir)
    if url is not None:
        yield ApiAddress(lambda: url)
        return
    if not keep:
        server = TemporaryServer()
        try:
            if meanwhile is not None:
                meanwhile()
            yield ApiAddress(server.address, temporary=True)
        finally:
            server.stop()
        return
    if _kept is None or _kept.process is None or _kept.process.poll() is not None:
        _kept = TemporaryServer()
        atexit.register(_kept.stop)
        if meanwhile is not None:
            meanwhile()
    yield ApiAddress(_kept.address, temporary=True)


def flush_to_api(timeout: float = 10) -> None:
    """Send the logs and events still queued while the server is up: at interpreter exit Prefect would
    try again against a stopped server and retry for minutes."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=timeout)
