"""The `harvest` commands for accounts and upload links, as an operator types them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import FIXTURES


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HARVEST_DATA", str(tmp_path / "data"))
    runner = CliRunner()

    def invoke(*args: str, **kwargs: object):
        return runner.invoke(app, list(args), catch_exceptions=False, **kwargs)

    return invoke


def test_editors_are_added_listed_and_removed(run) -> None:
    assert run("user", "add", "anna", "--password", "long enough").exit_code == 0
    assert run("user", "add", "bob", "--password", "short").exit_code == 2  # under 8 characters
    listed = run("user", "list")
    assert listed.exit_code == 0 and re.search(r"^anna\tsince \d{4}-", listed.output, re.M)
    assert "bob" not in listed.output
    assert run("user", "remove", "anna").exit_code == 0
    assert "anna" not in run("user", "list").output
    missing = run("user", "remove", "anna")
    assert missing.exit_code == 2 and "no editor 'anna'" in missing.output


def test_upload_links_are_created_listed_and_revoked(run) -> None:
    created = run(
        "token",
        "create",
        str(FIXTURES / "mini-event"),
        "--label",
        "day 1",
        "--days",
        "2",
        "--tables",
        "green-t01,green-t02",
    )
    assert created.exit_code == 0
    secret = re.search(r"http://127\.0\.0\.1:8000/u/(\S+)", created.output).group(1)
    listed = run("token", "list").output
    assert re.search(
        r"^1\tmini\tworks\texpires \d{4}-\d\d-\d\d \d\d:\d\d\ttables green-t01,green-t02\tday 1$",
        listed,
        re.M,
    )
    assert secret not in listed  # the secret is never shown again
    assert run("token", "revoke", "1").exit_code == 0
    assert "\trevoked\t" in run("token", "list", "--event", "mini").output
    assert run("token", "list", "--event", "other").output == ""
    assert run("token", "revoke", "99").exit_code == 2


def test_a_database_made_before_links_expired_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    from pipeline import db

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # the upload_tokens table as earlier releases made it
        old.execute(
            "CREATE TABLE upload_tokens (id INTEGER PRIMARY KEY, event VARCHAR(80), "
            "token_sha256 VARCHAR(64) UNIQUE, label VARCHAR(200), created_at DATETIME)"
        )
        old.execute(
            "INSERT INTO upload_tokens VALUES (1, 'mini', ?, 'old link', '2026-01-01 00:00:00')",
            (db.token_digest("old-secret"),),
        )
    url = f"sqlite:///{path}"
    with db.session_scope(url) as session:
        assert db.token_event(session, "old-secret") == "mini"  # no expiry recorded: it still works
        assert db.revoke_upload_token(session, 1)
    with db.session_scope(url) as session:
        assert db.token_event(session, "old-secret") is None


def test_ids_past_what_a_database_holds_are_simply_not_found(tmp_path: Path) -> None:
    from pipeline import db

    url = f"sqlite:///{tmp_path / 'h.db'}"
    with db.session_scope(url) as session:
        assert not db.revoke_upload_token(session, 10**20)
        with pytest.raises(KeyError, match="no audit entry"):
            db.undo(session, "mini", 10**20, "editor")


def test_validate_checks_every_file_and_names_each_problem(run, tmp_path: Path) -> None:
    ok = run("validate", str(FIXTURES / "mini-event"))
    assert ok.exit_code == 0
    assert "event 'mini': " in ok.output and re.search(r"^ok\s+\S*mini\.csv: \d+ notes$", ok.output, re.M)
    bad = tmp_path / "bad.csv"
    bad.write_text("table,round,topic,question,text\ngreen-t01,one,green,actors,fund pilots\n")
    checked = run("validate", str(FIXTURES / "mini-event"), str(bad))
    assert checked.exit_code == 1
    assert f"INVALID  {bad}:" in checked.output and "row 2" in checked.output and "round" in checked.output
    assert not (tmp_path / "data").exists()  # validate stores nothing
    polish = tmp_path / "polish.csv"  # Excel's "CSV" on a Polish Windows
    polish.write_bytes(
        "table,round,topic,question,text\ngreen-t01,1,green,actors,Więcej środków\n".encode("cp1250")
    )
    said = run("validate", str(FIXTURES / "mini-event"), str(polish)).output
    assert f"ok       {polish}: 1 notes; not UTF-8, read as Central European (cp1250)" in said


def test_status_lists_accepted_superseded_and_rejected_uploads(run, tmp_path: Path) -> None:
    event = FIXTURES / "mini-event"
    first, fixed, broken = tmp_path / "t1.csv", tmp_path / "t1-fixed.csv", tmp_path / "t2.csv"
    header = "table,round,topic,question,text\n"
    first.write_text(header + "green-t01,1,green,actors,fund pilots for SMEs\n")
    fixed.write_text(header + "green-t01,1,green,actors,fund pilot projects for SMEs\n")
    broken.write_text(header + "green-t02,1,nowhere,actors,a topic the event lacks\n")
    assert run("ingest", str(event), str(first), "--who", "anna").exit_code == 0
    assert run("ingest", str(event), str(fixed), "--who", "anna").exit_code == 0
    assert run("ingest", str(event), str(broken), "--who", "bob").exit_code == 1
    lines = run("status", str(event)).output.splitlines()
    states = {line.split()[2]: line.split()[1] for line in lines if "notes" in line and "via" in line}
    assert states == {"t1.csv": "superseded", "t1-fixed.csv": "accepted", "t2.csv": "rejected"}
    assert any("nowhere" in line for line in lines)  # the rejected file's problem is shown under it
    assert lines[-1].startswith("3 uploads for event 'mini'")


def test_a_link_lasts_the_configured_days_unless_told(run, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    monkeypatch.setenv("HARVEST_ACCESS__UPLOAD_LINK_DAYS", "3")
    assert run("token", "create", str(FIXTURES / "mini-event")).exit_code == 0
    assert run("token", "create", str(FIXTURES / "mini-event"), "--days", "30").exit_code == 0
    expires = re.findall(r"expires (\d{4}-\d\d-\d\d)", run("token", "list").output)
    days = [(datetime.fromisoformat(e).replace(tzinfo=UTC) - datetime.now(UTC)).days for e in expires]
    assert [d in (2, 3) for d in days] == [True, False] and days[1] in (29, 30)
