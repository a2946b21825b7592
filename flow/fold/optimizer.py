"""Resource-constrained folding optimizer (``qflow build --auto``).

Chooses every layer's PE/SIMD, its implementation variant where FINN can build it both as
HLS and RTL (``preferred_impl_style``), and the memory/multiplier choices FINN exposes
(ram_style, mem_mode, resType, Thresholding memory triggers) to minimize the design's max cycles per frame while
the summed LUT/BRAM_18K/URAM/DSP estimates stay within ``target.budget()``. Costs come
from :class:`flow.fold.cost_model.CostModel` (FINN's own per-layer estimates, exact).

Rules respected: folding factors divide their dimension; a depthwise
ConvolutionInputGenerator gets SIMD = PE of the Pool/VVAU it feeds and a VVAU raises SIMD
only at full PE (as FINN's SetFolding couples them); parallel_window only at SIMD =
channels; every option passes FINN's own checks (folded shapes, weight memory, HLS
AP_INT_MAX_W of 8191 bits for every stream). ``wwidth_max`` (SetFolding's
``mvau_wwidth_max``, weight bits per PE) is off by default: it is SetFolding's heuristic
for when to stop raising SIMD, not a rule, and the cost model prices wide weight memories.

The data-width converters FINN inserts between layers whose stream words differ are part
of the budget: layers plus converters must fit (converter prices are FINN's, see
:mod:`flow.compile.converters`).

Algorithm (:mod:`flow.fold.select`): each unit (a layer, or a coupled SWG+Pool/VVAU pair)
keeps its Pareto-optimal options (cycles vs. resources) per choice of its streams to
neighbouring units. For a cycle bound T every unit takes its cheapest option with cycles
<= T under resource weights w; all T of the finite set of achievable cycle counts are
checked at once, and the smallest T where the layers fit kept; the weights are adapted
Lagrangian-style (raising the weight of the resources that overflow just below the best T).
From that bound a MILP (scipy/HiGHS: one option per unit, a converter variable per pair of
neighbouring stream choices, layers + converters <= budget, minimizing the summed budget
fractions) finds the first bound where everything fits, and a binary search (feasibility
only grows with T) the smallest. The result is optimal for FINN's estimates unless a MILP
hits its time limit (``FoldingPlan.optimal``).

>>> plan = optimize(specialized_model, load_target("pynq-z1"))   # doctest: +SKIP
>>> plan.predicted.max_cycles, plan.folding["MVAU_hls_0"]          # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.compile.specialize import apply_folding
from flow.core.errors import InfeasibleDesignError
from flow.core.fileio import atomic_write_json
from flow.core.vocab import FINN_RESOURCE_KEYS, RESOURCES
from flow.fold.cost_model import CostEstimate, CostModel
from flow.fold.rules import divisors
from flow.fold.select import Selector, Unit, make_unit, prune
from hw_targets import Target

_NAMES = FINN_RESOURCE_KEYS


@dataclass(frozen=True)
class FoldingPlan:
    """The optimizer's answer: a FINN folding config and the cost model's prediction for it."""

    folding: dict[str, dict[str, Any]]
    predicted: CostEstimate
    budget: dict[str, float]
    seconds: float
    options: int
    optimal: bool = True

    def summary(self) -> dict[str, Any]:
        p = self.predicted
        return {"max_cycles": p.max_cycles, "bottleneck": p.bottleneck, "totals": p.totals, "converters": p.dwc_totals, "budget": self.budget, "seconds": round(self.seconds, 3), "options": self.options, "optimal": self.optimal}


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
    channels = inst.get_nodeattr("Channels")
    is_vvau = cm.op_types[consumer].startswith("VVAU")
    has_pw = "parallel_window" in cm.instance(swg).get_nodeattr_types()
    settings, costs = [], []
    for pe in divisors(channels):
        simds = divisors(int(np.prod(inst.get_nodeattr("Kernel")))) if is_vvau and pe == channels else [1]
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


def _infeasible(units: list[Unit], cm: CostModel, budget: dict[str, float], target: Target) -> InfeasibleDesignError:
    """The error naming the resource and the layer that make every folding break the caps."""
    b = np.array([budget[r] for r in RESOURCES])
    for u in units:
        if len(u.cycles) == 0:
            return InfeasibleDesignError(f"layer {u.names[-1]} ({cm.op_types[u.names[-1]]}) has no folding that FINN's rules accept")
    mins = np.array([u.res.min(axis=0) for u in units])
    frac = lambda x: x / np.maximum(b, 1e-9)  # noqa: E731
    for u, m in zip(units, mins):  # a layer that breaks a cap by itself, whatever its setting
        if np.all(np.any(u.res > b + 1e-9, axis=1)):
            r = int(np.argmax(frac(m)))
            return InfeasibleDesignError(
                f"no folding of the design fits {target.name}: layer {u.names[-1]} ({cm.op_types[u.names[-1]]}) alone "
                f"needs at least {m[r]:,.0f} {_NAMES[RESOURCES[r]]} at its cheapest setting (budget {b[r]:,.0f}); "
                "pick a larger board or a smaller/narrower layer"
            )
    need = mins.sum(axis=0)
    r = int(np.argmax(frac(need)))
    if need[r] <= b[r]:  # the layers fit alone: the converters between them do not
        return InfeasibleDesignError(
            f"no folding of the design fits {target.name}: the layers fit fully folded, but not together with the "
            "data-width converters FINN inserts between layers whose stream widths differ; pick a larger board"
        )
    u = units[int(np.argmax(mins[:, r]))]
    return InfeasibleDesignError(
        f"no folding of the design fits {target.name}: even fully folded the layers need at least "
        f"{need[r]:,.0f} {_NAMES[RESOURCES[r]]} (budget {b[r]:,.0f}); the largest share is layer "
        f"{u.names[-1]} ({cm.op_types[u.names[-1]]}) with {mins[:, r].max():,.0f}; pick a larger board or smaller/narrower layers"
    )


def optimize(model: ModelWrapper | None, target: Target, *, wwidth_max: int | None = None, cost_model: CostModel | None = None, allow_uram: bool | None = None, variants: bool = True, prefer: str | None = None) -> FoldingPlan:
    """The folding of ``model`` (specialized HW graph) with the fewest max cycles within ``target``'s caps.

    Layers and the data-width converters between them must fit together. ``variants=False``
    keeps every layer's HLS/RTL variant; ``prefer="rtl"`` builds every layer FINN can build as
    RTL in its RTL variant (a constraint, for whole-design RTL simulation). Raises
    InfeasibleDesignError, naming the resource and the layer, if nothing fits.
    """
    t0 = time.perf_counter()
    cm = cost_model or CostModel(model, target.part, variants=variants, clk_ns=target.clock_period_ns)
    budget = {r: float(target.budget()[r]) for r in RESOURCES}
    b = np.array([budget[r] for r in RESOURCES])
    if allow_uram is None:
        allow_uram = budget["uram"] > 0
    all_units = build_units(cm, allow_uram=allow_uram, wwidth_max=wwidth_max, prefer=prefer)
    units = [u.subset(np.flatnonzero(np.all(u.res <= b + 1e-9, axis=1))) for u in all_units]  # drop options that alone break a cap
    if any(len(u.cycles) == 0 for u in units):
        raise _infeasible(all_units, cm, budget, target)
    search = Selector(units, b, cm)
    best_t = _heuristic_bound(search, b)  # where the layers alone fit: where to start looking
    proven = True
    hi = int(np.searchsorted(search.bounds, best_t)) if best_t is not None else len(search.bounds) - 1
    best_sel, step = None, 1
    while True:  # the first bound from the heuristic's up where layers and converters fit, by MILP
        sel, ok = search.exact(int(search.bounds[hi]))
        proven &= ok
        if sel is not None:
            best_sel = sel
            break
        if hi == len(search.bounds) - 1:
            raise _infeasible(all_units, cm, budget, target)
        hi, step = min(len(search.bounds) - 1, hi + step), 2 * step
    lo = 0
    while lo < hi:  # smallest feasible bound: feasibility only grows with the bound
        mid = (lo + hi) // 2
        sel, ok = search.exact(int(search.bounds[mid]))
        proven &= ok
        if sel is None:
            lo = mid + 1
        else:
            hi, best_sel = mid, sel
    folding: dict[str, dict[str, Any]] = {"Defaults": {}}
    for u, s in zip(units, best_sel):
        for name, attrs in zip(u.names, u.settings[s]):
            folding[name] = dict(attrs)
    pred = cm.estimate(folding)
    return FoldingPlan(folding, pred, budget, time.perf_counter() - t0, sum(len(u.cycles) for u in units), proven)


def _heuristic_bound(search: Selector, b: np.ndarray) -> int | None:
    """The smallest cycle bound at which some resource weighting fits the layers (Lagrangian-style weights)."""
    best_t = None
    weights = [np.ones(4)] + [np.eye(4)[i] + 0.05 for i in range(4)]
    lam = np.ones(4)
    for it in range(60):
        w = weights[it] if it < len(weights) else lam
        usage, _ = search.sweep(w)
        ok = np.flatnonzero(search.fits(usage))
        if len(ok) and (best_t is None or search.bounds[ok[0]] < best_t):
            best_t = int(search.bounds[ok[0]])
        below = (ok[0] if len(ok) else len(search.bounds)) - 1
        if below < 0:
            break
        ratio = usage[below] / np.maximum(b, 1e-9)
        lam = lam * np.clip(ratio, 0.5, 4.0) ** 0.7
    return best_t


def apply_auto_folding(model: ModelWrapper, ctx) -> ModelWrapper:
    """``step_fold``'s auto mode: optimize, then apply the plan with FINN's own steps.

    Layers the plan builds in their other variant (HLS/RTL) are re-specialized by FINN
    first (:func:`flow.compile.specialize.apply_folding`), which renames them; the FINN folding
    config, with the final names, goes to ``<out>/finn/report/auto_folding_config.json``
    and is applied by FINN's ``step_apply_folding_config``; ``<out>/auto_folding.json``
    records the plan. ``mvau_wwidth_max`` bounds SIMD x weight bits only when the build
    config sets it explicitly (its default 36 is SetFolding's heuristic, not a FINN rule).
    With ``prefer_rtl`` the plan keeps the RTL variant of every layer FINN can build as RTL.
    """
    cfg = ctx.cfg
    wwidth = cfg.mvau_wwidth_max if "mvau_wwidth_max" in cfg.model_fields_set else None
    pinned = cfg.specialize_file is not None  # the user chose the variants
    plan = optimize(model, ctx.target, wwidth_max=wwidth, variants=not pinned, prefer="rtl" if cfg.prefer_rtl else None)
    fcfg = ctx.finn_config()
    path = Path(fcfg.output_dir) / "report" / "auto_folding_config.json"
    folded, rename = apply_folding(model, plan.folding, fcfg, path)
    summary = plan.summary() | {"bottleneck": rename.get(plan.predicted.bottleneck, plan.predicted.bottleneck)}
    changed = {old: new for old, new in rename.items() if folded.get_node_from_name(new).op_type != model.get_node_from_name(old).op_type}
    atomic_write_json(ctx.out_dir / "auto_folding.json", {"config": str(path), "predicted": summary, "wwidth_max": wwidth, "respecialized": changed})
    return folded
