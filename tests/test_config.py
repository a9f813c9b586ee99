"""Settings: one validated object from harvest.toml, HARVEST_* variables and arguments; a wrong or unknown
value is an error naming it, before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline.config import SettingsError, load_settings, settings_id
from pipeline.synthesis import SynthesisParams
from pipeline.themes import ThemeParams
from tests.conftest import FIXTURES


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own (harvest.toml is read from there) and no HARVEST_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("HARVEST_")]:
        monkeypatch.delenv(name)
    return tmp_path


def test_thresholds_come_from_harvest_toml_and_reach_the_synthesis(workdir: Path) -> None:
    (workdir / "harvest.toml").write_text(
        "recommendation_parts = 3\n[themes]\nmerge_similarity = 0.35\nmin_tables = 2\n"
        "[chatter]\nprobability = 0.9\n[access]\nupload_link_days = 3\n"
    )
    settings = load_settings()
    params = settings.synthesis
    assert params.themes == ThemeParams(merge_similarity=0.35, min_tables=2)
    assert (params.chatter.probability, params.recommendation_parts) == (0.9, 3)
    assert settings.access.upload_link_days == 3
    assert params != SynthesisParams()  # so every group's fingerprint changes (pipeline.incremental)


def test_environment_variables_override_the_file_nested_with_double_underscores(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "harvest.toml").write_text("[themes]\nmerge_similarity = 0.35\n")
    monkeypatch.setenv("HARVEST_THEMES__MERGE_SIMILARITY", "0.25")
    assert load_settings().themes.merge_similarity == 0.25
    assert load_settings(data_dir=workdir / "d").data_dir == workdir / "d"  # arguments win over both


def test_the_settings_id_tells_processes_that_run_alike(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = settings_id(load_settings(data_dir=Path("data")))
    assert here == settings_id(load_settings(data_dir=workdir / "data"))  # the same root, written two ways
    assert here != settings_id(load_settings(data_dir=workdir / "other"))
    (workdir / "harvest.toml").write_text("[themes]\nmerge_similarity = 0.35\n")
    from_file = settings_id(load_settings(data_dir=Path("data")))
    assert from_file != here
    monkeypatch.setenv("HARVEST_EMBEDDING_BACKEND", "torch")
    assert settings_id(load_settings(data_dir=Path("data"))) not in {here, from_file}


@pytest.mark.parametrize(
    ("toml", "named", "why"),
    [
        ("[themes]\nmerge_similarity = 3\n", "themes.merge_similarity", "less than or equal to 1"),
        ("[themes]\nmerge_similarty = 0.3\n", "themes.merge_similarty", "unknown setting"),
        ('emebdding_model = "x"\n', "emebdding_model", "unknown setting"),
        ('embedding_backend = "tensorflow"\n', "embedding_backend", "'torch', 'onnx'"),
        ("[chatter]\nanswer_margin = 0.5\n", "chatter", "answer_margin (0.5) must be below remark_margin"),
        ("[access]\nsign_in_failures = 0\n", "access.sign_in_failures", "greater than or equal to 1"),
    ],
)
def test_a_wrong_or_unknown_setting_is_an_error_naming_it(
    workdir: Path, toml: str, named: str, why: str
) -> None:
    (workdir / "harvest.toml").write_text(toml)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert f"  {named}: " in str(error.value) and why in str(error.value)


def test_the_command_line_stops_on_a_wrong_setting_before_doing_anything(workdir: Path) -> None:
    (workdir / "harvest.toml").write_text("[themes]\nmin_tables = 0\n")
    result = CliRunner().invoke(app, ["status", str(FIXTURES / "mini-event")])
    assert result.exit_code == 2
    assert "themes.min_tables: Input should be greater than or equal to 1 (got 0)" in result.output
    assert not (workdir / "data").exists()
