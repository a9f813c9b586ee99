"""The temporary Prefect server of a run: started before the pipeline is imported, retried once when it
does not come up, and a failure ends in one clear line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import flows.server
from cli.main import app
from flows.server import PrefectDidNotStart, TemporaryServer, run_api
from tests.conftest import FIXTURES


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Servers that exit at once (as one whose database cannot be opened does); records each launch."""
    ports: list[int] = []

    def command(self: TemporaryServer, port: int) -> list[str]:
        ports.append(port)
        return [sys.executable, "-c", "raise SystemExit(3)"]

    monkeypatch.setattr(TemporaryServer, "command", command)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return ports


def test_a_server_that_exits_is_tried_once_more_without_waiting_out_the_timeout(
    launches: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "600")
    server = TemporaryServer()
    with pytest.raises(PrefectDidNotStart, match="did not start in time, 2 times"):
        server.address()  # returns as soon as the second process has exited, not after 600 s
    assert len(launches) == 2 and server.process is None


def test_two_failures_end_in_one_clear_line(launches: list[int], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARVEST_DATA", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["run", str(FIXTURES / "mini-event")])
    assert result.exit_code == 1 and len(launches) == 2
    # the retry's notice shows where Prefect's log handler writes to this output (it is bound to the
    # stderr of the moment Prefect is first imported: here when no earlier test imported it)
    lines = [line for line in result.output.strip().splitlines() if "trying again" not in line]
    assert len(lines) == 1 and "did not start in time, 2 times" in lines[0] and "PREFECT_API_URL" in lines[0]


def test_a_configured_api_starts_no_server(launches: list[int], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with run_api(tmp_path) as api:
        assert api() is None  # Prefect's own setting applies
    assert launches == []


def test_the_temporary_server_answers_and_is_stopped(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with run_api(tmp_path) as api:
        url = api()
        assert url is not None and flows.server.prefect_server_answers(url)
    assert not flows.server.prefect_server_answers(url)


#: A child's Python: it starts a Prefect server, prints its address and waits to be killed
SERVERS = {
    "a run's temporary server": (
        "import time; from flows.server import TemporaryServer; "
        "print(TemporaryServer().address(), flush=True); time.sleep(600)"
    ),
    "harvest schedule's server": (
        "import sys, time; from pathlib import Path; from flows.schedule import prefect_api; "
        "api = prefect_api(Path(sys.argv[1])); print(api.__enter__(), flush=True); time.sleep(600)"
    ),
}


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("a run's temporary server"),
        pytest.param("harvest schedule's server", marks=pytest.mark.slow),  # a whole `prefect server start`
    ],
)
def test_a_killed_process_leaves_no_prefect_server_behind(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed outright (kill -9, the OOM killer) runs no exit handler: its server stops itself."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    parent = subprocess.Popen(
        [sys.executable, "-c", SERVERS[server], str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
    )
    assert parent.stdout is not None
    url = parent.stdout.readline().strip()
    assert flows.server.prefect_server_answers(url), url
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while flows.server.prefect_server_answers(url) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not flows.server.prefect_server_answers(url)


def test_a_long_lived_process_keeps_its_server_for_the_next_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with run_api(tmp_path, keep=True) as api:
        first = api()
    with run_api(tmp_path, keep=True) as api:
        assert api() == first and first is not None and flows.server.prefect_server_answers(first)
    assert flows.server._kept is not None
    flows.server._kept.stop()


def test_the_wait_for_a_temporary_server_is_used_and_no_other_wait(
    launches: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``meanwhile`` (a fresh `harvest run` loads its models there) runs once the server is launched,
    before its address is waited for; nothing is waited for with a configured or running server."""
    calls: list[int] = []
    with run_api(tmp_path, meanwhile=lambda: calls.append(len(launches))):
        assert calls == [1]
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with run_api(tmp_path, meanwhile=lambda: calls.append(-1)) as api:
        assert api() is None
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setattr(flows.server, "running_local_server", lambda _: "http://127.0.0.1:9/api")
    with run_api(tmp_path, meanwhile=lambda: calls.append(-1)) as api:
        assert api() == "http://127.0.0.1:9/api"
    assert calls == [1] and len(launches) == 1


def test_the_temporary_server_skips_block_registration_unless_the_environment_asks_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Harvest uses no Prefect blocks, and registering them costs the server's start-up the import of
    every Prefect collection; a setting in the environment still wins."""
    seen = tmp_path / "environment.json"

    def command(self: TemporaryServer, port: int) -> list[str]:
        dump = f"import json, os; json.dump(dict(os.environ), open({str(seen)!r}, 'w'))"
        return [sys.executable, "-c", dump]

    monkeypatch.setattr(TemporaryServer, "command", command)
    for override, expected in ((None, "0"), ("1", "1")):
        if override is None:
            monkeypatch.delenv("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", raising=False)
        else:
            monkeypatch.setenv("PREFECT_SERVER_REGISTER_BLOCKS_ON_START", override)
        server = TemporaryServer(attempts=1)
        assert server.process is not None and server.process.wait(timeout=30) == 0
        environment = json.loads(seen.read_text())
        assert environment["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] == expected
        assert environment["PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION"] == "0"
        assert environment["PREFECT__SERVER_EPHEMERAL"] == "1"


def test_a_run_reports_to_its_api_with_settings_made_once_per_address() -> None:
    from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings

    from flows.harvest import _reporting_to

    before = get_current_settings()
    made = []
    for _ in range(2):
        with _reporting_to("http://127.0.0.1:9/api", temporary=True):
            made.append(get_current_settings())
            assert PREFECT_API_URL.value() == "http://127.0.0.1:9/api"
            assert PREFECT_FLOWS_HEARTBEAT_FREQUENCY.value() is None  # a temporary server acts on none
    assert made[0] is made[1]  # the second run did not validate Prefect's settings again
    with _reporting_to("http://127.0.0.1:9/api", temporary=False):
        assert get_current_settings().flows.heartbeat_frequency == before.flows.heartbeat_frequency
    assert get_current_settings() is before  # as it was outside
