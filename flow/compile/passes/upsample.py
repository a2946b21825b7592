"""Nearest-neighbour upsampling (ONNX ``Resize``/``Upsample``) as FINN's ``UpsampleNearestNeighbour``.

FINN builds one upsampling layer: every pixel repeated ``rh x rw`` times (integer factors,
``NHWC``, integer data). A ``Resize`` qualifies when it computes exactly that, whatever its
``coordinate_transformation_mode``/``nearest_mode`` spell it as (PyTorch's ``nn.Upsample``,
Brevitas' ``QuantUpsamplingNearest2d``, 1D upsampling lifted by :mod:`.conv1d`): the check
runs the node itself on a ramp and compares with the repetition, so no attribute table can
be wrong. Streamlining then moves the scales in front of it past it
(:class:`MoveLinearPastNearestResize`, exact: a per-channel constant is repeated with the
pixels) and FINN's ``MakeScaleResizeNHWC`` turns it to ``NHWC`` between the lowered convs;
:func:`flow.compat.finn_upsample.infer_upsample_layers` makes it the HW layer.

>>> import numpy as np
>>> repeat_pixels(np.arange(4.0).reshape(1, 1, 2, 2), (1, 1, 2, 1))[0, 0].tolist()
[[0.0, 1.0], [0.0, 1.0], [2.0, 3.0], [2.0, 3.0]]
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper

from flow.compile.passes.graph import LINEAR_OPS, MoveConstantPastUnaryOp, attr, compress, materialize

UPSAMPLE_OPS = ("Resize", "Upsample")
#: Largest input (elements) the semantic check runs the node on.
MAX_CHECK_ELEMENTS = 1 << 22


def repeat_pixels(x: np.ndarray, factors) -> np.ndarray:
    """``x`` with every element repeated ``factors[i]`` times along axis ``i``."""
    for axis, f in enumerate(factors):
        if f != 1:
            x = np.repeat(x, int(f), axis=axis)
    return x


def _scales_input(node) -> int | None:
    """Index of the ``scales`` (or ``sizes``) input that fixes the output shape."""
    if node.op_type == "Upsample" or len(node.input) == 2:
        return 1
    for i in (2, 3):
        if i < len(node.input) and node.input[i]:
            return i
    return None


def repeat_factors(model: ModelWrapper, node) -> tuple[tuple[int, ...] | None, str | None]:
    """``(factors, None)`` when ``node`` repeats every element an integer number of times per axis
    (checked by executing it), else ``(None, why not)``."""
    mode = attr(node, "mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode != "nearest":
        return None, f"it interpolates (mode {mode!r}); FINN's UpsampleNearestNeighbour repeats pixels: use mode 'nearest'"
    idx = _scales_input(node)
    if idx is None or model.get_initializer(node.input[idx]) is None:
        return None, "its scales are computed at run time; FINN needs constant upsampling factors"
    ishape, oshape = model.get_tensor_shape(node.input[0]), model.get_tensor_shape(node.output[0])
    if not ishape or not oshape or len(ishape) != len(oshape):
        return None, "its input and output shapes are unknown"
    if any(o % i for i, o in zip(ishape, oshape)) or any(o < i for i, o in zip(ishape, oshape)):
        return None, f"it resizes {list(ishape)} to {list(oshape)}, not by integer factors >= 1; FINN repeats each pixel an integer number of times"
    factors = tuple(o // i for i, o in zip(ishape, oshape))
    # each axis resizes on its own: probe with the axes that keep their size (batch, channels) of length 1
    probe = [d if f != 1 else 1 for d, f in zip(ishape, factors)]
    if int(np.prod(probe)) > MAX_CHECK_ELEMENTS:
        return None, f"its upsampled plane ({int(np.prod(probe))} values) is too large to check"
    x = np.arange(int(np.prod(probe)), dtype=np.float32).reshape(probe)
    if not np.array_equal(run_alone(model, node, x, [p * f for p, f in zip(probe, factors)]), repeat_pixels(x, factors)):
        ctm = attr(node, "coordinate_transformation_mode", b"half_pixel")
        nm = attr(node, "nearest_mode", b"round_prefer_floor")
        dec = lambda v: v.decode() if isinstance(v, bytes) else str(v)  # noqa: E731
        return None, (
            f"with coordinate_transformation_mode {dec(ctm)!r} and nearest_mode {dec(nm)!r} it does not repeat each pixel "
            f"{'x'.join(map(str, factors))} times; export nn.Upsample(mode='nearest') with integer scale factors"
        )
    return factors, None


def run_alone(model: ModelWrapper, node, x: np.ndarray, out_shape) -> np.ndarray:
    """``node`` (a Resize/Upsample whose other inputs are constants) run by onnxruntime on ``x`` alone; a
    ``sizes`` input is set to ``out_shape``."""
    sizes = node.input[3] if node.op_type == "Resize" and len(node.input) > 3 else ""
    consts = [
        numpy_helper.from_array(np.asarray(out_shape, np.int64) if t == sizes else model.get_initializer(t), t)
        for t in node.input[1:] if t
    ]
    graph = helper.make_graph(
        [node], "probe", [helper.make_tensor_value_info(node.input[0], TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)], initializer=consts,
    )
    opset = model.get_opset_imports().get("", 13)
    probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=min(onnx.IR_VERSION, 10))
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {node.input[0]: x})[0]


def upsample_problem(model: ModelWrapper, node) -> str | None:
    """Why FINN cannot build ``node`` (a Resize/Upsample reading integers) as UpsampleNearestNeighbour; None if it can."""
    factors, why = repeat_factors(model, node)
    if factors is None:
        return why
    layout = model.get_tensor_layout(node.input[0]) or ["N", "C", "H", "W"][: len(factors)]
    repeated = [ax for ax, f in zip(layout, factors) if f != 1 and ax not in ("H", "W")]
    if repeated:
        return f"it repeats along the {'/'.join(map(str, repeated))} axis; FINN's UpsampleNearestNeighbour repeats pixels only"
    return None


class MoveLinearPastNearestResize(MoveConstantPastUnaryOp):
    """``Resize(x * c)`` -> ``Resize(x) * c`` (also for Add): exact for pixel repetition when ``c`` is
    constant along every upsampled axis (a scalar or per-channel scale or offset)."""

    linear_ops = LINEAR_OPS
    past = UPSAMPLE_OPS

    def moved_constant(self, model, node, nxt, c, xshape):
        factors, _ = repeat_factors(model, nxt)
        full = materialize(c, xshape) if factors is not None else None
        if full is None:
            return None
        small = compress(full)
        return None if any(small.shape[i] != 1 for i, f in enumerate(factors) if f != 1) else small
