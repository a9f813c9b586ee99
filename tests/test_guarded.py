"""Uploads parsed for the web app run in a worker process with time and memory limits."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from pipeline.event import Event
from pipeline.readers import NoteFileError
from pipeline.readers.guarded import GuardedReader
from tests.conftest import FIXTURES


def hang(*args: object) -> pd.DataFrame:
    """A reader that never finishes (module level: the worker process imports it)."""
    time.sleep(3600)
    raise AssertionError("unreachable")


def hog(*args: object) -> pd.DataFrame:
    """A reader that asks for more memory than a file of notes can need."""
    blocks = [bytearray(256 * 1024**2) for _ in range(64)]  # 16 GiB
    raise AssertionError(f"got {len(blocks)} blocks")


def test_a_file_that_hangs_is_stopped_and_the_next_one_reads(event: Event) -> None:
    reader = GuardedReader(seconds=5, read=hang)
    try:
        with pytest.raises(NoteFileError, match=r"took over 5 s, so it was stopped"):
            reader("slow.csv", b"x", event)
        reader.read = GuardedReader().read  # the real reader, in a fresh worker
        data = (FIXTURES / "table-notes.csv").read_bytes()
        assert len(reader("table-notes.csv", data, event)) == 6
    finally:
        reader.close()


def test_a_file_that_eats_memory_is_refused(event: Event) -> None:
    reader = GuardedReader(seconds=60, read=hog)
    try:
        with pytest.raises(NoteFileError, match=r"more memory than a file of notes can"):
            reader("big.csv", b"x", event)
    finally:
        reader.close()
