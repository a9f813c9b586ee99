"""Encoding benchmark: how ``decode_text`` reads note files saved in a legacy Windows code page.

    python benchmarks/encodings.py --testdata PATH/language-testdata --label after

Excel's "CSV" is saved in the code page of the Windows it runs on: cp1252 in Western Europe, cp1250 in
Central Europe, cp1257 in the Baltic states, cp1254 in Turkey, cp1251 and cp1253 for Cyrillic and Greek.
Lingua's test sentences (``language-testdata/sentences/<code>.txt`` of a checkout of
github.com/pemistahl/lingua-py), saved in the code page of their language's Windows, are decoded as note
files of one sentence each and of five: each file is read right, refused, or read wrong (garbled and let
through). Each ``--label`` keeps its figures in results/encodings.json, so the code before and after a
change sit side by side in results/encodings.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Files the sentences are saved as: sentences a file, and whether as the rows of a CSV
FORMS = {"1 sentence": (1, False), "5 sentences": (5, False), "CSV of 5 rows": (5, True)}
sys.path.insert(0, str(HERE.parent))

#: Languages by the Windows code page their Excel saves "CSV" in (fixed here, not read from the pipeline,
#: so that code before and after a change is measured on the same files)
CODE_PAGES = {
    "cp1252": (
        "en",
        "fr",
        "de",
        "es",
        "it",
        "pt",
        "nl",
        "sv",
        "da",
        "fi",
        "is",
        "ca",
        "eu",
        "ga",
        "cy",
        "nb",
    ),
    "cp1250": ("pl", "cs", "sk", "hu", "hr", "sl", "ro", "bs", "sq"),
    "cp1251": ("bg", "uk", "mk", "ru", "be", "sr"),
    "cp1253": ("el",),
    "cp1257": ("lt", "lv", "et"),
    "cp1254": ("tr",),
}


def measure(testdata: Path, form: str) -> list[tuple[str, str, int, int, int, int]]:
    """Per code page and language: files of the ``form`` (``FORMS``), read right, refused, read wrong."""
    per_file, as_csv = FORMS[form]
    from pipeline.readers.common import NoteFileError, decode_text

    rows = []
    for code_page, languages in CODE_PAGES.items():
        for language in languages:
            lines = (testdata / "sentences" / f"{language}.txt").read_text(encoding="utf-8").splitlines()
            # a sentence with a letter the code page lacks is left out: no Windows of its language writes it
            sentences = [s for s in filter(None, (line.strip() for line in lines)) if _fits(s, code_page)]
            files = [
                _as_csv(sentences[i : i + per_file]) if as_csv else "\n".join(sentences[i : i + per_file])
                for i in range(0, len(sentences), per_file)
            ]
            right = refused = wrong = 0
            for content in files:
                try:
                    text = decode_text("x.csv", content.encode(code_page))
                except NoteFileError:
                    refused += 1
                    continue
                right += text == content
                wrong += text != content
            rows.append((code_page, language, len(files), right, refused, wrong))
            print(form, rows[-1], flush=True)
    return rows


def _as_csv(sentences: list[str]) -> str:
    """A table's notes as Excel writes them: the sample event's ids in English on every row."""
    quoted = ('"' + s.replace('"', '""') + '"' for s in sentences)
    return "table,round,topic,question,text\r\n" + "".join(f"t1,1,green,needs,{q}\r\n" for q in quoted)


def _fits(sentence: str, code_page: str) -> bool:
    try:
        sentence.encode(code_page)
    except UnicodeEncodeError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", type=Path, required=True, help="lingua-py's language-testdata folder")
    parser.add_argument("--label", default="current", help="name of this code's figures in the report")
    args = parser.parse_args()
    started = time.perf_counter()
    figures = {form: measure(args.testdata, form) for form in FORMS}
    results_file = RESULTS / "encodings.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    results[args.label] = {
        "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
        "files": figures,
    }
    results_file.write_text(json.dumps(results, indent=1))
    (RESULTS / "encodings.md").write_text(report(results))
    return 0


def report(results: dict) -> str:
    labels = list(results)
    runs = ", ".join(f"{label}: {found['date']}, {found['seconds']} s" for label, found in results.items())
    columns = [f"{label}: {form}" for form in FORMS for label in labels]
    lines = [
        "# Encoding benchmark",
        "",
        "Run by `python benchmarks/encodings.py --testdata PATH --label LABEL`; each label is the code of "
        f"one commit ({runs}). Lingua's test sentences, saved in the Windows code page of their language, "
        "are decoded by `decode_text` as note files: of one sentence, of five, and as a CSV of five rows "
        'with the sample event\'s ids (`t1,1,green,needs,"..."`). Each cell: files read right / '
        "refused / read wrong (garbled and let through: the file's notes would be gibberish).",
        "",
        "| code page | language | " + " | ".join(columns) + " |",
        "|---|---" + "|---" * len(columns) + "|",
    ]
    for code_page, languages in CODE_PAGES.items():
        for language in languages:
            cells = []
            for form in FORMS:
                for label in labels:
                    rows = results[label]["files"][form]
                    row = next(r for r in rows if list(r[:2]) == [code_page, language])
                    cells.append(f"{row[3]} / {row[4]} / {row[5]} of {row[2]}")
            lines.append(f"| {code_page} | {language} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Some *read wrong* under every code are test sentences that hold text garbled before ('FÃ¼r', "
        "'pďż˝n'): their bytes are valid UTF-8, which is read first.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
