"""A whole design through RTL simulation: every layer alone, every chain stitched, FIFOs sized.

:func:`simulate_design` is what ``qflow build --rtlsim`` runs on the folded dataflow design:

1. every RTL layer alone on the Python values it reads (:mod:`~flow.sim.rtlsim.layers`),
   bit-exact against the Python values it should write, with its cycles per frame;
2. the design with FINN's converters and very deep FIFOs, cut into chains of RTL nodes
   (:mod:`~flow.sim.rtlsim.chains`); each chain runs as one stitched design, inputs always
   valid, giving its rate (cycles per frame) and latency, then once more on the same model
   with the inputs paced at that rate, giving each FIFO's peak occupancy
   (:mod:`~flow.sim.rtlsim.fifos`);
3. FIFO depths from those peaks, written back as FINN's folding-config attributes; FINN
   builds the FIFOs again and each sized chain runs with inputs always valid (its rate
   must match the deep chain's, with no deadlock) and once with random stalls on its input
   and output (back-pressure: the data must not change).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.sim.rtlsim import cache, streams
from flow.sim.rtlsim.chains import (
    current_config,
    deep_config,
    design_tensor,
    find_chains,
    is_plumbing,
    simulable,
    with_fifos,
)
from flow.sim.rtlsim.fifos import depth_config, depths, monitors, pace_for, sized
from flow.sim.rtlsim.hdl import UnsupportedNode
from flow.sim.rtlsim.layers import LayerSim, generate_hdl, simulate_layers
from flow.sim.rtlsim.run import Mismatch, RunResult, exp_cycles, simulate, subgraph
from flow.sim.rtlsim.simulate import Drive, SimulationError
from flow.sim.rtlsim.stitch import FORK_OPS, stitch
from flow.sim.rtlsim.toolchain import find_verilator
from flow.sim.verify import StageCheck

#: Random stalls of the back-pressure run: inputs offer a word on 70% of cycles, outputs take one on 50%.
STALLS = Drive(pin=70, pout=50, seed=7)


@dataclass
class ChainSim:
    """One chain: its nodes, the deep-FIFO run, the FIFO sizing and the sized run."""

    name: str
    layers: list[str]
    nodes: int
    fifos: int
    dwcs: int
    status: str  # ok | deadlock | maxcycles | error
    bit_exact: bool
    note: str | None = None
    mismatch: Mismatch | None = None
    mismatch_layer: str | None = None
    cycles_per_frame: float | None = None  # the sized chain's (the deep chain's when not sized)
    latency: int | None = None
    exp_cycles: int | None = None  # FINN's estimate: the slowest layer's cycles per frame
    deep_cycles_per_frame: float | None = None
    deep_latency: int | None = None
    fifo_depth_deep: int = 0
    fifo_depth_sized: int | None = None
    fifo_depths: dict[str, int] = field(default_factory=dict)  # sized depth per FIFO
    fifo_peaks: dict[str, int] = field(default_factory=dict)  # peak occupancy, inputs paced at the deep rate
    rate_kept: bool | None = None  # sized cycles per frame == deep cycles per frame
    backpressure_bit_exact: bool | None = None
    verilate_seconds: float = 0.0  # verilations this run did (0 when every model came from the cache)
    build_seconds: float = 0.0  # what building the chain's models took, cached or not
    sim_seconds: float = 0.0
    models: dict[str, float] = field(default_factory=dict, repr=False)  # cache key -> build seconds

    @property
    def passed(self) -> bool:
        return self.status == "ok" and self.bit_exact and self.backpressure_bit_exact is not False


@dataclass
class DesignSim:
    """Everything :func:`simulate_design` measured."""

    samples: int
    layers: list[LayerSim]
    chains: list[ChainSim]
    fifo_config: dict[str, dict[str, list[int]]]  # FINN folding-config FIFO depths of the design's layers
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.layers) and all(c.passed for c in self.chains)


@dataclass
class _Ctx:
    part: str
    clk_ns: float
    build_dir: Path
    cache_dir: Path | None
    forks: bool = False

    def keep(self, node) -> bool:
        """Whether ``node`` belongs in a chain: RTL with simulable HDL (and, with ``forks``, DuplicateStreams)."""
        return simulable(node) or (self.forks and node.op_type in FORK_OPS)


def _run(ctx: _Ctx, model: ModelWrapper, nodes, reference, chain: ChainSim, **kw) -> tuple[RunResult, ModelWrapper, object]:
    sub = generate_hdl(subgraph(model, nodes), ctx.part, ctx.clk_ns, ctx.build_dir)
    design = stitch(sub)
    inputs = {vi.name: reference[design_tensor(model, vi.name, reference)] for vi in sub.graph.input}
    expected = {vi.name: reference[design_tensor(model, vi.name, reference)] for vi in sub.graph.output}
    mons = monitors(sub, design)
    res = simulate(sub, inputs, expected, design=design, cache_dir=ctx.cache_dir, monitors=[(a, b) for _, a, b in mons], **kw)
    chain.verilate_seconds += res.verilate_seconds
    chain.models[res.key] = res.build_seconds
    chain.build_seconds = round(sum(chain.models.values()), 3)
    chain.sim_seconds += res.sim_seconds
    return res, sub, mons


def _fail(chain: ChainSim, res: RunResult, model: ModelWrapper, when: str) -> None:
    chain.status, chain.bit_exact = res.status, res.bit_exact
    chain.mismatch = res.mismatch
    if res.mismatch is not None:
        chain.mismatch_layer = _layer_of(model, res.mismatch.tensor)
    chain.note = f"{when}: {res.describe()}"


def _layer_of(model: ModelWrapper, tensor: str) -> str | None:
    node = model.find_producer(tensor)
    while node is not None and is_plumbing(node):
        node = model.find_producer(node.input[0])
    return node.name if node is not None else None


def _measure(ctx: _Ctx, model: ModelWrapper, nodes, reference) -> ChainSim:
    """Deep-FIFO run and paced run of one chain."""
    layers = [n.name for n in nodes if not is_plumbing(n)]
    chain = ChainSim(name=f"{layers[0]}..{layers[-1]}" if len(layers) > 1 else layers[0], layers=layers, nodes=len(nodes),
                     fifos=sum(1 for n in nodes if n.op_type.startswith("StreamingFIFO")), dwcs=sum(1 for n in nodes if n.op_type.startswith("StreamingDataWidthConverter")),
                     status="ok", bit_exact=False)
    chain.exp_cycles = max(exp_cycles(nodes)) or None
    deep = depths(nodes)
    chain.fifo_depth_deep = sum(deep.values())
    res, _, mons = _run(ctx, model, nodes, reference, chain)
    chain.deep_cycles_per_frame, chain.deep_latency = res.cycles_per_frame, res.latency
    chain.cycles_per_frame, chain.latency = res.cycles_per_frame, res.latency
    if not res.bit_exact:
        _fail(chain, res, model, "very deep FIFOs")
        return chain
    chain.bit_exact = True
    if mons:
        paced, _, mons = _run(ctx, model, nodes, reference, chain, drive=Drive(pace=pace_for(res.cycles_per_frame)))
        if paced.status != "ok":
            _fail(chain, paced, model, "inputs paced at the measured rate")
            return chain
        chain.fifo_peaks = {name: paced.peaks[k] for k, (name, _, _) in enumerate(mons)}
        full = [n for n, p in chain.fifo_peaks.items() if p >= deep.get(n, 0) - 1]
        if full:
            chain.note = f"FIFOs full during the paced run (the sizing may be short): {', '.join(full)}"
    return chain


def _check_sized(ctx: _Ctx, model: ModelWrapper, nodes, reference, chain: ChainSim) -> None:
    """The sized chain: same rate as the deep one, no deadlock, bit-exact, also under random stalls."""
    chain.fifo_depths = depths(nodes)
    chain.fifo_depth_sized = sum(chain.fifo_depths.values())
    res, _, _ = _run(ctx, model, nodes, reference, chain)
    if not res.bit_exact:
        _fail(chain, res, model, "sized FIFOs")
        chain.rate_kept = False
        return
    chain.cycles_per_frame, chain.latency = res.cycles_per_frame, res.latency
    chain.rate_kept = res.cycles_per_frame == chain.deep_cycles_per_frame
    if not chain.rate_kept:
        extra = f"sized FIFOs run at {res.cycles_per_frame} cycles/frame, very deep ones at {chain.deep_cycles_per_frame}"
        chain.note = f"{chain.note}; {extra}" if chain.note else extra
    stalled, _, _ = _run(ctx, model, nodes, reference, chain, drive=STALLS)
    chain.backpressure_bit_exact = stalled.bit_exact
    if not stalled.bit_exact:
        _fail(chain, stalled, model, "random stalls on input and output")


def _error_note(e: Exception) -> str:
    """One line for a chain that could not be simulated to the end (an RTL assertion says so itself)."""
    text = " ".join(str(e).split())[:600]
    return text if getattr(e, "layer", None) else f"{type(e).__name__}: {text}"


def _chains(ctx: _Ctx, design: ModelWrapper, reference, size_fifos: bool) -> tuple[list[ChainSim], dict]:
    base = current_config(design)
    deep_model = with_fifos(design, ctx.part, deep_config(design))
    groups = find_chains(deep_model, ctx.keep)
    chains = []
    for nodes in groups:
        try:
            chains.append(_measure(ctx, deep_model, nodes, reference))
        except (UnsupportedNode, cache.BuildError, SimulationError) as e:
            layers = [n.name for n in nodes if not is_plumbing(n)]
            chains.append(ChainSim(name=layers[0], layers=layers, nodes=len(nodes), fifos=0, dwcs=0, status="error", bit_exact=False,
                                   note=_error_note(e), mismatch_layer=getattr(e, "layer", None)))
    sizable = [c for c in chains if c.fifo_peaks and c.passed]
    if not size_fifos or not sizable:
        return chains, base
    config = depth_config(deep_model, sized({k: v for c in sizable for k, v in c.fifo_peaks.items()}), base)
    sized_model = with_fifos(design, ctx.part, config)
    by_layers = {tuple(n.name for n in g if not is_plumbing(n)): g for g in find_chains(sized_model, ctx.keep)}
    for chain in sizable:
        nodes = by_layers.get(tuple(chain.layers))
        if nodes is None:
            chain.note = "the sized design's chains differ from the deep design's"
            continue
        try:
            _check_sized(ctx, sized_model, nodes, reference, chain)
        except (UnsupportedNode, cache.BuildError, SimulationError) as e:
            chain.status, chain.bit_exact, chain.note = "error", False, f"sized FIFOs: {_error_note(e)}"
            chain.mismatch_layer = getattr(e, "layer", None)
    return chains, config


def simulate_design(design: ModelWrapper, reference: dict[str, np.ndarray], *, part: str, clk_ns: float, build_dir: str | Path,
                    cache_dir: str | Path | None = None, chains: bool = True, size_fifos: bool = True, forks: bool = False) -> DesignSim:
    """Simulate the RTL of ``design`` (a folded FINN dataflow partition) on ``reference``.

    ``reference`` maps every tensor of ``design`` to its Python values on the batch
    (samples first), as the Python execution of the specialized design computed them.
    ``forks`` lets qflow's stream broadcast stand in for FINN's DuplicateStreams (HLS) in
    chains, so a fork/join block is one chain (:mod:`flow.sim.rtlsim.stitch`).
    """
    ctx = _Ctx(part, clk_ns, Path(build_dir), Path(cache_dir) if cache_dir is not None else None, forks)
    frames = len(reference[design.graph.input[0].name])
    reference = streams.in_stream_order(design, reference)
    layers = simulate_layers(design, reference, part=part, clk_ns=clk_ns, build_dir=build_dir, cache_dir=cache_dir)
    chain_sims, config = _chains(ctx, design, reference, size_fifos) if chains else ([], current_config(design))
    seconds = {
        "verilate": round(sum(r.verilate_seconds for r in layers) + sum(c.verilate_seconds for c in chain_sims), 3),
        "simulate": round(sum(r.sim_seconds for r in layers) + sum(c.sim_seconds for c in chain_sims), 3),
    }
    return DesignSim(frames, layers, chain_sims, config, seconds)


#: How to get layers RTL simulation can run, for a design that has none.
NO_RTL_HINT = ("to get RTL layers, build with --prefer-rtl (FINN's RTL variant of every layer that has one) and "
               "--standalone-thresholds (thresholds as separate layers, so MVAUs can be RTL)")


def stage_check(sim: DesignSim, reference: str = "specialized") -> StageCheck:
    """The ``rtlsim`` verification stage: passed when every simulated layer and chain is bit-exact
    and no chain deadlocked; the first mismatch names its layer and sample. With nothing simulated
    the stage is ``skipped`` (nothing failed, nothing was checked), its note says how to get RTL layers."""
    rtl = [r for r in sim.layers if r.simulated]
    skipped = [r for r in sim.layers if not r.simulated]
    first = next(((r.mismatch.sample if r.mismatch else None, r.layer) for r in rtl if not r.passed), None)
    if first is None:
        first = next(((c.mismatch.sample if c.mismatch else None, c.mismatch_layer or c.name) for c in sim.chains if not c.passed), (None, None))
    parts = [f"Verilator {find_verilator().version}: {len(rtl)} of {len(sim.layers)} layers simulated alone"]
    if skipped:
        parts.append("Python semantics only: " + ", ".join(r.layer for r in skipped))
    for c in sim.chains:
        rate = f"{c.cycles_per_frame:g} cycles/frame, latency {c.latency}" if c.cycles_per_frame is not None else c.status
        parts.append(f"chain {c.name} ({c.nodes} nodes): {rate}")
    failures = [f"{r.layer}: {r.note}" for r in rtl if not r.passed] + [f"chain {c.name}: {c.note}" for c in sim.chains if not c.passed]
    parts += failures[:3]
    if not rtl and not sim.chains:
        parts[0] = f"skipped: no layer was simulated ({len(sim.layers)} layers, none of them an RTL layer Verilator can run)"
        parts.append(NO_RTL_HINT)
        return StageCheck(name="rtlsim", reference=reference, samples=sim.samples, passed=True, skipped=True, note="; ".join(parts))
    exact = all(r.bit_exact for r in rtl) and all(c.bit_exact and c.backpressure_bit_exact is not False for c in sim.chains)
    return StageCheck(name="rtlsim", reference=reference, samples=sim.samples, passed=sim.passed,
                      bit_exact=exact, first_mismatch=first[0], layer=first[1], note="; ".join(parts))
