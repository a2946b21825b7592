"""finn-plus 1.6.1 makes the layout Transpose at the end of an image network a hardware layer.

Its ``step_convert_to_hw`` runs ``InferShuffle`` on every ``Transpose`` but the graph's first
node (``infer_shuffle_skip_first``): the ``NHWC -> NCHW`` Transpose that an image output
(super-resolution, segmentation) ends with becomes a ``Shuffle`` layer, which FINN builds
only after a separate decomposition step and which buffers a whole frame to reorder it.
The host reads the accelerator's ``NHWC`` stream and can reorder it for free, as it does the
input. :class:`KeepOutputTransposeOnHost` turns such a ``Shuffle`` (a plain transpose whose
result reaches the graph output only through host nodes) back into an ONNX ``Transpose``
(``tests/compat/test_finn_upsample.py`` shows FINN still converts it).
"""

from __future__ import annotations

from onnx import helper
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation

from flow.core.vocab import is_hw_node


def is_plain_transpose(inst) -> bool:
    """A FINN ``Shuffle`` without the reshapes it may carry around its transpose."""
    a = inst.get_nodeattr
    return list(a("in_shape")) == list(a("transpose_in_shape")) and list(a("out_shape")) == list(a("transpose_out_shape"))


class KeepOutputTransposeOnHost(Transformation):
    """A trailing ``Shuffle`` that only transposes becomes the ONNX ``Transpose`` it was."""

    def apply(self, model):
        g = model.graph
        outputs = {o.name for o in g.output}
        consumers: dict[str, list] = {}
        for n in g.node:
            for t in n.input:
                consumers.setdefault(t, []).append(n)
        for i, n in enumerate(list(g.node)):
            if n.op_type != "Shuffle" or not is_plain_transpose(inst := getCustomOp(n)):
                continue
            readers = [c for o in n.output for c in consumers.get(o, [])]
            if any(is_hw_node(c) for c in readers) or not (readers or any(o in outputs for o in n.output)):
                continue
            host = helper.make_node("Transpose", list(n.input), list(n.output), name=n.name, perm=list(inst.get_nodeattr("perm")))
            g.node.remove(n)
            g.node.insert(i, host)
        return model, False
