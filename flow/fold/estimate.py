"""Resource and performance estimates of a folded design, from FINN's own analyses.

``res_estimation`` gives LUT/BRAM/URAM/DSP per layer, ``exp_cycles_per_layer`` the
cycles per frame, and ``dataflow_performance`` (after ``AnnotateCycles``) the
bottleneck and critical path. Totals are the sum over layers; throughput is
clock / max_cycles. The data-width converters FINN inserts when it stitches the design
(``InsertDWC``, after FINN's own estimate report) are priced separately with FINN's
estimates (:func:`flow.fold.converters.finn_dwcs`); the design fits when layers plus converters do.
Where FINN's LUT estimate is 0 by construction (MVAU_rtl, Pool_hls, ...), a layer's LUTs are
qflow's own count, and every layer says which (``lut_basis``, :mod:`flow.fold.lut_model`).
A build with ``--rtlsim`` adds each layer's measured cycles (``sim_cycles``, or the reason in
``sim_note`` when it could not be simulated).
"""

from __future__ import annotations

from functools import partial

from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
from finn.analysis.fpgadataflow.exp_cycles_per_layer import exp_cycles_per_layer
from finn.analysis.fpgadataflow.res_estimation import res_estimation
from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.estimates import Estimates, LayerEstimate, Resources
from flow.core.vocab import RESOURCES, finn_resources, is_hw_node
from flow.fold.converters import finn_dwcs
from flow.fold.lut_model import layer_lut
from hw_targets import Target


def estimate(model: ModelWrapper, target: Target) -> Estimates:
    """FINN's estimates for the folded dataflow partition ``model`` on ``target``."""
    res = model.analysis(partial(res_estimation, fpgapart=target.part))
    cycles = model.analysis(exp_cycles_per_layer)
    perf = model.transform(AnnotateCycles()).analysis(dataflow_performance)
    layers = []
    for node in model.graph.node:
        if not is_hw_node(node):
            continue
        inst = getCustomOp(node)
        attrs = inst.get_nodeattr_types()
        r = finn_resources(res.get(node.name, {}))
        r["lut"], basis = layer_lut(inst, r["lut"])
        layers.append(
            LayerEstimate(
                name=node.name,
                op_type=node.op_type,
                pe=int(inst.get_nodeattr("PE")) if "PE" in attrs else None,
                simd=int(inst.get_nodeattr("SIMD")) if "SIMD" in attrs else None,
                cycles=int(cycles.get(node.name, 0)),
                lut_basis=basis,
                **r,
            )
        )
    totals = Resources.total(layers)
    budget = Resources.of({k: v for k, v in target.budget().items() if k in RESOURCES})
    converters = finn_dwcs(model, target.part)
    over = [k for k in RESOURCES if totals[k] + sum(getattr(c, k) for c in converters) > budget[k]]
    max_cycles = int(perf["max_cycles"])
    crit = int(perf["critical_path_cycles"])
    return Estimates(
        layers=layers,
        totals=totals,
        budget=budget,
        over_budget=over,
        max_cycles=max_cycles,
        bottleneck=str(perf["max_cycles_node_name"]),
        critical_path_cycles=crit,
        throughput_fps=target.clock_mhz * 1e6 / max_cycles if max_cycles else 0.0,
        latency_us=crit / target.clock_mhz,
        clock_mhz=target.clock_mhz,
        converters=converters,
    )
