"""Transposed convolutions (``ConvTranspose``, Brevitas' ``QuantConvTranspose2d``) as FINN's pixel-padding deconv.

FINN builds a stride-``s`` transposed convolution as ``FMPadding_Pixel`` (``s - 1`` zeros
between the input pixels), a sliding window and an MVAU over the flipped kernel: its
``InferPixelPaddingDeconv`` lowers the ONNX node, but no FINN build step runs it and its
streamlining moves no scale past a ``ConvTranspose``. :class:`MoveScalarMulPastConvTranspose`
moves the input quantizer's scale behind it (exact: the op is linear; a per-channel input
scale would have to go into the integer weights, so it stays and is refused by name), and
:class:`LowerConvTranspose` applies FINN's lowering once every ``ConvTranspose`` reads
integers with integer weights, so that the streamlining after it absorbs the new layout
Transposes like a lowered conv's.
"""

from __future__ import annotations

from finn.transformation.fpgadataflow.infer_pixel_padding_deconv import InferPixelPaddingDeconv
from qonnx.transformation.base import Transformation

from flow.compile.passes.graph import MoveConstantPastUnaryOp, attr, is_integer, refresh


class MoveScalarMulPastConvTranspose(MoveConstantPastUnaryOp):
    """``ConvTranspose(x * c)`` -> ``ConvTranspose(x) * c`` for a scalar ``c``."""

    linear_ops = ("Mul",)
    past = ("ConvTranspose",)

    def moved_constant(self, model, node, nxt, c, xshape):
        return c.reshape(()) if c.size == 1 else None


def lowering_problem(node) -> str | None:
    """Why FINN's lowering would not compute ``node`` exactly (it pads every side alike, by ``k - 1 - pads[0]``,
    and knows no output padding, dilation or groups); None if it does."""
    pads = list(attr(node, "pads", [0, 0, 0, 0]))
    if attr(node, "group", 1) != 1:
        return "it is a grouped transposed conv; FINN lowers only group=1"
    if any(d != 1 for d in attr(node, "dilations", [1, 1])):
        return "it is dilated; FINN's pixel-padding deconv needs dilation 1"
    if any(p != 0 for p in attr(node, "output_padding", [0, 0])) or attr(node, "output_shape", None):
        return "it sets output_padding/output_shape; FINN's pixel-padding deconv gives the default output size only"
    if len(set(pads)) > 1 or (attr(node, "auto_pad", b"NOTSET") or b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return f"its padding {pads} differs between sides; FINN's pixel-padding deconv pads every side alike"
    return None


def lowerable(model, node) -> bool:
    """A 2D ConvTranspose on integers with constant integer weights that FINN's lowering computes exactly."""
    w = model.get_initializer(node.input[1]) if len(node.input) > 1 else None
    shape = model.get_tensor_shape(node.input[0])
    return (
        w is not None and w.ndim == 4 and shape is not None and len(shape) == 4 and lowering_problem(node) is None
        and len(node.input) == 2 and is_integer(model, node.input[0]) and is_integer(model, node.input[1])
    )


class LowerConvTranspose(Transformation):
    """FINN's ``InferPixelPaddingDeconv`` once every ConvTranspose is :func:`lowerable`."""

    def apply(self, model):
        nodes = model.get_nodes_by_op_type("ConvTranspose")
        if not nodes or not all(lowerable(model, n) for n in nodes):
            return model, False
        return refresh(model.transform(InferPixelPaddingDeconv())), True
