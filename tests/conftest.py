from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.event import Event, load_event
from pipeline.store import Layout

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
SAMPLE_EVENT = REPO / "data" / "raw" / "ecc2020-sample"


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

    with prefect_test_harness():
        yield
