"""A pixel shuffle (``DepthToSpace``, PyTorch's ``nn.PixelShuffle``) at the end of a network runs on the host.

FINN has no hardware layer that moves channels into pixels. A sub-pixel convolution network
(ESPCN) ends ``conv -> PixelShuffle -> output quantizer``: the shuffle only reorders the
last conv's values, and the quantizer after it (its thresholds, scales and offsets) acts on
each value alone, so the two commute. :class:`MoveDepthToSpacePastElementwise` moves the
elementwise ops after the shuffle in front of it (a per-channel parameter of output channel
``c`` becomes the parameter of each of the ``r*r`` input channels that land in ``c``), and
:class:`MoveLinearPastDepthToSpace` moves a scale in front of it behind it the other way
(when it is the same over each such group). The shuffle then ends the graph, after the
accelerator, as a pure reordering of its output stream on the host. A shuffle between
layers stays, and :mod:`.mappable` refuses it naming the node.

>>> out_channel_of(8, 2, "CRD").tolist()
[0, 0, 0, 0, 1, 1, 1, 1]
>>> out_channel_of(8, 2, "DCR").tolist()
[0, 1, 0, 1, 0, 1, 0, 1]
"""

from __future__ import annotations

import numpy as np

from flow.compile.passes.graph import (
    MoveConstantPastUnaryOp,
    SweepTransformation,
    attr,
    channelwise_vector,
    compress,
    const_operand,
    materialize,
    sole_consumer,
)

SHUFFLE_OPS = ("DepthToSpace",)
#: Elementwise ops with at most per-channel constants that commute with a reordering of pixels.
ELEMENTWISE_OPS = ("MultiThreshold", "Mul", "Add", "Sub", "Div", "Relu")


def _mode(node) -> str:
    m = attr(node, "mode", b"DCR")
    return (m.decode() if isinstance(m, bytes) else str(m)).upper()


def out_channel_of(c_in: int, r: int, mode: str) -> np.ndarray:
    """For each input channel of a DepthToSpace with block ``r``, the output channel it lands in.

    ``CRD``: input channel ``c*r*r + k`` -> ``c``; ``DCR``: ``k*C + c`` -> ``c`` (``C = c_in / r^2``).
    """
    idx = np.arange(c_in)
    return idx // (r * r) if mode == "CRD" else idx % (c_in // (r * r))


def _groups(model, node):
    """``(out_channel_of, C_in)`` of a DepthToSpace node with a known input shape, else None."""
    shape = model.get_tensor_shape(node.input[0])
    if shape is None or len(shape) != 4:
        return None
    return out_channel_of(shape[1], int(attr(node, "blocksize", 1)), _mode(node)), shape[1]


class MoveLinearPastDepthToSpace(MoveConstantPastUnaryOp):
    """``D2S(x * c)`` -> ``D2S(x) * c'``: exact when ``c`` does not vary over the pixels and is the same
    for the ``r*r`` input channels of each output channel (a scalar, for instance)."""

    past = SHUFFLE_OPS

    def moved_constant(self, model, node, nxt, c, xshape):
        groups = _groups(model, nxt)
        full = materialize(c, xshape) if groups is not None else None
        if full is None:
            return None
        small = compress(full)
        if small.size == 1:
            return small.reshape(())
        vec = channelwise_vector(small, xshape, 1)
        if vec is None:
            return None
        dest, _ = groups
        out = np.zeros(dest.max() + 1, dtype=np.float32)
        out[dest] = vec
        return out.reshape(1, -1, 1, 1) if np.array_equal(out[dest], vec) else None


class MoveDepthToSpacePastElementwise(SweepTransformation):
    """``D2S -> op`` -> ``op' -> D2S`` for an elementwise ``op`` (thresholds, scale, offset, ReLU) whose
    parameters are per output channel at most: each input channel takes its output channel's."""

    def rewrite(self, ed, n):
        if n.op_type not in SHUFFLE_OPS:
            return
        nxt = sole_consumer(ed, n.output[0])
        groups = _groups(ed, n)
        if nxt is None or not ed.is_fresh(nxt) or groups is None or nxt.op_type not in ELEMENTWISE_OPS or nxt.input[0] != n.output[0]:
            return
        dest, _ = groups
        oshape = ed.get_tensor_shape(n.output[0])
        if nxt.op_type == "MultiThreshold":
            thr = ed.get_initializer(nxt.input[1])
            if thr is None or attr(nxt, "data_layout", b"") not in (b"", "", b"NCHW", "NCHW"):  # channels on axis 1
                return
            if thr.shape[0] > 1:
                ed.rewire_input(nxt, 1, ed.new_const(thr[dest]))
        elif nxt.op_type != "Relu":
            co = const_operand(ed, nxt)
            if co is None or co[0] != 0:
                return
            vec = channelwise_vector(np.asarray(co[2]), oshape, 1)
            if vec is None:
                return
            ed.rewire_input(nxt, 1, ed.new_const(vec[dest].reshape(1, -1, 1, 1) if vec.size > 1 else vec.reshape(())))
        ed.swap_unary(n, nxt)
