"""How right the editors' suggestions are (``pipeline.suggestions``), against gold, on the dev event and
the second event. Writes benchmarks/results/suggestions.md (and suggestions.json).

    python benchmarks/suggestions.py [--events ../shared/ecc2020-dev ../shared/ecc2020-dev2]

- *Merge?*: of the pairs of themes offered, how many are one gold point (the majority gold theme of both
  is the same), and how many such pairs the run has at all.
- *Fits a theme?*: each table session in turn arrives late: its statements are taken out of their themes,
  as after an upload between runs, and ``suggest`` offers a theme for each. How many are offered one, and
  how often it is the theme of their gold point (the theme whose statements mostly express it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
WORK = HERE / ".work" / "suggestions"
RESULTS = HERE / "results"


def _majority(statements: pd.DataFrame, themes: set[str]) -> pd.Series:
    placed = statements[statements.theme_id.isin(themes) & (statements.gold != "")]
    return placed.groupby("theme_id")["gold"].agg(lambda g: g.value_counts().index[0])


def measure(event_dir: Path) -> dict[str, object]:
    from flows.harvest import harvest_event
    from pipeline.config import Settings
    from pipeline.embed import cached_embeddings
    from pipeline.event import load_event
    from pipeline.store import Layout
    from pipeline.suggestions import suggest
    from pipeline.themes import model_views

    data = WORK / event_dir.name
    shutil.rmtree(data, ignore_errors=True)
    harvest_event(event_dir, data)
    event = load_event(event_dir)
    settings, layout = Settings(data_dir=data), Layout(data, event.id)
    statements = pd.read_parquet(layout.statements)
    themes = pd.read_parquet(layout.review_themes)
    texts, _ = model_views(statements, event.glossary_for)
    embeddings = cached_embeddings(texts, settings.encoder.id, layout.embedding_cache).astype(np.float32)
    gold = pd.read_csv(event_dir / "gold.csv", keep_default_na=False).set_index("note_id")["theme_id"]
    statements["gold"] = statements.note_id.map(gold).fillna("").replace("noise", "")
    answers = set(themes.loc[themes.status.isin(["draft", "approved"]), "theme_id"])
    majority = _majority(statements, answers)
    threshold = settings.themes.merge_similarity

    started = time.perf_counter()
    offered = suggest(statements, embeddings, statements[["theme_id", "flag"]], themes, threshold)
    seconds = time.perf_counter() - started
    same = [majority.get(m.into) == majority.get(m.theme_id) for m in offered.merges]
    ids = sorted(majority.index)
    one_point_pairs = sum(
        majority[a] == majority[b] and a.rsplit(".", 1)[0] == b.rsplit(".", 1)[0]
        for i, a in enumerate(ids)
        for b in ids[i + 1 :]
    )

    late = statements.assign(session=statements.table + " r" + statements["round"].astype(str))
    n_late = n_offered = n_right = 0
    for _, rows in late.groupby("session").groups.items():
        took_out = late.loc[rows]
        took_out = took_out[took_out.theme_id.isin(answers) & (took_out.gold != "")]
        if took_out.empty:
            continue
        assignments = statements[["theme_id", "flag"]].copy()
        assignments.loc[took_out.index, "theme_id"] = ""
        fits = suggest(statements, embeddings, assignments, themes, threshold).assignments
        wanted = set(took_out.statement_id)
        gold_of = dict(zip(took_out.statement_id, took_out.gold, strict=True))
        mine = [a for a in fits if a.statement_id in wanted]
        n_late += len(wanted)
        n_offered += len(mine)
        n_right += sum(majority.get(a.theme_id) == gold_of[a.statement_id] for a in mine)
    return {
        "event": event_dir.name,
        "statements": len(statements),
        "themes": len(answers),
        "merge_offered": len(offered.merges),
        "merge_one_point": int(sum(same)),
        "one_point_pairs": int(one_point_pairs),
        "late_statements": n_late,
        "fit_offered": n_offered,
        "fit_right": n_right,
        "suggest_seconds": round(seconds, 3),
    }


def write(rows: list[dict[str, object]]) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "suggestions.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "# Suggestions to editors",
        "",
        f"Run {time.strftime('%Y-%m-%d')} by `python benchmarks/suggestions.py` (2-core CPU, "
        "all-MiniLM-L6-v2). Threshold: the machine's merge similarity (mean cosine 0.3). Gold is read "
        "here only, never by the pipeline.",
        "",
        "| event | statements | themes | merges offered | of them one gold point "
        "| one-point pairs in the run | late statements | offered a theme | offered their gold theme "
        "| suggest() time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        offered = int(r["fit_offered"]) or 1
        lines.append(
            f"| {r['event']} | {r['statements']} | {r['themes']} | {r['merge_offered']} | "
            f"{r['merge_one_point']} | {r['one_point_pairs']} | {r['late_statements']} | "
            f"{r['fit_offered']} | "
            f"{r['fit_right']} ({int(r['fit_right']) / offered:.0%}) | {r['suggest_seconds']} s |"
        )
    lines += [
        "",
        "*Late statements*: every table session in turn, taken out of its themes as if it arrived after "
        "the run. *Merges*: pairs of themes of one question whose statements are as close as the "
        "machine merges at; few are one point, so the page shows at most three per question, with the "
        "closest pair of statements as evidence, and applies nothing by itself.",
        "",
    ]
    (RESULTS / "suggestions.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", nargs="+", type=Path, default=[SHARED / "ecc2020-dev", SHARED / "ecc2020-dev2"]
    )
    args = parser.parse_args()
    rows = [measure(event) for event in args.events]
    write(rows)
    print((RESULTS / "suggestions.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
