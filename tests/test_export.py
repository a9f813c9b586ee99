"""The export files: spreadsheets never run a note as a formula; parquet keeps every text verbatim."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.export import spreadsheet_safe


def test_cells_a_spreadsheet_would_run_are_neutralised() -> None:
    hostile = ['=HYPERLINK("http://evil.example","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\tx"]
    frame = pd.DataFrame(
        {
            "text": pd.array([*hostile, "more money for pilots"], dtype="string"),
            "note": [*hostile, "ok"],  # object columns too
            "votes": [1, 2, 3, 4, 5, 6],
        }
    )
    safe = spreadsheet_safe(frame)
    assert safe["text"].tolist() == [f"'{h}" for h in hostile] + ["more money for pilots"]
    assert safe["note"].tolist() == [f"'{h}" for h in hostile] + ["ok"]
    assert safe["votes"].tolist() == frame["votes"].tolist()
    assert frame["text"].iloc[0].startswith("=")  # the caller's frame (and so the parquet) is untouched
    assert str(safe["text"].dtype) == "string"


def test_a_csv_reads_back_as_written(tmp_path: Path) -> None:
    from pipeline.store import write_csv

    texts = ['say "more" money', "line one\nline two", "Zusammenarbeit, café; €", "", "'=SUM(1)", " padded "]
    frame = pd.DataFrame(
        {
            "text": pd.array([*texts, None], dtype="string"),
            "note": [*texts, None],  # object columns too
            "votes": [0, 1, 2, 3, 4, 5, 6],
        }
    )
    write_csv(tmp_path / "out.csv", frame)
    written = (tmp_path / "out.csv").read_text(encoding="utf-8")
    assert written.splitlines()[0] == "text,note,votes"  # the header as pandas writes it
    strings = {"text": "string", "note": "string"}
    back = pd.read_csv(tmp_path / "out.csv", dtype=strings, keep_default_na=False)
    assert back["text"].tolist() == [*texts, ""]  # a missing text is an empty cell
    assert back["note"].tolist() == [*texts, ""]
    assert back["votes"].tolist() == list(range(7))
