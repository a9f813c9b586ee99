"""The export contract: statements.csv / themes.csv and their parquet twins (see schema.EXPORT_*)."""

from __future__ import annotations

import pandas as pd

from pipeline.schema import (
    EXPORT_STATEMENT_COLUMNS,
    EXPORT_THEME_COLUMNS,
    STATEMENTS,
    THEMES,
    ThemeStatus,
    conform,
)
from pipeline.store import Layout, made_by, write_csv, write_parquet

STATEMENT_EXTRAS = [
    "flag",
    "language_route",
    "votes",
    "position",
    "facilitator",
    "source_file",
    "source_line",
    "upload_id",
]
#: What a spreadsheet reads as the start of a formula (OWASP's list for CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every text cell a spreadsheet would run as a formula ("=HYPERLINK(...)",
    "@SUM(...)", "+cmd|...") prefixed with an apostrophe, which spreadsheets show as plain text. For the
    CSV files only: the parquet files keep every text verbatim."""
    out = frame.copy()
    for column in out.columns:
        values = out[column]
        if values.dtype == object:
            risky = values.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_STARTS)).astype(bool)
        elif pd.api.types.is_string_dtype(values):  # vectorised: a Python call per cell is seconds at 1M
            risky = values.str.startswith(FORMULA_STARTS).fillna(False).astype(bool)
        else:
            continue
        if risky.any():
            out[column] = values.where(~risky, "'" + values.astype("string"))
    return out


def themed_statements(
    statements: pd.DataFrame, assignments: pd.DataFrame, themes: pd.DataFrame
) -> pd.DataFrame:
    """Statements with ``theme_id`` ('' = unassigned), its ``status`` and the statement's ``flag``."""
    merged = conform(statements, STATEMENTS).merge(
        assignments[["statement_id", "theme_id", "flag"]], on="statement_id", how="left", validate="1:1"
    )
    merged["theme_id"] = merged["theme_id"].fillna("").astype("string")
    merged["flag"] = merged["flag"].fillna("").astype("string")
    status = dict(zip(themes["theme_id"], themes["status"], strict=True))
    merged["status"] = merged["theme_id"].map(lambda t: status.get(t, "")).astype("string")
    columns = EXPORT_STATEMENT_COLUMNS + [c for c in STATEMENT_EXTRAS if c in merged.columns]
    return (
        merged[columns]
        .sort_values(["topic", "question", "table", "round", "statement_id"], kind="stable")
        .reset_index(drop=True)
    )


def review_themes(themes: pd.DataFrame) -> pd.DataFrame:
    """Every theme (off-topic ones too) as the review pages read them (``Layout.review_themes``): the
    export's columns first."""
    themes = conform(themes, THEMES)
    return themes[EXPORT_THEME_COLUMNS + [c for c in THEMES.names if c not in EXPORT_THEME_COLUMNS]]


def write_exports(layout: Layout, statements: pd.DataFrame, themes: pd.DataFrame) -> None:
    """The export, and every theme (off-topic ones too) for the review pages (``Layout.review_themes``).

    The exported statements replace the split ones in ``Layout.statements`` and keep what made those
    (``store.made_by``): the next run reuses the statements of unchanged notes only while it says the
    splitting and language rules that run has (``ingest.build_statements``)."""
    themes = review_themes(themes)
    write_parquet(layout.review_themes, themes)
    answers = themes[themes["status"] != ThemeStatus.OFF_TOPIC]  # session remarks are no theme (schema)
    split_by = made_by(layout.statements)
    for frame, name in ((statements, "statements"), (answers, "themes")):
        write_csv(layout.processed / f"{name}.csv", spreadsheet_safe(frame))
        write_parquet(layout.processed / f"{name}.parquet", frame, split_by if name == "statements" else "")
