"""The scale benchmark at a tiny size: CI runs its code path, the real sizes run on demand."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_scale_benchmark_runs_every_stage_at_a_tiny_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import scale

    monkeypatch.setattr(scale, "WORK", tmp_path)
    result = scale.run_one(400, "torch")
    assert result["n"] == 400 and result["groups"] == 4 and result["themes"] > 0
    assert list(result["stages"]) == [
        "ingest",
        "statements (spaCy, language)",
        "embed (cache, model loaded)",
        "themes (HDBSCAN + merge + labels)",
    ]
    assert all(s["seconds"] >= 0 and s["peak_mib"] > 0 for s in result["stages"].values())
    assert result["embed_per_s"] > 0 and result["ratio"] > 0
    assert (tmp_path / "400-torch" / "data" / "processed" / "scale" / "statements.parquet").exists()
    sys.modules.pop("scale", None)
