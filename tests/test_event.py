from pathlib import Path

import pytest
import yaml

from pipeline.event import EventDefinitionError, load_event, parse_event
from tests.conftest import SAMPLE_EVENT


def _event(**topic_overrides: object) -> dict:
    topic = {
        "id": "green",
        "kind": "challenge",
        "title": "Green",
        "questions": [{"id": "needs", "text": "What is needed?"}],
    }
    topic.update(topic_overrides)
    return {"event": "e1", "sessions": [{"id": "day1", "topics": [topic]}]}


def test_sample_event_loads() -> None:
    event = load_event(SAMPLE_EVENT)
    assert event.id == "ecc2020-sample"
    assert len(event.questions()) == 16
    assert event.topics["tourism"].kind == "ecosystem"
    assert event.session_of("green").id == "day1"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_event(kind="workshop"), "kind: Input should be 'challenge' or 'ecosystem'"),
        (_event(questions=[]), "questions: List should have at least 1 item"),
        (
            _event(questions=[{"id": "q", "text": "a?"}, {"id": "q", "text": "b?"}]),
            "duplicate question id in topic 'green': q",
        ),
        (_event(id="Green Topic"), "String should match pattern"),
    ],
)
def test_invalid_definitions_are_explained(data: dict, message: str) -> None:
    with pytest.raises(EventDefinitionError, match="invalid event definition") as info:
        parse_event(data)
    assert message in str(info.value)


def test_duplicate_topic_ids_across_sessions(tmp_path: Path) -> None:
    data = _event()
    data["sessions"].append({"id": "day2", "topics": data["sessions"][0]["topics"]})
    (tmp_path / "event.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(EventDefinitionError, match="duplicate topic id: green"):
        load_event(tmp_path)


def test_missing_event_file(tmp_path: Path) -> None:
    with pytest.raises(EventDefinitionError, match="no event definition"):
        load_event(tmp_path)
