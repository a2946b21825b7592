"""A longer fuzzing campaign over qflow's command line (tests/test_fuzz.py with more, random inputs).

Records, per family of hostile inputs, how many inputs were tried, how many of them were valid
(the family's oracle says the run must succeed) and succeeded, the exit codes, the slowest run,
and which families broke an invariant (tests/fuzzing.py), in benchmarks/results/fuzz.json (with --update):

    python benchmarks/fuzz.py --examples 150 --process-examples 10

``--process-examples`` sets the inputs of the families that start a child process per input
(deep control flow, long chains), whose runs are killed at the time limit.
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
from xml.etree import ElementTree

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_output_args, result_path, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def failed(junit_xml: str) -> list[str]:
    """The names of the test functions a JUnit XML report marks as failed or errored."""
    if not junit_xml:
        return []
    return [case.get("name", "?") for case in ElementTree.fromstring(junit_xml).iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]


def summarize(runs: list[dict]) -> dict[str, dict]:
    """Per family: inputs, valid inputs and how many of them succeeded, exit codes, slowest run."""
    out: dict[str, dict] = {}
    for name in dict.fromkeys(r["test"] for r in runs):
        mine = [r for r in runs if r["test"] == name]
        valid = [r for r in mine if r.get("valid")]
        out[name] = {"inputs": len(mine), "valid_inputs": len(valid), "valid_succeeded": sum(r["code"] == 0 for r in valid),
                     "exit_codes": dict(collections.Counter(str(r["code"]) for r in mine)), "max_seconds": max(r["seconds"] for r in mine)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=150, help="inputs per fuzz family")
    ap.add_argument("--process-examples", type=int, default=10, help="inputs per family that runs a child process per input")
    add_output_args(ap, "fuzz.json")
    args = ap.parse_args()
    args.out = result_path(args, "fuzz.json")
    with tempfile.TemporaryDirectory() as tmp:
        stats = Path(tmp) / "stats.jsonl"
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, "QFLOW_FUZZ_EXAMPLES": str(args.examples), "QFLOW_FUZZ_PROCESS_EXAMPLES": str(args.process_examples),
               "QFLOW_FUZZ_RANDOM": "1", "QFLOW_FUZZ_STATS": str(stats)}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(ROOT / "tests" / "test_fuzz.py"),
                               f"--junitxml={junit}"], cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        runs = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
        junit_text = junit.read_text() if junit.exists() else ""
    failed_tests = failed(junit_text)
    per_test = summarize(runs)
    payload = {
        "description": "hostile inputs to qflow's command line (Hypothesis, random seeds); invariants of tests/fuzzing.py; "
                       "valid inputs (by each family's oracle) must succeed",
        "command": f"python benchmarks/fuzz.py --examples {args.examples} --process-examples {args.process_examples}",
        "inputs_tried": len(runs),
        "valid_inputs": sum(t["valid_inputs"] for t in per_test.values()),
        "valid_succeeded": sum(t["valid_succeeded"] for t in per_test.values()),
        "tests_failed": failed_tests,
        "passed": proc.returncode == 0,
        "seconds": round(seconds, 1),
        "per_test": per_test,
        "pytest_tail": proc.stdout[-3000:] if proc.returncode else "",
    }
    print(json.dumps({k: payload[k] for k in ("inputs_tried", "valid_inputs", "valid_succeeded", "tests_failed", "passed", "seconds")}))
    write_results(args.out, payload)


if __name__ == "__main__":
    main()
