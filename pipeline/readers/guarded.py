"""``read_notes`` in a worker process with a time and a memory limit, for servers.

The readers are linear and bounded (see ``pipeline.readers``), but a server that parses what anyone can
upload should not bet its availability on that: a file that still found a way to hang or to eat memory
costs one worker process here, which is stopped and replaced, and the file is rejected with a clear reason.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.pool import Pool

import pandas as pd

from pipeline.event import Event
from pipeline.readers import NoteFileError, Problem, read_notes

#: A real file of notes reads in well under a second; this is for files built to hang.
READ_SECONDS = 30.0
#: Address space of the worker process (the interpreter with pandas and the readers takes ~1 GiB of it).
READ_MEMORY_BYTES = 3 * 1024**3


def _limit_memory(limit: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class GuardedReader:
    """Callable like ``read_notes``; one worker process, started on first use and replaced after a
    file that overran a limit. Thread-safe: calls queue for the worker."""

    def __init__(
        self,
        seconds: float = READ_SECONDS,
        memory_bytes: int = READ_MEMORY_BYTES,
        read: Callable[..., pd.DataFrame] = read_notes,
    ) -> None:
        """``read``: what the worker runs (a module-level function: the worker imports it)."""
        self.read = read
        self.seconds = seconds
        self.memory_bytes = memory_bytes
        self._pool: Pool | None = None
        self._lock = threading.Lock()

    def __call__(
        self,
        name: str,
        data: bytes,
        event: Event,
        upload_id: str = "",
        max_bytes: int | None = None,
        defaults: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        with self._lock:
            if self._pool is None:
                # spawn: a fresh interpreter, not a fork of a server with threads
                self._pool = multiprocessing.get_context("spawn").Pool(
                    1, initializer=_limit_memory, initargs=(self.memory_bytes,)
                )
            pending = self._pool.apply_async(self.read, (name, data, event, upload_id, max_bytes, defaults))
            try:
                return pending.get(timeout=self.seconds)
            except multiprocessing.TimeoutError:
                self._replace()
                reason = f"reading it took over {self.seconds:g} s, so it was stopped: the file is refused"
                raise NoteFileError(name, [Problem(name, reason)]) from None
            except MemoryError:
                self._replace()
                reason = "reading it needed more memory than a file of notes can: the file is refused"
                raise NoteFileError(name, [Problem(name, reason)]) from None

    def _replace(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def close(self) -> None:
        with self._lock:
            self._replace()
