"""Verification throughput: samples/s of flow.execute.execute_batched against FINN's
per-sample execute_onnx (execute_reference), at every stage of the flow.

Networks (untrained weights, BatchNorm calibrated so activations vary): a TFC-shaped
784-64-64-64-10 w2a2 MLP and a small w2a2 CNN on 28x28 inputs. Stages: qonnx, finn,
streamlined, hw, parent_hw (dataflow parent + HW child), hw_child (the partition alone),
specialized (*_hls/*_rtl child, run through the Python models), parent_specialized.

The reference is timed on a subset (``--ref-samples``) and its rate extrapolated; the
batched outputs are checked bit-exact against it on that subset (specialized stages
against the HW-layer stage, as FINN cannot run them without Vitis/Vivado).

    python benchmarks/verify_throughput.py --out benchmarks/results/verify_throughput.json [--samples 1000]
"""

from __future__ import annotations

import argparse
from collections import Counter
import importlib.util
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import RESULTS, write_results  # noqa: E402

from flow.execute import (  # noqa: E402
    describe_execution,
    execute_batched,
    execute_reference,
    python_fallback_nodes,
)

STAGES = ["qonnx", "finn", "streamlined", "hw", "parent_hw", "hw_child", "specialized", "parent_specialized"]
REFERENCE_OF = {"specialized": "hw_child", "parent_specialized": "parent_hw"}


def _stage_builder():
    """The stage-building helpers of tests/flow/test_execute.py (FINN's builder sequence)."""
    spec = importlib.util.spec_from_file_location("_qflow_test_execute", ROOT / "tests/flow/test_execute.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _tfc(helpers):
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Uint8ActPerTensorFloat

    layers = [helpers._Scale(), torch.nn.Flatten(),
              qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=2, return_quant_tensor=True)]
    prev = 784
    for width in (64, 64, 64):
        layers += [qnn.QuantLinear(prev, width, bias=False, weight_bit_width=2), torch.nn.BatchNorm1d(width),
                   qnn.QuantReLU(bit_width=2, return_quant_tensor=True)]
        prev = width
    layers.append(qnn.QuantLinear(prev, 10, bias=False, weight_bit_width=2))
    return torch.nn.Sequential(*layers), (1, 28, 28)


def _cnn(helpers):
    import brevitas.nn as qnn
    import torch
    from brevitas.quant import Uint8ActPerTensorFloat

    return torch.nn.Sequential(
        helpers._Scale(),
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=2, return_quant_tensor=True),
        qnn.QuantConv2d(1, 8, 3, bias=False, weight_bit_width=2), torch.nn.BatchNorm2d(8),
        qnn.QuantReLU(bit_width=2, return_quant_tensor=True),
        torch.nn.MaxPool2d(2),
        qnn.QuantConv2d(8, 16, 3, bias=False, weight_bit_width=2), torch.nn.BatchNorm2d(16),
        qnn.QuantReLU(bit_width=2, return_quant_tensor=True),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        qnn.QuantLinear(16 * 5 * 5, 10, bias=False, weight_bit_width=2),
    ), (1, 28, 28)


def _timed(fn, *args, repeats=1, **kwargs):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_network(label, net, shape, helpers, workdir, n, n_ref, repeats):
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    stages = helpers.build_stages(net, shape, workdir)
    sdp = stages["parent_hw"].get_nodes_by_op_type("StreamingDataflowPartition")[0]
    models = dict(stages, hw_child=ModelWrapper(getCustomOp(sdp).get_nodeattr("model")))
    images = helpers._images(n, shape, seed=7)
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
    ap.add_argument("--out", type=Path, default=RESULTS / "verify_throughput.json")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--ref-samples", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3, help="batched timing: best of this many runs")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("finn").setLevel(logging.ERROR)
    helpers = _stage_builder()
    n_ref = min(args.ref_samples, args.samples)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, make in (("tfc-w2a2", _tfc), ("cnn-w2a2", _cnn)):
            net, shape = make(helpers)
            work = Path(tmp) / label
            results.append(bench_network(label, net, shape, helpers, work, args.samples, n_ref, args.repeats))
    payload = {
        "benchmark": "verify_throughput",
        "description": "samples/s of flow.execute.execute_batched vs per-sample FINN execute_onnx "
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
