"""Benchmark: `qflow search` on TFC (784-64-64-64) for Pynq-Z1 on MNIST.

Searches per-layer weight/activation bits and the technique (QAT, PTQ, distillation,
low-rank). Each trial quantizes with 1 epoch on a 5,000-image subset (threads=1), exports,
auto-folds for the Pynq-Z1 and reads FINN's estimates; the chosen design is rebuilt with 2 epochs on 10,000
images and verified. Writes benchmarks/results/search_tfc/ (pareto.json/csv/png,
all_trials.csv, search.json, chosen/report.json) and benchmarks/results/search_tfc.json
(timings and counts).

    python benchmarks/search_tfc.py [--trials 24] [--workers 2] [--techniques qat,ptq,distill,lowrank]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import RESULTS, write_results  # noqa: E402
from flow.explore.recipe import recipe_from_dict  # noqa: E402
from flow.explore.search import search  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--samples", type=int, default=5000, help="training images per trial")
    ap.add_argument("--techniques", default="qat,ptq,distill,lowrank", help="technique choices ('' = QAT only)")
    args = ap.parse_args()
    out = RESULTS / "search_tfc"
    shutil.rmtree(out, ignore_errors=True)
    recipe = recipe_from_dict({
        "name": "tfc-search-mnist", "seed": 0,
        "model": {"name": "tfc", "weight_bits": 2, "act_bits": 2},
        "data": {"dataset": "mnist", "root": str(ROOT / "data")},
        "train": {"epochs": 2, "batch_size": 128, "lr": 0.01, "max_train_samples": 10_000, "threads": 1},
        "build": {"target": "pynq-z1", "verify_samples": 200},
    })
    t0 = time.perf_counter()
    res = search(recipe, "pynq-z1", out, trials=args.trials, workers=args.workers, epochs=1, max_train_samples=args.samples,
                 threads=1, heartbeat_interval=10, progress=sys.stderr.isatty(),
                 techniques=tuple(t for t in args.techniques.split(",") if t))
    seconds = time.perf_counter() - t0
    (out / "study.db").unlink(missing_ok=True)
    shutil.rmtree(out / "trials", ignore_errors=True)
    keep = {"report.json", "report.md", "report.html", "recipe.json", "folding.json", "specialize_layers.json", "auto_folding.json"}
    for p in (out / "chosen").iterdir():  # keep the reports and configs, not the build artefacts
        if p.name not in keep:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    c = res.chosen_report
    payload = {
        "trials": args.trials, "workers": args.workers, "train_samples_per_trial": args.samples, "epochs_per_trial": 1,
        "techniques": args.techniques.split(",") if args.techniques else ["qat"],
        "seconds_total": round(seconds, 1), "counts": res.counts,
        "front": [{**{k: p[k] for k in ("number", "accuracy", "lut", "fps", "layers")}, "technique": p["params"].get("technique")} for p in res.pareto],
        "chosen": None if c is None else {"trial": res.chosen["number"], "accuracy": c["accuracy"], "lut": c["totals"]["lut"],
                                          "fps": c["throughput_fps"], "verified": (c.get("verification") or {}).get("passed")},
    }
    print(write_results(RESULTS / "search_tfc.json", payload))


if __name__ == "__main__":
    main()
