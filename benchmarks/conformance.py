"""Conformance: FINN's builder and qflow side by side on every model of the corpus (tests/corpus).

    python benchmarks/conformance.py [--only NAME ...] [--update | --out FILE]

For each model, on this machine:

* FINN: finn-plus's own ``build_dataflow_cfg`` with its estimate-only steps, SetFolding towards
  ``--fps`` on the Pynq-Z1 part at 100 MHz, the input annotated as the case says (as FINN's
  docs do). It runs in a child process (FINN's builder redirects stdout and reconfigures
  logging) and gets its settings from a private temporary folder
  (:func:`flow.compat.finn.ensure_finn_settings`), never from a user-writable settings file.
  Recorded: builds or not (estimate reports written, no error logged), ``max_cycles``, LUT,
  the nodes FINN left on the host and the float layers it built (it only warns about both).
* qflow: ``qflow build`` with ``--fps`` (SetFolding, verified on the case's held-out inputs
  against the PyTorch outputs with ``--reference-outputs``) and with ``--auto`` (verified on
  random inputs). Recorded: builds, verified, ``max_cycles``, LUT, ties.

The full-size finn-examples networks of the corpus (``large``: ResNet-50, MobileNet-v1, ...,
minutes and gigabytes per build) run only with ``--large`` or ``--only``;
``benchmarks/finn_examples.py`` measures them. ``--table`` prints the README table from an
existing JSON without building anything.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _common import add_output_args, result_path, write_results  # noqa: E402

PART, CLOCK_NS, FPS, AUTO_SAMPLES = "xc7z020clg400-1", 10.0, 10_000, 100


def finn_child(case_name: str, model: Path, out: Path) -> dict:
    """One ``build_dataflow_cfg`` run (in a child process); its summary."""
    warnings.filterwarnings("ignore")
    from flow.compat.finn import build_steps, ensure_finn_settings

    ensure_finn_settings(out / "finn_tmp")
    build_steps()  # finn.xsi stubbed when Vivado is absent, as qflow does
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import (
        DataflowBuildConfig,
        DataflowOutputType,
        estimate_only_dataflow_steps,
    )
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper

    from tests.corpus.cases import BY_NAME

    case = BY_NAME[case_name]
    if case.input_dtype:  # FINN's docs annotate the input of a model that does not carry its type
        m = ModelWrapper(str(model))
        m.set_tensor_datatype(m.graph.input[0].name, DataType[case.input_dtype])
        model = out / "model_for_finn.onnx"
        m.save(str(model))
    cfg = DataflowBuildConfig(
        output_dir=str(out / "build"), synth_clk_period_ns=CLOCK_NS, fpga_part=PART, target_fps=FPS,
        steps=list(estimate_only_dataflow_steps), generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
    )
    t0 = time.perf_counter()
    try:
        build_dataflow_cfg(str(model), cfg)
    except Exception:  # noqa: BLE001, S110 - its last step writes metadata that needs XILINX_VIVADO; the reports decide
        pass
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    return _finn_summary(Path(cfg.output_dir), time.perf_counter() - t0)


def _finn_summary(build: Path, seconds: float) -> dict:
    log = (build / "build_dataflow.log").read_text(errors="replace") if (build / "build_dataflow.log").is_file() else ""
    steps = re.findall(r"Running step: (\w+) \[", log)
    errors = re.findall(r"(FINN (?:INTERNAL COMPILER )?ERROR: .*)", log)
    perf, res = build / "report" / "estimate_network_performance.json", build / "report" / "estimate_layer_resources.json"
    out: dict = {"builds": perf.is_file() and res.is_file() and not errors, "seconds": round(seconds, 1)}
    if out["builds"]:
        out["max_cycles"] = int(json.loads(perf.read_text())["max_cycles"])
        out["lut"] = round(float(json.loads(res.read_text())["total"].get("LUT", 0.0)))
    else:
        out["failed_step"] = steps[-1] if steps else None
        out["error"] = " ".join((errors[0] if errors else "").split())[:300] or None
    m = re.search(r"will not be mapped to the accelerator.*?: (.*)", log)
    out["host_nodes"] = [s.strip() for s in m.group(1).split(",")] if m else []
    m = re.search(r"use floating point operations in the graph: (.*?)\. Make sure", log)
    out["float_hw_layers"] = [s.strip() for s in m.group(1).split(",")] if m else []
    return out


def run_finn(case_name: str, model: Path, work: Path) -> dict:
    """FINN's builder on ``model`` in a child process; a result already in ``work`` (same export) is reused."""
    out = work / "finn" / case_name
    done = out / "result.json"
    if done.is_file() and done.stat().st_mtime > model.stat().st_mtime:
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, "--finn-child", case_name, str(model), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    last = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    if proc.returncode != 0 or not last:
        return {"builds": False, "error": f"child exited {proc.returncode}: {' '.join(proc.stderr.split())[-300:]}"}
    done.write_text(last[0])
    return json.loads(last[0])


def run_qflow(case, model: Path, work: Path, mode: str) -> dict:
    import numpy as np

    from flow.builder.pipeline import build
    from flow.core.config import build_config
    from flow.core.errors import QflowError, VerificationError

    out = work / "qflow" / f"{case.name}_{mode}"
    t0 = time.perf_counter()
    try:
        if mode == "fps":
            x, y = np.load(model.parent / "inputs.npy"), np.load(model.parent / "torch_outputs.npy")
            res = build(model, build_config(input_dtype=case.input_dtype, target_fps=FPS), out, verify_inputs=x, reference_outputs=y)
        else:
            res = build(model, build_config(input_dtype=case.input_dtype, auto=True, verify_samples=AUTO_SAMPLES), out)
        r = res.report
    except VerificationError as e:
        r = json.loads((out / "report.json").read_text())
        return {"builds": True, "verified": False, "max_cycles": r["max_cycles"], "lut": round(r["totals"]["lut"]), "error": str(e)[:300]}
    except QflowError as e:
        return {"builds": False, "verified": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
    v = r.verification
    return {
        "builds": True, "verified": v.passed, "max_cycles": r.max_cycles, "lut": round(r.totals["lut"]), "fits": r.fits,
        "ties": max((s.ties or 0) for s in v.stages), "samples": v.stages[0].samples, "seconds": round(time.perf_counter() - t0, 1),
    }


def totals(rows: list[dict]) -> dict:
    finn = [r for r in rows if r["finn"]["builds"]]
    ok = lambda r: all(r["qflow"][m]["builds"] and r["qflow"][m]["verified"] for m in ("fps", "auto"))  # noqa: E731
    return {
        "models": len(rows),
        "finn_builds": len(finn),
        "qflow_builds_and_verifies": sum(ok(r) for r in rows),
        "qflow_of_finn_buildable": sum(ok(r) for r in finn),
        "qflow_only": sum(ok(r) for r in rows if not r["finn"]["builds"]),
        "fps_max_cycles_equal_to_finn": sum(r["qflow"]["fps"].get("max_cycles") == r["finn"].get("max_cycles") for r in finn),
    }


def _num(v) -> str:
    return "-" if v is None else f"{v:,}"


def table(payload: dict) -> str:
    """The README table: every number comes from ``payload`` (conformance.json)."""
    lines = [
        "| model | FINN builds | FINN max_cycles | FINN LUT | qflow builds, verified | qflow max_cycles (--fps) | qflow LUT (--fps) | qflow max_cycles (--auto) | qflow LUT (--auto) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in payload["models"]:
        f, q, a = r["finn"], r["qflow"]["fps"], r["qflow"]["auto"]
        state = "yes, yes" if all(m["builds"] and m["verified"] for m in (q, a)) else f"{'yes' if q['builds'] else 'no'}, {'yes' if q.get('verified') else 'no'}"
        lines.append(
            f"| {r['name']} | {'yes' if f['builds'] else 'no (' + str(f.get('failed_step')) + ')'} | {_num(f.get('max_cycles'))} | {_num(f.get('lut'))} | "
            f"{state} | {_num(q.get('max_cycles'))} | {_num(q.get('lut'))} | {_num(a.get('max_cycles'))} | {_num(a.get('lut'))} |"
        )
    t = payload["totals"]
    lines.append("")
    lines.append(
        f"{t['models']} models: FINN builds {t['finn_builds']}; qflow builds and verifies {t['qflow_builds_and_verifies']} with --fps and --auto, "
        f"{t['qflow_of_finn_buildable']} of the {t['finn_builds']} FINN builds and {t['qflow_only']} FINN cannot build; "
        f"with --fps qflow's max_cycles equal FINN's on {t['fps_max_cycles_equal_to_finn']} of {t['finn_builds']}."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "conformance.json")
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all but the large ones)")
    ap.add_argument("--large", action="store_true",
                    help="also the full-size finn-examples networks (hours and gigabytes each; benchmarks/finn_examples.py measures them)")
    ap.add_argument("--work", type=Path, default=None, help="keep exports and build folders here, and reuse FINN's results found there (default: a temporary folder)")
    ap.add_argument("--table", action="store_true", help="print the README table of --out and exit")
    ap.add_argument("--finn-child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.out = result_path(a, "conformance.json")
    if a.finn_child:
        name, model, out = a.finn_child
        print(json.dumps(finn_child(name, Path(model), Path(out))))
        return
    if a.table:
        print(table(json.loads(a.out.read_text())))
        return
    import torch

    from tests.corpus.cases import BY_NAME, CASES, materialize

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    cases = [BY_NAME[n] for n in a.only] if a.only else [c for c in CASES if a.large or not c.large]
    with tempfile.TemporaryDirectory() as tmp:
        work = a.work or Path(tmp)
        rows = []
        for case in cases:
            model = materialize(case, work / "corpus" / case.name)
            row = {"name": case.name, "export": case.export, "input_dtype": case.input_dtype, "note": case.note}
            row["finn"] = run_finn(case.name, model, work)
            row["qflow"] = {mode: run_qflow(case, model, work, mode) for mode in ("fps", "auto")}
            rows.append(row)
            q = row["qflow"]
            print(f"{case.name:26s} FINN {'builds' if row['finn']['builds'] else 'fails '} {_num(row['finn'].get('max_cycles')):>8s} | "
                  f"qflow fps {q['fps']['builds']}/{q['fps']['verified']} {_num(q['fps'].get('max_cycles')):>8s} auto {q['auto']['builds']}/{q['auto']['verified']} "
                  f"{_num(q['auto'].get('max_cycles')):>8s}", flush=True)
    payload = {"fps": FPS, "part": PART, "clock_mhz": 1000 / CLOCK_NS, "auto_samples": AUTO_SAMPLES, "models": rows, "totals": totals(rows)}
    write_results(a.out, payload)
    print(table(payload))


if __name__ == "__main__":
    main()
