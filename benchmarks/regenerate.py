"""Regenerate every checked-in result under ``benchmarks/results/`` with today's code: one command.

    python benchmarks/regenerate.py --list                     # what it runs, in order, and roughly how long
    python benchmarks/regenerate.py                            # everything, into benchmarks/results/.scratch/
    python benchmarks/regenerate.py --update                   # everything, replacing the committed results
    python benchmarks/regenerate.py --update --only survey search_vs_hand

Each result is made by its own benchmark script (or, for the survey, ``qflow compare``), run in
a child process one after another; the first that fails stops the run with its exit code, and
what it would have written stays as it was. Without ``--update`` nothing committed changes:
results go to ``benchmarks/results/.scratch/``. The survey runs first, because
``search_vs_hand`` compares the search with the survey's rows. After the survey, each of its
run folders gets ``design-nodes.onnx.gz`` beside its ``report.json`` (``benchmarks/_designs.py``),
so that ``tests/benchmarks/test_committed_reports.py`` can price every committed report again.
The survey reuses its finished runs (``rows/<row>/seed<s>/row.json``) as ``qflow compare`` does;
delete ``rows/`` to retrain everything. After a change to the builder alone, ``--rebuild`` rebuilds
the survey's finished designs from their trained weights (:mod:`flow.explore.rebuild`), without
training again.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _common import RESULTS, SCRATCH  # noqa: E402
from _designs import NODES, write_nodes  # noqa: E402

from flow.explore.rebuild import rebuild  # noqa: E402

SWEEP = ROOT / "benchmarks" / "sweeps" / "survey_mnist.toml"
#: Every checked-in result: name -> (its script, or None for the survey; how long it took here, where measured).
JOBS: dict[str, tuple[str | None, str]] = {
    "survey": (None, "17 rows x 3 seeds: see the README's survey paragraph"),
    "search_vs_hand": ("search_vs_hand.py", "see the README's search paragraph"),
    "accuracy": ("accuracy.py", "376 s (2026-12-07, load average 3.6-5.4)"),
    "build_time": ("build_time.py", "46 s (2026-12-07, load average 6-7.5)"),
    "verify_throughput": ("verify_throughput.py", "7.5 min (2026-12-07, load average 0.6-2.5)"),
    "cost_model": ("cost_model.py", "55 s (2026-12-07, load average 4-5)"),
    "folding_optimizer": ("folding_optimizer.py", "251 s (2026-12-07, load average 4-5.5)"),
    "rounding_ties": ("rounding_ties.py", "225 s (2026-12-07, load average 3.2-4.7)"),
    "fuzz": ("fuzz.py", "about 500 s (2026-12-07, load average 3-5)"),
    "conformance": ("conformance.py", "33 min for 39 models (2026-12-07, load average 7-10)"),
    "rtl_luts": ("rtl_luts.py", "8.5 min (2026-12-07, load average 1-3)"),
    "rtlsim": ("rtlsim.py", "20 min (2026-12-07, load average 0.6-2.3)"),
    "scale": ("scale.py", "the residual sweep 24 min (2026-12-07, load average 3-7), the three 224x224 builds 6 min (2026-12-07, load average 1.5-2.7)"),
    "finn_examples": ("finn_examples.py", "per network in the README's finn-examples table"),
}

#: Options a script needs to reproduce every part of its committed result (rounding_ties.json's whole build).
OPTIONS: dict[str, list[str]] = {"rounding_ties": ["--build", "4"]}


def survey_nodes(survey: Path) -> int:
    """Write each survey run's ``design-nodes.onnx.gz`` beside its report (from its ``design.onnx``); how many."""
    n = 0
    for design in sorted((survey / "rows").rglob("design.onnx")):
        if (design.parent / "report.json").is_file():
            write_nodes(design, design.parent / NODES)
            n += 1
    return n


def command(name: str, update: bool) -> list[str]:
    script, _ = JOBS[name]
    if script is None:
        out = (RESULTS if update else SCRATCH) / "survey"
        return [sys.executable, "-m", "flow", "compare", str(SWEEP), "--out", str(out), "--no-progress"]
    args = [sys.executable, str(ROOT / "benchmarks" / script), *OPTIONS.get(name, [])]
    if update:
        args.append("--update")
    elif name == "search_vs_hand":
        args += ["--survey", str(SCRATCH / "survey" / "results.json")]
    return args


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--update", action="store_true", help="replace the committed results (default: benchmarks/results/.scratch/)")
    ap.add_argument("--only", nargs="+", choices=list(JOBS), default=list(JOBS), metavar="NAME", help=f"among: {', '.join(JOBS)}")
    ap.add_argument("--list", action="store_true", help="print what would run, and exit")
    ap.add_argument("--rebuild", action="store_true",
                    help="survey: rebuild every finished run's design from its weights with today's builder instead of running qflow compare "
                         "(no training; after a builder change)")
    args = ap.parse_args()
    names = [n for n in JOBS if n in args.only]
    if args.list:
        for n in names:
            print(f"{n}: {' '.join(command(n, args.update))}  ({JOBS[n][1]})")
        return 0
    for n in names:
        cmd = command(n, args.update)
        t0 = time.perf_counter()
        if n == "survey" and args.rebuild:
            print(f"== survey: rebuilding the finished runs in {cmd[cmd.index('--out') + 1]}", flush=True)
            rebuild(SWEEP, cmd[cmd.index("--out") + 1])
            code = 0
        else:
            print(f"== {n}: {' '.join(cmd)}", flush=True)
            code = subprocess.call(cmd, cwd=ROOT)
        if code != 0:
            print(f"== {n} failed (exit {code}) after {time.perf_counter() - t0:.0f} s; stopping", flush=True)
            return code
        if JOBS[n][0] is None:
            print(f"== survey: {survey_nodes((RESULTS if args.update else SCRATCH) / 'survey')} designs priced beside their reports")
        print(f"== {n}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
