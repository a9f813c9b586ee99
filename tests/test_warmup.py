"""The serving process's warm-up loads what a run loads, so the run finds it loaded."""

from __future__ import annotations

from functools import _lru_cache_wrapper
from typing import Any

from pipeline.config import Settings
from pipeline.encoders import load_encoder
from pipeline.statements import _detector, detect_languages, load_nlp, load_splitter
from pipeline.warmup import warm_up


def test_a_run_after_the_warm_up_loads_no_model_again() -> None:
    settings = Settings()
    loaded = warm_up(settings, "en")
    assert set(loaded) == {"encoder", "splitter", "spacy", "languages", "clustering"}
    loaders: list[_lru_cache_wrapper[Any]] = [load_encoder, load_splitter, load_nlp, _detector]
    misses = [loader.cache_info().misses for loader in loaders]

    # what a run's steps call, with what they pass
    vectors = load_encoder(settings.encoder).encode(["Cheap energy for firms"], 8, show_progress=False)
    assert vectors.shape == (1, 384)
    assert [s.text for s in load_splitter("en")("Train staff. Use digital tools.").sents] == [
        "Train staff.",
        "Use digital tools.",
    ]
    assert load_nlp(settings.spacy_model)("Clusters help small firms").has_annotation("DEP")
    assert detect_languages(["Clusters should lobby for cheaper energy"], "en") == ["en"]

    assert [loader.cache_info().misses for loader in loaders] == misses
