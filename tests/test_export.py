"""The export files: spreadsheets never run a note as a formula; parquet keeps every text verbatim."""

from __future__ import annotations

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
