"""1D convolutions, pools and resizes as their 2D forms with a unit width: ``(N, C, L)`` becomes ``(N, C, L, 1)``.

FINN lowers, slides windows over and pools only 4D ``NCHW`` tensors; a Brevitas
``QuantConv1d``/``MaxPool1d``/``AvgPool1d``/``Upsample`` exports 3D tensors and 1D
attributes, which FINN's lowering cannot read. FINN's own answer is qonnx's
``Change3DTo4DTensors`` on a FINN-ONNX graph (finn-examples' VGG10-RadioML build runs it as a
custom step), but it lifts every 3D tensor of the graph, applies to a fixed list of ops only
(no ``Quant``, ``Relu``, ``Pad``, ``Concat``, global pools ...; anything else and it does
nothing, with a warning) and lifts constants only when they are rank 3.

:class:`Lift1DTo2D` runs on the QONNX graph, before FINN's conversion. It lifts the *region*
of 3D tensors connected to a 1D spatial op (conv, pool, resize) through ops that compute the
same values on the lifted tensor, rewrites those ops' attributes and constants, and leaves
everything else as it was: a 3D tensor outside the region (a dense layer over the last axis,
say) keeps its rank, and a region tensor that such an op reads is reshaped back to 3D for it.
One pass over the graph, with producer and consumer maps built once.

>>> Lift1DTo2D.lifted_pads([1, 2])
[1, 0, 2, 0]
"""

from __future__ import annotations

from collections import deque

import itertools

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import get_by_name

#: Ops with a 1D spatial form whose attributes get a unit second spatial axis.
SPATIAL_OPS = frozenset("Conv ConvTranspose MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool Resize Upsample".split())
#: Elementwise ops with one data input and no constant operands.
UNARY_OPS = frozenset(
    "Relu LeakyRelu Sigmoid HardSigmoid HardSwish Tanh Abs Neg Exp Log Sqrt Erf Round Floor Ceil Sign Identity "
    "Softplus Softsign Elu Selu Celu Gelu Not Cast Reciprocal".split()
)
#: Elementwise ops whose inputs all broadcast against each other (numpy rules).
BROADCAST_OPS = frozenset(
    "Mul Add Sub Div Pow Max Min Sum Mean PRelu Where Equal Greater Less GreaterOrEqual LessOrEqual And Or Xor Mod".split()
)
#: Quantizers: which inputs broadcast against the data (the rest, bit widths, are scalars).
QUANT_INPUTS = {"Quant": (0, 1, 2), "BipolarQuant": (0, 1), "Trunc": (0, 1, 2), "IntQuant": (0, 1, 2)}
#: Ops that normalise along the channel axis (their parameters are per channel, unchanged).
CHANNEL_OPS = frozenset(["BatchNormalization", "MultiThreshold", "Clip"])
#: Ops with an ``axis`` attribute that counts in the 3D rank.
AXIS_OPS = frozenset("Concat Split Softmax LogSoftmax Hardmax ArgMax ArgMin TopK".split())
REDUCE_OPS = frozenset("ReduceMean ReduceMax ReduceMin ReduceSum ReduceProd ReduceL1 ReduceL2 ReduceSumSquare".split())
#: Ops that read a lifted tensor as it is (the data order is unchanged), once a negative axis is made positive.
READERS = frozenset(["Flatten", "Reshape"])
LIFTABLE = SPATIAL_OPS | UNARY_OPS | BROADCAST_OPS | set(QUANT_INPUTS) | CHANNEL_OPS | AXIS_OPS | REDUCE_OPS | {"Transpose", "Pad"}


def _attr(node, name):
    return get_by_name(node.attribute, name)


def _set_ints(node, name, values) -> None:
    a = _attr(node, name)
    if a is not None:
        del a.ints[:]
        a.ints.extend(int(v) for v in values)


class Lift1DTo2D(Transformation):
    """Lift 1D convs, pools and resizes, and the 3D tensors around them, to 2D with a unit width.

    Every changed op computes the values it computed before with a trailing axis of length 1;
    the graph's inputs and outputs in the region become 4D the same way (same data order, so a
    batch reshaped to the new input shape gives the old outputs reshaped).
    """

    @staticmethod
    def lifted_pads(pads) -> list[int]:
        """ONNX pads ``[b0, .., e0, ..]`` with a zero begin and end for the new last axis."""
        pads = [int(p) for p in pads]
        half = len(pads) // 2
        return pads[:half] + [0] + pads[half:] + [0]

    def apply(self, model: ModelWrapper):
        g = model.graph
        self.shapes = self._shapes(g)
        if any(t and t not in self.shapes for n in g.node for t in n.output):
            model = model.transform(InferShapes())
            g = model.graph
            self.shapes = self._shapes(g)
        self.model = model
        self.init_protos = {t.name: t for t in g.initializer}
        self.inits = set(self.init_protos)
        self.dtypes = {a.tensor_name: a for a in g.quantization_annotation}
        taken = self.inits | set(self.shapes) | {t for n in g.node for t in [*n.input, *n.output]}
        self.fresh = (name for i in itertools.count() if (name := f"lift1d_{i}") not in taken)
        self.nodes = list(g.node)  # kept, so each node's id() stays its own
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for t in n.input:
                self.consumers.setdefault(t, []).append(n)
        self.after: dict[int, list] = {}  # nodes to insert after a node (by id), in order
        self.front: list = []
        self.weights: set[str] = set()  # quantized conv weights lifted in place (their shape gains the unit axis)

        region, lifted = self._grow()
        if not region:
            return model, False
        for node in lifted:
            self._lift_node(node)
        self._rewire_borders(region, {id(n) for n in lifted})
        self._place_new_nodes()
        for vi in [*g.input, *g.value_info, *g.output]:
            if (vi.name in region or vi.name in self.weights) and len(vi.type.tensor_type.shape.dim) == 3:
                vi.type.tensor_type.shape.dim.add().dim_value = 1
        self._drop_unused_initializers()
        return model, False

    @staticmethod
    def _shapes(g) -> dict[str, list[int]]:
        return {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in [*g.input, *g.value_info, *g.output]}

    def _drop_unused_initializers(self) -> None:
        """Remove the constants the lift replaced (one rebuild of the initializer list)."""
        g = self.model.graph
        used = {t for n in g.node for t in n.input} | {o.name for o in g.output}
        if all(t.name in used for t in g.initializer):
            return
        keep = [t for t in g.initializer if t.name in used]
        gone = {t.name for t in g.initializer} - used
        del g.initializer[:]
        g.initializer.extend(keep)
        infos = [vi for vi in g.value_info if vi.name not in gone]
        del g.value_info[:]
        g.value_info.extend(infos)

    # --- which tensors and nodes ---------------------------------------------------------

    def _rank(self, t: str) -> int | None:
        s = self.shapes.get(t)
        return None if s is None else len(s)

    def _data_inputs(self, node) -> list[str]:
        """The inputs of ``node`` that carry data (not parameters), initializers excluded."""
        op = node.op_type
        if op in QUANT_INPUTS or op in SPATIAL_OPS or op in CHANNEL_OPS or op in REDUCE_OPS or op in ("Pad", "TopK", "Split"):
            ins = node.input[:1]
        else:
            ins = node.input
        return [t for t in ins if t and t not in self.inits]

    def _grow(self):
        """The region of 3D tensors joined to a 1D spatial op through liftable ops, and those ops in graph order."""
        region: set[str] = set()
        lifted: set[int] = set()
        todo = deque(n for n in self.nodes if n.op_type in SPATIAL_OPS and n.input and self._rank(n.input[0]) == 3)
        while todo:
            node = todo.popleft()
            if id(node) in lifted:
                continue
            tensors = [t for t in [*self._data_inputs(node), *node.output] if t and self._rank(t) == 3]
            if not tensors:
                continue
            lifted.add(id(node))
            for t in tensors:
                if t in region:
                    continue
                region.add(t)
                p = self.producer.get(t)
                if p is not None and p.op_type in LIFTABLE:
                    todo.append(p)
                todo.extend(c for c in self.consumers.get(t, []) if c.op_type in LIFTABLE)
        return region, [n for n in self.nodes if id(n) in lifted]

    # --- rewriting one op ------------------------------------------------------------------

    def _value(self, name: str) -> np.ndarray | None:
        proto = self.init_protos.get(name) if name else None
        return None if proto is None else numpy_helper.to_array(proto)

    def _new_init(self, value) -> str:
        name = next(self.fresh)
        proto = numpy_helper.from_array(np.asarray(value), name)
        self.model.graph.initializer.append(proto)
        self.model.graph.value_info.append(helper.make_tensor_value_info(name, proto.data_type, list(proto.dims)))
        self.init_protos[name] = proto
        self.inits.add(name)
        return name

    def _copy_datatype(self, src: str, dst: str) -> None:
        """Give ``dst`` the QONNX datatype annotation of ``src`` (none if it has none)."""
        ann = self.dtypes.get(src)
        if ann is not None:
            new = self.model.graph.quantization_annotation.add()
            new.CopyFrom(ann)
            new.tensor_name = dst
            self.dtypes[dst] = new

    def _lifted_const(self, name: str) -> str:
        """A new initializer holding ``name``'s value with a trailing unit axis (a scalar stays as it is)."""
        v = self._value(name)
        if v is None or v.ndim == 0:
            return name
        return self._new_init(v.reshape(*v.shape, 1))

    def _lift_node(self, node) -> None:
        op = node.op_type
        positions = QUANT_INPUTS.get(op, range(len(node.input)) if op in BROADCAST_OPS else ())
        for i in positions:
            t = node.input[i] if i < len(node.input) else ""
            if t in self.inits:
                node.input[i] = self._lifted_const(t)
            elif t and self._rank(t) in (1, 2):  # a lower-rank dynamic operand keeps broadcasting right-aligned
                node.input[i] = self._reshape(t, [*self.shapes[t], 1], after=self.producer.get(t))
        if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"):
            for name, unit in (("kernel_shape", 1), ("strides", 1), ("dilations", 1), ("output_padding", 0), ("output_shape", 1)):
                a = _attr(node, name)
                if a is not None and len(a.ints) == 1:
                    a.ints.append(unit)
            pads = _attr(node, "pads")
            if pads is not None and len(pads.ints) == 2:
                _set_ints(node, "pads", self.lifted_pads(pads.ints))
            if op in ("Conv", "ConvTranspose"):
                node.input[1] = self._lifted_weight(node.input[1])
        elif op in ("Resize", "Upsample"):
            self._lift_resize(node)
        elif op in AXIS_OPS:
            a = _attr(node, "axis")
            if a is not None and a.i < 0:
                a.i += 3
        elif op in REDUCE_OPS:
            self._lift_reduce(node)
        elif op == "Transpose":
            perm = _attr(node, "perm")
            if perm is not None:
                perm.ints.append(3)
        elif op == "Pad":
            self._lift_pad(node)

    def _lifted_weight(self, w: str) -> str:
        """A conv weight with a unit kernel width: a new initializer, or the quantizer producing it lifted
        (its weight, scale and zero point, so FINN still reads the weight's quantization), or else a
        Reshape in front of the conv."""
        if w in self.inits:
            return self._lifted_const(w)
        p = self.producer.get(w)
        if (
            p is not None and p.op_type in QUANT_INPUTS and len(self.consumers.get(w, [])) == 1
            and all(t in self.inits for t in p.input if t)
        ):
            for i in QUANT_INPUTS[p.op_type]:
                if i < len(p.input) and p.input[i]:
                    p.input[i] = self._lifted_const(p.input[i])
            self.weights.add(w)
            return w
        return self._reshape(w, [*self.shapes[w], 1], after=p)

    def _lift_resize(self, node) -> None:
        """A unit scale (or the unit size) for the new axis; a ``roi`` gets ``[0, 1]`` for it."""
        idx = [1] if node.op_type == "Upsample" or len(node.input) == 2 else [i for i in (2, 3) if i < len(node.input)]
        for i in idx:
            v = self._value(node.input[i])
            if v is not None and v.size:
                node.input[i] = self._new_init(np.append(v, np.asarray(1, dtype=v.dtype)))
        roi = self._value(node.input[1]) if node.op_type == "Resize" and len(node.input) > 2 else None
        if roi is not None and roi.size == 6:
            node.input[1] = self._new_init(np.concatenate([roi[:3], [0], roi[3:], [1]]).astype(roi.dtype))

    def _lift_reduce(self, node) -> None:
        """Negative axes counted in 3D; with ``keepdims=0`` the unit axis is reduced as well."""
        keep = _attr(node, "keepdims")
        extra = [3] if keep is not None and keep.i == 0 else []
        a = _attr(node, "axes")
        if a is not None:
            _set_ints(node, "axes", [x % 3 for x in a.ints] + extra)
            return
        v = self._value(node.input[1]) if len(node.input) > 1 else None
        if v is not None:
            node.input[1] = self._new_init(np.asarray([int(x) % 3 for x in v.reshape(-1)] + extra, dtype=np.int64))

    def _lift_pad(self, node) -> None:
        a = _attr(node, "pads")
        if a is not None:
            _set_ints(node, "pads", self.lifted_pads(a.ints))
            return
        axes = self._value(node.input[3]) if len(node.input) > 3 else None
        if axes is not None:  # pads given for the listed axes only
            node.input[3] = self._new_init(axes.astype(np.int64) % 3)
            return
        v = self._value(node.input[1]) if len(node.input) > 1 else None
        if v is not None:
            node.input[1] = self._new_init(np.asarray(self.lifted_pads(v.reshape(-1)), dtype=np.int64))

    # --- the region's border -----------------------------------------------------------------

    def _insert_after(self, anchor, node) -> None:
        if anchor is None:
            self.front.append(node)
        else:
            self.after.setdefault(id(anchor), []).append(node)

    def _reshape(self, src: str, shape, after=None) -> str:
        """A new tensor: ``src`` reshaped to ``shape`` by a Reshape placed after ``after`` (else first)."""
        out = next(self.fresh)
        self._insert_after(after, helper.make_node("Reshape", [src, self._new_init(np.asarray(shape, dtype=np.int64))], [out], name=f"Reshape_{out}"))
        self.model.graph.value_info.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, list(shape)))
        self._copy_datatype(src, out)
        return out

    def _rewire_borders(self, region: set[str], inside: set[int]) -> None:
        """A region tensor made by an op outside the region is made in 3D and reshaped; one read by an op
        outside it is reshaped back to 3D for that op (Flatten and Reshape read it as it is)."""
        for t in sorted(region):
            shape3 = self.shapes[t]
            p = self.producer.get(t)
            if p is not None and id(p) not in inside:
                target = self._value(p.input[1]) if p.op_type == "Reshape" else None
                if target is not None:
                    p.input[1] = self._new_init(np.append(target.reshape(-1), 1).astype(np.int64))
                else:
                    inner = next(self.fresh)
                    p.output[list(p.output).index(t)] = inner
                    self.model.graph.value_info.append(helper.make_tensor_value_info(inner, TensorProto.FLOAT, shape3))
                    self._copy_datatype(t, inner)
                    shape = self._new_init(np.asarray([*shape3, 1], dtype=np.int64))
                    self._insert_after(p, helper.make_node("Reshape", [inner, shape], [t], name=f"Reshape_{t}"))
            back = None
            for c in self.consumers.get(t, []):
                if id(c) in inside:
                    continue
                if c.op_type in READERS:
                    a = _attr(c, "axis")
                    if a is not None and a.i < 0:
                        a.i += 3
                    continue
                if back is None:
                    back = self._reshape(t, shape3, after=p)
                for i, x in enumerate(c.input):
                    if x == t:
                        c.input[i] = back

    def _place_new_nodes(self) -> None:
        """Insert the new nodes in one rebuild of the node list (each right after its anchor)."""
        if not self.after and not self.front:
            return
        g = self.model.graph
        order = list(self.front)
        for n in self.nodes:
            order.append(n)
            order.extend(self.after.get(id(n), []))
        copies = [type(n)() for n in order]
        for c, n in zip(copies, order):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)
