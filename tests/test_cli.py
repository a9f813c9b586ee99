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
