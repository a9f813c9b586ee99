from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from pipeline.event import Event, load_event
from pipeline.store import Layout

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
SAMPLE_EVENT = REPO / "data" / "raw" / "ecc2020-sample"
# The embedding model's ONNX export is built once (the first test or `make demo` that encodes) and shared:
# each test's throwaway data root would otherwise build its own (torch import and export, ~15 s each).
os.environ.setdefault("HARVEST_MODELS_DIR", str(REPO / "data" / "models"))
# A `harvest run` leaves no warm process behind in a test (test_schedule starts one on purpose): it would
# outlive the test's data root by hours.
os.environ["HARVEST_KEEP_WARM"] = "0"


@pytest.fixture
def event() -> Event:
    return load_event(FIXTURES)


@pytest.fixture
def layout(tmp_path: Path, event: Event) -> Layout:
    return Layout(tmp_path / "data", event.id)


@pytest.fixture
def event_dir(tmp_path: Path) -> Path:
    """A writable copy of the fixture event folder."""
    target = tmp_path / "event"
    target.mkdir()
    shutil.copy(FIXTURES / "event.yaml", target / "event.yaml")
    return target


@pytest.fixture(scope="session")
def prefect_ephemeral(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Prefect in ephemeral mode with its own throwaway database, as a laptop user runs it."""
    from prefect.testing.utilities import prefect_test_harness

    # a fresh database's migrations on a loaded 2-core machine can take longer than Prefect's default 30 s
    with prefect_test_harness(server_startup_timeout=180):
        yield


# --------------------------------------------------------------------------- the web app in Chromium
CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def serve(app: object) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of this machine, in a thread; yields its address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not running.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    running.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Debian's Chromium, headless, driven by Playwright."""
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()
