"""Rounding ties between QONNX and FINN-ONNX on MobileNet-v1 at 224x224 with finn-examples' pre-processing.

The network is Brevitas' ``quant_mobilenet_v1_4b`` (untrained: no registry serves ImageNet
weights), its BatchNorm statistics taken from seeded synthetic images, with finn-examples'
``x / 255``, ``- mean``, ``/ 0.226`` in front and a UINT8 input. It is exported to QONNX and
converted to FINN-ONNX by qflow's own steps (``qonnx_to_finn``, ``set_input_datatype``);
both stages run on the same images. For every image the script records the stages' largest
output difference, whether the pre-processing and the first conv's activations are
bit-identical in both, and what :func:`flow.sim.rounding.replay_roundings` finds: how many
values the stages round apart, in which quantizers, how far the first one is from its
rounding boundary in each stage, and the difference left after replaying them. Then
``verify_stages`` checks the two stages as a build does. The QONNX stage is then checked
against the network itself (:mod:`flow.nn.reference`), as exported and with one BatchNorm
bias channel moved (a wrong export), on outputs alone and quantizer by quantizer. With
``--build N``, the first N images also go through a whole ``--auto`` build for the ZCU104
with the network itself as the first stage, and every stage's check is recorded.

    python benchmarks/rounding_ties.py --update [--images 8] [--build 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import add_output_args, result_path, write_results  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), 0.226


def network():
    """quant_mobilenet_v1_4b behind finn-examples' pre-processing, BatchNorm statistics from synthetic images."""
    import torch
    from brevitas_examples.imagenet_classification.models import model_with_cfg
    from torch import nn

    class Preprocessed(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.register_buffer("mean", torch.tensor(MEAN).reshape(1, 3, 1, 1))

        def forward(self, x):
            return self.net((x / 255 - self.mean) / STD)

    torch.manual_seed(0)
    net, _ = model_with_cfg("quant_mobilenet_v1_4b", pretrained=None)
    model = Preprocessed(net).eval()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        for seed in range(4):
            model(torch.from_numpy(images(8, seed)))
    return model.eval()


def images(n: int, seed: int) -> np.ndarray:
    """Smooth synthetic photos: coarse random colours upsampled, noise, clipped to 0..255."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 3, 7, 7))
    fine = np.kron(coarse, np.ones((1, 1, 32, 32)))
    return np.clip(np.round(fine + rng.normal(0, 30, fine.shape)), 0, 255).astype(np.float32)


def stages(model, workdir: Path):
    """The QONNX (normalised) and FINN-ONNX stages of ``model`` through qflow's own steps."""
    from flow.compat.finn import ensure_finn_settings
    from flow.core.pipeline import BuildContext
    from flow.compile.load import load_onnx
    from flow.compile.normalize import normalize
    from flow.compile.steps import step_qonnx_to_finn, step_set_input_datatype
    from flow.core.config import build_config
    from flow.nn.export import export_qonnx
    from hw_targets import load_target

    path = workdir / "mobilenet_v1.onnx"
    export_qonnx(model, path, (3, 224, 224), "UINT8")
    qonnx = normalize(load_onnx(path))
    ensure_finn_settings(workdir / "finn_build")
    ctx = BuildContext(cfg=build_config(target="alveo-u250"), target=load_target("alveo-u250"), out_dir=workdir)
    finn = step_set_input_datatype(step_qonnx_to_finn(qonnx, ctx), ctx)
    return qonnx, finn


def first_quantized(model, x):
    """The pre-processed input and the first activation quantizer's output (dequantized)."""
    from flow.sim.execute import execute_batched
    from flow.sim.rounding import quantizers

    divs = [n for n in model.graph.node if n.op_type in ("Div", "Sub")][:3]
    q = quantizers(model)[0]
    out = q.out
    consumer = next((c for c in model.graph.node if out in c.input), None)
    if q.node.op_type == "MultiThreshold":  # FINN-ONNX: the Add/Mul after the thresholds dequantize
        while consumer is not None and consumer.op_type in ("Add", "Mul"):
            out = consumer.output[0]
            consumer = next((c for c in model.graph.node if out in c.input), None)
    got = execute_batched(model, x, outputs=[divs[-1].output[0], out])
    return got[divs[-1].output[0]], got[out]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_args(ap, "rounding_ties.json")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--build", type=int, default=0, help="images through a whole --auto build (0: none)")
    args = ap.parse_args()
    args.out = result_path(args, "rounding_ties.json")
    warnings.simplefilter("ignore")

    from flow.sim.rounding import quantizers, replay_roundings
    from flow.sim.verify import fit_inputs, run_float_stage, verify_stages

    t0 = time.time()
    x = images(args.images, 100)
    with tempfile.TemporaryDirectory() as tmp:
        model = network()
        qonnx, finn = stages(model, Path(tmp))
        convert_s = time.time() - t0
        pre_q, act_q = first_quantized(qonnx, x)
        pre_f, act_f = first_quantized(finn, x)
        out_q, out_f = run_float_stage("qonnx", qonnx, x), run_float_stage("finn_onnx", finn, x)
        rows = []
        for i in range(len(x)):
            one = x[i : i + 1]
            t = time.time()
            rep = replay_roundings(qonnx, finn, fit_inputs(qonnx, one), fit_inputs(finn, one))
            row = {
                "image": i,
                "max_abs_err": float(np.abs(out_q.logits[i] - out_f.logits[i]).max()),
                "preprocessing_identical": bool(np.array_equal(pre_q[i], pre_f[i])),
                "first_activations_identical": bool(np.array_equal(act_q[i], act_f[i])),
                "roundings_apart": None if rep is None else rep.flips,
                "in_quantizers": None if rep is None else list(rep.quantizers),
            }
            if rep is not None and rep.flips:
                again = run_float_stage("qonnx", rep.model, one).logits[0]
                row["max_abs_err_after_replay"] = float(np.abs(again - out_f.logits[i]).max())
                row.update(first_tie(qonnx, finn, one, rep.quantizers[0]))
            row["replay_s"] = round(time.time() - t, 2)
            rows.append(row)
            print(row, flush=True)
        v = verify_stages(x, float_stages=[("qonnx", qonnx), ("finn_onnx", finn)], integer_stages=[])
        pytorch = against_pytorch(model, qonnx, x)
        whole = whole_build(model, x[: args.build], Path(tmp)) if args.build else None
    check = v.stages[0]
    payload = {
        "network": "quant_mobilenet_v1_4b (untrained, BatchNorm on synthetic images) behind x/255, -mean, /0.226; 3x224x224 UINT8",
        "images": args.images,
        "quantizers": {"qonnx": len(quantizers(qonnx)), "finn_onnx": len(quantizers(finn))},
        "per_image": rows,
        "verification": {"passed": check.passed, "rounding_ties": check.rounding_ties, "first_mismatch": check.first_mismatch,
                         "max_abs_err": check.max_abs_err, "note": check.note},
        "qonnx_against_pytorch": pytorch,
        "seconds": {"export_and_convert": round(convert_s, 1), "total": round(time.time() - t0, 1)},
    }
    if whole is not None:
        payload["whole_build"] = whole
    print(write_results(args.out, payload))


def against_pytorch(model, qonnx, x) -> dict:
    """The QONNX stage against the network itself (``flow.nn.reference``), as exported and with one channel of the
    middle BatchNorm's bias moved by 0.05 (a wrong export): outputs alone, and with the quantizer-by-quantizer check."""
    import copy

    from qonnx.core.modelwrapper import ModelWrapper

    from flow.nn.reference import torch_reference
    from flow.sim.verify import compare_float, recorded_tie_finder, run_float_stage

    ref = torch_reference(model, x)
    wrong = ModelWrapper(copy.deepcopy(qonnx.model))
    norms = [n for n in wrong.graph.node if n.op_type == "BatchNormalization"]
    moved = norms[len(norms) // 2]
    bias = wrong.get_initializer(moved.input[2]).copy()
    bias[0] += 0.05
    wrong.set_initializer(moved.input[2], bias)
    rows = {}
    for name, graph in (("as_exported", qonnx), (f"bias_moved_in_{moved.name}", wrong)):
        t = time.time()
        cur = run_float_stage("qonnx", graph, x)
        alone = compare_float(cur, ref)
        check = compare_float(cur, ref, recorded_tie_finder(graph, x, cur, ref))
        rows[name] = {"max_abs_err": check.max_abs_err, "passed_on_outputs_alone": alone.passed, "passed": check.passed,
                      "rounding_ties": check.rounding_ties, "note": check.note, "seconds": round(time.time() - t, 1)}
        print(name, rows[name], flush=True)
    return {"images": len(x), **rows}


def whole_build(model, x, workdir: Path) -> dict:
    """Every verification stage of a whole --auto build (ZCU104) of ``model`` on ``x``, the network itself first."""
    from flow.builder import build
    from flow.core.config import build_config
    from flow.core.errors import VerificationError
    from flow.nn.reference import torch_reference
    from flow.nn.export import export_qonnx
    from flow.report.schema import Report

    path = workdir / "whole.onnx"
    export_qonnx(model, path, (3, 224, 224), "UINT8")
    t = time.time()
    try:
        build(path, build_config(target="zcu104", verify_samples=0, auto=True), workdir / "whole", verify_inputs=x,
              reference=torch_reference(model, x))
    except VerificationError:
        pass  # the report is written and names the stage
    report = Report.load(workdir / "whole" / "report.json")
    stages = [{k: getattr(s, k) for k in ("name", "reference", "passed", "max_abs_err", "bit_exact", "first_mismatch", "rounding_ties", "note")}
              for s in report.verification.stages]
    return {"images": len(x), "seconds": round(time.time() - t, 1), "timings_s": dict(report.timings_s), "stages": stages,
            "max_cycles": report.max_cycles, "lut": report.totals.get("lut")}


def first_tie(qonnx, finn, x, name):
    """Where the first value the stages round apart sits: its distance to the boundary in each stage, in steps."""
    from flow.sim.execute import execute_batched
    from flow.sim.rounding import quantizers

    q = next(q for q in quantizers(qonnx) if q.node.name == name)
    i = quantizers(qonnx).index(q)
    c = quantizers(finn)[i] if len(quantizers(finn)) == len(quantizers(qonnx)) else None
    a = execute_batched(qonnx, x, outputs=[q.inp, q.out])
    margin_q = q.margin(a[q.inp])
    if c is None:
        return {"first_quantizer": name}
    b = execute_batched(finn, x, outputs=[c.inp, c.out])
    lq, lc = q.levels(a[q.out]), c.levels(b[c.out])
    diff = lq != lc - np.median(lc - lq)
    pos = tuple(int(v) for v in np.argwhere(diff)[0]) if diff.any() else None
    return {
        "first_quantizer": name, "position": pos,
        "steps_from_boundary_qonnx": float(margin_q[pos]) if pos else None,
        "steps_from_boundary_finn_onnx": float(c.margin(b[c.inp])[pos]) if pos else None,
    }


if __name__ == "__main__":
    main()
