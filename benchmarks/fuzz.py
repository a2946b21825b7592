"""A longer fuzzing campaign over qflow's command line (tests/test_fuzz.py with more, random inputs).

Records how many hostile inputs each fuzz test tried, the exit codes they got, and how many
broke an invariant (tests/fuzzing.py), in benchmarks/results/fuzz.json:

    python benchmarks/fuzz.py --examples 150
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=150, help="inputs per fuzz test")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.jsonl"
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, "QFLOW_FUZZ_EXAMPLES": str(args.examples), "QFLOW_FUZZ_RANDOM": "1", "QFLOW_FUZZ_STATS": str(stats)}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(ROOT / "tests" / "test_fuzz.py"),
                               f"--junitxml={junit}"], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        runs = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
        junit_text = junit.read_text() if junit.exists() else ""
    per_test: dict[str, dict] = {}
    for name in dict.fromkeys(r["test"] for r in runs):
        mine = [r for r in runs if r["test"] == name]
        per_test[name] = {"inputs": len(mine), "exit_codes": dict(collections.Counter(str(r["code"]) for r in mine)),
                          "max_seconds": max(r["seconds"] for r in mine)}
    failed_tests = [line.split('name="', 1)[1].split('"', 1)[0] for line in junit_text.split("<testcase")[1:]
                    if "<failure" in line.split("</testcase>", 1)[0]]
    payload = {
        "description": "hostile inputs to qflow's command line (Hypothesis, random seeds); invariants of tests/fuzzing.py",
        "command": f"python benchmarks/fuzz.py --examples {args.examples}",
        "inputs_tried": len(runs),
        "tests_failed": failed_tests,
        "passed": proc.returncode == 0,
        "seconds": round(seconds, 1),
        "per_test": per_test,
        "pytest_tail": proc.stdout[-1500:] if proc.returncode else "",
    }
    print(json.dumps({k: payload[k] for k in ("inputs_tried", "tests_failed", "passed", "seconds")}))
    write_results(args.out, payload)


if __name__ == "__main__":
    main()
