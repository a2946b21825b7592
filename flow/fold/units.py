"""The optimizer's decision units: each HW layer, or a coupled pair, with its legal settings.

A unit is one layer with every setting of its folding dimensions (:mod:`flow.fold.dims`) and
implementation choices FINN accepts, priced by the cost model; or, where FINN couples two
layers' parallelism, both together: a depthwise ``ConvolutionInputGenerator`` runs at the
SIMD of the ``VVAU``/``Pool`` it feeds, and a ``VVAU`` raises SIMD only at full PE, with the
generator's ``parallel_window`` then on (FINN's ``SetFolding``). A non-depthwise
``ConvolutionInputGenerator_rtl`` uses ``parallel_window`` only at SIMD = channels.
Settings are pruned to the Pareto-optimal ones per choice of boundary streams
(:func:`flow.fold.select.make_unit`).
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.fold.cost_model import CostModel
from flow.fold.dims import fold_values
from flow.fold.select import Unit, make_unit, prune


def _dw_pairs(model: ModelWrapper) -> dict[str, str]:
    """Depthwise SWG -> the Pool/VVAU it feeds (their parallelism must match)."""
    pairs = {}
    for node in model.graph.node:
        if node.op_type.startswith(("Pool", "VVAU")):
            prod = model.find_producer(node.input[0])
            if prod is not None and prod.op_type.startswith("ConvolutionInputGenerator") and getCustomOp(prod).get_nodeattr("depthwise"):
                pairs[prod.name] = node.name
    return pairs


def build_units(cm: CostModel, *, allow_uram: bool = True, wwidth_max: int | None = None, prefer: str | None = None) -> list[Unit]:
    """The optimizer's decision units with their legal, Pareto-optimal settings (``prefer``: see :meth:`CostModel.choices`)."""
    pairs = _dw_pairs(cm.model)
    consumers = set(pairs.values())
    units = []
    for name in cm.layers:
        if name in consumers:
            continue
        op = cm.op_types[name]
        kw = dict(allow_uram=allow_uram, wwidth_max=wwidth_max, prefer=prefer)
        if name in pairs:
            units.append(_coupled_unit(cm, name, pairs[name], **kw))
            continue
        opts = list(cm.options(name, fixed={"parallel_window": 0}, **kw) if op == "ConvolutionInputGenerator_rtl" else cm.options(name, **kw))
        if op == "ConvolutionInputGenerator_rtl":  # SetFolding: parallel window only at SIMD = channels
            ch = cm.instance(name).get_nodeattr("IFMChannels")
            opts += list(cm.options(name, fixed={"SIMD": ch, "parallel_window": 1}, **kw))
        units.append(make_unit(cm, [name], [(a,) for a, _ in opts], [(c,) for _, c in opts]))
    return units


def _coupled_unit(cm: CostModel, swg: str, consumer: str, **kw) -> Unit:
    inst = cm.instance(consumer)
    values = fold_values(inst)
    channels = max(values["PE"])
    is_vvau = cm.op_types[consumer].startswith("VVAU")
    has_pw = "parallel_window" in cm.instance(swg).get_nodeattr_types()
    settings, costs = [], []
    for pe in values["PE"]:
        simds = values["SIMD"] if is_vvau and pe == channels else [1]
        for simd in simds:
            fixed = {"PE": pe, "SIMD": simd} if is_vvau else {"PE": pe}
            cons = list(cm.options(consumer, fixed=fixed, **kw))
            sfix = {"SIMD": pe, **({"parallel_window": int(simd > 1)} if has_pw else {})}
            sw = list(cm.options(swg, fixed=sfix, **kw))
            for layer, group in ((consumer, cons), (swg, sw)):  # prune before the product
                cyc = np.array([c.cycles for _, c in group], dtype=np.int64)
                res = np.array([c.resources() for _, c in group], dtype=float).reshape(len(group), 4)
                group[:] = [group[i] for i in prune(cm, (swg, consumer), (layer,), cyc, res, [(c,) for _, c in group])]
            for sa, sc in sw:
                for ca, cc in cons:
                    settings.append((sa, ca))
                    costs.append((sc, cc))
    return make_unit(cm, [swg, consumer], settings, costs)
