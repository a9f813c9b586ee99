"""Fuzz benchmark: thousands of generated hostile note files thrown at ingest, as facilitators could send
them. Writes benchmarks/results/fuzz.md (and fuzz.json).

    python benchmarks/fuzz.py [--files 10000] [--seed 0]

Every file goes through ``pipeline.ingest.ingest`` (which reads it with ``read_notes``) on an event that
already holds accepted notes. Counted per family of files: inputs, accepted, rejected, crashes (any
exception but a clean rejection), hangs (over 10 s), the largest Python-heap peak of one file
(tracemalloc: Python's own allocations, not those inside C libraries) and whether a rejected upload ever
changed the accepted notes. All must be 0, and the peak under 200 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import tempfile
import time
import tracemalloc
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
FIXTURES = REPO / "tests" / "fixtures"
HANG_SECONDS = 10.0
STORE_FILES = 200
HEADER = "table,round,topic,question,text,votes"
Hostile = tuple[str, bytes]  # (file name, bytes)


# --------------------------------------------------------------------------- families
def csv_numbers(rng: random.Random) -> Hostile:
    """Counts no spreadsheet means: huge, exponent, infinite, other scripts' digits, underscores."""
    value = rng.choice(
        [
            "1e30",
            "99999999999999999999",
            "inf",
            "-inf",
            "nan",
            "١٢",
            "𝟑",
            "1_000",
            "-1",
            "2.5",
            "0x10",
            str(2**64),
            "1e-5",
            " ",
            "٣.٠",
            "9" * rng.randint(10, 400),
        ]
    )
    column = rng.choice(["round", "votes"])
    row = {"round": "1", "votes": "1", column: value}
    text = rng.choice(["banks must act", f"marker (+{value})", f"[{value} dots] pilots"])
    return "numbers.csv", f"{HEADER}\ngreen-t01,{row['round']},green,needs,{text},{row['votes']}\n".encode()


def csv_text(rng: random.Random) -> Hostile:
    """Long runs of spaces and brackets, quotes, NULs, mixed delimiters, odd encodings."""
    run = " " * rng.choice([1000, 20_000, 100_000])
    text = rng.choice(
        [
            f"[{run}x",
            f"(+{run}2",
            f"1){run}a 2) b",
            f"a{run}•{run}b",
            f'"unclosed{run}',
            "x\x00y",
            '"a ""quoted"" note"',
            "a;b;c",
            "\t".join(["t"] * 50),
            "é" * 50_000,
        ]
    )
    sep = rng.choice([",", ";", "\t"])
    body = sep.join(["green-t01", "1", "green", "needs", text, "0"])
    data = (HEADER.replace(",", sep) + "\n" + body + "\n").encode(
        rng.choice(["utf-8", "utf-8-sig", "utf-16"])
    )
    return "text.csv", data


def csv_shape(rng: random.Random) -> Hostile:
    """Rows wider than the header, no header, thousands of columns or rows, blank files."""
    kind = rng.randrange(5)
    if kind == 0:
        return "wide.csv", (HEADER + "\n" + ",".join(["x"] * rng.randint(7, 5000)) + "\n").encode()
    if kind == 1:
        return "noheader.csv", b"green-t01,1,green,needs,hello\n"
    if kind == 2:
        return "manycols.csv", (",".join(f"c{i}" for i in range(20_000)) + "\n").encode()
    if kind == 3:
        rows = "".join(
            f"green-t{i % 90:02d},1,green,needs,note {i},0\n" for i in range(rng.randint(1, 20_000))
        )
        return "rows.csv", (HEADER + "\n" + rows).encode()
    return "blank.csv", rng.choice([b"", b"\n\n\n", b"\xef\xbb\xbf", b" "])


def markdown(rng: random.Random) -> Hostile:
    """Front matter with anchors, aliases, nesting, tags; long header lines; titles before the header."""
    alias = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
        for i in range(rng.randint(1, 8))
    )
    front = rng.choice(
        [
            alias,
            "topic: " + "[" * rng.randint(10, 5000) + "]" * 10,
            "topic: !!python/object:os.system x",
            "topic: green\nquestion: needs\ntable: " + " " * 50_000 + "t1\nround: 1",
            "- just\n- a list",
            "topic: green\nquestion: needs\ntable: t1\nround: 1\n" + "x: y\n" * 10_000,
        ]
    )
    body = rng.choice(["- banks must act\n", "", "# title only\n", "- " + "x " * 100_000 + "\n"])
    return "notes.md", f"---\n{front}\n---\n{body}".encode()


def _parts(container: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(container)) as archive:
        return {i.filename: archive.read(i.filename) for i in archive.infolist()}


def _zip(parts: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, content in parts.items():
            archive.writestr(part, content)
    return buffer.getvalue()


def office(rng: random.Random) -> Hostile:
    """DOCX, XLSX and ODT with one part truncated, emptied, deleted, nested deep, or claiming every cell."""
    name = rng.choice(["table-notes.docx", "table-notes.xlsx", "table-notes.odt", "writer-notes.odt"])
    parts = _parts((FIXTURES / name).read_bytes())
    part = rng.choice(sorted(parts))
    kind = rng.randrange(6)
    if kind == 0:
        parts[part] = parts[part][: rng.randint(0, len(parts[part]))]
    elif kind == 1:
        parts[part] = b""
    elif kind == 2:
        del parts[part]
    elif kind == 3:
        parts[part] = b"<a>" * 5000 + b"</a>" * 5000
    elif kind == 4 and "xl/worksheets/sheet1.xml" in parts:
        parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(
            b"<dimension ref=", b'<dimension ref="A1:XFD1048576" old='
        )
    else:
        blob = bytearray(parts[part])
        for _ in range(rng.randint(1, 20)):
            if blob:
                blob[rng.randrange(len(blob))] = rng.randrange(256)
        parts[part] = bytes(blob)
    return "mutated" + Path(name).suffix, _zip(parts)


def bombs(rng: random.Random) -> Hostile:
    """Small files that unpack to far more than notes can be."""
    name = rng.choice(["table-notes.docx", "table-notes.xlsx", "table-notes.odt"])
    parts = _parts((FIXTURES / name).read_bytes())
    size = rng.choice([50, 200, 1000]) * 1024 * 1024
    targets = {
        ".docx": ["word/media/x.bin", "word/document.xml"],
        ".xlsx": ["xl/media/x.bin", "xl/worksheets/sheet1.xml"],
        ".odt": ["Pictures/x.bin", "content.xml"],
    }
    target = rng.choice(targets[Path(name).suffix])
    parts[target] = b"\0" * size if not target.endswith("xml") else b"<x>" + b" " * size + b"</x>"
    return name.replace("table-notes", "bomb"), _zip(parts)


def random_bytes(rng: random.Random) -> Hostile:
    suffix = rng.choice([".csv", ".xlsx", ".ods", ".docx", ".odt", ".md", ".txt"])
    return "random" + suffix, rng.randbytes(rng.randint(0, 20_000))


FAMILIES: dict[str, Callable[[random.Random], Hostile]] = {
    "csv numbers": csv_numbers,
    "csv text": csv_text,
    "csv shape": csv_shape,
    "markdown front matter": markdown,
    "docx/xlsx/odt parts": office,
    "zip bombs": bombs,
    "random bytes": random_bytes,
}
#: Bombs are slow to build; fewer of them.
WEIGHTS = {"zip bombs": 0.01}


def generate(total: int, seed: int) -> Iterator[tuple[str, Hostile]]:
    rng = random.Random(seed)
    weights = [WEIGHTS.get(f, 1.0) for f in FAMILIES]
    for _ in range(total):
        family = rng.choices(list(FAMILIES), weights)[0]
        yield family, FAMILIES[family](rng)


# --------------------------------------------------------------------------- the run
def run(total: int, seed: int) -> dict:
    sys.path.insert(0, str(REPO))
    import pandas as pd

    from pipeline.event import load_event
    from pipeline.ingest import current_notes, ingest
    from pipeline.store import Layout

    event = load_event(FIXTURES)
    with tempfile.TemporaryDirectory() as folder:

        def fresh_store(batch: int) -> Layout:
            """An event store with accepted notes; a new one every STORE_FILES files, since the upload
            manifest grows with every upload (10,000 uploads to one event are another benchmark's)."""
            layout = Layout(Path(folder) / str(batch), event.id)
            ingest(layout, event, [("table-notes.csv", (FIXTURES / "table-notes.csv").read_bytes())])
            return layout

        def accepted_fingerprint() -> int:
            return int(pd.util.hash_pandas_object(current_notes(layout, event), index=False).sum())

        layout = fresh_store(0)
        before = accepted_fingerprint()
        stats: dict[str, Counter] = defaultdict(Counter)
        peaks: dict[str, float] = defaultdict(float)
        slowest: dict[str, float] = defaultdict(float)
        examples: dict[str, list[str]] = defaultdict(list)
        started = time.perf_counter()
        for number, (family, (name, data)) in enumerate(generate(total, seed)):
            if number and number % STORE_FILES == 0:
                layout = fresh_store(number)
                before = accepted_fingerprint()
            counts = stats[family]
            counts["inputs"] += 1
            tracemalloc.start()
            t = time.perf_counter()
            try:
                [result] = ingest(layout, event, [(name, data)], who="fuzz", max_bytes=10 * 1024 * 1024)
                counts[result.status] += 1
            except Exception as exc:  # a crash: exactly what this benchmark counts
                counts["crashes"] += 1
                if len(examples[family]) < 5:
                    examples[family].append(f"{type(exc).__name__}: {str(exc)[:120]}")
                result = None
            seconds = time.perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            counts["hangs"] += seconds > HANG_SECONDS
            peaks[family] = max(peaks[family], peak)
            slowest[family] = max(slowest[family], seconds)
            if result is None or result.status == "rejected":
                now = accepted_fingerprint()
                counts["changed notes"] += now != before
            elif result.status == "accepted":  # the event's notes legitimately changed: a new baseline
                before = accepted_fingerprint()
        elapsed = time.perf_counter() - started
    return {
        "date": time.strftime("%Y-%m-%d"),
        "files": total,
        "seed": seed,
        "seconds": round(elapsed, 1),
        "families": {
            f: {
                **stats[f],
                "peak_mib": round(peaks[f], 1),
                "slowest_s": round(slowest[f], 2),
                "crash_examples": examples[f],
            }
            for f in FAMILIES
            if f in stats
        },
    }


def write_report(results: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "fuzz.json").write_text(json.dumps(results, indent=1))
    columns = ["inputs", "accepted", "unchanged", "rejected", "crashes", "hangs", "changed notes"]
    lines = [
        "# Fuzz benchmark",
        "",
        f"Run {results['date']} by `python benchmarks/fuzz.py --files {results['files']} --seed "
        f"{results['seed']}` on a 2-core machine: {results['files']:,} generated hostile files through "
        f"`ingest`, {results['seconds']} s in all. *peak MiB*: the largest Python-heap peak of one file "
        "(tracemalloc). *changed notes*: rejected uploads after which the accepted notes differed.",
        "",
        "| family | " + " | ".join(columns) + " | peak MiB | slowest s |",
        "|---" * (len(columns) + 3) + "|",
    ]
    totals: Counter = Counter()
    for family, row in results["families"].items():
        totals.update({c: row.get(c, 0) for c in columns})
        lines.append(
            f"| {family} | "
            + " | ".join(str(row.get(c, 0)) for c in columns)
            + f" | {row['peak_mib']} | {row['slowest_s']} |"
        )
    peak = max(r["peak_mib"] for r in results["families"].values())
    lines.append("| **all** | " + " | ".join(f"**{totals[c]}**" for c in columns) + f" | **{peak}** | |")
    crashes = {f: r["crash_examples"] for f, r in results["families"].items() if r["crash_examples"]}
    if crashes:
        lines += ["", "Crashes:", ""] + [f"- {f}: {'; '.join(e)}" for f, e in crashes.items()]
    lines += ["", "Targets (issue 16): crashes, hangs and changed notes 0; peak under 200 MB per file.", ""]
    (RESULTS / "fuzz.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = run(args.files, args.seed)
    write_report(results)
    print((RESULTS / "fuzz.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
