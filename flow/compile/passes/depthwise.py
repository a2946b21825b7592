"""Per-channel scales through lowered depthwise convs (Im2Col + MatMul with block-diagonal weights).

A MobileNet-style depthwise conv reads an activation with per-channel scales. FINN's
``MoveScalesPastIm2Col`` and ``MoveScalarMulPastMatMul`` move scalars only, so the lowered
conv reads floats and stays an ONNX node. The scale can move exactly: Im2Col copies
channels, and a depthwise conv never mixes channels.
"""

from __future__ import annotations

import numpy as np

from flow.compile.passes.graph import (
    MoveConstantPastUnaryOp,
    SweepTransformation,
    attr,
    channelwise_vector,
    const_operand,
    sole_consumer,
)


class MoveChannelwiseMulPastIm2Col(MoveConstantPastUnaryOp):
    """Move a per-channel Mul (NHWC, constant over N, H, W) past the Im2Col it feeds.

    Im2Col copies each pixel's C channels into every kernel-window position, channel
    innermost ((kh, kw, C) order), so the scale moves as the channel vector tiled kh*kw
    times. Padding inserts ``pad_value``, which must then be 0 (0 * c = 0). Scalars are left
    to FINN's ``MoveScalesPastIm2Col``.
    """

    linear_ops = ("Mul",)
    past = ("Im2Col",)

    def moved_constant(self, model, node, nxt, c, xshape):
        vec = channelwise_vector(c, xshape, -1) if c.size > 1 and len(xshape) == 4 else None
        if vec is None or (any(attr(nxt, "pad_amount", [0, 0, 0, 0])) and attr(nxt, "pad_value", 0) != 0):
            return None
        kh, kw = attr(nxt, "kernel_size")
        return np.tile(vec, kh * kw).reshape(1, 1, 1, -1)


def per_output_scale(W: np.ndarray, v: np.ndarray) -> np.ndarray | None:
    """u with ``(x * v) @ W == (x @ W) * u``, or None when some output column reads inputs of different scale.

    Exact when v[i] == u[o] wherever W[i, o] != 0 (a depthwise or grouped conv with
    group-constant scales).

    >>> per_output_scale(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([0.5, 0.25]))
    array([0.5 , 0.25], dtype=float32)
    >>> per_output_scale(np.array([[1.0, 1.0], [1.0, 2.0]]), np.array([0.5, 0.25])) is None
    True
    """
    u = np.ones(W.shape[1], dtype=np.float32)
    for o in range(W.shape[1]):
        rows = np.nonzero(W[:, o])[0]
        if rows.size == 0:
            continue
        if not np.all(v[rows] == v[rows[0]]):
            return None
        u[o] = v[rows[0]]
    return u


class MoveMulPastDepthwiseMatMul(SweepTransformation):
    """Move a Mul with a per-input-feature constant past a MatMul whose weights never mix scales.

    ``(x * v) @ W -> (x @ W) * u``, checked on the actual weights (:func:`per_output_scale`):
    it covers a lowered depthwise conv (v: the channel scales tiled over the window), grouped
    convs with group-constant scales, and refuses dense weights. (FINN's ``MoveMulPastDWConv``
    works only on an unlowered Conv, which FINN's ``step_streamline`` has lowered by then,
    and ignores the channel multiplier.)
    """

    def rewrite(self, ed, n):
        co = const_operand(ed, n) if n.op_type == "Mul" else None
        mm = sole_consumer(ed, n.output[0]) if co is not None else None
        if mm is None or mm.op_type != "MatMul" or mm.input[0] != n.output[0] or not ed.is_fresh(mm):
            return
        dyn, _, c = co
        W = ed.get_initializer(mm.input[1])
        xshape = ed.get_tensor_shape(n.input[dyn])
        oshape = ed.get_tensor_shape(mm.output[0])
        if W is None or W.ndim != 2 or np.asarray(c).size == 1 or xshape is None or oshape is None:
            return
        v = channelwise_vector(c, xshape, -1)
        u = per_output_scale(W, v) if v is not None else None
        if u is None:
            return
        out, mid = mm.output[0], ed.new_name()
        ed.rewire_input(mm, 0, n.input[dyn])
        ed.rewire_output(mm, 0, mid)
        ed.set_inputs(n, [mid, ed.new_const(u.reshape([1] * (len(oshape) - 1) + [-1]))])
        ed.rewire_output(n, 0, out)
        ed.forget(out)
        ed.touch(n, mm)
