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


def test_glossary_spells_out_acronyms_for_the_model_and_the_event_wins() -> None:
    from pipeline.themes import text_for_embedding

    default = parse_event(_event())
    assert text_for_embedding("DIHs + SMEs!!", default.model_glossary) == (
        "digital innovation hubs + small and medium-sized enterprises"
    )
    assert text_for_embedding("KETs, R&D and it", default.model_glossary) == (
        "key enabling technologies, research and development and it"  # lower-case 'it' is a word
    )
    own = parse_event({**_event(), "glossary": {"DIH": "DIH", "WCM": "world cafe method"}})
    assert text_for_embedding("DIH via WCM", own.model_glossary) == "DIH via world cafe method"
    assert own.model_glossary["SME"] == "small and medium-sized enterprise"
    only_own = parse_event(
        {**_event(), "glossary": {"WCM": "world cafe method"}, "use_default_glossary": False}
    )
    assert only_own.model_glossary == {"WCM": "world cafe method", "WCMs": "world cafe methods"}


def test_an_ambiguous_acronym_means_what_its_questions_notes_make_it_mean() -> None:
    event = parse_event({**_event(), "glossary": {"PA": ["public administration", "personal assistant"]}})
    assert "HE" not in event.model_glossary and event.ambiguous_glossary["HE"][0] == "Horizon Europe"
    horizon = event.glossary_for(["HE calls matter", "access to Horizon funding", "Horizon Europe is key"])
    assert horizon["HE"] == "Horizon Europe"
    education = event.glossary_for(["links between HE and firms", "education providers", "higher skills"])
    assert education["HE"] == "higher education"
    assert "HE" not in event.glossary_for(["HE calls matter"])  # nothing to tell the meanings apart
    # a meaning's words count as whole words only, whatever their case
    assert "HE" not in event.glossary_for(["HE for Europeans", "highereducation", "Horizons"])
    assert event.glossary_for(["HE calls", "EUROPE first"])["HE"] == "Horizon Europe"
    assert event.glossary_for(["PA on board", "public procurement by the administration"])["PA"] == (
        "public administration"
    )
    plain = parse_event({**_event(), "glossary": {"HE": "Horizon Europe"}})  # the event decides
    assert "HE" not in plain.ambiguous_glossary and plain.glossary_for(["HE"])["HE"] == "Horizon Europe"
    with pytest.raises(EventDefinitionError, match="at least 2 items"):
        parse_event({**_event(), "glossary": {"PA": ["public administration"]}})
