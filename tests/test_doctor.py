"""`harvest doctor`: an event's state checked, and repaired where it can be, saying what was done."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline import db, editing
from pipeline.event import load_event
from pipeline.store import Layout, Manifest
from tests.conftest import FIXTURES

EVENT = FIXTURES / "mini-event"
NOTES = "table,round,topic,question,text\n{table},1,green,actors,{text}\n"


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARVEST_DATA", str(tmp_path / "data"))
    for table, text in [("green-t01", "banks must be on board"), ("green-t02", "hydrogen valleys")]:
        (tmp_path / f"{table}.csv").write_text(NOTES.format(table=table, text=text))
        assert harvest("ingest", str(EVENT), str(tmp_path / f"{table}.csv")).exit_code == 0
    return tmp_path / "data"


def harvest(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def lines(result) -> list[str]:
    return result.output.strip().splitlines()


def test_a_healthy_event_is_all_ok(data: Path) -> None:
    result = harvest("doctor", str(EVENT))
    assert result.exit_code == 0, result.output
    assert all(line.startswith("ok ") for line in lines(result))
    assert "manifest: 2 uploads, each with its record" in result.output
    assert "2 counted uploads match their SHA-256" in result.output


def test_damage_is_reported_then_repaired(data: Path) -> None:
    layout = Layout(data, load_event(EVENT).id)
    layout.manifest.unlink()
    _, second = Manifest.read_records(layout)
    tampered = layout.raw / second.stored_as
    tampered.write_bytes(tampered.read_bytes().replace(b"hydrogen", b"coal"))
    layout.notes.write_bytes(b"PAR1 not parquet")

    checked = harvest("doctor", str(EVENT))
    assert checked.exit_code == 1
    problems = [line for line in lines(checked) if line.startswith("problem")]
    assert len(problems) == 3, checked.output
    assert "manifest.json is missing: 2 upload records to rebuild it" in problems[0]
    assert (
        f"{second.stored_as.split('/')[-1]}: the stored copy of green-t02.csv no longer matches"
        in problems[1]
    )
    assert "notes.parquet unreadable" in problems[2]
    assert not layout.manifest.exists() and layout.notes.exists()  # a check changes nothing

    repaired = harvest("doctor", str(EVENT), "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert [line.split()[0] for line in lines(repaired)] == ["repaired", "repaired", "repaired", "ok"]
    assert "its notes no longer count: hand the file in again" in repaired.output
    manifest = Manifest.load(layout)
    assert [u.status for u in manifest.uploads] == ["accepted", "rejected"]
    assert (layout.processed / "notes.parquet.unreadable").exists()
    again = harvest("doctor", str(EVENT))
    assert again.exit_code == 0 and all(line.startswith("ok ") for line in lines(again))
    status = harvest("status", str(EVENT)).output
    assert re.search(r"rejected\s+green-t02\.csv", status) and "stored copy damaged" in status


def test_a_decision_that_matches_no_theme_is_reported(data: Path) -> None:
    layout = Layout(data, load_event(EVENT).id)
    pd.DataFrame({"statement_id": ["s1"], "theme_id": ["green.actors.aaaa"]}).to_parquet(
        layout.theme_identity
    )
    with db.session_scope(f"sqlite:///{data / 'harvest.db'}") as session:
        editing.rename(session, "mini", "ann", "green.actors.aaaa", "green", "actors", "Finance")
        editing.rename(session, "mini", "ann", "green.actors.gone", "green", "actors", "Old theme")
    result = harvest("doctor", str(EVENT))
    assert result.exit_code == 1
    assert "1 editors' decisions match no theme of the last run" in result.output
    assert "green.actors.gone" in result.output and "green.actors.aaaa" not in result.output
