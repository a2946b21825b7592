"""Every RTL layer of a design simulated on its own, fed with the Python execution of the graph before it.

Each layer's inputs are the tensors the Python execution of the design computed for it, so
a mismatch names its layer and sample, whatever the layers before it do. Its HDL comes from
FINN's own codegen (``PrepareIP`` on a one-node graph). A layer that cannot be simulated
(an HLS layer, an unsupported memory mode) is listed with the reason, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from finn.transformation.fpgadataflow.prepare_ip import PrepareIP
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.finn import ensure_finn_settings
from flow.sim.rtlsim import cache
from flow.sim.rtlsim.hdl import UnsupportedNode, check_simulable
from flow.sim.rtlsim.run import Mismatch, exp_cycles, simulate, subgraph
from flow.sim.rtlsim.simulate import SimulationError


def generate_hdl(model: ModelWrapper, part: str, clk_ns: float, build_dir: str | Path) -> ModelWrapper:
    """FINN's code generation (``PrepareIP``) for every node of ``model``, with FINN's build folders under ``build_dir``."""
    ensure_finn_settings(build_dir)
    return model.transform(PrepareIP(part, clk_ns))


@dataclass
class LayerSim:
    """One layer of a design: simulated alone (bit-exact? cycles?) or why not."""

    layer: str
    op_type: str
    simulated: bool
    note: str | None = None  # why it was not simulated, or what went wrong
    status: str | None = None  # ok | deadlock | maxcycles | error
    bit_exact: bool | None = None
    mismatch: Mismatch | None = None
    cycles_per_frame: float | None = None
    latency: int | None = None
    exp_cycles: int | None = None  # FINN's estimate, for comparison
    verilate_seconds: float = 0.0
    build_seconds: float = 0.0  # what building its model took (also when it came from the cache)
    cached: bool = False
    sim_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.simulated or bool(self.bit_exact)


def simulate_layer(design: ModelWrapper, node, reference: dict[str, np.ndarray], *, part: str, clk_ns: float,
                   build_dir: str | Path, cache_dir: str | Path | None = None) -> LayerSim:
    """``node`` of ``design`` alone, on the reference inputs it reads, compared with the reference outputs it writes."""
    rec = LayerSim(node.name, node.op_type, simulated=False)
    try:
        check_simulable(node)
    except UnsupportedNode as e:
        rec.note = str(e)
        return rec
    single = generate_hdl(subgraph(design, [node]), part, clk_ns, build_dir)
    rec.exp_cycles = exp_cycles(single.graph.node)[0] or None
    inputs = {vi.name: reference[vi.name] for vi in single.graph.input}
    expected = {vi.name: reference[vi.name] for vi in single.graph.output}
    rec.simulated = True
    try:
        res = simulate(single, inputs, expected, cache_dir=cache_dir)
    except (UnsupportedNode, cache.BuildError, SimulationError) as e:
        rec.status, rec.bit_exact, rec.note = "error", False, f"{type(e).__name__}: {' '.join(str(e).split())[:600]}"
        return rec
    rec.status, rec.bit_exact, rec.mismatch = res.status, res.bit_exact, res.mismatch
    rec.cycles_per_frame, rec.latency = res.cycles_per_frame, res.latency
    rec.verilate_seconds, rec.cached, rec.sim_seconds = res.verilate_seconds, res.cached, res.sim_seconds
    rec.build_seconds = res.build_seconds
    if not res.bit_exact:
        rec.note = res.describe()
    return rec


def simulate_layers(design: ModelWrapper, reference: dict[str, np.ndarray], *, log: Callable[[str], None] | None = None, **kw) -> list[LayerSim]:
    """:func:`simulate_layer` for every node of ``design``, in graph order (``log``: one line per layer simulated)."""
    out = []
    nodes = list(design.graph.node)
    for i, node in enumerate(nodes):
        r = simulate_layer(design, node, reference, **kw)
        if log is not None and r.simulated:
            log(f"layer {i + 1}/{len(nodes)} {r.layer}: verilated in {r.verilate_seconds:.1f} s, simulated in {r.sim_seconds:.1f} s")
        out.append(r)
    return out
