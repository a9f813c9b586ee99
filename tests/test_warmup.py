"""The serving process's warm-up loads what a run loads, so the run finds it loaded."""

from __future__ import annotations

import gc
import subprocess
import sys
from functools import _lru_cache_wrapper
from pathlib import Path
from typing import Any

import pytest

import pipeline.warmup
from pipeline.config import Settings, load_settings
from pipeline.encoders import _load_encoder, load_encoder
from pipeline.statements import _detector, detect_languages, load_nlp, load_splitter
from pipeline.warmup import head_start, kept_for_good, warm_up
from tests.conftest import SAMPLE_EVENT


def test_a_run_after_the_warm_up_loads_no_model_again() -> None:
    settings = Settings()
    loaded = warm_up(settings, "en")
    assert set(loaded) == {"encoder", "splitter", "spacy", "languages", "language models", "clustering"}
    loaders: list[_lru_cache_wrapper[Any]] = [_load_encoder, load_splitter, load_nlp, _detector]
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


def test_the_language_models_preload_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARVEST_PRELOAD_LANGUAGE_MODELS", "false")
    settings = load_settings()
    assert settings.preload_language_models is False
    assert "language models" not in warm_up(settings, "en")
    # a fresh `harvest run` warms up without them, whatever the setting
    assert "language models" not in warm_up(Settings(), "en", language_models=False)


#: Notes the screening doubts: their shortlists load full models of several languages.
_DOUBTFUL = [
    "Więcej współpracy między regionami i klastrami",
    "Větší spolupráce mezi regiony a klastry",
    "Moins de bureaucratie pour les PME",
    "Mehr Zusammenarbeit zwischen den Clustern",
]

# Lingua holds its models for the whole process (not per detector), so what a detection loads is seen
# in a fresh process's resident memory.
_MEASURE = """
import sys
from pipeline.statements import detect_languages, preload_language_models

def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

detect_languages(["Clusters should lobby for cheaper energy"], "en")  # the screener's own models
if sys.argv[1] == "preload":
    preload_language_models("en")
before = resident_mib()
print(detect_languages(sys.argv[2:], "en"), round(resident_mib() - before))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("preload", [False, True])
def test_preloaded_language_models_leave_nothing_for_a_run_to_load(preload: bool) -> None:
    mode = "preload" if preload else "lazy"
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, mode, *_DOUBTFUL], capture_output=True, text=True, check=True
    ).stdout.split("] ")
    assert out[0] + "]" == str(["pl", "cs", "fr", "de"])
    grown_mib = int(out[1])
    if preload:
        assert grown_mib < 20
    else:  # the run itself would have loaded them
        assert grown_mib > 100


# A fresh process: this one has the models loaded by other tests already.
_WEB = """
import sys
from pathlib import Path
from fastapi.testclient import TestClient
from pipeline.config import Settings
from pipeline.encoders import _load_encoder
from pipeline.statements import load_nlp
from web.app import create_app

app = create_app([Path(sys.argv[1])], Settings(data_dir=Path(sys.argv[2])), warm=sys.argv[3] == "warm")
with TestClient(app) as client:
    answered = client.get("/login").status_code  # pages answer while the models load
    warming = app.state.harvest.warming
    if warming is not None:
        warming.join()
    loaded = _load_encoder.cache_info().currsize, load_nlp.cache_info().currsize
    kept = sys.modules.get("flows.server") and sys.modules["flows.server"]._kept
    print(answered, "flows.harvest" in sys.modules, *loaded, bool(kept and kept.process.poll() is None))
"""


@pytest.mark.parametrize("warm", [False, True])
def test_the_web_app_loads_the_models_for_re_runs_as_it_starts(
    warm: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect, the models and the Prefect server the re-runs keep (the app's own here)."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    mode = "warm" if warm else "cold"
    out = subprocess.run(
        [sys.executable, "-c", _WEB, str(SAMPLE_EVENT), str(tmp_path), mode],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == (["200", "True", "1", "1", "True"] if warm else ["200", "False", "0", "0", "False"])


def test_a_head_start_that_fails_leaves_the_loads_to_the_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh `harvest run` loads the models while Prefect's server starts; a model that cannot load
    there (a mistyped model path, say) fails the run only where the run needs it, as before."""

    def unloadable(*_: object) -> None:
        raise OSError("no model at /nowhere")

    monkeypatch.setattr(pipeline.warmup, "load_encoder", unloadable)
    head_start(Settings(), "en", language_models=False)
    assert "could not load the models ahead of the run (no model at /nowhere)" in caplog.text


def test_no_collection_runs_while_the_process_loads_for_good_and_what_it_loaded_is_frozen() -> None:
    started: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(info["generation"])

    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.callbacks.append(count)
    try:
        with kept_for_good():
            gc.disable()  # as msgpack does around an unpack (spaCy's load): no collection either
            gc.enable()
            loaded = [[n] for n in range(50_000)]  # containers far past the collector's threshold
        assert started == []
        assert gc.get_freeze_count() >= frozen + len(loaded)
        assert gc.get_threshold() == thresholds
        with pytest.raises(OSError), kept_for_good():
            raise OSError("a model that does not load")
        assert gc.get_threshold() == thresholds
        # two threads' blocks at once, the first to start ending first (the web app's warm-up and another)
        first, second = kept_for_good(), kept_for_good()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert gc.get_threshold()[0] == 0  # the second still loads: the collector waits for it
        second.__exit__(None, None, None)
        assert gc.get_threshold() == thresholds
        _ = [[n] for n in range(50_000)]
        assert started  # collecting again as before
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()  # the rest of the test session as it was
