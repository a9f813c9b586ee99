"""A run killed at any point (kill -9) leaves the previous outputs intact and readable, and the next run
ends with the same result as an uninterrupted one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow
OUTPUTS = [
    "statements.csv",
    "themes.csv",
    "statements.parquet",
    "themes.parquet",
    "review_themes.parquet",
    "notes.parquet",
    "clusters.parquet",
    "machine_themes.parquet",
    "groups.json",
    "paper.md",
    "paper.html",
]
LATE_NOTES = (
    "table,round,topic,question,text\n"
    "green-t40,1,green,actors,banks and investors must be on board\n"
    "green-t41,1,green,actors,hydrogen valley consortia\n"
)


def _harvest(event_dir: Path, data: Path, home: Path) -> subprocess.Popen:
    env = {**os.environ, "PREFECT_HOME": str(home), "HARVEST_DATA": str(data)}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "run", str(event_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _readable(folder: Path) -> None:
    for name in OUTPUTS:
        path = folder / name
        if name.endswith(".csv"):
            pd.read_csv(path)
        elif name.endswith(".parquet"):
            pd.read_parquet(path)
        elif name.endswith(".json"):
            json.loads(path.read_text())
        else:
            assert path.read_text().strip()
    manifest = folder.parent.parent / "raw" / "mini" / "manifest.json"
    json.loads(manifest.read_text())


def test_killed_runs_leave_outputs_intact_and_recover(tmp_path: Path) -> None:
    event_dir = tmp_path / "event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    data, home = tmp_path / "data", tmp_path / "prefect"
    assert _harvest(event_dir, data, home).wait(timeout=300) == 0
    out = data / "processed" / "mini"
    _readable(out)

    (event_dir / "notes" / "late.csv").write_text(LATE_NOTES)
    for delay in (3.0, 7.0, 10.0, 12.5, 14.0, 16.0):  # start-up, ingest, embedding, themes, writing
        process = _harvest(event_dir, data, home)
        time.sleep(delay)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        _readable(out)  # every output is either the old one or the new one, never half-written

    assert _harvest(event_dir, data, home).wait(timeout=300) == 0
    _readable(out)

    # the same history, never interrupted: a first run, the late notes, a second run
    clean_event = tmp_path / "clean-event"
    shutil.copytree(FIXTURES / "mini-event", clean_event)
    clean = tmp_path / "clean"
    assert _harvest(clean_event, clean, tmp_path / "prefect2").wait(timeout=300) == 0
    (clean_event / "notes" / "late.csv").write_text(LATE_NOTES)
    assert _harvest(clean_event, clean, tmp_path / "prefect2").wait(timeout=300) == 0
    for name in ("statements.csv", "themes.csv", "paper.md"):
        ours = (out / name).read_text().replace(str(tmp_path / "event"), "")
        theirs = (clean / "processed" / "mini" / name).read_text().replace(str(clean_event), "")
        assert ours == theirs, name
    assert not list(out.glob(".*.tmp"))  # stray temp files of killed writes are cleaned up


def _cmdline(pid: int) -> bytes:
    """A process's command line; empty once it has ended (short-lived children come and go)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found.update(children)
            todo.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie has ended


def test_sigterm_leaves_no_prefect_server_behind(tmp_path: Path) -> None:
    event_dir = tmp_path / "event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    run = _harvest(event_dir, tmp_path / "data", tmp_path / "prefect")
    server: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None and not server:
            server = {p for p in _descendants(run.pid) if b"uvicorn" in _cmdline(p)}
            time.sleep(0.2)
        assert server, "the run never started Prefect's temporary server"
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 128 + signal.SIGTERM
        time.sleep(1)
        assert not [p for p in server if _alive(p)]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        for pid in server:  # whatever happened, the test leaves nothing running
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_sigterm_whose_exit_was_swallowed_still_ends_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's flow engine logs and drops an exception raised after the flow's own code returned: a
    SIGTERM at that moment still ends `harvest run` with 128 + SIGTERM, before the documents."""
    from typer.testing import CliRunner

    import cli.main as cli

    def run_swallowing_a_sigterm(*_: object) -> dict:
        with contextlib.suppress(SystemExit):  # as the engine drops it
            cli._exit_on_terminate(signal.SIGTERM, None)
        return {"statements": 1, "themes": 1, "off_topic": 0, "unassigned": 0}

    documents: list[object] = []
    monkeypatch.setattr(cli, "_TERMINATED", [])
    monkeypatch.setattr(cli, "_run_here", run_swallowing_a_sigterm)
    monkeypatch.setattr("pipeline.publish.write_documents", lambda *args: documents.append(args))
    monkeypatch.setenv("HARVEST_DATA", str(tmp_path / "data"))
    event_dir = tmp_path / "event"
    shutil.copytree(FIXTURES / "mini-event", event_dir)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        result = CliRunner().invoke(cli.app, ["run", str(event_dir), "--here"])
    finally:
        signal.signal(signal.SIGTERM, handler)  # the command set its own in this process
    assert result.exit_code == 128 + signal.SIGTERM
    assert documents == []
