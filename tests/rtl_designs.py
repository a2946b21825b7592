"""Small FINN designs for the RTL simulation tests: one layer of each RTL kind, and a residual block.

Each layer starts as FINN's abstract HW op asking for the RTL variant and goes through
FINN's ``SpecializeLayers(part)``, so FINN's own rules decide whether the RTL variant is
legal (MVAU_rtl needs narrow-range weights on DSP48E1, VVAU_rtl a Versal part); FINN's
``PrepareIP`` then writes the HDL. Random weights and thresholds are enough: bit-exactness
does not need a trained network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from finn.transformation.fpgadataflow.minimize_accumulator_width import (
    MinimizeAccumulatorWidth,
)
from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.general import GiveUniqueNodeNames
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes

from flow.sim.execute import execute_batched
from flow.sim.rtlsim.layers import generate_hdl
from flow.sim.rtlsim.streams import in_stream_order

PARTS = {"DSP48E1": "xc7z020clg400-1", "DSP48E2": "xczu7ev-ffvc1156-2-e", "DSP58": "xcve2802-vsvh1760-2MP-e-S"}
CLK_NS = 10.0


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _model(nodes, inputs, outputs, dtypes, inits=None, name="g"):
    g = helper.make_graph(nodes, name, [_vi(n, s) for n, s in inputs], [_vi(n, s) for n, s in outputs])
    m = ModelWrapper(helper.make_model(g, producer_name="qflow-tests"))
    for t, dt in dtypes.items():
        m.set_tensor_datatype(t, DataType[dt])
    for t, (arr, dt) in (inits or {}).items():
        m.set_initializer(t, arr.astype(np.float32))
        m.set_tensor_datatype(t, DataType[dt])
    return m


def _hw(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, domain="finn.custom_op.fpgadataflow", backend="fpgadataflow", preferred_impl_style="rtl", **attrs)


def finish(model, part: str, build_dir: Path, *, specialize: bool = True):
    """Specialize (FINN's rules), name, and generate the HDL (FINN's PrepareIP)."""
    if specialize:
        model = model.transform(SpecializeLayers(part))
    model = model.transform(GiveUniqueNodeNames()).transform(InferShapes()).transform(InferDataTypes())
    return generate_hdl(model, part, CLK_NS, build_dir)


def random_batch(model, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """``n`` random samples of every graph input, over its FINN datatype's range."""
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        dt, shape = model.get_tensor_datatype(vi.name), model.get_tensor_shape(vi.name)
        if dt == DataType["BIPOLAR"]:
            out[vi.name] = rng.choice([-1.0, 1.0], size=(n, *shape[1:])).astype(np.float32)
        else:
            out[vi.name] = rng.integers(int(dt.min()), int(dt.max()) + 1, size=(n, *shape[1:])).astype(np.float32)
    return out


def python_outputs(model, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What FINN's Python semantics of ``model`` compute on ``batch`` (qflow's batched executor),
    in the element order of the RTL streams."""
    return in_stream_order(model, execute_batched(model, batch))


def thresholding(build_dir, C=16, PE=4, idt="INT8", odt="UINT2", vectors=(1, 4, 4), part=PARTS["DSP48E1"], seed=0):
    """Thresholding_rtl: C channels, 2**bits-1 sorted thresholds each, PE lanes."""
    rng = np.random.default_rng(seed)
    steps = 2 ** DataType[odt].bitwidth() - 1
    thr = np.sort(rng.integers(int(DataType[idt].min()), int(DataType[idt].max()) + 1, size=(C, steps)), axis=1)
    shape = list(vectors) + [C]
    n = _hw("Thresholding", ["x", "thr"], ["y"], NumChannels=C, PE=PE, numSteps=steps, inputDataType=idt,
            weightDataType=idt, outputDataType=odt, numInputVectors=list(vectors), ActVal=0)
    return finish(_model([n], [("x", shape)], [("y", shape)], {"x": idt, "y": odt}, {"thr": (thr, idt)}, "thresholding"), part, build_dir)


def fmpadding(build_dir, H=6, W=6, C=8, SIMD=2, pad=(1, 1, 1, 1), dt="UINT4", part=PARTS["DSP48E1"]):
    """FMPadding_rtl: zero padding (top, left, bottom, right) of an NHWC map."""
    oh, ow = H + pad[0] + pad[2], W + pad[1] + pad[3]
    n = _hw("FMPadding", ["x"], ["y"], ImgDim=[H, W], Padding=list(pad), NumChannels=C, SIMD=SIMD, inputDataType=dt, numInputVectors=1)
    return finish(_model([n], [("x", [1, H, W, C])], [("y", [1, oh, ow, C])], {"x": dt, "y": dt}, name="fmpadding"), part, build_dir)


def dwc(build_dir, shape=(1, 4, 24), in_width=12, out_width=32, dt="UINT4", part=PARTS["DSP48E1"]):
    """StreamingDataWidthConverter_rtl between two foldings of the same tensor (widths in bits)."""
    n = _hw("StreamingDataWidthConverter", ["x"], ["y"], inShape=list(shape), outShape=list(shape), inWidth=in_width, outWidth=out_width, dataType=dt)
    return finish(_model([n], [("x", list(shape))], [("y", list(shape))], {"x": dt, "y": dt}, name="dwc"), part, build_dir)


def fifo(build_dir, shape=(1, 8, 8), fold=4, depth=16, dt="INT4", part=PARTS["DSP48E1"]):
    """StreamingFIFO_rtl of ``depth`` words, ``fold`` elements per word."""
    folded = list(shape[:-1]) + [shape[-1] // fold, fold]
    n = _hw("StreamingFIFO", ["x"], ["y"], depth=depth, folded_shape=folded, normal_shape=list(shape), dataType=dt, impl_style="rtl")
    return finish(_model([n], [("x", list(shape))], [("y", list(shape))], {"x": dt, "y": dt}, name="fifo"), part, build_dir)


def swg(build_dir, H=8, W=8, C=4, K=3, stride=1, SIMD=2, depthwise=0, parallel=0, dt="UINT4", part=PARTS["DSP48E1"]):
    """ConvolutionInputGenerator_rtl (the im2col window stream) in FINN's NHWC layout."""
    oh, ow = (H - K) // stride + 1, (W - K) // stride + 1
    n = _hw("ConvolutionInputGenerator", ["x"], ["y"], ConvKernelDim=[K, K], IFMChannels=C, IFMDim=[H, W], OFMDim=[oh, ow],
            SIMD=SIMD, Stride=[stride, stride], Dilation=[1, 1], inputDataType=dt, outputDataType=dt, depthwise=depthwise,
            parallel_window=parallel)
    return finish(_model([n], [("x", [1, H, W, C])], [("y", [1, oh, ow, K * K * C])], {"x": dt, "y": dt}, name="swg"), part, build_dir)


def mvau(build_dir, MW=32, MH=16, SIMD=4, PE=4, idt="UINT4", wdt="INT4", vectors=(1, 2), part=PARTS["DSP48E1"], seed=0):
    """MVAU_rtl (no activation, narrow-range weights so DSP48E1 is legal), weights in a memstream."""
    rng = np.random.default_rng(seed)
    w = rng.integers(int(DataType[wdt].min()) + 1, int(DataType[wdt].max()) + 1, size=(MW, MH))
    n = _hw("MVAU", ["x", "w"], ["y"], MW=MW, MH=MH, SIMD=SIMD, PE=PE, inputDataType=idt, weightDataType=wdt, outputDataType="INT32",
            noActivation=1, numInputVectors=list(vectors), mem_mode="internal_decoupled", resType="dsp", binaryXnorMode=0)
    m = _model([n], [("x", list(vectors) + [MW])], [("y", list(vectors) + [MH])], {"x": idt, "y": "INT32"}, {"w": (w, wdt)}, "mvau")
    return finish(m.transform(MinimizeAccumulatorWidth()), part, build_dir)


def vvau(build_dir, C=8, K=3, dim=(4, 4), PE=2, SIMD=3, idt="UINT4", wdt="INT4", part=PARTS["DSP58"], seed=0):
    """VVAU_rtl (depthwise convolution MACs; FINN builds it for Versal DSP58 only), weights in a memstream."""
    rng = np.random.default_rng(seed)
    w = rng.integers(int(DataType[wdt].min()), int(DataType[wdt].max()) + 1, size=(C, 1, K, K))
    n = _hw("VVAU", ["x", "w"], ["y"], PE=PE, SIMD=SIMD, Dim=list(dim), Channels=C, Kernel=[K, K], inputDataType=idt, weightDataType=wdt,
            outputDataType="INT32", noActivation=1, mem_mode="internal_decoupled", resType="dsp")
    m = _model([n], [("x", [1, *dim, K * K * C])], [("y", [1, *dim, C])], {"x": idt, "y": "INT32"}, {"w": (w, wdt)}, "vvau")
    return finish(m.transform(MinimizeAccumulatorWidth()), part, build_dir)


def residual(C=32, rows=8, SIMD=8, PE=4, dt="UINT4", wdt="INT4", part=PARTS["DSP48E1"], seed=0):
    """A residual block: fork -> (a) identity, (b) MVAU_rtl + Thresholding_rtl -> ElementwiseAdd_rtl.

    The shape in which FIFO depth decides correctness, not only speed: branch (b) needs a
    whole C-element vector before its first output, and the add cannot take a word of (a)
    until (b) delivers one; if (a)'s FIFO holds fewer words than (b) needs, the fork stalls
    and nothing moves again. FINN specializes an int/int ElementwiseAdd to HLS; its RTL
    variant's integer path is selected explicitly here (and checked bit-exact alone).
    DuplicateStreams has no RTL variant; the stitcher's ``qf_fork`` stands in for it.
    Returns the specialized graph without FIFOs or converters.
    """
    rng = np.random.default_rng(seed)
    acc = "INT13"  # |x| <= 15, |w| <= 7, C = 32: |sum| <= 3360
    w = rng.integers(int(DataType[wdt].min()) + 1, int(DataType[wdt].max()) + 1, size=(C, C))
    steps = 2 ** DataType[dt].bitwidth() - 1
    thr = np.sort(rng.integers(-400, 400, size=(C, steps)), axis=1)
    odt = f"UINT{DataType[dt].bitwidth() + 1}"
    shape = [1, rows, C]
    nodes = [
        _hw("DuplicateStreams", ["x"], ["a", "b"], NumChannels=C, PE=1, NumOutputStreams=2, inputDataType=dt, numInputVectors=[1, rows]),
        _hw("MVAU", ["b", "w"], ["acc"], MW=C, MH=C, SIMD=SIMD, PE=PE, inputDataType=dt, weightDataType=wdt, outputDataType=acc,
            noActivation=1, numInputVectors=[1, rows], mem_mode="internal_decoupled", resType="dsp", binaryXnorMode=0),
        _hw("Thresholding", ["acc", "thr"], ["c"], NumChannels=C, PE=1, numSteps=steps, inputDataType=acc, weightDataType=acc,
            outputDataType=dt, numInputVectors=[1, rows], ActVal=0),
        _hw("ElementwiseAdd", ["a", "c"], ["y"], lhs_dtype=dt, rhs_dtype=dt, out_dtype=odt, lhs_shape=shape, rhs_shape=shape,
            out_shape=shape, PE=1),
    ]
    m = _model(nodes, [("x", shape)], [("y", shape)], {"x": dt, "a": dt, "b": dt, "acc": acc, "c": dt, "y": odt},
               {"w": (w, wdt), "thr": (thr, acc)}, "residual")
    for t in ("a", "b", "acc", "c"):
        m.graph.value_info.append(_vi(t, shape))
    m = m.transform(SpecializeLayers(part))
    for n in m.graph.node:
        if n.op_type.startswith("ElementwiseAdd"):
            n.op_type, n.domain = "ElementwiseAdd_rtl", "finn.custom_op.fpgadataflow.rtl"
    return m.transform(MinimizeAccumulatorWidth()).transform(GiveUniqueNodeNames()).transform(InferDataTypes())
