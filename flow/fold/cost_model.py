"""Fast, exact cost model of a folding: FINN's own per-layer estimates, tabulated.

Evaluating a folding with FINN means applying it to the graph, re-running bit-width
minimization and then FINN's analyses (``res_estimation``, ``exp_cycles_per_layer``).
:class:`CostModel` instead calls the very same per-node methods FINN's analyses call
(``node_res_estimation(fpgapart)`` and ``get_exp_cycles()``) on a private copy of each
node, once per distinct setting of the node's folding attributes, and memoizes the
result (shared by layers whose attributes are then equal, such as a ResNet's repeated
blocks). Evaluating a whole folding is then a dictionary lookup per layer, a sum and a
max, and agrees exactly with FINN (``tests/fold/test_cost_model.py`` checks it). Where
FINN's LUT estimate is 0 by construction (MVAU_rtl, Pool_hls, ...), the LUTs are qflow's
own count (:mod:`flow.fold.lut_model`), as in the report, so ``--auto`` does not treat
such a layer as free. A HW layer FINN has not specialized yet (a ``Shuffle``, which FINN
decomposes after folding) counts as FINN's analyses count it: no resources, its annotated
``cycles_estimate`` (``AnnotateCycles`` skips it).

Why exact: FINN's per-node estimates read only the node's own attributes. The only
attributes a folding changes besides the folding attributes themselves are datatypes set
by FINN's bit-width minimization, and those do not depend on PE/SIMD/memory style; they do
depend on ``runtime_writeable_weights``/``mem_mode`` (weights no longer fixed), which
:meth:`CostModel.layer_cost` handles by running that node's own minimization methods.
A layer FINN can build both as HLS and RTL is priced in both variants (the other one
built by FINN's own ``SpecializeLayers``, see :mod:`flow.fold.specialize`); ``preferred_impl_style``
in a folding picks one. Each estimate also lists the data-width converters FINN's
``InsertDWC`` will put between layers whose stream words differ, at FINN's price
(:mod:`flow.fold.converters`); FINN's estimate report leaves them out, so ``totals`` do too and
:meth:`CostEstimate.fits` adds them.

The example is skipped when the doctests run: it needs a specialized design.

>>> cm = CostModel(model, "xc7z020clg400-1")                     # doctest: +SKIP
>>> cm.estimate({"MVAU_hls_0": {"PE": 16, "SIMD": 49}}).max_cycles  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from finn.builder.build_dataflow_config import DataflowBuildConfig
from finn.util.fpgadataflow import is_hls_node, is_rtl_node
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.compat import finn as _finn_compat
from flow.compat.finn_mvu import queue_overflow
from flow.fold.converters import (
    DwcPricer,
    Edge,
    Stream,
    in_stream,
    out_stream,
    stream_edges,
)
from flow.core.errors import FoldingError
from flow.fold.lut_model import qflow_resources
from flow.fold.specialize import alternatives
from flow.core.vocab import (
    IMPL_ATTR,
    RESOURCES,
    impl_style,
    is_hw_node,
)
from flow.fold.dims import CHOICES, fold_values
from flow.fold.rules import FOLDING_ATTRS, folding_rule_violation

# attributes whose change makes FINN's bit-width minimization give other datatypes
_DTYPE_ATTRS = ("runtime_writeable_weights", "mem_mode")
_DTYPE_OUT = ("weightDataType", "accDataType", "outputDataType")


@dataclass(frozen=True)
class LayerCost:
    """FINN's estimate of one layer under one setting: cycles per frame and resources, and
    the streams on its ports that connect to other layers (``(port, Stream)`` pairs)."""

    cycles: int
    lut: float
    bram_18k: float
    uram: float
    dsp: float
    ins: tuple[tuple[int, Stream], ...] = ()
    outs: tuple[tuple[int, Stream], ...] = ()

    def resources(self) -> tuple[float, float, float, float]:
        return (self.lut, self.bram_18k, self.uram, self.dsp)


@dataclass(frozen=True)
class CostEstimate:
    """A whole folding: per-layer costs, totals (sum over layers, as FINN's estimate reports),
    max cycles, bottleneck, and the data-width converters FINN will insert between layers
    (``"producer->consumer"`` -> (LUT, BRAM_18K, URAM, DSP)) with their totals."""

    layers: dict[str, LayerCost]
    totals: dict[str, float]
    max_cycles: int
    bottleneck: str
    dwc: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    dwc_totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(RESOURCES, 0.0))

    def fits(self, budget: Mapping[str, float], *, with_dwc: bool = True) -> bool:
        """Layers (and, by default, converters) within ``budget``."""
        return all(self.totals[k] + (self.dwc_totals[k] if with_dwc else 0.0) <= budget[k] for k in RESOURCES)


@dataclass
class _Variant:
    """One implementation variant of a layer: a private instance, its graph, its folding attributes."""

    inst: Any
    model: ModelWrapper
    node: str
    keys: tuple[str, ...]
    base: dict[str, Any]

    @classmethod
    def of(cls, model: ModelWrapper, node) -> "_Variant":
        inst = _finn_compat.cached_attr_instance(node)
        types = inst.get_nodeattr_types()
        keys = tuple(a for a in FOLDING_ATTRS if a in types)
        base = {a: inst.get_nodeattr(a) for a in keys + _DTYPE_OUT if a in types}
        return cls(inst, model, node.name, keys, base)


class CostModel:
    """FINN's per-layer estimates of ``model``'s HW layers on ``fpgapart``, memoized per setting.

    ``model`` is the specialized HW graph (before or after folding); bit-width minimization
    is applied to a copy first (as ``step_minimize_bit_width`` does after folding). Layers
    FINN can build both as HLS and RTL are priced in both variants (the variant FINN would
    build if asked, via ``preferred_impl_style``, see :mod:`flow.fold.specialize`) unless
    ``variants=False``.
    """

    def __init__(self, model: ModelWrapper, fpgapart: str, *, minimize: bool = True, variants: bool = True, clk_ns: float = 10.0):
        self.fpgapart = fpgapart
        self.clk_ns = clk_ns
        spec = ModelWrapper(copy.deepcopy(model.model))
        alt, alt_names = alternatives(spec, fpgapart) if variants else (spec, {})
        self.model = self._minimized(spec, fpgapart) if minimize else spec
        alt = self._minimized(alt, fpgapart) if minimize and alt_names else alt
        self.layers: list[str] = [n.name for n in self.model.graph.node if is_hw_node(n)]
        self.op_types = {n.name: n.op_type for n in self.model.graph.node if is_hw_node(n)}
        self._variants: dict[str, dict[str, _Variant]] = {}
        for node in self.model.graph.node:
            if not is_hw_node(node):
                continue
            own = {impl_style(node): _Variant.of(self.model, node)}
            if node.name in alt_names:
                other = alt.get_node_from_name(alt_names[node.name])
                own[impl_style(other)] = _Variant.of(alt, other)
            self._variants[node.name] = own
        self._default = {n: next(iter(v)) for n, v in self._variants.items()}
        self._inst = {n: v[self._default[n]].inst for n, v in self._variants.items()}
        self._base = {n: v[self._default[n]].base for n, v in self._variants.items()}
        self._table: dict[str, dict[tuple, LayerCost | str]] = {n: {} for n in self.layers}
        self._dtypes: dict[tuple, dict[str, str]] = {}
        self._shared: dict[tuple, LayerCost | str] = {}  # across layers with equal attributes
        self.edges = stream_edges(self.model)
        self._in_ports = {n: sorted({e.in_idx for e in self.edges if e.consumer == n}) for n in self.layers}
        self._out_ports = {n: sorted({e.out_idx for e in self.edges if e.producer == n}) for n in self.layers}
        # where each edge's streams sit in LayerCost.outs / .ins
        self._edge_at = {e: (self._out_ports[e.producer].index(e.out_idx), self._in_ports[e.consumer].index(e.in_idx)) for e in self.edges}
        self._edge_keys = [(f"{e.producer}->{e.consumer}", e) for e in self.edges]
        self.dwc_pricer = DwcPricer(fpgapart)
        self.evaluations = 0  # calls into FINN's estimation methods

    @staticmethod
    def _minimized(model: ModelWrapper, fpgapart: str) -> ModelWrapper:
        cfg = DataflowBuildConfig(output_dir="unused", fpga_part=fpgapart, generate_outputs=[])
        return _finn_compat.build_steps().step_minimize_bit_width(model, cfg)

    def instance(self, name: str):
        """FINN's op instance of layer ``name`` in its default variant (read its attributes; do not set them)."""
        return self._inst[name]

    def variants(self, name: str) -> tuple[str, ...]:
        """The implementation variants (``"hls"``/``"rtl"``) FINN can build layer ``name`` as; first = FINN's default."""
        return tuple(self._variants[name])

    # -- one layer ------------------------------------------------------------------
    def key(self, name: str, attrs: Mapping[str, Any]) -> tuple:
        """The memo key of ``name`` under ``attrs`` (unspecified attributes keep the model's)."""
        style = attrs.get(IMPL_ATTR, self._default[name])
        v = self._variants[name].get(style)
        if v is None:
            raise FoldingError(f"{name} ({self.op_types[name]}) has no {style!r} variant that FINN can build here; it can be built as: {', '.join(self._variants[name])}")
        base = v.base
        return (style, *[attrs[a] if a in attrs else base[a] for a in v.keys])

    def layer_cost(self, name: str, attrs: Mapping[str, Any] = {}) -> LayerCost:
        """FINN's cycles and resources of layer ``name`` with ``attrs`` set; FoldingError if illegal.

        ``attrs`` may include ``preferred_impl_style`` to price the layer's other variant.
        """
        k = self.key(name, attrs)
        hit = self._table[name].get(k)
        if hit is None:
            hit = self._table[name][k] = self._evaluate(name, k)
        if isinstance(hit, str):
            raise FoldingError(hit)
        return hit

    def is_legal(self, name: str, attrs: Mapping[str, Any]) -> bool:
        try:
            self.layer_cost(name, attrs)
        except FoldingError:
            return False
        return True

    def input_ports(self, name: str) -> list[int]:
        """The inputs of layer ``name`` that the design's input streams feed (graph inputs, not weights)."""
        graph_in = {t.name for t in self.model.graph.input}
        node = self.model.get_node_from_name(name)
        return [i for i, t in enumerate(node.input) if t in graph_in and self.model.get_initializer(t) is None]

    def input_words(self, name: str, attrs: Mapping[str, Any], port: int) -> int:
        """Words per frame on input ``port`` of layer ``name`` with the legal setting ``attrs`` (FINN's folded input shape)."""
        k = self.key(name, attrs)
        self.layer_cost(name, attrs)
        v = self._variants[name][k[0]]
        for a, x in zip(v.keys, k[1:]):
            if v.inst.get_nodeattr(a) != x:
                v.inst.set_nodeattr(a, x)
        return int(np.prod(v.inst.get_folded_input_shape(port)[:-1]))

    def _variant_dtypes(self, name: str, style: str, values: dict[str, Any]) -> dict[str, str]:
        """Datatypes FINN's minimization gives ``name`` with these runtime-weight settings."""
        v = self._variants[name][style]
        variant = tuple((a, values[a]) for a in _DTYPE_ATTRS if a in values)
        if all(v.base[a] == x for a, x in variant):
            dtypes = {a: v.base[a] for a in _DTYPE_OUT if a in v.base}
        else:
            memo = (name, style, variant)
            if memo not in self._dtypes:
                inst = getCustomOp(copy.deepcopy(v.model.get_node_from_name(v.node)))
                for a, x in variant:
                    inst.set_nodeattr(a, x)
                for method in ("minimize_weight_bit_width", "minimize_accumulator_width"):
                    if hasattr(inst, method):
                        getattr(inst, method)(v.model)
                self._dtypes[memo] = {a: inst.get_nodeattr(a) for a in _DTYPE_OUT if a in v.base}
            dtypes = self._dtypes[memo]
        own = self._base[name].get("outputDataType")
        if dtypes.get("outputDataType", own) != own and self.model.find_consumers(self.model.get_node_from_name(name).output[0]):
            return {"error": f"{name}: {style} {dict(variant)} changes its output datatype, which the cost model does not propagate"}
        return dtypes

    def _evaluate(self, name: str, k: tuple) -> LayerCost | str:
        style, v = k[0], self._variants[name][k[0]]
        inst = v.inst
        values = dict(zip(v.keys, k[1:]))
        dtypes = self._variant_dtypes(name, style, values)
        shown = {**values, IMPL_ATTR: style} if len(self._variants[name]) > 1 else values
        if "error" in dtypes:
            return dtypes["error"]
        for a, x in {**values, **dtypes}.items():
            if inst.get_nodeattr(a) != x:
                inst.set_nodeattr(a, x)
        # FINN's estimates read only the node's attributes: equal attributes (and ports) give equal costs
        sig = (inst.onnx_node.op_type, tuple(a.SerializeToString() for a in inst.onnx_node.attribute), tuple(self._in_ports[name]), tuple(self._out_ports[name]))
        cost = self._shared.get(sig)
        if cost is None:
            cost = self._shared[sig] = self._finn_cost(name, inst)
        if isinstance(cost, str):
            return f"folding of {name} ({inst.onnx_node.op_type}, {shown}) breaks FINN's rules: {cost}"
        overflow = queue_overflow(self.model, inst.onnx_node, self.fpgapart, self.clk_ns)  # reads the weights: per layer
        if overflow is not None:  # the fold step would build it as HLS: not a folding of this variant
            return f"folding of {name} ({inst.onnx_node.op_type}, {shown}): {overflow}"
        return cost

    def _finn_cost(self, name: str, inst) -> LayerCost | str:
        """FINN's rules, cycles, resources and streams of ``inst`` as its attributes are set, or why FINN refuses them."""
        self.evaluations += 1
        reason = folding_rule_violation(inst)
        if reason is not None:
            return reason
        try:
            counted = is_hls_node(inst.onnx_node) or is_rtl_node(inst.onnx_node)  # what FINN's analyses count
            res = qflow_resources(inst, inst.node_res_estimation(self.fpgapart) if counted else {})
            cycles = int(inst.get_exp_cycles()) if counted else int(inst.get_nodeattr("cycles_estimate"))
            ins = tuple((i, in_stream(inst, i)) for i in self._in_ports[name])
            outs = tuple((i, out_stream(inst, i)) for i in self._out_ports[name])
        except Exception as e:  # noqa: BLE001 - FINN states its rules as asserts and exceptions
            return str(e).strip() or type(e).__name__
        return LayerCost(cycles, *res, ins=ins, outs=outs)

    # -- enumeration ------------------------------------------------------------------
    def choices(self, name: str, *, allow_uram: bool = True, prefer: str | None = None) -> list[dict[str, Any]]:
        """The implementation alternatives of one layer: variant (hls/rtl), memory style, multiplier type.

        ``prefer`` (``"hls"``/``"rtl"``) keeps only that variant for layers FINN can build in it.
        """
        out: list[dict[str, Any]] = []
        variants = self._variants[name]
        for style, v in variants.items():
            if prefer in variants and style != prefer:
                continue
            inst = v.inst
            types = inst.get_nodeattr_types()
            combos: list[dict[str, Any]] = [{IMPL_ATTR: style}] if len(self._variants[name]) > 1 else [{}]
            for group in CHOICES.get(inst.onnx_node.op_type, ()):
                alts = [g for g in group if all(a in types for a in g)]
                if not allow_uram:
                    alts = [g for g in alts if g.get("ram_style") != "ultra" and g.get("depth_trigger_uram") != 1]
                if "resType" in group[0] and "binaryXnorMode" in types and inst.get_nodeattr("binaryXnorMode"):
                    alts = alts[:1]  # XNOR-popcount has no multiplier to put in DSPs
                if alts:
                    combos = [{**c, **g} for c in combos for g in alts]
            out += combos
        return out

    def options(self, name: str, *, allow_uram: bool = True, fixed: Mapping[str, int] = {}, wwidth_max: int | None = None, prefer: str | None = None) -> Iterator[tuple[dict[str, Any], LayerCost]]:
        """Every legal setting of layer ``name`` with FINN's cost: divisor PE/SIMD x choices.

        ``fixed`` pins attributes (e.g. a coupled SIMD, parallel_window); ``wwidth_max`` bounds the
        weight bits per PE (SIMD x weight width) of MVAU layers, as SetFolding's
        ``mvau_wwidth_max`` does; ``prefer`` restricts the variant (:meth:`choices`).
        """
        inst = self._inst[name]
        values = fold_values(inst)
        grids: list[dict[str, Any]] = [{k: v for k, v in fixed.items() if k not in values}]
        for attr, vals in values.items():
            vals = [fixed[attr]] if attr in fixed else vals
            grids = [{**g, attr: v} for g in grids for v in vals]
        is_mvau = inst.onnx_node.op_type.startswith("MVAU")
        wbits = inst.get_input_datatype(1).bitwidth() if is_mvau else 0
        for g in grids:
            if is_mvau and wwidth_max is not None and g["SIMD"] * wbits > wwidth_max:
                continue
            for c in self.choices(name, allow_uram=allow_uram, prefer=prefer):
                attrs = {**g, **c}
                try:
                    yield attrs, self.layer_cost(name, attrs)
                except FoldingError:
                    continue

    # -- whole foldings ---------------------------------------------------------------
    def estimate(self, folding: Mapping[str, Mapping[str, Any]]) -> CostEstimate:
        """Cost of a folding in FINN's folding-config format (layers it omits keep their attributes)."""
        empty: dict[str, Any] = {}
        layers = {n: self.layer_cost(n, folding.get(n, empty)) for n in self.layers}
        lut = bram = uram = dsp = 0.0
        for c in layers.values():
            lut, bram, uram, dsp = lut + c.lut, bram + c.bram_18k, uram + c.uram, dsp + c.dsp
        totals = dict(zip(RESOURCES, (lut, bram, uram, dsp)))
        bottleneck = max(layers, key=lambda n: layers[n].cycles) if layers else ""
        dwc = self.converters(layers)
        dwc_totals = {r: float(sum(c[i] for c in dwc.values())) for i, r in enumerate(RESOURCES)}
        return CostEstimate(layers, totals, layers[bottleneck].cycles if layers else 0, bottleneck, dwc, dwc_totals)

    def converters(self, layers: Mapping[str, LayerCost]) -> dict[str, tuple[float, float, float, float]]:
        """The data-width converters FINN inserts between ``layers`` (as priced by FINN)."""
        out = {}
        for key, e in self._edge_keys:
            price = self.edge_converter(e, layers[e.producer], layers[e.consumer])
            if price is not None:
                out[key] = price
        return out

    def edge_converter(self, e: Edge, producer: LayerCost, consumer: LayerCost) -> tuple[float, float, float, float] | None:
        """FINN's price of the converter on stream ``e`` with these settings of its two layers (None: not needed)."""
        po, ci = self._edge_at[e]
        src, dst = producer.outs[po][1], consumer.ins[ci][1]
        return self.dwc_pricer.price(src.width, dst.width) if self.dwc_pricer.needed(src, dst) else None


def random_folding(cm: CostModel, rng, *, allow_uram: bool = True, tries: int = 100) -> dict[str, dict[str, Any]]:
    """A random legal folding (PE/SIMD divisors and implementation choices), for tests and benchmarks."""
    folding: dict[str, dict[str, Any]] = {"Defaults": {}}
    for name in cm.layers:
        values = fold_values(cm.instance(name))
        choices = cm.choices(name, allow_uram=allow_uram)
        attrs: dict[str, Any] = {}
        for _ in range(tries):
            cand = {a: int(rng.choice(v)) for a, v in values.items()}
            cand.update(choices[int(rng.integers(len(choices)))])
            if cm.is_legal(name, cand):
                attrs = cand
                break
        folding[name] = attrs
    return folding
