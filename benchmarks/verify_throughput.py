"""Verification throughput: samples/s of flow.sim.execute.execute_batched against FINN's
per-sample execute_onnx (execute_reference), at every stage of the flow.

Networks: qflow's TFC and CNV28 at w2a2 (untrained weights, BatchNorm calibrated so
activations vary), built with ``flow.builder.pipeline.build`` for a Pynq-Z1. Stages: qonnx, finn,
streamlined, hw, parent_hw (dataflow parent + HW child), hw_child (the partition alone),
specialized (*_hls/*_rtl child, run through the Python models), parent_specialized.

The reference is timed on a subset (``--ref-samples``) and its rate extrapolated; the
batched outputs are checked bit-exact against it on that subset (specialized stages
against the HW-layer stage, as FINN cannot run them without Vitis/Vivado).

    python benchmarks/verify_throughput.py --update [--samples 1000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_output_args, result_path, write_results  # noqa: E402

from flow.sim.execute import (  # noqa: E402
    describe_execution,
    execute_batched,
    python_fallback_nodes,
)
from flow.sim.reference import execute_reference  # noqa: E402

STAGES = ["qonnx", "finn", "streamlined", "hw", "parent_hw", "hw_child", "specialized", "parent_specialized"]
REFERENCE_OF = {"specialized": "hw_child", "parent_specialized": "parent_hw"}


def _flow_stages(name: str, workdir: Path) -> tuple[dict, tuple[int, ...]]:
    """Every stage of qflow's own flow for a registered model (untrained, BatchNorm calibrated)."""
    import torch
    from qonnx.core.modelwrapper import ModelWrapper

    from flow.builder.pipeline import build
    from flow.compile.steps import assemble_design
    from flow.core.config import build_config
    from flow.nn.export import export_qonnx
    from models import build_model

    torch.manual_seed(0)
    net = build_model(name, weight_bits=2, act_bits=2)
    shape = net.input_shape
    net.train()
    with torch.no_grad():  # BatchNorm statistics from a few batches, so activations vary
        for seed in range(4):
            net(torch.from_numpy(_images(64, shape, seed=seed)))
    onnx_path = workdir / f"{name}.onnx"
    export_qonnx(net, onnx_path, shape)
    result = build(onnx_path, build_config(target="pynq-z1", target_fps=100_000, verify_samples=0), workdir / "build")
    ck = result.checkpoints
    hw_child = ModelWrapper(str(ck["create_dataflow_partition"]))
    stages = {
        "qonnx": ModelWrapper(str(ck["qonnx"])),
        "finn": ModelWrapper(str(ck["set_input_datatype"])),
        "streamlined": ModelWrapper(str(ck["insert_label_select"])),
        "hw": ModelWrapper(str(ck["convert_to_hw"])),
        "parent_hw": assemble_design(hw_child, ck["create_dataflow_partition"]),
        "hw_child": hw_child,
        "specialized": ModelWrapper(str(result.design)),
        "parent_specialized": assemble_design(ModelWrapper(str(result.design)), result.design),
    }
    return stages, shape


def _images(n: int, shape, seed: int = 0) -> np.ndarray:
    """Random raw-pixel images (integers 0..255)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape)).astype(np.float32)


def _timed(fn, *args, repeats=1, **kwargs):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_network(label, workdir, n, n_ref, repeats):
    models, shape = _flow_stages(label, workdir)
    images = _images(n, shape, seed=7)
    rows, ref_outputs, total = [], {}, 0.0
    for stage in STAGES:
        model = models[stage]
        in_shape = model.get_tensor_shape(model.graph.input[0].name)
        x = images.reshape(n, *in_shape[1:])
        out = model.graph.output[0].name
        execute_batched(model, x[:2])  # warm-up: imports, first-call costs
        t_b, got = _timed(execute_batched, model, x, repeats=repeats)
        row = {"stage": stage, "nodes": len(model.graph.node), "samples": n,
               "batched_s": round(t_b, 4), "batched_samples_per_s": round(n / t_b, 1),
               "python_fallback_nodes": len(python_fallback_nodes(model)),
               "node_modes": dict(Counter(how.split(" (")[0] for _, _, how in describe_execution(model)))}
        if stage in REFERENCE_OF:
            ref = ref_outputs[REFERENCE_OF[stage]]
            row.update(reference="not runnable without Vitis/Vivado (cppsim/rtlsim); outputs compared "
                       f"with the {REFERENCE_OF[stage]} stage's reference")
        else:
            t_r, ref_all = _timed(execute_reference, model, x[:n_ref])
            ref = ref_outputs[stage] = ref_all[out]
            rate = n_ref / t_r
            row.update(reference_samples=n_ref, reference_s=round(t_r, 4),
                       reference_samples_per_s_extrapolated=round(rate, 1),
                       reference_s_extrapolated_to_samples=round(n / rate, 3),
                       speedup=round((n / t_b) / rate, 1))
        row["bit_exact_on_reference_subset"] = bool(np.array_equal(got[out][:n_ref], ref))
        rows.append(row)
        total += t_b if stage != "hw_child" else 0.0  # the partition alone: counted in parent_hw
        print(f"{label:9s} {stage:19s} batched {row['batched_samples_per_s']:9.1f}/s"
              + (f"  reference {row['reference_samples_per_s_extrapolated']:7.1f}/s  x{row['speedup']}"
                 if "speedup" in row else "  (python models)")
              + f"  exact={row['bit_exact_on_reference_subset']}", flush=True)
    return {"network": label, "input_shape": list(shape), "stages": rows,
            "all_stages_batched_s": round(total, 3)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "verify_throughput.json")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--ref-samples", type=int, default=100)
    ap.add_argument("--models", nargs="*", default=["tfc", "cnv28"], help="registered models, built at w2a2")
    ap.add_argument("--repeats", type=int, default=3, help="batched timing: best of this many runs")
    args = ap.parse_args()
    args.out = result_path(args, "verify_throughput.json")
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("finn").setLevel(logging.ERROR)
    n_ref = min(args.ref_samples, args.samples)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.models:
            work = Path(tmp) / label
            work.mkdir()
            results.append(bench_network(label, work, args.samples, n_ref, args.repeats))
    payload = {
        "benchmark": "verify_throughput",
        "description": "samples/s of flow.sim.execute.execute_batched vs per-sample FINN execute_onnx "
                       "(reference timed on a subset and extrapolated)",
        "timing": f"batched: best of {args.repeats} calls on all samples after a 2-sample warm-up, each "
                  "call including its plan (onnxruntime sessions, constants); reference: one pass",
        "cpu_model": _cpu_model(),
        "samples": args.samples,
        "reference_samples": n_ref,
        "results": results,
    }
    print(f"wrote {write_results(args.out, payload)}")


if __name__ == "__main__":
    main()
