"""Load benchmark: ten editors at once on the sample event's review pages. Writes
benchmarks/results/load.md (and load.json).

    python benchmarks/load.py [--editors 10] [--requests 400] [--think 3]

The sample event is run once into a scratch data folder; the web app is served by uvicorn in a process of
its own, as `harvest serve` serves it; each editor (a thread with its own signed-in session) reads the
event page and two question pages and approves and reopens a theme, in turn, until the requests are
spent. Twice: editors who send their next request the moment one is answered (a stress test: the server
never rests), and editors who read what they got first (a pause drawn from an exponential distribution
of mean ``--think`` seconds, as people click). Latency per request kind: median and 95th percentile;
errors. Target (issue 18): a question page or an action answered in under 300 ms at p95 on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
WORK = HERE / ".work" / "load"
SAMPLE = REPO / "data" / "raw" / "ecc2020-sample"
PASSWORD = "correct horse battery"
QUOTA = threading.Lock()  # the requests left, shared by the editors


def prepare(data: Path) -> None:
    """The sample event run into ``data``, with editors ed0..ed9."""
    sys.path.insert(0, str(REPO))
    from flows.harvest import harvest_event
    from pipeline import db
    from pipeline.config import Settings

    shutil.rmtree(data, ignore_errors=True)
    harvest_event(SAMPLE, data)
    with db.session_scope(Settings(data_dir=data).database_url) as session:
        for i in range(10):
            db.add_user(session, f"ed{i}", PASSWORD)


def serve(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import uvicorn; from pathlib import Path; from pipeline.config import Settings; "
        "from web.app import create_app; "
        f"uvicorn.run(create_app([Path({str(SAMPLE)!r})], Settings(data_dir=Path({str(data)!r}), "
        f"secret_key='load')), host='127.0.0.1', port={port}, log_level='warning')"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(f"{url}/login", timeout=1)
            return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("the web app did not start")


def signed_in(url: str, name: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=30, follow_redirects=True)
    page = client.get("/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"csrf": csrf, "username": name, "password": PASSWORD, "next": "/"})
    return client


def editor(
    url: str,
    name: str,
    quota: list[int],
    timings: dict[str, list[float]],
    errors: list[str],
    think: float = 0.0,
) -> None:
    client = signed_in(url, name)
    pauses = random.Random(name)  # the same pauses each run
    question = "/e/ecc2020-sample/review/green/needs"
    steps = [
        "/e/ecc2020-sample/review",
        question,
        "/e/ecc2020-sample/review/digital/policy",
        "approve",
        "reopen",
    ]
    step = 0
    while True:
        with QUOTA:
            if quota[0] <= 0:
                return
            quota[0] -= 1
        if think:
            time.sleep(pauses.expovariate(1 / think))
        kind = steps[step % len(steps)]
        step += 1
        started = time.perf_counter()
        if kind in ("approve", "reopen"):
            page = client.get(question).text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            theme = re.search(
                r'name="theme_id" value="([^"]+)"><input type="hidden" name="seen" value="([^"]+)"', page
            )
            started = time.perf_counter()  # the action alone
            response = client.post(
                question,
                data={
                    "csrf": csrf,
                    "theme_id": theme.group(1),  # type: ignore[union-attr]
                    "seen": theme.group(2),  # type: ignore[union-attr]
                    "action": "approved" if kind == "approve" else "draft",
                },
            )
        else:
            response = client.get(kind)
        elapsed = time.perf_counter() - started
        label = (
            "action"
            if kind in ("approve", "reopen")
            else ("event page" if kind.endswith("review") else "question page")
        )
        timings.setdefault(label, []).append(elapsed)
        if response.status_code != 200:
            errors.append(f"{label}: {response.status_code}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def crowd(url: str, editors: int, requests: int, think: float) -> dict[str, object]:
    """``editors`` at once until ``requests`` are spent: per request kind, count, median and p95."""
    timings: dict[str, list[float]] = {}
    errors: list[str] = []
    quota = [requests]
    started = time.perf_counter()
    threads = [
        threading.Thread(target=editor, args=(url, f"ed{i}", quota, timings, errors, think))
        for i in range(editors)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "think_seconds": think,
        "seconds": round(time.perf_counter() - started, 1),
        "errors": errors,
        "kinds": {
            kind: {
                "requests": len(values),
                "median_ms": round(statistics.median(values) * 1000, 1),
                "p95_ms": round(percentile(values, 0.95) * 1000, 1),
            }
            for kind, values in sorted(timings.items())
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--editors", type=int, default=10)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--think", type=float, default=3.0, help="mean pause of a reading editor, seconds")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = WORK / "data"
    prepare(data)
    server, url = serve(data)
    alone: dict[str, list[float]] = {}
    errors: list[str] = []
    try:
        editor(url, "ed0", [25], alone, errors)  # one editor alone: what a request costs, no queue
        runs = [crowd(url, args.editors, args.requests, think) for think in (0.0, args.think)]
    finally:
        server.terminate()
        server.wait(timeout=30)
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "editors": args.editors,
        "requests": args.requests,
        "alone_median_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in sorted(alone.items())},
        "runs": runs,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(results, indent=1))
    lines = [
        "# Load benchmark",
        "",
        f"Run {results['date']} by `python benchmarks/load.py --editors {args.editors} --requests "
        f"{args.requests} --think {args.think}` on a {os.cpu_count()}-core machine: {args.editors} "
        "signed-in editors at once on the sample event (web app in its own process, as `harvest serve`), "
        f"{args.requests} requests per run.",
        "",
        "| editors | request | count | median ms | p95 ms | one editor alone, median ms |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        who = (
            "never pause (stress)"
            if not run["think_seconds"]
            else f"read ~{run['think_seconds']:g} s between clicks"
        )
        for kind, row in run["kinds"].items():  # type: ignore[attr-defined]
            lines.append(
                f"| {who} | {kind} | {row['requests']} | {row['median_ms']} | {row['p95_ms']} | "
                f"{results['alone_median_ms'].get(kind, '')} |"  # type: ignore[attr-defined]
            )
        lines.append(f"| {who} | errors | {len(run['errors'])} in {run['seconds']} s | | | |")  # type: ignore[arg-type]
    lines += [
        "",
        "Target (issue 18): a question page or an action answered in under 300 ms at p95. An action is "
        "measured up to the question page it leads to (the POST and its redirect). One server process "
        "serves every editor: with no pause a request waits for those ahead of it, so that run measures "
        "the queue, not a request.",
    ]
    (RESULTS / "load.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if any(run["errors"] for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
