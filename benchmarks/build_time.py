"""Build time from a QONNX file to report.json, for TFC and CNV (untrained weights: the
build does not depend on weight values).

    python benchmarks/build_time.py --update      # -> benchmarks/results/build_time.json (default: results/.scratch/)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_output_args, result_path, write_results  # noqa: E402

from flow.builder.pipeline import build  # noqa: E402
from flow.core.config import build_config  # noqa: E402
from flow.nn.export import export_qonnx  # noqa: E402
from models import build_model  # noqa: E402

CASES = [
    # (label, model, weight_bits, act_bits, target_fps)
    ("tfc-w2a2", "tfc", 2, 2, 1_000_000),
    ("tfc-w1a1", "tfc", 1, 1, 1_000_000),
    ("cnv-w1a1", "cnv", 1, 1, 3_000),
    ("cnv-w2a2", "cnv", 2, 2, 3_000),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "build_time.json")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    args.out = result_path(args, "build_time.json")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, wb, ab, fps in CASES:
            model = build_model(name, weight_bits=wb, act_bits=ab)
            onnx_path = Path(tmp) / f"{label}.onnx"
            export_qonnx(model, onnx_path, model.input_shape)
            times, report = [], None
            for i in range(args.repeats):
                t0 = time.perf_counter()
                result = build(onnx_path, build_config(target="pynq-z1", target_fps=fps, verify_samples=0), Path(tmp) / f"{label}-{i}")
                times.append(time.perf_counter() - t0)
                report = result.report
            rows.append({
                "case": label, "target_fps": fps, "repeats": args.repeats,
                "build_seconds_median": statistics.median(times), "build_seconds": times,
                "step_seconds": dict(report.timings_s), "layers": len(report.layers),
                "estimated_fps": report.throughput_fps, "lut": report.totals["lut"],
            })
            print(f"{label}: {statistics.median(times):.2f} s (median of {args.repeats})")
    write_results(args.out, {"benchmark": "build_time", "what": "QONNX file -> report.json, estimates stage, no verification", "rows": rows})


if __name__ == "__main__":
    main()
