"""Editors' decisions, and how every run re-applies them.

The machine's clustering of a run is kept as it came out (``clusters.parquet``); the editors' work is
kept as *state*, not as a replay of clicks:

- per theme: label, recommendation, status (draft/approved/rejected), pinned rank, merged into;
- per statement: the theme an editor put it in ('' = unassigned), and the question, when an editor moved
  it from the one it was handed in under (``relocate``).

**Theme identity across runs.** A run's new machine theme inherits the id of an earlier machine theme
when they share at least half of the smaller one's statements (overlap coefficient >= 0.5); pairs are
matched greedily, most shared statements first, one to one. So a theme keeps its id while new statements
join it, and every decision keyed by that id still applies. A new theme that matches nothing gets a new id.
New statements join an existing theme when the clustering puts them with its members, and form new themes
otherwise; statements an editor placed stay where they were put.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from pipeline.glossary import for_readers
from pipeline.labels import recommendation_text, representative
from pipeline.rank import SUPPORT, rank_themes, session_names, theme_support
from pipeline.schema import OFF_TOPIC_THEME_SUFFIX, THEMES, ThemeStatus, conform, vectors
from pipeline.themes import GlossaryFor, ThemeParams

MIN_OVERLAP = 0.5
SUPPORT_COLUMNS = ["statement_id", "note_id", "topic", "question", "table", "round", "votes", "text"]
DECISION_COLUMNS = [
    "theme_id",
    "topic",
    "question",
    "label",
    "recommendation",
    "status",
    "pinned_rank",
    "merged_into",
    "approved_content",
]
#: statement_id, theme_id ('' = unassigned), and topic, question ('' = the one it was handed in under)
PLACEMENT_COLUMNS = ["statement_id", "theme_id", "topic", "question"]


@dataclass
class ReviewState:
    """What editors decided for one event. ``themes`` has DECISION_COLUMNS (None = not decided);
    ``placements`` has PLACEMENT_COLUMNS."""

    themes: pd.DataFrame
    placements: pd.DataFrame

    @classmethod
    def empty(cls) -> ReviewState:
        return cls(pd.DataFrame(columns=DECISION_COLUMNS), pd.DataFrame(columns=PLACEMENT_COLUMNS))

    def unmatched(self, machine_theme_ids: Iterable[str]) -> list[str]:
        """Decided themes that are neither among ``machine_theme_ids`` nor made by editors (a split):
        decisions that no longer apply to anything, e.g. after the notes they were about changed."""
        known = set(machine_theme_ids) | set(self.placements["theme_id"])
        return sorted(set(self.themes["theme_id"]) - known)


def relocates(state: ReviewState) -> bool:
    """Whether an editor moved a note to another question."""
    placements = state.placements
    return "topic" in placements and bool((placements["topic"].fillna("") != "").any())


def relocate(statements: pd.DataFrame, state: ReviewState) -> pd.DataFrame:
    """``statements`` with the topic and question of those an editor moved to another question (a note
    filed under the wrong one); the rest, and where each was read from, as they were."""
    placements = state.placements
    if not relocates(state):
        return statements
    moved = placements[placements["topic"].fillna("") != ""].set_index("statement_id")
    rows = statements["statement_id"].isin(moved.index)
    out = statements.copy()
    targets = moved.loc[out.loc[rows, "statement_id"], ["topic", "question"]].to_numpy()
    out.loc[rows, ["topic", "question"]] = targets
    return out


def carry_identity(new: pd.DataFrame, previous: pd.DataFrame) -> dict[str, str]:
    """Map new machine theme ids to earlier ones (rule in the module docstring).

    Both frames have ``statement_id, theme_id`` ('' = unassigned). The off-topic themes keep their
    fixed ids and take no other theme's id."""

    def member_sets(frame: pd.DataFrame) -> dict[str, set[str]]:
        matched = (frame.theme_id != "") & ~frame.theme_id.str.endswith(OFF_TOPIC_THEME_SUFFIX)
        return {str(t): set(g.tolist()) for t, g in frame[matched].groupby("theme_id")["statement_id"]}

    new_sets, old_sets = member_sets(new), member_sets(previous)
    candidates = []
    for n_id, n_members in new_sets.items():
        for o_id, o_members in old_sets.items():
            shared = len(n_members & o_members)
            if shared and shared / min(len(n_members), len(o_members)) >= MIN_OVERLAP:
                candidates.append((-shared, n_id, o_id))
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for _, n_id, o_id in sorted(candidates):
        if n_id not in mapping and o_id not in taken:
            mapping[n_id] = o_id
            taken.add(o_id)
    return mapping


def _resolve(theme_id: str, merged_into: dict[str, str]) -> str:
    seen = set()
    while theme_id in merged_into and merged_into[theme_id] and theme_id not in seen:
        seen.add(theme_id)
        theme_id = merged_into[theme_id]
    return theme_id


def _answers_per_question(
    statements: pd.DataFrame, embeddings: np.ndarray, flags: np.ndarray
) -> Callable[[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per (topic, question): vectors and table sessions of its answers (statements with no flag),
    made when first asked for: themes come question by question, and all questions' vectors at once would
    be a float32 copy of the event's."""
    sessions = session_names(statements["table"].to_numpy(), statements["round"].to_numpy())
    answer = flags == ""
    groups = statements.groupby(["topic", "question"], sort=False).indices

    @lru_cache(maxsize=2)
    def answers(topic: str, question: str) -> tuple[np.ndarray, np.ndarray]:
        rows = groups[(topic, question)]
        return vectors(embeddings, rows[answer[rows]]), sessions[rows[answer[rows]]]

    return answers


def _readers_per_question(
    statements: pd.DataFrame, glossary_for: GlossaryFor | None
) -> Callable[[str, str], Callable[[str], str] | None]:
    """(topic, question) -> its ``for_readers`` speller, made when first asked for."""
    made: dict[tuple[str, str], Callable[[str], str]] = {}

    def readers(topic: str, question: str) -> Callable[[str], str] | None:
        if glossary_for is None:
            return None
        if (topic, question) not in made:
            texts = statements.loc[(statements.topic == topic) & (statements.question == question), "text"]
            made[(topic, question)] = for_readers(glossary_for(texts.tolist()))
        return made[(topic, question)]

    return readers


def apply_review(
    statements: pd.DataFrame,
    embeddings: np.ndarray,
    machine_assignments: pd.DataFrame,
    machine_themes: pd.DataFrame,
    state: ReviewState,
    glossary_for: GlossaryFor | None = None,
    close_similarity: float = ThemeParams().merge_similarity,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The machine's themes with the editors' decisions applied, ranked.

    ``statements`` and ``embeddings`` are aligned row by row; ``machine_assignments`` has
    ``statement_id, theme_id, flag``. A theme editors made (by a split) gets its representative
    statement as recommendation, with the shorthand of ``glossary_for`` (``Event.glossary_for``)
    spelled out as in the machine's recommendations. ``close_similarity`` is the merge threshold the
    themes were made with (``rank.theme_support``). Returns ``(assignments, themes)`` like
    ``synthesise_group``.
    """
    decisions = (
        state.themes.set_index("theme_id")
        if len(state.themes)
        else pd.DataFrame(columns=DECISION_COLUMNS[1:])
    )
    merged_into = {str(t): str(m) for t, m in decisions["merged_into"].dropna().items() if m}
    assignments = machine_assignments.set_index("statement_id").reindex(statements["statement_id"])
    assignments["theme_id"] = (
        assignments["theme_id"].fillna("").map(lambda t: _resolve(t, merged_into) if t else "")
    )
    for statement_id, theme in zip(
        state.placements["statement_id"], state.placements["theme_id"], strict=True
    ):
        if statement_id in assignments.index:
            assignments.loc[statement_id, "theme_id"] = _resolve(theme, merged_into) if theme else ""
    assignments["flag"] = assignments["flag"].fillna("")

    machine = {r["theme_id"]: r for r in machine_themes.to_dict("records")}
    decided_rows = {t: r for t, r in decisions.to_dict("index").items()}
    # plain columns: per-theme pandas indexing would dominate a re-publish after every editor action
    light = {c: statements[c].to_numpy(dtype=object) for c in SUPPORT_COLUMNS}
    ids = light["statement_id"]
    theme_of = assignments["theme_id"].to_numpy(dtype=object)
    answers = _answers_per_question(statements, embeddings, assignments["flag"].to_numpy(dtype=object))
    readers = _readers_per_question(statements, glossary_for)
    # a theme with the machine's members keeps the machine's support, unless a note moved between
    # questions (its question's answers, which n_tables_near counts, are then others)
    machine_support_holds = not relocates(state) and set(SUPPORT) <= set(machine_themes.columns)
    members: dict[str, list[int]] = {}  # one pass: a comparison per theme costs themes x statements
    for position, theme in enumerate(theme_of):
        if theme:
            members.setdefault(theme, []).append(position)
    rows = []
    for theme in sorted(members):
        member_rows = members[theme]
        base = machine.get(theme)
        if base is not None:  # keep the machine's representative first when it is still a member
            order = {s: i for i, s in enumerate(str(base["statement_ids"]).split("; "))}
            member_rows.sort(key=lambda r: order.get(str(ids[r]), len(order)))
        else:
            best = member_rows[representative(vectors(embeddings, member_rows))]
            member_rows = [best, *[r for r in member_rows if r != best]]
        first = {c: values[member_rows[0]] for c, values in light.items()}
        decided = decided_rows.get(theme)
        if (
            base is not None
            and machine_support_holds
            and base["statement_ids"] == "; ".join(str(ids[r]) for r in member_rows)
        ):
            support = {c: base[c] for c in SUPPORT}
        else:
            support = theme_support(
                {c: v[member_rows] for c, v in light.items()},
                vectors(embeddings, member_rows),
                answers(first["topic"], first["question"]),
                close_similarity,
            )
        row = {
            "theme_id": theme,
            "topic": first["topic"],
            "question": first["question"],
            "rank": 0,
            "label": base["label"] if base is not None else "",
            "recommendation": base["recommendation"]
            if base is not None
            else recommendation_text(first["text"], readers(first["topic"], first["question"])),
            **support,
            "status": (base or {}).get("status") or ThemeStatus.DRAFT,  # the machine says off-topic or draft
            "pinned_rank": 0,
        }
        if decided is not None:
            for column in ("label", "recommendation", "status"):
                if isinstance(decided[column], str) and decided[column]:
                    row[column] = decided[column]
            if pd.notna(decided["pinned_rank"]) and decided["pinned_rank"]:
                row["pinned_rank"] = int(decided["pinned_rank"])
        row["label"] = row["label"] or row["recommendation"]
        rows.append(row)
    if not rows:
        return assignments.reset_index(), THEMES.empty()
    ranked = rank_themes(pd.DataFrame(rows))
    return assignments.reset_index(), conform(ranked, THEMES)
