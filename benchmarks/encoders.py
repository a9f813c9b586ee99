"""Encoder benchmark: throughput and dev-event quality of each embedding backend beside the default.

    python benchmarks/encoders.py [--texts 5000] [--gold ../shared/ecc2020-dev]
                                  [--confirm ../shared/ecc2020-dev2] [--model all-mpnet-base-v2]

For each backend (pipeline.encoders): the one-off build of the derived model (ONNX export, int8
quantisation, model2vec distillation, all offline from the packaged weights), encoding throughput on the
dev notes' texts (no cache), cosine agreement with the torch vectors, and the score of a whole Harvest
run on the dev event with that backend (../shared/tools/score.py), confirmed by a whole run on the second
event by other writers (``--confirm``; '' for none). ``--model`` adds a packaged model
(pipeline.model_packages, installed once into benchmarks/.work/packaged, which is kept) with its default
backend and with int8 (``encoders.default_backend``). Writes benchmarks/results/encoders.md (and
encoders.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHARED = REPO.parent / "shared"
WORK = HERE / ".work" / "encoders"
RESULTS = HERE / "results"


def dev_texts(gold: Path, n: int) -> list[str]:
    texts: list[str] = []
    for path in sorted((gold / "notes").glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            texts += [r["text"] for r in csv.DictReader(handle)]
    # recombined pairs beyond the notes themselves: distinct texts of realistic length
    pairs = [f"{a}; {texts[(i * 7 + 3) % len(texts)]}" for i, a in enumerate(texts * (n // len(texts) + 1))]
    return (texts + pairs)[:n]


def verdict(row: dict, torch: dict, confirmed: bool) -> str:
    """One line: a backend's throughput and theme recall against torch's, on each event."""
    recall = "theme_recall"
    line = (
        f"- `{row['encoder']}`: {row['texts_per_s'] / torch['texts_per_s']:.1f}x the throughput; theme "
        f"recall {row['quality'].get(recall)} against {torch['quality'].get(recall)} on the dev event"
    )
    if confirmed:
        ours, theirs = row["quality_confirm"].get(recall), torch["quality_confirm"].get(recall)
        line += f", {ours} against {theirs} on the second"
    return line + "."


def main() -> int:
    from quality import METRICS, PACKAGED, add_model_option, installed_models, score  # beside this script

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=SHARED / "ecc2020-dev")
    parser.add_argument("--confirm", type=Path, default=SHARED / "ecc2020-dev2", help="'' for none")
    parser.add_argument("--texts", type=int, default=5000)
    add_model_option(parser, "with the default backend")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import numpy as np

    shown = [m for m in METRICS if m != "theme_ratio_pred_over_gold"]

    from flows.harvest import harvest_event
    from pipeline.encoders import (
        BACKENDS,
        DEFAULT_EMBEDDING_MODEL,
        EncoderSpec,
        build_derived_model,
        default_backend,
        load_encoder,
        slug,
    )

    shutil.rmtree(WORK, ignore_errors=True)
    texts = dev_texts(args.gold, args.texts)
    extra = installed_models(args.model)
    encoders = [(DEFAULT_EMBEDDING_MODEL, b, WORK / "models") for b in BACKENDS]
    # another model with its own default backend and, where that is not int8, with int8: what decides it
    for name in extra:
        backends = dict.fromkeys([default_backend(name), "onnx-int8"])  # in order, once each
        encoders += [(name, backend, PACKAGED) for backend in backends]
    rows, reference = [], None
    for model, backend, models_dir in encoders:
        spec = EncoderSpec(model=model, backend=backend, models_dir=models_dir)  # type: ignore[arg-type]
        name = backend if model == DEFAULT_EMBEDDING_MODEL else f"{model} ({backend})"
        started = time.perf_counter()
        build_derived_model(spec)
        built = time.perf_counter() - started
        encoder = load_encoder(spec)
        encoder.encode(texts[:64], batch_size=spec.batch, show_progress=False)  # warm-up
        started = time.perf_counter()
        vectors = encoder.encode(texts, batch_size=spec.batch, show_progress=False)
        rate = len(texts) / (time.perf_counter() - started)
        if reference is None:
            reference = vectors
        # vectors of other backends live in other spaces (model2vec: 256-d); compare their similarity
        # structure: correlation of the pairwise cosines of the first 1,000 texts with torch's
        k = min(1000, len(texts))
        upper = np.triu_indices(k, 1)
        ours, theirs = (vectors[:k] @ vectors[:k].T)[upper], (reference[:k] @ reference[:k].T)[upper]
        agreement = float(np.corrcoef(ours, theirs)[0, 1])
        os.environ["HARVEST_EMBEDDING_MODEL"] = model
        os.environ["HARVEST_EMBEDDING_BACKEND"] = backend
        os.environ["HARVEST_MODELS_DIR"] = str(models_dir)
        started = time.perf_counter()
        data = WORK / slug(name)
        summary = harvest_event(args.gold, data)
        run_seconds = time.perf_counter() - started
        confirmed = {}
        if args.confirm.name:
            confirmed = score(
                args.confirm,
                "--pipeline",
                harvest_event(args.confirm, data.with_name(data.name + "-confirm"))["out"],
            )
        rows.append(
            {
                "encoder": name,
                "model": model,
                "backend": backend,
                "build_seconds": round(built, 1),
                "texts_per_s": round(rate, 1),
                "dimensions": int(vectors.shape[1]),
                "cosine_agreement": round(agreement, 4),
                "run_seconds": round(run_seconds, 1),
                "quality": score(args.gold, "--pipeline", summary["out"]),
                "quality_confirm": confirmed,
            }
        )
        print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "encoders.json").write_text(json.dumps(rows, indent=1))
    base = rows[0]["texts_per_s"]
    lines = [
        "# Encoder backends",
        "",
        f"Run {time.strftime('%Y-%m-%d')} by `python benchmarks/encoders.py --texts {args.texts}` "
        f"on a 2-core CPU machine. Throughput: {len(texts):,} dev-note texts (notes and recombined "
        "pairs), each backend's batch size (`encoders.BATCH_SIZES`), no cache, model loaded. "
        "Agreement: correlation of the pairwise cosines of 1,000 texts with the torch vectors. "
        "Quality: a whole Harvest run on the dev event with that "
        "backend, scored by score.py. Build: the one-off export or distillation from the packaged "
        "weights (offline); the int8 row only quantises the export of the row above. Run s: the "
        "whole flow on the dev event, in one process; the first row also "
        "starts Prefect and loads the torch model.",
        "",
        "| encoder | build s | texts/s | × torch | dims | agreement | " + " | ".join(shown) + " | run s |",
        "|---|---|---|---|---|---|" + "---|" * len(shown) + "---|",
    ]
    for r in rows:
        q, speed = r["quality"], r["texts_per_s"] / base
        lines.append(
            f"| {r['encoder']} | {r['build_seconds']} | {r['texts_per_s']:,} | {speed:.1f} "
            f"| {r['dimensions']} | {r['cosine_agreement']} | "
            + " | ".join(str(q.get(m, "–")) for m in shown)
            + f" | {r['run_seconds']} |"
        )
    if args.confirm.name:
        lines += [
            "",
            f"Confirmation on the second event by other writers (`{args.confirm.name}`), a whole Harvest run "
            "with each backend (nothing was chosen on it):",
            "",
            "| encoder | " + " | ".join(shown) + " |",
            "|---|" + "---|" * len(shown),
        ]
        lines += [
            f"| {r['encoder']} | " + " | ".join(str(r["quality_confirm"].get(m, "–")) for m in shown) + " |"
            for r in rows
        ]
    lines += [
        "",
        "`onnx` is the same network in ONNX Runtime: the same vectors and scores. `onnx-int8`, the "
        "default, quantises its weights per output channel (`encoders.INT8_RECIPE`) and encodes one text "
        "a call: its vectors a little off the torch ones (agreement column). `model2vec` "
        "is a static lookup of token vectors distilled from the same weights, for million-statement runs "
        "where encoding would otherwise take hours. Choose with `HARVEST_EMBEDDING_BACKEND` (or "
        "`embedding_backend` in harvest.toml)."
        + (
            " The rows named after a model are another network, installed from the package registry "
            "(`harvest models install`), run with its default backend (`encoders.default_backend`: int8 "
            "only for a model measured to keep its scores with it) and with int8; its build column is its "
            "ONNX export (0 when an earlier run of this benchmark built it). Choose it with "
            "`HARVEST_EMBEDDING_MODEL`."
            if extra
            else ""
        )
        + " In this run, against torch:",
        "",
        *[verdict(r, rows[0], bool(args.confirm.name)) for r in rows[1:]],
        "",
    ]
    (RESULTS / "encoders.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
