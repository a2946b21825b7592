"""MNIST test accuracy after QAT on this CPU, beside the published Brevitas figures.

Each row runs the full flow (train -> export -> build for Pynq-Z1 -> verify) through
``flow.explore.run.run`` and records accuracy, training wall time and the design's estimates.
Finished rows are kept when the script is rerun (delete the JSON to start over).

    python benchmarks/accuracy.py --out benchmarks/results/accuracy.json [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_results  # noqa: E402

from flow.explore.recipe import recipe_from_dict  # noqa: E402
from flow.explore.run import run  # noqa: E402

# label: (model, weight_bits, act_bits, published top-1 % from Brevitas' bnn_pynq examples)
CASES = {
    "tfc-w1a1": ("tfc", 1, 1, 93.17),
    "tfc-w2a2": ("tfc", 2, 2, 96.60),
    "sfc-w2a2": ("sfc", 2, 2, 98.66),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "accuracy.json")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    done = {}
    if args.out.exists():
        done = {r["case"]: r for r in json.loads(args.out.read_text()).get("rows", []) if r.get("epochs") == args.epochs}
    rows = list(done.values())
    for label in args.cases:
        if label in done:
            print(f"{label}: kept from {args.out}")
            continue
        name, wb, ab, published = CASES[label]
        recipe = recipe_from_dict({
            "name": label, "seed": 0,
            "model": {"name": name, "weight_bits": wb, "act_bits": ab},
            "data": {"dataset": "mnist", "root": str(args.data)},
            "train": {"epochs": args.epochs, "batch_size": 128, "lr": 0.01, "schedule": "onecycle"},
            "build": {"target": "pynq-z1", "target_fps": 1_000_000, "verify_samples": 1000},
        })
        with tempfile.TemporaryDirectory() as tmp:
            result = run(recipe, tmp, progress=False)
        rep = result.report
        rows.append({
            "case": label, "model": name, "weight_bits": wb, "act_bits": ab, "epochs": args.epochs,
            "accuracy_pct": round(100 * result.accuracy, 2), "published_pct": published,
            "train_seconds": round(result.train_seconds, 1), "verified": rep.verification.passed,
            "estimated_fps": rep.throughput_fps, "lut": rep.totals["lut"], "bram_18k": rep.totals["bram_18k"],
        })
        print(f"{label}: {100 * result.accuracy:.2f}% (published {published}%) in {result.train_seconds:.0f} s")
        write_results(args.out, {"benchmark": "mnist_accuracy", "dataset": "MNIST 60k/10k", "rows": rows})
    write_results(args.out, {"benchmark": "mnist_accuracy", "dataset": "MNIST 60k/10k", "rows": rows})


if __name__ == "__main__":
    main()
