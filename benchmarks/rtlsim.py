"""RTL simulation of whole designs (``qflow build --rtlsim``): TFC, a CNN and a depthwise-separable CNN.

Each network is built all-RTL where FINN allows it (``--standalone-thresholds --prefer-rtl``),
folded with FINN's SetFolding, and its generated RTL simulated with Verilator: every RTL
layer alone, every chain stitched with FINN's converters and FIFOs, FIFO depths sized from
simulated occupancy. Recorded per network: which layers were simulated (of the RTL ones),
FINN's and the measured cycles per layer and per chain, the chains' latency, the total
FIFO depth before (very deep) and after sizing, and the wall time of verilation and
simulation, cold (an empty model cache) and warm (the same build again). Untrained weights:
the RTL is compared bit for bit with the Python execution of the same design, which does
not need a trained network.

    python benchmarks/rtlsim.py --update  # -> benchmarks/results/rtlsim.json (about 20 minutes on 2 cores)
    python benchmarks/rtlsim.py --update --only cnv28-w2a2   # rerun one network, keep the other rows
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import brevitas.nn as qnn  # noqa: E402
import torch  # noqa: E402
from _common import add_output_args, result_path, write_results  # noqa: E402
from brevitas.quant import Int8WeightPerTensorFloat, Uint8ActPerTensorFloat  # noqa: E402
from torch import nn  # noqa: E402

from flow.builder.pipeline import build  # noqa: E402
from flow.core.config import build_config  # noqa: E402
from flow.nn.export import export_qonnx  # noqa: E402
from models import build_model  # noqa: E402

VCK190 = """name = "vck190"
display_name = "VCK190 (Versal AI Core)"
part = "xcvc1902-vsva2197-2MP-e-S"
finn_board = "VCK190"
shell = "alveo"
clock_mhz = 100.0
[resources]
lut = 899840
ff = 1799680
bram_18k = 1934
uram = 463
dsp = 1968
"""


class _Pixels(nn.Module):
    def forward(self, x):
        return x / 255.0


def depthwise_cnn(bits: int = 2) -> nn.Module:
    """Conv, depthwise 3x3, pointwise, depthwise 3x3 stride 2, conv, FC on 1x8x8 images (VVAU layers in FINN)."""
    torch.manual_seed(0)

    def conv(cin, cout, k, stride=1, pad=0, groups=1):
        return [qnn.QuantConv2d(cin, cout, k, stride=stride, padding=pad, groups=groups, bias=False,
                                weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits),
                nn.BatchNorm2d(cout), qnn.QuantReLU(bit_width=bits, return_quant_tensor=True)]

    return nn.Sequential(
        _Pixels(), qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=4, return_quant_tensor=True),
        *conv(1, 8, 3, pad=1), *conv(8, 8, 3, pad=1, groups=8), *conv(8, 16, 1), *conv(16, 16, 3, stride=2, pad=1, groups=16),
        *conv(16, 16, 4), nn.Flatten(),
        qnn.QuantLinear(16, 10, bias=False, weight_quant=Int8WeightPerTensorFloat, weight_bit_width=bits),
    ).eval()


CASES = [
    # (name, model, input shape, target, target FPS)
    ("tfc-w2a2", lambda: build_model("tfc", weight_bits=2, act_bits=2), (1, 28, 28), "pynq-z1", 100_000),
    # 4-bit weights are narrow-range, so FINN builds every MVAU as MVAU_rtl on the DSP48E1: one all-RTL chain
    ("tfc-w4a2", lambda: build_model("tfc", weight_bits=4, act_bits=2), (1, 28, 28), "pynq-z1", 100_000),
    ("cnv28-w2a2", lambda: build_model("cnv28", weight_bits=2, act_bits=2), (1, 28, 28), "pynq-z1", 2_500),
    ("depthwise-cnn-w2a2", depthwise_cnn, (1, 8, 8), "vck190", 400_000),
]


def _summary(report, seconds: float) -> dict:
    r = report.rtlsim
    stage = report.verification.stages[-1]
    layers = [{"name": x.name, "op_type": x.op_type, "pe": x.pe, "simd": x.simd, "finn_cycles": x.cycles, "sim_cycles": x.sim_cycles,
               "sim_note": x.sim_note, "lut": x.lut, "lut_basis": x.lut_basis} for x in report.layers]
    chains = [{"layers": c.layers, "nodes": c.nodes, "fifos": c.fifos, "dwcs": c.dwcs, "passed": c.passed,
               "finn_max_cycles": c.exp_cycles, "cycles_per_frame": c.cycles_per_frame, "deep_cycles_per_frame": c.deep_cycles_per_frame,
               "latency": c.latency, "deep_latency": c.deep_latency, "fifo_depth_deep": c.fifo_depth_deep,
               "fifo_depth_sized": c.fifo_depth_sized, "rate_kept": c.rate_kept, "backpressure_bit_exact": c.backpressure_bit_exact,
               "fifo_depths": c.fifo_depths, "note": c.note} for c in r.chains]
    return {"rtlsim_passed": r.passed, "bit_exact": stage.bit_exact, "samples": r.samples, "layers_hw": r.layers_hw,
            "layers_rtl": r.layers_rtl, "layers_simulated": r.layers_simulated, "finn_max_cycles": report.max_cycles,
            "fifo_depth_deep": sum(c.fifo_depth_deep for c in r.chains),
            "fifo_depth_sized": sum(c.fifo_depth_sized or 0 for c in r.chains),
            "verilate_s": r.verilate_s, "simulate_s": r.simulate_s, "rtlsim_stage_s": report.timings_s.get("rtlsim"),
            "build_s": round(seconds, 1), "lut_total": report.totals["lut"], "layers": layers, "chains": chains}


def run_case(name, make, in_shape, target, fps, work: Path) -> dict:
    onnx = export_qonnx(make(), work / f"{name}.onnx", in_shape)
    cfg = build_config(target=target, target_fps=fps, standalone_thresholds=True, prefer_rtl=True, rtlsim=True,
                       rtlsim_samples=8, verify_samples=8)
    runs = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        result = build(onnx, cfg, work / f"{name}-{label}")
        runs[label] = _summary(result.report, time.perf_counter() - t0)
        print(name, label, {k: v for k, v in runs[label].items() if k not in ("layers", "chains")}, flush=True)
    warm = runs["warm"]
    out = {**runs["cold"], "warm": {k: warm[k] for k in ("verilate_s", "simulate_s", "rtlsim_stage_s", "build_s")}}
    out.update(target=target, target_fps=fps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "rtlsim.json")
    ap.add_argument("--only", nargs="*", help="network names to run (default: all); the others' rows are kept from --out")
    args = ap.parse_args()
    args.out = result_path(args, "rtlsim.json")
    results = {}
    if args.only and args.out.exists():
        results = {k: v for k, v in json.loads(args.out.read_text()).get("networks", {}).items() if k not in args.only}
    with tempfile.TemporaryDirectory(prefix="qflow-bench-rtlsim-") as tmp:
        work = Path(tmp)
        (work / "vck190.toml").write_text(VCK190)
        os.environ["QFLOW_RTLSIM_CACHE"] = str(work / "model-cache")  # cold: nothing verilated before
        for name, make, in_shape, target, fps in CASES:
            if args.only and name not in args.only:
                continue
            board = str(work / "vck190.toml") if target == "vck190" else target
            results[name] = run_case(name, make, in_shape, board, fps, work)
            results[name]["target"] = target
            write_results(args.out, {"networks": results, "note": "cold: empty model cache; warm: the same build again, models from the cache. "
                                     "Wall times on a 2-core machine shared with other jobs (nice 5)."})


if __name__ == "__main__":
    main()
