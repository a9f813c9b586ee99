"""Language benchmark: how often ``detect_languages`` finds a note's language, and what it costs.

    python benchmarks/languages.py --testdata PATH/language-testdata --label after

- **Sentences**: lingua's own test sentences (``language-testdata/sentences/<code>.txt`` of a checkout of
  github.com/pemistahl/lingua-py; they are not in its wheel), 150 a language, whole and cut to their
  first 3, 4 and 6 words (cut sentences are as short as notes). For English: how many are taken for
  another language; for the others: how many are found not English, and how many get their own code.
- **Notes**: the note texts of the shipped sample event and, when ``../shared`` is there, of the two dev
  events: how many are found in another language than English (notes with a declared language aside).
- **Cost**: ``detect_languages`` over the 10,000 statements of the scale benchmark's event, in a fresh
  process each time (lingua loads its models anew), median of ``--repeat``.

Each ``--label`` keeps its figures in results/languages.json, so the code before and after a change sit
side by side in results/languages.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
RESULTS = HERE / "results"
CUTS = (3, 4, 6, 0)  # words kept; 0: the whole sentence
PER_LANGUAGE = 150
#: The EU's official languages and Europe's other languages lingua knows in Latin script (fixed here, not
#: read from the pipeline, so that code before and after a change is measured on the same languages)
LANGUAGES = (
    *("en", "bg", "cs", "da", "de", "el", "es", "et", "fi", "fr", "hr", "hu", "it", "lt", "lv", "nl", "pl"),
    *("pt", "ro", "sk", "sl", "sv", "bs", "ca", "cy", "eu", "ga", "is", "nb", "sq", "tr"),
)

sys.path[:0] = [str(REPO), str(HERE)]


def sentence_figures(testdata: Path) -> dict[str, dict[str, list[int]]]:
    """Per language: for each cut, [texts, found not English, found as the language]."""
    from pipeline.statements import _alpha_words, detect_languages

    rng = random.Random(1)
    figures: dict[str, dict[str, list[int]]] = {}
    for code in LANGUAGES:
        lines = (testdata / "sentences" / f"{code}.txt").read_text(encoding="utf-8").splitlines()
        sentences = rng.sample([line.strip() for line in lines if line.strip()], PER_LANGUAGE)
        figures[code] = {}
        for cut in CUTS:
            texts = [" ".join(s.split()[:cut]) if cut else s for s in sentences]
            texts = [t for t in texts if _alpha_words(t) >= 3]  # shorter ones are shorthand by rule
            found = detect_languages(texts, "en")
            figures[code][str(cut)] = [
                len(texts),
                sum(f != "en" for f in found),
                sum(f == code for f in found),
            ]
        print(code, figures[code], flush=True)
    return figures


def note_figures() -> dict[str, list[int]]:
    """Per event: [note texts, taken for another language]."""
    from pipeline.statements import detect_languages

    events = {"ecc2020-sample": REPO / "data" / "raw" / "ecc2020-sample"}
    events |= {name: SHARED / name for name in ("ecc2020-dev", "ecc2020-dev2") if (SHARED / name).is_dir()}
    figures = {}
    for name, folder in events.items():
        texts = []
        for path in sorted((folder / "notes").glob("*.csv")):
            with path.open(encoding="utf-8") as handle:
                texts += [row["text"] for row in csv.DictReader(handle) if not row.get("language")]
        found = detect_languages(texts, "en")
        figures[name] = [len(texts), sum(f != "en" for f in found)]
    return figures


def detection_seconds() -> float:
    """``detect_languages`` over the scale event's 10,000 statements, in this (fresh) process."""
    import pandas as pd
    from scale import build_event

    from pipeline.statements import detect_languages, load_splitter, split_statements

    folder = HERE / ".work" / "languages" / "event"
    if not folder.exists():
        build_event(10_000, folder)
    notes = pd.concat(pd.read_csv(path) for path in sorted((folder / "notes").glob("*.csv")))
    texts = [s for note in split_statements(notes["text"].tolist(), load_splitter("en")) for s in note]
    started = time.perf_counter()
    detect_languages(texts, "en")
    return time.perf_counter() - started


def main() -> int:
    if sys.argv[1:] == ["--seconds"]:
        print(f"SECONDS {detection_seconds()}")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", type=Path, required=True, help="lingua-py's language-testdata folder")
    parser.add_argument("--label", default="current", help="name of this code's figures in the report")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes timed for the cost")
    args = parser.parse_args()
    seconds = []
    for _ in range(args.repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--seconds"], capture_output=True, text=True, check=True, cwd=REPO
        )
        seconds.append(float(next(x for x in out.stdout.splitlines() if x.startswith("SECONDS ")).split()[1]))
    found = {
        "date": time.strftime("%Y-%m-%d"),
        "seconds_10k": [round(s, 2) for s in seconds],
        "notes": note_figures(),
        "sentences": sentence_figures(args.testdata),
    }
    results_file = RESULTS / "languages.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results[args.label] = found
    results_file.write_text(json.dumps(results, indent=1))
    (RESULTS / "languages.md").write_text(report(results))
    return 0


def _row(*cells: object) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _seconds(runs: list[float]) -> str:
    return f"{statistics.median(runs):.2f} ({', '.join(map(str, runs))})"


def _share(code: str, n: int, foreign: int, right: int) -> str:
    if not n:
        return "–"
    return f"{foreign} of {n}" if code == "en" else f"{100 * foreign / n:.0f} / {100 * right / n:.0f}"


def report(results: dict) -> str:
    labels = list(results)
    runs = ", ".join(f"{label}: {found['date']}" for label, found in results.items())
    lines = [
        "# Language benchmark",
        "",
        "Run by `python benchmarks/languages.py --testdata PATH --label LABEL` on a 2-core CPU machine; each "
        f"label is the code of one commit ({runs}).",
        "",
        "## Cost",
        "",
        "`detect_languages` over the 10,000 statements of the scale benchmark's event, each in a fresh "
        "process (seconds: median, and every run):",
        "",
        _row("", *labels),
        "|---" * (1 + len(labels)) + "|",
        _row("seconds", *(_seconds(results[label]["seconds_10k"]) for label in labels)),
        "",
        "## Notes found in another language",
        "",
        "Note texts without a declared language. The sample event and ecc2020-dev are in English only, so "
        "any found there is a mistake; about one note in twenty-five of ecc2020-dev2 is in French, German, "
        "Italian, Spanish or Polish.",
        "",
        _row("event", "notes", *labels),
        "|---" * (2 + len(labels)) + "|",
    ]
    for event in dict.fromkeys(e for label in labels for e in results[label]["notes"]):
        counts = [results[label]["notes"].get(event, ["–", "–"]) for label in labels]
        lines.append(_row(event, counts[0][0], *(c[1] for c in counts)))
    lines += [
        "",
        "## Lingua's test sentences",
        "",
        f"{PER_LANGUAGE} sentences a language, cut to their first 3, 4 or 6 words or whole; texts of fewer "
        "than three words are left out (read as the event's language by rule). English: taken for another "
        "language (a mistake). Others: found not English / found as the language, in % of the texts.",
        "",
        _row("language", "words", "texts", *labels),
        "|---" * (3 + len(labels)) + "|",
    ]
    for code in dict.fromkeys(c for label in labels for c in results[label]["sentences"]):
        for cut in map(str, CUTS):
            figures = [results[label]["sentences"].get(code, {}).get(cut, [0, 0, 0]) for label in labels]
            texts = max(f[0] for f in figures)
            lines.append(
                _row(code, cut if cut != "0" else "whole", texts, *(_share(code, *f) for f in figures))
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
