"""Incremental-run benchmark: a cold run of the sample event, then runs after one new table's notes.

    python benchmarks/incremental.py                 # both parts
    python benchmarks/incremental.py --notes 0       # the sample event only

Part two (``--notes``, default 8,030 across 140 table files) is an event whose texts are all distinct,
so no cache shortcuts anything. Each figure is a ratio against a bare ``SentenceTransformer.encode``
of the same texts measured in the same run (a fresh process that loads the model, then encodes):
a cold ``harvest run`` in a fresh process, a fresh ``harvest run`` after one new table (as by default,
handed to the warm process an earlier ``harvest run`` left; then with none left, alone and while a
Prefect server runs; then handed to a warm ``harvest schedule`` serving the event), and a re-run after
one new table inside a long-lived process (as ``harvest schedule`` and the web app run them).

Pipeline time is measured inside the flow (``summary["seconds"]``), so Prefect's start-up is excluded and
reported separately. Both runs happen in one process, as in a long-lived worker or the web app's re-run
button; a `harvest run` in a fresh process also loads the model (reported as the "new process" row).
A run after one new table lasts half a second, so three such runs (three different tables) are timed
and the verdict takes their median.
Writes benchmarks/results/incremental.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / ".work" / "incremental"
SOURCE = REPO / "data" / "raw" / "ecc2020-sample"


def add_table(
    event_dir: Path, table: str = "digital-t01", round_: str = "1", new: str = "digital-t99"
) -> int:
    """A new table's notes: one real table's notes of the sample event, handed in as another table."""
    rows = []
    for path in sorted((event_dir / "notes").glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            rows += [r for r in csv.DictReader(handle) if r["table"] == table and r["round"] == round_]
    with (event_dir / "notes" / f"{new}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "table": new, "note_id": f"{new}-{r['note_id']}"} for r in rows)
    return len(rows)


#: Tables of the sample event handed in again as new tables, one per same-process run.
NEW_TABLES = [
    ("digital-t01", "digital-t99"),
    ("resilience-t01", "resilience-t99"),
    ("skills-t01", "skills-t99"),
]


def timed(event_dir: Path, data: Path) -> tuple[dict, float]:
    """A run in this process as the web app's re-run button starts it (``run_event`` with the Prefect
    server kept for the next run): its summary and wall time. Calling the flow itself would report to
    Prefect's own ephemeral server with flow-run heartbeats, whose thread the end of every run waits out
    (~0.5 s), which no run of Harvest's does against a temporary server."""
    from flows.harvest import run_event

    started = time.perf_counter()
    summary = run_event(event_dir, data, keep_server=True)
    return summary, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=8030, help="notes of the distinct-text event (0: none)")
    parser.add_argument("--tables", type=int, default=140, help="table files of the distinct-text event")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    models = Path(MODELS["HARVEST_MODELS_DIR"])
    if models.exists():  # kept across runs of the benchmark: built once, like the demo's
        shutil.move(models, HERE / ".work" / "models-kept")
    shutil.rmtree(WORK, ignore_errors=True)
    if (HERE / ".work" / "models-kept").exists():
        WORK.mkdir(parents=True)
        shutil.move(HERE / ".work" / "models-kept", models)
    os.environ.update(MODELS)
    from pipeline.config import Settings
    from pipeline.encoders import build_derived_model

    build_derived_model(Settings().encoder)  # the one-off export is no part of any run measured here
    prefect_home_ready()
    event_dir, data = WORK / "event", WORK / "data"
    shutil.copytree(SOURCE, event_dir)

    cold, cold_wall = timed(event_dir, data)
    same, same_wall = timed(event_dir, data)
    warm_runs = []
    for table, new in NEW_TABLES:
        n_new = add_table(event_dir, table, "1", new)
        warm_runs.append((table, n_new, *timed(event_dir, data)))

    # another one-table change, seen by a fresh `harvest run` process (model and spaCy load again)
    add_table(event_dir, "green-t02", "1", "green-t99")
    process, process_wall = _harvest_run(event_dir, data, "ecc2020-sample")
    process_wall -= process["documents"]  # rendered after the flow, apart from the run itself

    rows = [
        ("cold run (all 11 files, model load)", cold, cold_wall),
        ("re-run, nothing new", same, same_wall),
        *[
            (f"re-run after one new table, {table}: {n} notes (same process)", summary, wall)
            for table, n, summary, wall in warm_runs
        ],
        ("re-run after one new table (new process)", process, process_wall),
    ]
    warm = sorted((r[2] for r in warm_runs), key=lambda summary: summary["seconds"])[len(warm_runs) // 2]
    lines = [
        "# Incremental runs",
        "",
        f"Run {time.strftime('%Y-%m-%d')} by `python benchmarks/incremental.py` on a 2-core CPU machine: "
        f"the sample event ({cold['statements']} statements, 16 topic x question groups), then one more "
        "table's notes, three times (three tables, one after the other). *Pipeline s* is measured inside "
        "the flow; *Prefect s* is the rest of the wall time (the temporary Prefect server's start on the "
        "cold run, which the later runs keep, as the web app does; the flow run's bookkeeping).",
        "",
        "| run | pipeline s | % of cold | Prefect s | groups clustered | groups reused | statements |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, summary, wall in rows:
        lines.append(
            f"| {name} | {summary['seconds']:.2f} | {100 * summary['seconds'] / cold['seconds']:.1f} | "
            f"{wall - summary['seconds']:.2f} | {summary['groups_clustered']} | {summary['groups_reused']} | "
            f"{summary['statements']} |"
        )
    share = 100 * warm["seconds"] / cold["seconds"]
    verdict = "met" if share <= 5 else "not met"
    lines += [
        "",
        "Seconds per stage of the median run after one new table (same process): "
        + ", ".join(f"{k} {v:.3f}" for k, v in warm["stage_seconds"].items())
        + ".",
        "",
        f"Goal (issue 5): a run after one new table takes ≤ 5 % of the cold run's pipeline time: {verdict} "
        f"(median {share:.1f} %) in a long-lived process (a Prefect worker, the web app's re-run button, or "
        "this benchmark). What makes it cheap: the current notes are kept parsed per manifest state (no "
        "upload is read again), unchanged notes keep their statements, the embedding cache is one float16"
        " matrix, statement keyphrases and joint recommendations are remembered (in the process and on "
        "disk), only changed groups are clustered (a group whose notes did not change keeps its flags), "
        "and ranking and the paper work per group in one pass. A new process (each `harvest run`, or "
        "`harvest schedule --cold`) imports the pipeline and loads spaCy, lingua's models and the encoder "
        "again: several seconds, the last row (`harvest schedule` runs warm, in its serving process, by "
        "default). The cold run's pipeline "
        "time includes the first imports of spaCy, scikit-learn and HDBSCAN (the library imports them "
        "where they are used since 2026-12-03; before, a process paid them before the flow), which lowers"
        " these shares by a few points against earlier runs of this file.",
        "",
    ]
    if args.notes:
        lines += distinct_event_section(args.notes, args.tables)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "incremental.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def build_distinct_event(
    folder: Path, notes: int, tables: int, prefix: str = "x", seen: set[str] | None = None
) -> list[str]:
    """The sample event's topics and questions with ``notes`` distinct texts ("A; B": a sample note of
    the question, then any other) in ``tables`` files, one table (and round 1) each, none of them in
    ``seen`` (which gets them). Returns the texts."""
    import random

    import yaml

    shutil.copytree(SOURCE, folder)
    shutil.rmtree(folder / "notes")
    (folder / "notes").mkdir()
    by_group: dict[tuple[str, str], list[str]] = {}
    everything: list[str] = []
    for path in sorted((SOURCE / "notes").glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            for r in csv.DictReader(handle):
                by_group.setdefault((r["topic"], r["question"]), []).append(r["text"])
                everything.append(r["text"])
    event = yaml.safe_load((SOURCE / "event.yaml").read_text(encoding="utf-8"))
    topics = [t["id"] for s in event["sessions"] for t in s["topics"]]
    rng, texts = random.Random(prefix), []
    seen = set() if seen is None else seen
    for table in range(tables):
        topic = topics[table % len(topics)]
        groups = [g for g in by_group if g[0] == topic]
        rows = []
        for i in range(notes * (table + 1) // tables - notes * table // tables):
            group = groups[i % len(groups)]
            while True:  # a pair not drawn before: every text distinct
                first = rng.choice(by_group[group])
                text = f"{first}; {rng.choice(everything)}"
                if text not in seen:
                    break
            seen.add(text)
            texts.append(text)
            name = f"{prefix}{table:03d}"
            rows.append([f"{topic}-{name}", 1, *group, text, f"{name}-{i:03d}"])
        with (folder / "notes" / f"{prefix}{table:03d}.csv").open("w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(["table", "round", "topic", "question", "text", "note_id"])
            writer.writerows(rows)
    return texts


BARE_ENCODE = """
import dataclasses, json, sys, time
started = time.perf_counter()
from pipeline.config import Settings
from pipeline.encoders import load_encoder
spec = dataclasses.replace(Settings().encoder, backend=sys.argv[2])
encoder = load_encoder(spec)
loaded = time.perf_counter()
texts = json.load(open(sys.argv[1], encoding="utf-8"))
encoder.encode(texts, spec.batch, show_progress=False)
print(json.dumps({"load": loaded - started, "encode": time.perf_counter() - loaded}))
"""


#: Cold runs of the distinct-text event, each after a bare torch encode of its texts.
COLD_PAIRS = 3

#: Derived models (the ONNX export) built once, by the first bare encode, as `make demo` builds them once.
MODELS = {"HARVEST_MODELS_DIR": str(WORK / "models")}


def bare_encode(texts_file: Path, backend: str) -> dict[str, float]:
    """A fresh process that loads ``backend``'s encoder (building it first if need be: not counted) and
    encodes the texts: seconds to load, to encode."""
    out = subprocess.run(
        [sys.executable, "-c", BARE_ENCODE, str(texts_file), backend],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
        env={**os.environ, **MODELS},
    )
    return json.loads(out.stdout.splitlines()[-1])


def prefect_home_ready() -> None:
    """The benchmark's Prefect home with its database made: the first server start on a Prefect home creates
    and migrates it (~7 s, once per machine and home, as a user's first run pays it), which no process
    measured here should pay."""
    start_and_stop = "from flows.server import TemporaryServer; s = TemporaryServer(); s.address(); s.stop()"
    subprocess.run(
        [sys.executable, "-c", start_and_stop], env=_environment(WORK / "data"), check=True, cwd=REPO
    )


def _environment(data: Path, keep_warm: bool = False) -> dict[str, str]:
    # the run's summary is read from Prefect's INFO log, whatever level the caller's environment sets;
    # a `harvest run` leaves no warm process behind (flows.server.keep_warm) unless measured doing so
    return {
        **os.environ,
        "HARVEST_DATA": str(data),
        "PREFECT_HOME": str(WORK / "prefect"),
        "PREFECT_LOGGING_LEVEL": "INFO",
        "HARVEST_KEEP_WARM": os.environ.get("HARVEST_KEEP_WARM", "10800") if keep_warm else "0",
        **MODELS,
    }


def run_summary(output: str, event: str) -> dict:
    """The summary a `harvest -v run` of ``event`` logged, from its output."""
    line = next(x for x in output.splitlines() if f"harvest {event}: " in x)
    summary: dict = json.loads(line.split(f"harvest {event}: ", 1)[1].replace("'", '"'))
    return summary


def _harvest_run(
    event_dir: Path, data: Path, event: str = "distinct", documents: bool = True, keep_warm: bool = False
) -> tuple[dict, float]:
    """A fresh `harvest run` process: its summary (with ``documents``: seconds it took to render the
    paper's DOCX and PDF after the flow; ``kept_warm``: the process id of the warm process it left, with
    ``keep_warm``) and wall time."""
    started = time.perf_counter()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.main",
            "-v",
            "run",
            str(event_dir),
            *([] if documents else ["--no-documents"]),
        ],
        env=_environment(data, keep_warm),
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    wall = time.perf_counter() - started
    summary = run_summary(out.stdout + out.stderr, event)
    found = re.search(r"paper\.docx and paper\.pdf: ([\d.]+) s", out.stdout)
    summary["documents"] = float(found.group(1)) if found else 0.0
    summary["handed_over"] = "run handed to the warm" in out.stdout
    left = re.search(r"a warm process \(pid (\d+)\)", out.stdout)
    summary["kept_warm"] = int(left.group(1)) if left else None
    return summary, wall


@contextmanager
def kept_warm(pid: int, data: Path, event: str) -> Iterator[None]:
    """The warm process a `harvest run` left (``flows.server.keep_warm``), once it serves the event;
    stopped on exit as a newer one would stop it (SIGTERM), and waited for."""
    from flows.server import process_alive, serving_record

    try:
        deadline = time.monotonic() + 300
        while getattr(serving_record(data, event), "pid", None) != pid:
            if not process_alive(pid) or time.monotonic() > deadline:
                raise RuntimeError(f"the warm process did not start: see {data / 'prefect'}")
            time.sleep(0.5)
        yield
    finally:
        os.kill(pid, signal.SIGTERM)
        while process_alive(pid) and time.monotonic() < deadline + 120:
            time.sleep(0.2)


@contextmanager
def warm_schedule(event_dir: Path, data: Path) -> Iterator[None]:
    """`harvest schedule` serving the event warm, as during a conference (no watching: the only runs are
    the ones `harvest run` hands to it); stopped with Ctrl-C on exit."""
    log = (WORK / "schedule.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli.main",
            "-v",
            "schedule",
            str(event_dir),
            "--cron",
            "0 0 1 1 *",
            "--no-watch",
        ],
        env=_environment(data),
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while "is being served" not in (WORK / "schedule.log").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"harvest schedule did not start: see {WORK / 'schedule.log'}")
            time.sleep(0.5)
        yield
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=120)
        log.close()


def distinct_event_section(notes: int, tables: int) -> list[str]:
    event_dir, data = WORK / "distinct", WORK / "distinct-data"
    seen: set[str] = set()
    texts = build_distinct_event(event_dir, notes, tables, seen=seen)
    text = (event_dir / "event.yaml").read_text(encoding="utf-8")
    (event_dir / "event.yaml").write_text(text.replace("event: ecc2020-sample", "event: distinct", 1))
    (WORK / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    from pipeline.config import Settings

    backend = Settings().encoder.backend
    bare_own = bare_encode(WORK / "texts.json", backend)  # builds the export first, if any
    # The measure, a cold run against a bare torch encode, in COLD_PAIRS pairs (the encode, then a
    # cold run from an empty data root): the machine's speed drifts by up to a third over minutes, which a
    # pair shares. The pair of median ratio is reported; the later runs go on from the last one's data
    # root (every cold run leaves the same state), which alone renders the DOCX and PDF.
    pairs = []  # (bare torch encode, cold run's summary, its wall time without the documents)
    for attempt in range(1, COLD_PAIRS + 1):
        torch_encode = bare_encode(WORK / "texts.json", "torch")
        last = attempt == COLD_PAIRS
        root = data if last else WORK / f"distinct-data-{attempt}"
        cold_run, wall = _harvest_run(event_dir, root, documents=last)
        pairs.append((torch_encode, cold_run, wall - cold_run["documents"]))
        if not last:
            shutil.rmtree(root)
    ratios = [wall / encode["encode"] for encode, _, wall in pairs]
    encodes = ", ".join(f"{encode['encode']:.1f}" for encode, _, _ in pairs)
    colds = ", ".join(f"{wall:.1f}" for _, _, wall in pairs)
    bare, cold, cold_wall = pairs[sorted(range(COLD_PAIRS), key=ratios.__getitem__)[COLD_PAIRS // 2]]
    documents = pairs[-1][1]["documents"]
    cold, cold_wall = {**cold, "documents": documents}, cold_wall + documents  # the table takes them off
    extra = build_distinct_event(WORK / "more", 12 * notes // tables, 12, prefix="new", seen=seen)
    shutil.copy(WORK / "more" / "notes" / "new001.csv", event_dir / "notes")
    fresh, fresh_wall = _harvest_run(event_dir, data)
    from flows.schedule import prefect_api

    with prefect_api(data / "prefect"):  # as `harvest schedule` leaves it running
        shutil.copy(WORK / "more" / "notes" / "new002.csv", event_dir / "notes")
        served, served_wall = _harvest_run(event_dir, data)
    with warm_schedule(event_dir, data):
        _harvest_run(event_dir, data, documents=False)  # its first run catches up (nothing new)
        handed_runs = []  # one table after another, as sessions end: the median of three
        for table in ("new005", "new006", "new007"):
            shutil.copy(WORK / "more" / "notes" / f"{table}.csv", event_dir / "notes")
            handed_runs.append(_harvest_run(event_dir, data, documents=False))
    if not all(summary["handed_over"] for summary, _ in handed_runs):
        raise RuntimeError("a `harvest run` was not handed to the warm `harvest schedule`")
    handed, handed_wall = sorted(handed_runs, key=lambda run: run[1])[1]
    handed_range = [round(wall, 1) for _, wall in handed_runs]
    # as by default: a `harvest run` leaves a warm process, which takes the runs after the next sessions
    shutil.copy(WORK / "more" / "notes" / "new008.csv", event_dir / "notes")
    leaving, _ = _harvest_run(event_dir, data, documents=False, keep_warm=True)
    if leaving["kept_warm"] is None:
        raise RuntimeError("`harvest run` left no warm process")
    with kept_warm(leaving["kept_warm"], data, "distinct"):
        default_runs = []
        for table in ("new009", "new010", "new011"):
            shutil.copy(WORK / "more" / "notes" / f"{table}.csv", event_dir / "notes")
            default_runs.append(_harvest_run(event_dir, data, documents=False, keep_warm=True))
    if not all(summary["handed_over"] for summary, _ in default_runs):
        raise RuntimeError("a `harvest run` was not handed to the warm process the run before left")
    default, default_wall = sorted(default_runs, key=lambda run: run[1])[1]
    default_range = [round(wall, 1) for _, wall in default_runs]
    from pipeline.warmup import warm_up

    warm_up(Settings())  # as `harvest schedule` loads the models when it starts serving
    timed(event_dir, data)  # its first run, catching up: nothing new
    warm_runs = []  # one table after another, as sessions end: the median of three (one run is noisy)
    for table in ("new000", "new003", "new004"):
        shutil.copy(WORK / "more" / "notes" / f"{table}.csv", event_dir / "notes")
        warm_runs.append(timed(event_dir, data))
    warm, warm_wall = sorted(warm_runs, key=lambda run: run[0]["seconds"])[1]
    warm_range = [round(run[0]["seconds"], 1) for run in warm_runs]
    encode, own = bare["encode"], bare_own["encode"]
    cold_flow = cold["seconds"]
    rows = [
        (
            "bare `SentenceTransformer.encode` of the texts (torch, model loaded; the median pair's)",
            encode,
            None,
            None,
        ),
        *(
            [(f"bare encode with the run's backend ({backend}, model loaded)", own, None, None)]
            if backend != "torch"
            else []
        ),
        (
            f"cold `harvest run`, fresh process (the median of {COLD_PAIRS} pairs; × torch encode of each: "
            f"{', '.join(f'{r:.2f}' for r in ratios)})",
            cold_wall,
            cold["seconds"],
            cold,
        ),
        (
            "`harvest run` after one new table, as by default: handed to the warm process an earlier "
            f"`harvest run` left (median of 3; wall s {default_range})",
            default_wall,
            default["seconds"],
            default,
        ),
        (
            "`harvest run` after one new table, fresh process (no warm process left: HARVEST_KEEP_WARM=0)",
            fresh_wall,
            fresh["seconds"],
            fresh,
        ),
        (
            "the same while `harvest schedule`'s Prefect server runs",
            served_wall,
            served["seconds"],
            served,
        ),
        (
            "`harvest run` after one new table, handed to a warm `harvest schedule` serving the event "
            f"(median of 3; wall s {handed_range})",
            handed_wall,
            handed["seconds"],
            handed,
        ),
        (
            f"re-run after one new table, long-lived process (median of 3; flow s {warm_range})",
            warm_wall,
            warm["seconds"],
            warm,
        ),
    ]
    lines = [
        "",
        f"## {len(texts):,} distinct notes, {tables} table files",
        "",
        f"Run {time.strftime('%Y-%m-%d')}. Every text differs (a sample note of the question and any "
        "other, joined), "
        "so the embedding cache saves nothing on the cold run. Each bare encode loads its model in a fresh "
        f"process (torch {bare['load']:.1f} s, {backend} {bare_own['load']:.1f} s including the one-off "
        f"build of the derived model, not counted) and encodes the same {len(texts):,} texts. Harvest runs"
        f" with its default backend, `{backend}`. The cold run is measured {COLD_PAIRS} times, each right "
        "after a bare torch encode (the machine's speed drifts over minutes; a pair shares it): torch "
        f"encodes {encodes} s, cold runs {colds} s; the table shows the pair of median ratio. The new "
        f"tables hold {len(extra) // 12} new distinct notes each.",
        "",
        "*Wall s* is the whole process or call without the paper's DOCX and PDF, which `harvest run` renders "
        "after the flow (*documents s*; scheduled and web runs leave them to the first download). "
        "*× torch encode* is the issue's measure; *× own encode* divides by the bare encode of the backend "
        "the run used, the cost of everything besides the model.",
        "",
        "| run | wall s | × torch encode | × own encode | documents s | flow s | % of cold wall | "
        "% of cold flow | stages (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    cold_wall -= cold["documents"]
    for name, wall, flow_s, summary in rows:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in summary["stage_seconds"].items()) if summary else ""
        documents = summary.get("documents", 0.0) if summary else 0.0
        wall -= documents
        lines.append(
            f"| {name} | {wall:.1f} | {wall / encode:.2f} | {wall / own:.2f} | {documents:.1f} | "
            f"{'' if flow_s is None else f'{flow_s:.1f}'} | {100 * wall / cold_wall:.1f} | "
            f"{'' if flow_s is None else f'{100 * flow_s / cold_flow:.1f}'} | {stages} |"
        )
    lines += [""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
