"""Does ``qflow search`` beat hand design? Its verified designs against every hand-designed MNIST survey row that fits the board.

The hand rows are the MNIST rows of the survey (``benchmarks/results/survey/results.json``,
written by ``qflow compare benchmarks/sweeps/survey_mnist.toml``) that fit the Pynq-Z1. The
search runs on the survey's own network family and training (TFC's data, epochs, schedule
and augmentation from the sweep's ``[defaults]``) with ``flow.explore.search.search``:

* the space: per-layer weight bits, activation bits and MLP hidden widths (below);
* hardware first: every point built untrained with ``--auto`` folding; points that do not
  fit, miss the frame-rate floor (the fastest hand row's FPS) or are dominated on hardware
  are never trained;
* multi-fidelity: trials train ``--trial-epochs`` epochs on ``--trial-samples`` images,
  reporting validation accuracy to Optuna's Hyperband pruner after every epoch;
* the front's ``--finalists`` most accurate points retrained at the survey's full budget
  (all of MNIST, the survey's epochs), tested, rebuilt and verified with full reports.

A hand row is *dominated* by a finalist that is verified, fits, and has accuracy and
frames/s at least the row's (the cheapest such finalist in LUT is named). The JSON lists
every hand row with its dominating design or ``null``; the named designs' ``report.json``
files are copied next to it (``search_vs_hand/<design>/report.json``).

    python benchmarks/search_vs_hand.py          # 15-25 min on 2 shared cores, 1 training thread

``--work`` keeps the search's study and outputs (rerunning resumes the study); ``--reuse``
compares the finished search in ``--work`` (its ``search.json``) with the survey again, without
training, e.g. after the survey gained rows.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import RESULTS  # noqa: E402

from flow.core.fileio import atomic_write_json  # noqa: E402
from flow.explore.compare import load_sweep  # noqa: E402
from flow.explore.recipe import recipe_from_dict  # noqa: E402
from flow.explore.search import search  # noqa: E402
from flow.explore.space import parse_bits  # noqa: E402
from hw_targets import load_target  # noqa: E402

SWEEP = ROOT / "benchmarks" / "sweeps" / "survey_mnist.toml"
SURVEY = RESULTS / "survey" / "results.json"


def hand_rows(survey: Path, dataset: str = "mnist") -> list[dict[str, Any]]:
    """The survey's rows on ``dataset`` that fit the board and were built."""
    rows = json.loads(survey.read_text())["rows"]
    return [r for r in rows if r.get("dataset") == dataset and r.get("fits") and not r.get("error")]


def base_recipe(sweep_path: Path, target: str, verify_samples: int):
    """The survey's TFC training on MNIST (its ``[defaults]``), built with auto folding for ``target``."""
    sweep = load_sweep(sweep_path)
    ref = next(r for r in sweep.rows.values() if r.model.name == "tfc" and r.data.dataset == "mnist")
    d = ref.model_dump(mode="json", exclude_unset=True)
    d.update(name="search-vs-hand", technique={"method": "qat"})
    d["model"] = {"name": "tfc", "weight_bits": 2, "act_bits": 2}
    d["build"] = {"target": target, "auto": True, "verify_samples": verify_samples}
    return recipe_from_dict(d, source="search-vs-hand recipe")


def dominating(row: dict[str, Any], finalists: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest (LUT) verified, fitting finalist at least as accurate and as fast as ``row``."""
    ok = [f for f in finalists if f.get("verified") and f.get("fits") and f.get("accuracy") is not None
          and f["accuracy"] >= row["accuracy"] and f["fps"] >= row["throughput_fps"] and Path(f["report"]).is_file()]
    return min(ok, key=lambda f: (f["lut"], -f["accuracy"])) if ok else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "search_vs_hand.json")
    ap.add_argument("--survey", type=Path, default=SURVEY, help="the survey's results.json")
    ap.add_argument("--sweep", type=Path, default=SWEEP, help="the survey's sweep (its training defaults)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "search_vs_hand", help="the search's study and outputs")
    ap.add_argument("--target", default="pynq-z1")
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--trial-epochs", type=int, default=3)
    ap.add_argument("--trial-samples", type=int, default=15000)
    ap.add_argument("--finalists", type=int, default=3)
    ap.add_argument("--bits", default="T,2,3,4", help="weight precision choices per layer")
    ap.add_argument("--act-bits", default="2,3,4")
    ap.add_argument("--widths", default="64,96,128,192")
    ap.add_argument("--sensitivity", type=Path, default=None, help="a `qflow sensitivity` map: per-layer floors")
    ap.add_argument("--reuse", action="store_true", help="compare the finished search in --work again, without training")
    args = ap.parse_args()

    t0 = time.perf_counter()
    tgt = load_target(args.target)
    hand = hand_rows(args.survey)
    if not hand:
        sys.exit(f"error: no MNIST row of {args.survey} fits; run the survey first (qflow compare {SWEEP} --out {SURVEY.parent})")
    min_fps = max(r["throughput_fps"] for r in hand)
    recipe = base_recipe(args.sweep, tgt.name, verify_samples=1000)
    print(f"{len(hand)} hand rows fit {tgt.name}; best {max(r['accuracy'] for r in hand):.4f} accuracy; frame-rate floor {min_fps:,.0f} FPS")
    if args.reuse:
        done = json.loads((args.work / "search.json").read_text())
        finalists, counts = done["finalists"], done["counts"]
    else:
        res = search(recipe, tgt.name, args.work, trials=args.trials, progress=False, sensitivity=args.sensitivity,
                     epochs=args.trial_epochs, max_train_samples=args.trial_samples, threads=1, min_fps=min_fps,
                     weight_bits=parse_bits(args.bits, "--bits", ternary=True), act_bits=parse_bits(args.act_bits, "--act-bits", ternary=False),
                     widths=tuple(int(w) for w in args.widths.split(",")), finalists=args.finalists)
        finalists, counts = res.finalists, res.counts

    hand = hand_rows(args.survey)  # read again: the survey may have been rerun while the search ran
    reports_dir = args.out.parent / args.out.stem
    shutil.rmtree(reports_dir, ignore_errors=True)
    out_rows = []
    for row in hand:
        best = dominating(row, finalists)
        entry = {"row": row["name"], "dominated_by": None}
        if best is not None:
            dest = reports_dir / best["name"] / "report.json"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(best["report"], dest)
            entry["dominated_by"] = {"accuracy": best["accuracy"], "throughput_fps": best["fps"], "lut": best["lut"],
                                     "report": str(dest.relative_to(args.out.parent))}
        out_rows.append(entry)
        print(f"{row['name']}: {row['accuracy']:.4f} at {row['throughput_fps']:,.0f} FPS -> "
              + (f"{best['name']} {best['accuracy']:.4f} at {best['fps']:,.0f} FPS, {best['lut']:,.0f} LUT" if best else "not dominated"))
    atomic_write_json(args.out, {"target": tgt.name, "hand_rows": out_rows})
    print(f"{sum(e['dominated_by'] is not None for e in out_rows)} of {len(out_rows)} hand rows dominated; "
          f"search {counts}; {time.perf_counter() - t0:.0f} s in all -> {args.out}")


if __name__ == "__main__":
    main()
