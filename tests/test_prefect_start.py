"""A busy machine: Prefect's temporary server gets one more try, and a failure ends in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import flows.harvest
from cli.main import app
from tests.conftest import FIXTURES

TIMED_OUT = RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server. stdout: ...")


@pytest.fixture
def stopped(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each stop of the temporary server instead of touching a real one."""
    from prefect.server.api.server import SubprocessASGIServer

    calls: list[str] = []
    monkeypatch.setattr(SubprocessASGIServer, "stop", lambda self: calls.append("stop"))
    return calls


def test_a_server_that_did_not_start_is_stopped_and_tried_once_more(
    monkeypatch: pytest.MonkeyPatch, stopped: list[str]
) -> None:
    outcomes: list[object] = [TIMED_OUT, {"statements": 3}]

    def harvest_event(*_: object) -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(flows.harvest, "harvest_event", harvest_event)
    assert flows.harvest.run_event(Path("event")) == {"statements": 3}
    assert stopped == ["stop"] and outcomes == []


def test_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch, stopped: list[str]) -> None:
    calls = []

    def harvest_event(*_: object) -> object:
        calls.append(1)
        raise RuntimeError("disk full")

    monkeypatch.setattr(flows.harvest, "harvest_event", harvest_event)
    with pytest.raises(RuntimeError, match="disk full"):
        flows.harvest.run_event(Path("event"))
    assert calls == [1] and stopped == []


def test_two_failures_end_in_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, stopped: list[str], tmp_path: Path
) -> None:
    def harvest_event(*_: object) -> object:
        raise TIMED_OUT

    monkeypatch.setattr(flows.harvest, "harvest_event", harvest_event)
    monkeypatch.setenv("HARVEST_DATA", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["run", str(FIXTURES / "mini-event")])
    assert result.exit_code == 1 and stopped == ["stop", "stop"]
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "did not start in time, 2 times" in lines[0] and "PREFECT_API_URL" in lines[0]
