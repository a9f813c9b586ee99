"""How well an encoder tells the gold themes apart, before any clustering. Writes
benchmarks/results/separability.md (and separability.json).

    python benchmarks/separability.py [--events ../shared/ecc2020-dev ../shared/ecc2020-dev2]
                                      [--model all-mpnet-base-v2]

For each event and encoder (Harvest's configured one; each packaged model of ``--model``, default
all-mpnet-base-v2, installed once into benchmarks/.work/packaged; the multilingual bridge's; and those two
concatenated), over the answer notes of each question (gold theme not ``noise``, read as the model reads
them):

- *nearest note agrees*: share of notes whose most similar other note of the question expresses the same
  gold theme. No clustering can be much purer than this: it bounds how often a note sits beside notes
  of its own point.
- *same theme* / *other theme*: mean cosine of note pairs of one gold theme, and of two.
- *other languages: nearest English agrees*: for the answer notes Harvest detects in another language,
  the share whose most similar note of the question in the model's language expresses the same gold
  theme: what the multilingual bridge, which places such a note with that one, can reach.
- *centre ~ bullet* / *best note ~ bullet*: cosine between a gold theme's mean vector and the editors'
  bullet, and the best single note's (an oracle that knows the bullet): what a recommendation chosen
  by closeness to a theme's centre can reach in score.py's fidelity (score.py embeds with MiniLM).

Also, per encoder, the cosine of two unrelated texts: the median over pairs of texts with different labels
in public short-text sets (600 texts of each, ``../shared/benchmarks/``), no event involved. The bridge's
"nothing close enough" floor is that figure (``pipeline.languages.UNRELATED_COSINE``).

Reads the gold files: a benchmark, never the pipeline.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from pipeline.encoders import Encoder

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
RESULTS = HERE / "results"

Encode = Callable[[list[str]], np.ndarray]


def separability(notes: pd.DataFrame, themes: pd.DataFrame, encode: Encode) -> dict[str, float]:
    """The measures above for one event's gold ``notes`` (topic, question, theme_id, text) and gold
    ``themes`` (theme_id, gold), with ``encode`` returning unit vectors."""
    from pipeline.rank import unit_centre
    from pipeline.statements import detect_languages
    from pipeline.themes import texts_for_embedding

    answers = notes[notes["theme_id"] != "noise"]
    foreign_agree = foreign = 0
    bullets = themes.set_index("theme_id")["gold"]
    agree = total = 0
    same: list[float] = []
    other: list[float] = []
    centre_fit: list[float] = []
    best_fit: list[float] = []
    for _, question in answers.groupby(["topic", "question"], sort=False):
        vectors = encode(texts_for_embedding(question["text"].tolist()))
        labels = question["theme_id"].to_numpy()
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        if len(labels) > 1:
            agree += int((labels[similarity.argmax(axis=1)] == labels).sum())
            total += len(labels)
            upper = np.triu_indices(len(labels), 1)
            together = labels[upper[0]] == labels[upper[1]]
            same += similarity[upper][together].tolist()
            other += similarity[upper][~together].tolist()
            english = np.array(detect_languages(question["text"].tolist())) == "en"
            if english.any() and not english.all():
                closest = np.flatnonzero(english)[similarity[~english][:, english].argmax(axis=1)]
                foreign_agree += int((labels[closest] == labels[~english]).sum())
                foreign += int((~english).sum())
        theme_ids = list(dict.fromkeys(labels))
        bullet_vectors = encode([str(bullets[t]) for t in theme_ids])
        for theme_id, bullet in zip(theme_ids, bullet_vectors, strict=True):
            members = vectors[labels == theme_id]
            centre_fit.append(float(unit_centre(members) @ bullet))
            best_fit.append(float((members @ bullet).max()))
    return {
        "notes": total,
        "nearest_note_agrees": round(agree / max(total, 1), 3),
        "same_theme": round(float(np.mean(same)), 3),
        "other_theme": round(float(np.mean(other)), 3),
        "other_languages": foreign,
        "nearest_english_agrees": round(foreign_agree / foreign, 3) if foreign else "–",
        "centre_to_bullet": round(float(np.mean(centre_fit)), 3),
        "best_note_to_bullet": round(float(np.mean(best_fit)), 3),
    }


#: Public labelled short-text sets the unrelated-pair cosine is measured on, and texts sampled from each.
UNRELATED_SETS = ("stackoverflow", "agnews", "searchsnippets")
UNRELATED_SAMPLE = 600


def unrelated_cosine(
    encode: Encode, folder: Path = SHARED / "benchmarks", sample: int = UNRELATED_SAMPLE
) -> dict[str, float]:
    """Per public set: the median cosine between texts of different labels (a fixed sample)."""
    found = {}
    for name in UNRELATED_SETS:
        texts = pd.read_csv(folder / f"{name}.csv").sample(sample, random_state=0)
        vectors = encode(texts["text"].astype(str).tolist())
        labels = texts["label"].to_numpy()
        upper = np.triu_indices(len(labels), 1)
        apart = labels[upper[0]] != labels[upper[1]]
        found[name] = round(float(np.median((vectors @ vectors.T)[upper][apart])), 3)
    return found


def encoders(packaged: Sequence[str] = ()) -> dict[str, Encode]:
    """Harvest's configured encoder, then the ``packaged`` models (installed in ``PACKAGED``) with its
    backend, the multilingual bridge's and both concatenated."""
    from quality import PACKAGED  # beside this script

    from pipeline.config import Settings
    from pipeline.encoders import load_encoder
    from pipeline.languages import multilingual_encoder

    settings = Settings()
    spec = settings.encoder
    model = load_encoder(spec)

    def own(texts: list[str]) -> np.ndarray:
        return model.encode(texts, spec.batch, show_progress=False)

    def encoding(other: Encoder) -> Encode:
        return lambda texts: other.encode(texts, spec.batch, show_progress=False)

    found = {f"{spec.model} ({spec.backend})": own}
    for name in packaged:
        other = load_encoder(dataclasses.replace(spec, model=name, models_dir=PACKAGED))
        found[f"{name} ({spec.backend})"] = encoding(other)
    bridge_model = settings.synthesis.bridge.model
    if bridge_model:
        bridge = multilingual_encoder(bridge_model)

        def both(texts: list[str]) -> np.ndarray:
            joined = np.hstack([own(texts), bridge(texts)])
            return joined / np.linalg.norm(joined, axis=1, keepdims=True)

        found[f"{bridge_model} (bridge)"] = bridge
        found["both, concatenated"] = both
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=Path, nargs="+", default=[SHARED / "ecc2020-dev", SHARED / "ecc2020-dev2"]
    )
    from quality import add_model_option, installed_models, read_gold  # beside this script

    add_model_option(parser, "with Harvest's backend")
    args = parser.parse_args()
    packaged = installed_models(args.model)
    rows = []
    by_name = encoders(packaged)
    for name, encode in by_name.items():
        for event in args.events:
            notes, themes = read_gold(event)
            rows.append({"encoder": name, "event": event.name, **separability(notes, themes, encode)})
            print(rows[-1], flush=True)
    unrelated = {name: unrelated_cosine(encode) for name, encode in by_name.items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "separability.json").write_text(
        json.dumps({"events": rows, "unrelated_cosine": unrelated}, indent=2) + "\n", encoding="utf-8"
    )
    columns = list(rows[0])
    lines = [
        "# Separability of the gold themes",
        "",
        f"Run {time.strftime('%Y-%m-%d')} by `python benchmarks/separability.py`: each encoder on the answer "
        "notes of each question (noise left out), as the model reads them; see the script's docstring for "
        "the measures. No clustering is involved. Notes in other languages are read as written (no gloss); "
        "score.py's fidelity embeds with the first encoder, so the bullet columns of the others are "
        "their own spaces' figures.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
        *("| " + " | ".join(str(row[c]) for c in columns) + " |" for row in rows),
        "",
        "## Cosine of two unrelated texts",
        "",
        f"Median cosine between texts of different labels, {UNRELATED_SAMPLE} texts of each public set "
        '(`../shared/benchmarks/`): what "no closer than unrelated" means in each encoder\'s scale (the '
        "multilingual bridge's floor, `pipeline.languages.UNRELATED_COSINE`).",
        "",
        "| encoder | " + " | ".join(UNRELATED_SETS) + " |",
        "|---" * (len(UNRELATED_SETS) + 1) + "|",
        *(
            f"| {name} | " + " | ".join(str(by_set[s]) for s in UNRELATED_SETS) + " |"
            for name, by_set in unrelated.items()
        ),
        "",
    ]
    (RESULTS / "separability.md").write_text("\n".join(lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
