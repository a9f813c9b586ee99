"""Publishing after editors' actions in a server process: shared by the actions that come at once."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline import publish


def test_actions_at_once_share_publishes_and_each_waits_for_one_that_covers_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[float] = []

    def slow_publish(*_: object) -> None:
        started.append(time.monotonic())
        time.sleep(0.2)

    monkeypatch.setattr(publish, "publish_decisions", slow_publish)
    shared = publish.SharedPublish(None, None, None)  # type: ignore[arg-type]
    asked, answered = {}, {}

    def editor(name: int) -> None:
        asked[name] = time.monotonic()
        shared()
        answered[name] = time.monotonic()

    threads = [threading.Thread(target=editor, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) <= 3  # not ten
    for name in asked:  # a publish that started after the editor asked ended before it was answered
        assert any(asked[name] <= s and s + 0.2 <= answered[name] + 0.01 for s in started)


def test_a_failed_publish_is_tried_again_by_the_next_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = iter([RuntimeError("disk full"), None])

    def flaky(*_: object) -> None:
        outcome = next(outcomes)
        if outcome is not None:
            raise outcome

    monkeypatch.setattr(publish, "publish_decisions", flaky)
    shared = publish.SharedPublish(None, None, None)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="disk full"):
        shared()
    shared()  # published this time
    with pytest.raises(StopIteration):
        next(outcomes)
