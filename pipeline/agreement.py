"""How much the editors changed of the machine's themes: the quality signal of a run that no gold gives.

Written beside the export as ``agreement.json`` (``Layout.agreement``) and shown on the event page.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from pipeline.review import ReviewState
from pipeline.schema import OFF_TOPIC_THEME_SUFFIX, ThemeStatus


@dataclass(frozen=True)
class Agreement:
    statements: int  # every statement of the event
    moved: int  # in another theme than the machine's (merged, moved, split off, taken out or put in)
    themes: int  # the machine's themes, the off-topic ones left out
    renamed: int
    recommendations_edited: int
    merged: int  # machine themes merged into another
    split_off: int  # themes editors made by splitting statements out
    approved: int
    rejected: int
    #: adjusted Rand index between the machine's themes and the reviewed ones, over every statement (an
    #: unassigned statement is a theme of its own): 1 = the editors kept the machine's grouping
    ari: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def editor_agreement(machine: pd.DataFrame, reviewed: pd.DataFrame, state: ReviewState) -> Agreement:
    """``machine``: ``statement_id, theme_id`` as the run clustered them; ``reviewed``: the export's
    ``statement_id, theme_id, status`` after the editors' decisions; ``state``: those decisions."""
    both = reviewed[["statement_id", "theme_id"]].merge(
        machine[["statement_id", "theme_id"]], on="statement_id", how="left", suffixes=("", "_machine")
    )
    both["theme_id_machine"] = both["theme_id_machine"].fillna("")

    def grouping(column: str) -> list[str]:  # an unassigned statement stands alone
        return [
            t or f"alone:{s}"
            for t, s in zip(both[column].tolist(), both["statement_id"].tolist(), strict=True)
        ]

    machine_themes = {t for t in machine["theme_id"].tolist() if t and not t.endswith(OFF_TOPIC_THEME_SUFFIX)}
    decisions = state.themes
    decided = decisions[decisions["theme_id"].isin(machine_themes)]

    def count(column: str, value: str | None = None) -> int:
        cells = decided[column]
        chosen = cells == value if value else cells.notna() & (cells.astype(str) != "")
        return int(chosen.sum())

    moved = int((both["theme_id"] != both["theme_id_machine"]).sum())
    return Agreement(
        statements=len(both),
        moved=moved,
        themes=len(machine_themes),
        renamed=count("label"),
        recommendations_edited=count("recommendation"),
        merged=count("merged_into"),
        split_off=len(set(state.placements["theme_id"]) - machine_themes - {""}),
        approved=count("status", ThemeStatus.APPROVED),
        rejected=count("status", ThemeStatus.REJECTED),
        ari=_rand_index(grouping("theme_id_machine"), grouping("theme_id")) if moved else 1.0,
    )


def _rand_index(machine: list[str], reviewed: list[str]) -> float:
    """Adjusted Rand index of two groupings; scikit-learn (~1.5 s to import) only when one was changed."""
    from sklearn.metrics import adjusted_rand_score

    return round(float(adjusted_rand_score(machine, reviewed)), 4)
