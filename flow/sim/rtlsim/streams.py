"""Tensors <-> AXI-stream words, with FINN's own packing (``finn.util.data_packing``).

A tensor at the edge of a simulated design streams in its consumer's (or producer's)
folded shape: the innermost folded axis is packed into one word, element 0 in the lowest
bits, as FINN's own testbenches do (``npy_to_rtlsim_input`` / ``rtlsim_output_to_npy``).
Bipolar values stream as binary (0 for -1), as in FINN.
"""

from __future__ import annotations

import numpy as np
from finn.util.data_packing import npy_to_rtlsim_input, rtlsim_output_to_npy
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp


def port(model, tensor: str, *, consumer: bool):
    """(FINN op instance, port index) of the node reading (``consumer``) or writing ``tensor``."""
    node = model.find_consumer(tensor) if consumer else model.find_producer(tensor)
    if node is None:
        raise ValueError(f"no node {'reads' if consumer else 'writes'} tensor {tensor}")
    names = list(node.input if consumer else node.output)
    return getCustomOp(node), names.index(tensor)


def words_per_frame(model, tensor: str, *, consumer: bool) -> int:
    """Stream words of one frame of ``tensor`` (its folded shape without the packed axis)."""
    inst, i = port(model, tensor, consumer=consumer)
    shape = inst.get_folded_input_shape(i) if consumer else inst.get_folded_output_shape(i)
    return int(np.prod(shape[:-1]))


def pack(model, tensor: str, batch: np.ndarray) -> list[int]:
    """The words carrying ``batch`` (samples first, each of ``tensor``'s shape) into its consumer."""
    inst, i = port(model, tensor, consumer=True)
    dt = inst.get_input_datatype(i)
    folded = list(inst.get_folded_input_shape(i))
    x = np.asarray(batch, dtype=np.float32).reshape([len(batch) * folded[0]] + folded[1:])
    if dt == DataType["BIPOLAR"]:
        x, dt = (x + 1) / 2, DataType["BINARY"]
    return npy_to_rtlsim_input(x, dt, inst.get_instream_width(i))


def unpack(model, tensor: str, words: list[int], frames: int) -> np.ndarray:
    """``frames`` samples of ``tensor`` (normal shape, batch axis first) from its producer's words."""
    inst, o = port(model, tensor, consumer=False)
    folded = list(inst.get_folded_output_shape(o))
    dt = inst.get_output_datatype(o)
    arr = rtlsim_output_to_npy(words, None, dt, [frames * folded[0]] + folded[1:], inst.get_outstream_width(o), dt.bitwidth())
    return arr.reshape([frames] + list(inst.get_normal_output_shape(o))[1:])


def in_stream_order(model, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``reference`` with each tensor in the element order its RTL stream carries.

    A depthwise ``ConvolutionInputGenerator_rtl`` interleaves its window's channels by SIMD
    (its consumer, a VVAU, computes PE channels at once); FINN's Python model of the plain op
    does not. As in FINN's own ``ConvolutionInputGenerator_rtl.execute_node``, the plain
    ``(K*K, C)`` order of each output pixel becomes ``(C/SIMD, K*K, SIMD)``. Other tensors are
    returned as they are.
    """
    out = dict(reference)
    for node in model.graph.node:
        if node.op_type != "ConvolutionInputGenerator_rtl" or node.output[0] not in out:
            continue
        inst = getCustomOp(node)
        if not inst.get_nodeattr("depthwise"):
            continue
        simd, ch = inst.get_nodeattr("SIMD"), inst.get_nodeattr("IFMChannels")
        kk = int(np.prod(inst.get_nodeattr("ConvKernelDim")))
        y = np.asarray(out[node.output[0]])
        lead = y.shape[:-1]
        out[node.output[0]] = y.reshape(*lead, kk, ch // simd, simd).swapaxes(-3, -2).reshape(y.shape)
    return out
