"""Schedules: what gets scheduled, the upload watcher's debounce, and `harvest schedule` starting, running
on new notes, and stopping."""

from __future__ import annotations

import contextvars
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar
from uuid import uuid4

import pandas as pd
import pytest
from prefect import flow

from flows.schedule import UploadWatcher, WarmRunner, build_schedules
from flows.server import (
    HandOverFailed,
    ServingProcess,
    keep_warm,
    prefect_server_answers,
    process_alive,
    run_in_serving_process,
    running_local_server,
    server_address_file,
    serving_file,
    serving_process,
    serving_record,
    stop_kept_warm,
)
from pipeline.event import load_event, parse_event
from tests.conftest import FIXTURES


def test_session_end_times_become_one_off_runs() -> None:
    data = {
        "event": "e",
        "sessions": [
            {
                "id": "day1",
                "ends_at": "2020-11-10T17:30:00+01:00",
                "topics": [
                    {"id": "g", "kind": "challenge", "title": "G", "questions": [{"id": "q", "text": "?"}]}
                ],
            },
            {
                "id": "day2",
                "topics": [
                    {"id": "h", "kind": "ecosystem", "title": "H", "questions": [{"id": "q", "text": "?"}]}
                ],
            },
        ],
    }
    event = parse_event(data)
    assert event.sessions[0].ends_at == datetime(2020, 11, 10, 17, 30, tzinfo=timezone(timedelta(hours=1)))
    cron, interval, after_day1 = build_schedules(event, ["*/30 9-18 * * *"], 600, at_session_ends=True)
    assert (cron.cron, cron.timezone) == ("*/30 9-18 * * *", "UTC")
    assert interval.interval == timedelta(seconds=600)
    # one run right after the session that says when it ends (16:30 UTC), none for day2
    assert after_day1.rrule == "DTSTART:20201110T163000\nRRULE:FREQ=DAILY;COUNT=1"
    assert build_schedules(event, [], None, at_session_ends=False) == []
    with pytest.raises(ValueError, match="ends_at"):
        build_schedules(load_event(FIXTURES), [], None, at_session_ends=True)


def test_watcher_waits_for_quiet_then_triggers_once() -> None:
    state = {"signature": 0}
    fired: list[float] = []
    watcher = UploadWatcher(
        lambda: state["signature"], lambda: fired.append(time.monotonic()), debounce=0.3, poll=0.05
    )
    watcher.start()
    try:
        for _ in range(5):  # a burst of uploads
            state["signature"] += 1
            last_change = time.monotonic()
            time.sleep(0.1)
        time.sleep(1.0)
        assert len(fired) == 1 and fired[0] - last_change >= 0.3
        time.sleep(0.5)
        assert len(fired) == 1  # nothing new, no new run
        state["signature"] += 1
        time.sleep(1.0)
        assert len(fired) == 2
    finally:
        watcher.stop()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--warm", "--cold"])
def test_schedule_serves_runs_on_new_notes_and_stops(tmp_path: Path, mode: str) -> None:
    event_dir = tmp_path / "mini-event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT then prints every thread's stack: what a hang waits for
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "-v",
            "schedule",
            mode,
            str(event_dir),
            "--cron",  # far ahead: the only run is the one the new notes start
            "0 0 1 1 *",
            "--debounce",
            "1",
            "--data-dir",
            str(data),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    statements = data / "processed" / "mini" / "statements.csv"
    try:
        deadline = time.time() + 300
        while not any("is being served" in line for line in lines):
            assert process.poll() is None and time.time() < deadline, "".join(lines)
            time.sleep(0.5)
        api = running_local_server(data)
        assert api is not None  # a `harvest run` meanwhile uses this server
        (event_dir / "notes" / "late.csv").write_text(
            "table,round,topic,question,text\ngreen-t50,1,green,actors,hydrogen valley consortia\n"
        )
        while time.time() < deadline:
            if statements.exists() and "green-t50" in statements.read_text():
                break
            assert process.poll() is None, "".join(lines)
            time.sleep(1)
        frame = pd.read_csv(statements, keep_default_na=False)
        assert "hydrogen valley consortia" in set(frame["text"])

        def finished() -> int:  # runs that wrote their summary
            return sum("harvest mini: {" in line for line in lines)

        while time.time() < deadline and not finished():
            time.sleep(0.5)  # let the run finish before stopping the server
        if mode == "--warm":  # a second run, in the same process: the models it loaded stay loaded
            (event_dir / "notes" / "later.csv").write_text(
                "table,round,topic,question,text\ngreen-t51,1,green,actors,regional hydrogen hubs\n"
            )
            while time.time() < deadline and finished() < 2:
                assert process.poll() is None, "".join(lines)
                time.sleep(0.5)
            here = [line for line in lines if f"running in this process (pid {process.pid})" in line]
            assert len(here) == 2, "".join(lines)
            assert any("models loaded for the warm runs" in line for line in lines), "".join(lines)
            # a `harvest run` of the event meanwhile hands its run to this warm process and prints its summary
            # (of a copy of the folder, which the watcher does not see: the new file is that run's alone)
            assert serving_file(data, "mini").exists()
            by_hand = tmp_path / "mini-event-by-hand"
            shutil.copytree(event_dir, by_hand)
            (by_hand / "notes" / "by-hand.csv").write_text(
                "table,round,topic,question,text\ngreen-t52,1,green,actors,hydrogen skills academies\n"
            )
            command = [sys.executable, "-m", "cli.main", "run", str(by_hand), "--data-dir", str(data)]
            handed = subprocess.run([*command, "--no-documents"], env=env, capture_output=True, text=True)
            assert handed.returncode == 0, handed.stdout + handed.stderr
            assert (
                f"run handed to the warm `harvest schedule` process serving this event (pid {process.pid})"
                in (handed.stdout)
            )
            assert "files: 1 new" in handed.stdout  # the summary of the run the serving process made
            assert "hydrogen skills academies" in statements.read_text()
            here = [line for line in lines if f"running in this process (pid {process.pid})" in line]
            assert len(here) == 3, "".join(lines)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGABRT)
            time.sleep(3)
            os.killpg(process.pid, signal.SIGKILL)
            reader.join(timeout=5)
            stacks = [x for x in lines if x.lstrip().startswith(("File ", "Thread ", "Current thread"))]
            pytest.fail("harvest schedule did not stop on Ctrl-C:\n" + "".join(lines[-40:] + stacks))
        reader.join(timeout=5)
    assert "harvest-event/harvest-mini" in "".join(lines)
    assert not server_address_file(data).exists()
    assert not serving_file(data, "mini").exists()  # later runs start here
    assert not prefect_server_answers(api)  # its Prefect server stopped with it


@pytest.mark.slow
def test_a_run_leaves_a_warm_process_that_takes_the_next_run_and_stops_when_idle(tmp_path: Path) -> None:
    event_dir = tmp_path / "mini-event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "HARVEST_KEEP_WARM": "30"}
    command = [sys.executable, "-m", "cli.main", "run", str(event_dir), "--data-dir", str(data)]
    command.append("--no-documents")
    cold = subprocess.run(command, env=env, capture_output=True, text=True)
    assert cold.returncode == 0, cold.stdout + cold.stderr
    assert "it stops after 30 s without one" in cold.stdout
    pid = int(cold.stdout.split("a warm process (pid ", 1)[1].split(")", 1)[0])
    try:
        deadline = time.time() + 300
        while (serving := serving_record(data, "mini")) is None:  # it serves once its models are loaded
            assert time.time() < deadline, (data / "prefect" / "keep-warm-mini.log").read_text()
            time.sleep(0.5)
        (event_dir / "notes" / "late.csv").write_text(
            "table,round,topic,question,text\ngreen-t50,1,green,actors,hydrogen valley consortia\n"
        )
        warm = subprocess.run(command, env=env, capture_output=True, text=True)
        assert warm.returncode == 0, warm.stdout + warm.stderr
        assert f"handed to the warm `harvest schedule` process serving this event (pid {pid})" in warm.stdout
        assert "files: 1 new" in warm.stdout and "a warm process" not in warm.stdout
        # 30 s after its run it stops, its Prefect server and records with it
        while serving_record(data, "mini") is not None or process_alive(pid):
            assert time.time() < deadline, (data / "prefect" / "keep-warm-mini.log").read_text()
            time.sleep(1)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    assert "No run for 3" in (data / "prefect" / "keep-warm-mini.log").read_text()
    assert not server_address_file(data).exists()
    assert not prefect_server_answers(serving.api)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/health" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering_api() -> Iterator[tuple[str, Callable[[], None]]]:
    """The address of an API that answers Prefect's health check, and a function that stops it."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stopped: list[bool] = []

    def stop() -> None:
        if not stopped:
            server.shutdown()
            server.server_close()
            stopped.append(True)

    yield f"http://127.0.0.1:{server.server_address[1]}/api", stop
    stop()


def ended_pid() -> int:
    """The pid of a process that has ended (a finished subprocess's)."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(ended.stdout)


def test_a_run_uses_the_server_harvest_schedule_left_only_while_it_answers(
    tmp_path: Path, answering_api: tuple[str, Callable[[], None]]
) -> None:
    url, stop = answering_api
    assert running_local_server(tmp_path) is None  # no server was left
    server_address_file(tmp_path).parent.mkdir()
    server_address_file(tmp_path).write_text(url)
    assert running_local_server(tmp_path) == url
    stop()
    assert running_local_server(tmp_path) is None  # gone: the run starts its own


def test_a_run_hands_over_only_to_a_live_serving_process_with_the_same_settings(
    tmp_path: Path, answering_api: tuple[str, Callable[[], None]]
) -> None:
    url, stop = answering_api
    assert serving_process(tmp_path, "mini", "s1") is None  # nothing serves the event
    record = serving_file(tmp_path, "mini")
    record.parent.mkdir()
    serving = ServingProcess(url, "harvest-event/harvest-mini", "s1", os.getpid(), results=str(tmp_path))
    record.write_text(json.dumps(asdict(serving)))
    assert serving_process(tmp_path, "mini", "s1") == serving
    assert run_in_serving_process(serving, {}) is None  # its API has no such deployment: the run stays here
    assert serving_process(tmp_path, "mini", "s2") is None  # other settings: the run stays here
    assert serving_process(tmp_path, "other", "s1") is None  # another event
    record.write_text(json.dumps(asdict(replace(serving, pid=ended_pid()))))
    assert serving_process(tmp_path, "mini", "s1") is None  # its process has ended
    record.write_text(json.dumps(asdict(replace(serving, results=""))))
    assert serving_process(tmp_path, "mini", "s1") is None  # it keeps no summaries: nowhere to read one
    record.write_text(json.dumps(asdict(serving)))
    stop()
    assert serving_process(tmp_path, "mini", "s1") is None  # its API no longer answers
    record.write_text('{"api": "' + url + '"}')
    assert serving_process(tmp_path, "mini", "s1") is None  # a record of another version


def test_a_run_after_an_upgrade_is_not_handed_to_a_process_running_the_release_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.server import runs_alike
    from pipeline import provenance
    from pipeline.config import load_settings

    settings = load_settings(data_dir=tmp_path)
    serving_since_yesterday = runs_alike(settings)
    assert runs_alike(settings) == serving_since_yesterday
    monkeypatch.setattr(provenance, "code_id", lambda *modules: "the next release")
    assert runs_alike(settings) != serving_since_yesterday


class _Refusing(http.server.BaseHTTPRequestHandler):
    """An API that refuses every call, noting the credentials each came with."""

    credentials: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.credentials.append(self.headers.get("Authorization"))
        self.send_response(401)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("variable", "value", "sent"),
    [
        ("PREFECT_API_AUTH_STRING", "admin:pass", "Basic YWRtaW46cGFzcw=="),
        ("PREFECT_API_KEY", "pnu_key", "Bearer pnu_key"),
        ("PREFECT_API_KEY", "", None),
    ],
)
def test_a_hand_over_sends_the_credentials_prefect_s_client_sends_and_runs_here_when_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, sent: str | None
) -> None:
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    monkeypatch.setenv(variable, value)
    server = http.server.HTTPServer(("127.0.0.1", 0), _Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Refusing.credentials = []
    try:
        serving = ServingProcess(
            f"http://127.0.0.1:{server.server_port}/api", "harvest-event/x", "s1", os.getpid(), results="r"
        )
        assert run_in_serving_process(serving, {}) is None  # refused: the run stays here
    finally:
        server.shutdown()
        server.server_close()
    assert _Refusing.credentials == [sent]


class _BusyOnce(http.server.BaseHTTPRequestHandler):
    """Prefect's REST API for one completed run, each of its answers a 503 the first time it is asked
    (as a Prefect server answers while its SQLite database is busy)."""

    asked: ClassVar[list[str]] = []
    answers: ClassVar[dict[str, dict]] = {
        "GET /api/deployments/name/harvest-event/x": {"id": "d1"},
        "POST /api/deployments/d1/create_flow_run": {"id": "r1"},
        "GET /api/flow_runs/r1": {"state": {"type": "COMPLETED", "name": "Completed"}},
    }

    def _answer(self) -> None:
        call = f"{self.command} {self.path}"
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        first = call not in self.asked
        self.asked.append(call)
        body = json.dumps(self.answers[call]).encode()
        self.send_response(503 if first else 200)
        self.send_header("Content-Length", "0" if first else str(len(body)))
        self.end_headers()
        if not first:
            self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_a_hand_over_asks_again_when_the_api_is_busy(tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _BusyOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _BusyOnce.asked = []
    (tmp_path / "r1.json").write_text('{"statements": 3}')  # the summary the serving process kept
    api = f"http://127.0.0.1:{server.server_port}/api"
    try:
        serving = ServingProcess(api, "harvest-event/x", "s1", os.getpid(), results=str(tmp_path))
        assert run_in_serving_process(serving, {}) == {"statements": 3}
    finally:
        server.shutdown()
        server.server_close()
    assert _BusyOnce.asked == [call for call in _BusyOnce.answers for _ in range(2)]  # each asked twice


@flow(name="handed-over-echo")
def handed_over_echo(fail: bool = False) -> dict:
    """Stands in for the harvest flow in the hand-over test: a summary, or a failure on request."""
    if fail:
        raise ValueError("failed on purpose")
    return {"statements": 3, "themes": 1}


@pytest.mark.usefixtures("prefect_ephemeral")
def test_the_runner_looks_for_due_runs_as_soon_as_its_wake_file_is_touched(tmp_path: Path) -> None:
    wake = tmp_path / "wake-event"
    runner = WarmRunner(handed_over_echo, uuid4(), poll=3600, wake=wake)
    waiting = threading.Thread(target=runner._until_next_look, args=(runner._woken(),), daemon=True)
    waiting.start()
    ServingProcess("http://127.0.0.1:9/api", "harvest-event/x", "s1", os.getpid(), str(wake)).wake_up()
    waiting.join(timeout=30)
    assert not waiting.is_alive()  # an hour's poll cut short
    runner.stop()


@pytest.mark.usefixtures("prefect_ephemeral")  # the command speaks to a server over HTTP
def test_a_handed_over_run_returns_its_summary_says_why_it_failed_or_is_withdrawn(tmp_path: Path) -> None:
    # In a thread with no event loop: once the session's Playwright browser has started, the main thread
    # runs one, and Prefect's calls there (the deployment's, the runner's) return coroutines. The thread
    # keeps the test's Prefect settings (a context variable).
    with ThreadPoolExecutor(1) as worker:
        worker.submit(contextvars.copy_context().run, _hand_over_three_ways, tmp_path).result()


def _hand_over_three_ways(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.types._datetime import now

    deployment_id = handed_over_echo.to_deployment(name="hand-over-test").apply()
    wake, results = tmp_path / "wake-echo", tmp_path / "results"
    api = str(PREFECT_API_URL.value())
    serving = ServingProcess(
        api, "handed-over-echo/hand-over-test", "s1", os.getpid(), str(wake), str(results)
    )
    results.mkdir()
    stale = results / "a-result-of-yesterday"
    stale.write_text("{}")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))

    runner = WarmRunner(handed_over_echo, deployment_id, poll=0.2, results=results, wake=wake)
    # the runner's thread sees the test's Prefect settings (a context variable) as the serving process does
    thread = threading.Thread(target=contextvars.copy_context().run, args=(runner.serve,), daemon=True)
    thread.start()
    try:
        assert run_in_serving_process(serving, {"fail": False}) == {"statements": 3, "themes": 1}
        assert wake.exists()  # the command woke the runner rather than wait for its next poll
        assert not stale.exists()  # pruned; the summary just read is kept
        assert len(list(results.iterdir())) == 1
        with pytest.raises(HandOverFailed, match=r"ended Failed.*failed on purpose"):
            run_in_serving_process(serving, {"fail": True})
    finally:
        runner.stop()
        thread.join(timeout=30)

    # a serving process that has ended takes no run: the command withdraws its run and runs it itself
    gone = ServingProcess(serving.api, serving.deployment, "s1", ended_pid())
    assert run_in_serving_process(gone, {"fail": False}) is None
    with get_client(sync_client=True) as client:
        assert (
            client.get_scheduled_flow_runs_for_deployments([deployment_id], scheduled_before=now("UTC")) == []
        )


@pytest.mark.slow  # the process it starts loads the models
def test_keep_warm_starts_one_process_an_event_and_stops_one_of_other_settings_or_code(
    tmp_path: Path, answering_api: tuple[str, Callable[[], None]]
) -> None:
    url, _ = answering_api
    event_dir = tmp_path / "mini-event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    record = serving_file(tmp_path, "mini")
    record.parent.mkdir()
    by_hand = ServingProcess(url, "harvest-event/harvest-mini", "s1", os.getpid(), results=str(tmp_path))
    record.write_text(json.dumps(asdict(by_hand)))
    # a `harvest schedule` started by hand serves the event: nothing starts beside it, whatever its settings
    assert keep_warm(event_dir, tmp_path, "mini", "s2", 60) is None
    # a process keep_warm left with the same settings and code serves the event: nothing to do
    older = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    pid = None
    try:
        record.write_text(json.dumps(asdict(replace(by_hand, pid=older.pid, idle_exit=60.0))))
        assert keep_warm(event_dir, tmp_path, "mini", "s1", 60) is None
        assert older.poll() is None
        # one of other settings or code (an upgrade) is stopped, and a new one started for this run's
        pid = keep_warm(event_dir, tmp_path, "mini", "s2", 60)
        assert pid is not None and pid != older.pid
        assert older.wait(timeout=30) == -signal.SIGTERM
        # the new one is loading: a run meanwhile starts none; it serves once loaded
        assert keep_warm(event_dir, tmp_path, "mini", "s2", 60) is None
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        expected = ["schedule", str(event_dir), "--data-dir", str(tmp_path), "--no-watch", "--idle-exit"]
        log = tmp_path / "prefect" / "keep-warm-mini.log"  # why, if it has ended already (once in CI)
        assert command[3:-1] == [*expected, "60"], log.read_text() if log.exists() else "no log"
        deadline = time.time() + 300
        while getattr(serving_record(tmp_path, "mini"), "pid", None) != pid:
            assert time.time() < deadline, log.read_text()
            time.sleep(0.5)
        new = serving_record(tmp_path, "mini")
        assert new is not None and new.pid == pid and new.idle_exit == 60
    finally:
        older.kill()
        if pid is not None:  # stopped as keep_warm stops one, so it stops its Prefect server too
            os.kill(pid, signal.SIGTERM)
            deadline = time.time() + 60
            while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.time() < deadline:  # our child
                time.sleep(0.2)
    assert not prefect_server_answers(new.api)
    assert serving_record(tmp_path, "mini") is None


def test_harvest_schedule_stops_the_process_keep_warm_left_and_only_that(
    tmp_path: Path, answering_api: tuple[str, Callable[[], None]]
) -> None:
    url, _ = answering_api
    record = serving_file(tmp_path, "mini")
    record.parent.mkdir()
    kept = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        serving = ServingProcess(url, "harvest-event/harvest-mini", "s1", kept.pid, idle_exit=60.0)
        record.write_text(json.dumps(asdict(replace(serving, idle_exit=0.0))))
        stop_kept_warm(tmp_path, "mini", timeout=1)
        assert kept.poll() is None  # serving by hand: left alone
        record.write_text(json.dumps(asdict(serving)))
        stop_kept_warm(tmp_path, "mini", timeout=30)
        assert kept.wait(timeout=5) == -signal.SIGTERM
    finally:
        kept.kill()


@pytest.mark.usefixtures("prefect_ephemeral")
def test_a_runner_with_an_idle_exit_stops_by_itself_after_that_long_without_a_run(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as worker:  # no event loop in this thread (see the hand-over test)
        worker.submit(contextvars.copy_context().run, _idle_runner, tmp_path).result()


def _idle_runner(tmp_path: Path) -> None:
    deployment_id = handed_over_echo.to_deployment(name="idle-test").apply()
    runner = WarmRunner(handed_over_echo, deployment_id, poll=0.1, idle_exit=0.5)
    time.sleep(0.6)  # its models load between its making and its serving (``warm_up``)
    serving = time.time()
    thread = threading.Thread(target=contextvars.copy_context().run, args=(runner.serve,), daemon=True)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert runner.stopped.is_set()
    assert time.time() - serving >= 0.5  # no run: idle from its serving, not from its making
