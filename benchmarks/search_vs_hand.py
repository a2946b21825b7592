"""Does ``qflow search`` beat hand design? Its verified designs against every hand-designed MNIST survey row that fits the board.

The hand rows are the MNIST rows of the survey (``benchmarks/results/survey/results.json``,
written by ``qflow compare benchmarks/sweeps/survey_mnist.toml``) that fit the Pynq-Z1; their
accuracy is the survey's mean over its seeds. The search runs on the survey's own network
family and training (TFC's data, epochs, schedule and augmentation from the sweep's
``[defaults]``) with ``flow.explore.search.search``:

* three objectives at once (Optuna multi-objective TPE): validation accuracy, frames/s and LUT
  (layers plus the data-width converters FINN inserts);
* the space: per-layer weight bits, activation bits and MLP hidden widths (below);
* every point folded like the hand rows, by FINN's SetFolding, toward the fastest hand row's
  frame rate (the floor): so a point's LUT is what its precision and widths cost at that
  throughput. Points that do not fit, miss the floor or are dominated on hardware are never
  trained; the others train ``--trial-epochs`` epochs on ``--trial-samples`` images and are
  scored on held-out training images (validation);
* ``--finalists`` points spread over the front (greedy hypervolume) retrained at the survey's
  full budget, tested, rebuilt and verified with full reports. Finalists are chosen on the
  validation split; the test set only scores them.

A hand row is *dominated* by a searched design that is verified, fits the same board, and is
at least as accurate (test accuracy against the hand row's mean), at least as fast and at most
as large in LUT (layers plus converters) as the row; the cheapest such design is named, with
whether its accuracy is also above the hand row's best seed. For a hand row no design
dominates, ``losses`` gives, for the design that loses on the fewest axes (then by the least,
each shortfall as a fraction of the row's value), each losing axis and by how much, and the
same for every design. Both sets get a hypervolume in the same units (accuracy points above the
reference x MFPS x kLUT below the reference), from the fixed reference point written in the
JSON. Every verified design's ``report.json`` and ``design-nodes.onnx.gz`` are written next to
the JSON (``search_vs_hand/designs/<name>/``).

    python benchmarks/search_vs_hand.py            # -> benchmarks/results/.scratch/search_vs_hand.json
    python benchmarks/search_vs_hand.py --update   # -> benchmarks/results/search_vs_hand.json

``--work`` keeps the search's study and outputs (rerunning resumes the study); ``--reuse``
compares the finished search in ``--work`` (its ``search.json``) with the survey again, without
training, e.g. after the survey was rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _common import RESULTS, add_output_args, result_path, write_results  # noqa: E402
from _designs import NODES, write_nodes  # noqa: E402

from flow.compat import optuna as optuna_compat  # noqa: E402
from flow.core.errors import ConfigError  # noqa: E402
from flow.core.fileio import atomic_write_bytes  # noqa: E402
from flow.core.outdir import OutputDir  # noqa: E402
from flow.explore.compare import load_sweep  # noqa: E402
from flow.explore.recipe import recipe_from_dict  # noqa: E402
from flow.explore.rows import SweepRow  # noqa: E402
from flow.explore.search import search  # noqa: E402
from flow.explore.space import parse_bits  # noqa: E402
from hw_targets import load_target  # noqa: E402

SWEEP = ROOT / "benchmarks" / "sweeps" / "survey_mnist.toml"
SURVEY = RESULTS / "survey" / "results.json"
#: The axes of domination: field of a hand row, key in a searched design, better when larger (LUT: layers + converters in both).
AXES = {"accuracy": ("accuracy", "accuracy", True), "throughput_fps": ("throughput_fps", "fps", True), "lut": ("lut", "lut", False)}
#: Hypervolume reference: accuracy and frames/s below it, and LUT above it, add nothing (LUT: the board's budget).
REFERENCE_ACCURACY = 0.90


def hand_rows(survey: Path, dataset: str = "mnist") -> list[SweepRow]:
    """The survey's rows on ``dataset`` that fit the board and were built (a survey too old to read exits with one line)."""
    try:
        rows = [SweepRow.from_json(r, f"{survey} row") for r in json.loads(survey.read_text())["rows"]]
    except ConfigError as e:
        sys.exit(f"error: {e}")
    return [r for r in rows if r.dataset == dataset and r.fits and not r.error]


def base_recipe(sweep_path: Path, target: str, verify_samples: int):
    """The survey's TFC training on MNIST (its ``[defaults]``), for ``target``."""
    sweep = load_sweep(sweep_path)
    ref = next(r for r in sweep.rows.values() if r.model.name == "tfc" and r.data.dataset == "mnist")
    d = ref.model_dump(mode="json", exclude_unset=True)
    d.update(name="search-vs-hand", technique={"method": "qat"})
    d["model"] = {"name": "tfc", "weight_bits": 2, "act_bits": 2}
    d["build"] = {"target": target, "verify_samples": verify_samples}
    return recipe_from_dict(d, source="search-vs-hand recipe")


def shortfalls(design: dict[str, Any], row: SweepRow) -> dict[str, float]:
    """Each axis on which ``design`` is worse than ``row``: by how much (design minus row; LUT: positive = more LUT)."""
    out = {}
    for axis, (hand_key, key, larger) in AXES.items():
        diff = design[key] - getattr(row, hand_key)
        if (diff < 0) if larger else (diff > 0):
            out[axis] = diff
    return out


def relative_shortfall(design: dict[str, Any], row: SweepRow) -> float:
    """The sum of ``design``'s shortfalls against ``row``, each as a fraction of the row's value."""
    return sum(abs(v) / abs(getattr(row, AXES[axis][0])) for axis, v in shortfalls(design, row).items() if getattr(row, AXES[axis][0]))


def eligible(designs: list[dict[str, Any]], board: str) -> list[dict[str, Any]]:
    """Searched designs that count: verified, fitting, on ``board``, with all three numbers."""
    return [d for d in designs if d.get("verified") and d.get("fits") and d.get("target") == board
            and all(d.get(k) is not None for k in ("accuracy", "fps", "lut"))]


def judge(row: SweepRow, designs: list[dict[str, Any]], reports: dict[str, str] | None = None) -> dict[str, Any]:
    """``row`` against the designs: the cheapest dominating one (with its report's path from ``reports``), or the closest one's losing axes."""
    entry: dict[str, Any] = {"row": row.name, "accuracy": row.accuracy, "accuracy_max": row.accuracy_max,
                             "seeds": None if row.seeds is None else list(row.seeds), "throughput_fps": row.throughput_fps, "lut": row.lut,
                             "dominated_by": None, "losses": None}
    if not designs:
        return entry
    scored = sorted(designs, key=lambda d: (len(shortfalls(d, row)), relative_shortfall(d, row), d["lut"]))
    winners = [d for d in scored if not shortfalls(d, row)]
    if winners:
        d = winners[0]
        beyond = row.accuracy_max is None or d["accuracy"] > row.accuracy_max
        entry["dominated_by"] = {"design": d["name"], "accuracy": d["accuracy"], "throughput_fps": d["fps"], "lut": d["lut"],
                                 "accuracy_above_best_seed": beyond, "report": (reports or {}).get(d["name"])}
    else:
        d = scored[0]
        entry["losses"] = {"design": d["name"], "axes": shortfalls(d, row),
                           "every_design": {x["name"]: shortfalls(x, row) for x in scored}}
    return entry


def hypervolume(points: list[tuple[float, float, float]], reference: dict[str, float]) -> float:
    """Hypervolume of (accuracy, frames/s, LUT) points from ``reference``, in accuracy points x MFPS x kLUT."""
    losses = [(-100 * a, -f / 1e6, lut / 1e3) for a, f, lut in points]
    ref = (-100 * reference["accuracy"], -reference["throughput_fps"] / 1e6, reference["lut"] / 1e3)
    return optuna_compat.hypervolume(losses, ref)


def write_designs(folder: Path, designs: list[dict[str, Any]]) -> dict[str, str]:
    """Each design's report.json and design-nodes.onnx.gz under ``folder/designs/<name>/``; paths relative to ``folder``'s parent."""
    out = OutputDir(folder, trees=("designs",))
    out.claim()
    paths = {}
    try:
        for d in designs:
            src = Path(d["report"]).parent
            dest = out.folder(f"designs/{d['name']}")
            atomic_write_bytes(dest / "report.json", (src / "report.json").read_bytes())
            write_nodes(src / "design.onnx", dest / NODES)
            paths[d["name"]] = str((dest / "report.json").relative_to(folder.parent))
    finally:
        out.close()
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "search_vs_hand.json")
    ap.add_argument("--survey", type=Path, default=SURVEY, help="the survey's results.json")
    ap.add_argument("--sweep", type=Path, default=SWEEP, help="the survey's sweep (its training defaults)")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "search_vs_hand", help="the search's study and outputs")
    ap.add_argument("--target", default="pynq-z1")
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--trial-epochs", type=int, default=3)
    ap.add_argument("--trial-samples", type=int, default=15000)
    ap.add_argument("--finalists", type=int, default=6)
    ap.add_argument("--bits", default="1,T,2,3,4", help="weight precision choices per layer")
    ap.add_argument("--act-bits", default="1,2,3,4")
    ap.add_argument("--widths", default="32,48,64,96,128")
    ap.add_argument("--sensitivity", type=Path, default=None, help="a `qflow sensitivity` map: per-layer floors")
    ap.add_argument("--reuse", action="store_true", help="compare the finished search in --work again, without training")
    args = ap.parse_args()
    out_json = result_path(args, "search_vs_hand.json")

    t0 = time.perf_counter()
    tgt = load_target(args.target)
    hand = hand_rows(args.survey)
    if not hand:
        sys.exit(f"error: no MNIST row of {args.survey} fits; run the survey first (qflow compare {SWEEP} --out {SURVEY.parent})")
    min_fps = max(r.throughput_fps for r in hand)
    recipe = base_recipe(args.sweep, tgt.name, verify_samples=1000)
    print(f"{len(hand)} hand rows fit {tgt.name}; best {max(r.accuracy for r in hand):.4f} accuracy; frame-rate floor {min_fps:,.0f} FPS")
    if args.reuse:
        done = json.loads((args.work / "search.json").read_text())
    else:
        res = search(recipe, tgt.name, args.work, trials=args.trials, progress=False, sensitivity=args.sensitivity,
                     epochs=args.trial_epochs, max_train_samples=args.trial_samples, threads=1, min_fps=min_fps, folding="fps",
                     objective="pareto", cost="lut", weight_bits=parse_bits(args.bits, "--bits", ternary=True),
                     act_bits=parse_bits(args.act_bits, "--act-bits", ternary=False),
                     widths=tuple(int(w) for w in args.widths.split(",")), finalists=args.finalists)
        done = json.loads((res.out_dir / "search.json").read_text())
    finalists = [{**f, "target": done["target"]} for f in done["finalists"]]
    designs = eligible(finalists, tgt.name)

    hand = hand_rows(args.survey)  # read again: the survey may have been rerun while the search ran
    reports = write_designs(out_json.parent / out_json.stem, designs)
    rows = [judge(r, designs, reports) for r in hand]
    reference = {"accuracy": REFERENCE_ACCURACY, "throughput_fps": 0.0, "lut": float(tgt.budget()["lut"])}
    payload = {
        "target": tgt.name, "frame_rate_floor": min_fps,
        "dominates": "verified, fits the same board, accuracy >= the hand row's mean over its seeds, frames/s >= and LUT "
                     "(layers + data-width converters) <= the hand row's",
        "search": {"objective": done["objective"], "folding": done.get("folding"), "counts": done["counts"],
                   "budget": done["budget"], "space": done["space"], "trials": done["trials"], "seconds": done["seconds"],
                   "finalists": [{k: f.get(k) for k in ("name", "trial", "search_accuracy", "accuracy", "fps", "lut", "fits", "verified",
                                                        "error")} for f in finalists]},
        "hypervolume": {
            "reference": reference, "units": "accuracy points above the reference x MFPS x kLUT below the reference",
            "search": hypervolume([(d["accuracy"], d["fps"], d["lut"]) for d in designs], reference),
            "hand": hypervolume([(r.accuracy, r.throughput_fps, r.lut) for r in hand], reference),
        },
        "hand_rows": rows,
    }
    payload["reports"] = reports
    write_results(out_json, payload)
    for e in rows:
        d = e["dominated_by"]
        print(f"{e['row']}: {e['accuracy']:.4f} at {e['throughput_fps']:,.0f} FPS, {e['lut']:,.0f} LUT -> "
              + (f"{d['design']} {d['accuracy']:.4f}, {d['throughput_fps']:,.0f} FPS, {d['lut']:,.0f} LUT" if d else
                 f"not dominated (closest {e['losses']['design'] if e['losses'] else '-'} loses on {e['losses']['axes'] if e['losses'] else '-'})"))
    hv = payload["hypervolume"]
    print(f"{sum(e['dominated_by'] is not None for e in rows)} of {len(rows)} hand rows dominated; hypervolume search {hv['search']:.4g}, "
          f"hand {hv['hand']:.4g}; search {done['counts']}; {time.perf_counter() - t0:.0f} s in all -> {out_json}")


if __name__ == "__main__":
    main()
