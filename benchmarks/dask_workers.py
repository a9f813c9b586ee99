"""Scale-out benchmark: the whole flow on a large synthetic event with Dask's task runner, 1 vs 2 workers.

    python benchmarks/dask_workers.py [N]        # statements, default 20000

Each configuration runs cold (empty data folder, fresh process) on the same event, built like the
scale benchmark's (recombined sample notes, ~3,000 statements per topic x question). Also runs the
default local task runner for comparison. Writes benchmarks/results/dask.md (and dask.json).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "dask"
RESULTS = HERE / "results"
CONFIGS = {
    "local (1 process, torch on 2 threads)": {"HARVEST_TASK_RUNNER": "local"},
    "dask, 1 worker": {"HARVEST_TASK_RUNNER": "dask", "HARVEST_DASK_WORKERS": "1"},
    "dask, 2 workers": {"HARVEST_TASK_RUNNER": "dask", "HARVEST_DASK_WORKERS": "2"},
}


def run(event: Path, name: str, env: dict[str, str]) -> dict:
    data = WORK / "data" / name.split(" (")[0].replace(", ", "-").replace(" ", "-")
    shutil.rmtree(data, ignore_errors=True)
    code = (
        "import json, sys; from flows.harvest import harvest_event; "
        f"print('SUMMARY ' + json.dumps(harvest_event({str(event)!r}, {str(data)!r})))"
    )
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    line = next(x for x in out.stdout.splitlines() if x.startswith("SUMMARY "))
    summary = json.loads(line.removeprefix("SUMMARY "))
    return {"config": name, "wall_seconds": round(wall, 1), **summary}


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    sys.path.insert(0, str(HERE))
    from scale import build_event

    event = WORK / f"event-{n}"
    if not (event / "event.yaml").exists():
        shutil.rmtree(event, ignore_errors=True)
        build_event(n, event)
    rows = []
    for name, env in CONFIGS.items():
        rows.append(run(event, name, env))
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dask.json").write_text(json.dumps(rows, indent=1))
    stages = list(rows[0]["stage_seconds"])
    lines = [
        "# Dask task runner: 1 worker against 2",
        "",
        f"Run {time.strftime('%Y-%m-%d')} by `python benchmarks/dask_workers.py {n}` on a 2-core CPU "
        "machine: "
        f"a synthetic event of {rows[0]['statements']:,} statements in {rows[0]['groups_clustered']} topic x "
        "question groups, each run cold in a fresh process. Dask workers have one thread each; embedding "
        "is split into chunks of 4,096 texts and every group is its own task. Seconds per flow stage "
        "(statements = spaCy, in the flow's process; embed and themes run on the workers).",
        "",
        "| task runner | " + " | ".join(stages) + " | flow seconds | wall seconds |",
        "|---|" + "---|" * len(stages) + "---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | "
            + " | ".join(str(r["stage_seconds"][s]) for s in stages)
            + f" | {r['seconds']} | {r['wall_seconds']} |"
        )
    lines += [
        "",
        "Two workers beat one on both distributed stages. On this 2-core machine the local runner still "
        "encodes faster than two single-threaded workers (torch already uses both cores in one process), "
        "while the topic x question groups, single-threaded each, gain from running two at a time. On a "
        "real cluster each worker brings its own cores.",
        "",
    ]
    (RESULTS / "dask.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
