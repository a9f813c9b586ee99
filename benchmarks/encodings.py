"""Encoding benchmark: which note files saved in a legacy Windows code page ``decode_text`` refuses.

    python benchmarks/encodings.py --testdata PATH/language-testdata

Harvest reads a file that is not UTF-8 as cp1252, Excel's "CSV" on a Western European Windows. The same
Excel on a Bulgarian, Greek, Polish or Czech Windows writes cp1251, cp1253 or cp1250, which cp1252
reads as gibberish; ``decode_text`` refuses what it can tell is such a misreading. Each of lingua's test
sentences (``language-testdata/sentences/<code>.txt`` of a checkout of github.com/pemistahl/lingua-py),
saved in the code page its language's Windows uses, is decoded as one file: counted as read right,
refused, or read wrong (garbled and let through). Writes results/encodings.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

#: Languages by the Windows code page their Excel saves "CSV" in
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


def measure(testdata: Path) -> list[tuple[str, str, int, int, int, int]]:
    """Per code page and language: sentences, read right, refused, read wrong."""
    from pipeline.readers.common import NoteFileError, decode_text

    rows = []
    for code_page, languages in CODE_PAGES.items():
        for language in languages:
            lines = (testdata / "sentences" / f"{language}.txt").read_text(encoding="utf-8").splitlines()
            right = refused = wrong = total = 0
            for sentence in filter(None, (line.strip() for line in lines)):
                try:
                    data = sentence.encode(code_page)
                except UnicodeEncodeError:
                    continue  # a letter the code page lacks: no Windows of that language writes it
                total += 1
                try:
                    text = decode_text("x.csv", data)
                except NoteFileError:
                    refused += 1
                    continue
                right += text == sentence
                wrong += text != sentence
            rows.append((code_page, language, total, right, refused, wrong))
            print(rows[-1], flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--testdata", type=Path, required=True, help="lingua-py's language-testdata folder")
    args = parser.parse_args()
    rows = measure(args.testdata)
    lines = [
        "# Encoding benchmark",
        "",
        f"Run {time.strftime('%Y-%m-%d')} by `python benchmarks/encodings.py --testdata PATH`: each of "
        "lingua's test sentences saved in its language's Windows code page and decoded by `decode_text` as "
        "a file of its own. *Read wrong*: garbled and let through (the file's notes would be gibberish).",
        "",
        "| code page | language | sentences | read right | refused | read wrong |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {cp} | {lang} | {n} | {right} | {refused} | {wrong} |"
        for cp, lang, n, right, refused, wrong in rows
    ]
    lines += [
        "",
        "A file holds many notes, and one misread word refuses it whole; a sentence refused here is a "
        "file of one note. The few *read wrong* in cp1252 are test sentences that hold text already garbled "
        '("FÃ¼r", UTF-8 once read as cp1252): their bytes are valid UTF-8, which is read first.',
        "",
    ]
    (HERE / "results" / "encodings.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
