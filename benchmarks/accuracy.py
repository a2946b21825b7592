"""MNIST test accuracy after QAT on this CPU, beside the published Brevitas figures.

Each row runs the full flow (train -> export -> build for Pynq-Z1 -> verify) through
``flow.explore.run.run`` with one training thread and records accuracy, training wall and CPU
time and the design's estimates. TFC trains 30 epochs (batch 128, one-cycle); SFC-w2a2 trains
18 epochs at batch 256 with one-cycle and random shifts (2 px) and rotations (10 degrees) of
the training images. The test set is only evaluated. Finished rows are kept when the script
is rerun with the same settings (delete the JSON to start over); each row records the machine
and date it was measured on, so kept rows keep theirs.

    python benchmarks/accuracy.py             # -> benchmarks/results/.scratch/accuracy.json
    python benchmarks/accuracy.py --update    # -> benchmarks/results/accuracy.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_output_args, result_path, stamp, write_results  # noqa: E402

from flow.explore.recipe import recipe_from_dict  # noqa: E402
from flow.explore.run import run  # noqa: E402

TFC_TRAIN = {"epochs": 30, "batch_size": 128, "lr": 0.01, "schedule": "onecycle", "threads": 1}
SFC_TRAIN = {"epochs": 18, "batch_size": 256, "lr": 0.01, "schedule": "onecycle", "threads": 1, "max_shift": 2.0, "max_degrees": 10.0}
# label: (model, weight_bits, act_bits, published top-1 % from Brevitas' bnn_pynq examples, training)
CASES = {
    "tfc-w1a1": ("tfc", 1, 1, 93.17, TFC_TRAIN),
    "tfc-w2a2": ("tfc", 2, 2, 96.60, TFC_TRAIN),
    "sfc-w2a2": ("sfc", 2, 2, 98.66, SFC_TRAIN),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "accuracy.json")
    ap.add_argument("--data", type=Path, default=None, help="dataset folder (default: $QFLOW_DATA, else the checkout's data/)")
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    args = ap.parse_args()
    args.out = result_path(args, "accuracy.json")
    done = {}
    if args.out.exists():
        done = {r["case"]: r for r in json.loads(args.out.read_text()).get("rows", []) if r.get("train") == CASES.get(r["case"], [None] * 5)[4]}
    rows = list(done.values())
    for label in args.cases:
        if label in done:
            print(f"{label}: kept from {args.out}")
            continue
        name, wb, ab, published, train = CASES[label]
        recipe = recipe_from_dict({
            "name": label, "seed": 0,
            "model": {"name": name, "weight_bits": wb, "act_bits": ab},
            "data": {"dataset": "mnist", **({"root": str(args.data)} if args.data else {})},
            "train": train,
            "build": {"target": "pynq-z1", "target_fps": 1_000_000, "verify_samples": 1000},
        })
        with tempfile.TemporaryDirectory() as tmp:
            result = run(recipe, tmp, progress=False)
        rep = result.report
        rows.append(stamp({
            "case": label, "model": name, "weight_bits": wb, "act_bits": ab, "epochs": train["epochs"], "train": train,
            "accuracy_pct": round(100 * result.accuracy, 2), "published_pct": published,
            "train_seconds": round(result.train_seconds, 1), "train_cpu_seconds": round(result.train_cpu_seconds, 1),
            "verified": rep.verification.passed, "fits": rep.fits,
            "estimated_fps": rep.throughput_fps, "lut": rep.totals["lut"], "bram_18k": rep.totals["bram_18k"],
        }))
        print(f"{label}: {100 * result.accuracy:.2f}% (published {published}%) in {result.train_cpu_seconds:.0f} CPU-s")
        write_results(args.out, {"benchmark": "mnist_accuracy", "dataset": "MNIST 60k/10k", "rows": rows})
    write_results(args.out, {"benchmark": "mnist_accuracy", "dataset": "MNIST 60k/10k", "rows": rows})


if __name__ == "__main__":
    main()
