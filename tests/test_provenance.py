"""What derived data depends on: the code that made it changes its id, nothing else does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.provenance import code_id
from pipeline.synthesis import THEME_MODULES, models_id


def test_a_change_to_the_code_changes_its_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "made_by"
    package.mkdir()
    (package / "__init__.py").write_text('"""Rules."""\n')
    (package / "rules.py").write_text("THRESHOLD = 0.5\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_id("made_by")
    assert code_id("made_by") == before  # the same code, the same id
    (package / "rules.py").write_text("THRESHOLD = 0.6\n")
    code_id.cache_clear()  # a process sees one release; the next process, the next one
    assert code_id("made_by") != before
    assert code_id("made_by.rules") != code_id("made_by")  # a module alone, or its package whole
    sys.modules.pop("made_by.rules", None)
    sys.modules.pop("made_by", None)


def test_every_groups_fingerprint_names_the_code_that_makes_themes() -> None:
    from pipeline.encoders import EncoderSpec

    spec = EncoderSpec(model="all-MiniLM-L6-v2")
    assert f"code {code_id(*THEME_MODULES)}" in models_id(spec, None)
