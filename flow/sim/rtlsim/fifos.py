"""FIFO depths without Vivado: each FIFO's peak occupancy in simulation, and depths from it.

FINN sizes FIFOs by simulating the stitched design in Vivado. Here a chain with very deep
FIFOs (:func:`flow.sim.rtlsim.chains.deep_config`) first runs with inputs always valid,
which measures the rate the chain can sustain (T cycles per frame). With inputs always
valid a fast producer runs ahead of a slower layer and the FIFO between them grows with
every frame streamed, so its peak says nothing about the depth the chain needs. The
occupancies are therefore measured in a second run on the same model with the inputs
paced at that rate (one frame every T cycles, ``Drive.pace``): the testbench counts the
words in and out of every FIFO each cycle and keeps the peak. Each depth is peak + 1 (a
full finn-rtllib FIFO drops ready even in a cycle it pops), at least 2. The depths go back
into the design as FINN's folding-config attributes (``inFIFODepths``/``outFIFODepths`` of
the layers on either side, :func:`depth_config`), FINN regenerates the FIFOs, and the
sized chain is simulated again: same rate, no deadlock, still bit-exact (the caller checks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.sim.rtlsim.chains import FIFO_ATTRS, is_plumbing, streamed_inputs
from flow.sim.rtlsim.stitch import Design

MIN_DEPTH = 2


def fifo_nodes(model: ModelWrapper) -> list:
    return [n for n in model.graph.node if n.op_type.startswith("StreamingFIFO")]


def depths(nodes) -> dict[str, int]:
    """Current depth of every FIFO among ``nodes``."""
    return {n.name: int(getCustomOp(n).get_nodeattr("depth")) for n in nodes if n.op_type.startswith("StreamingFIFO")}


def monitors(model: ModelWrapper, design: Design) -> list[tuple[str, int, int]]:
    """(FIFO name, probe of its input, probe of its output) for every FIFO of the stitched ``design``."""
    idx = design.probe_index()
    return [(n.name, idx[n.input[0]], idx[n.output[0]]) for n in fifo_nodes(model) if n.input[0] in idx and n.output[0] in idx]


def pace_for(cycles_per_frame: float | None) -> int:
    """The input pacing (cycles per frame) that matches a measured rate."""
    return max(1, math.ceil(cycles_per_frame or 1))


def sized(peaks: Mapping[str, int], margin: int = 1) -> dict[str, int]:
    """Depth per FIFO from its peak occupancy (see the module docstring for the rule)."""
    return {name: max(MIN_DEPTH, int(p) + margin) for name, p in peaks.items()}


def depth_config(model: ModelWrapper, fifo_depth: Mapping[str, int], base: Mapping[str, Mapping[str, list[int]]]) -> dict[str, dict[str, list[int]]]:
    """FINN folding-config FIFO attributes that make FINN's ``InsertFIFO`` build ``fifo_depth``.

    ``model`` is a design with FIFOs inserted (:func:`flow.sim.rtlsim.chains.with_fifos`);
    ``base`` the layers' current attributes (FIFOs not in ``fifo_depth`` keep theirs). A FIFO
    between two layers sets the producer's ``outFIFODepths`` and the consumer's
    ``inFIFODepths`` (FINN takes the larger); next to a converter or at the graph's edge,
    the layer's side alone.
    """
    cfg = {name: {a: list(v) for a, v in attrs.items() if a in FIFO_ATTRS} for name, attrs in base.items()}
    for fifo in fifo_nodes(model):
        if fifo.name not in fifo_depth:
            continue
        d = int(fifo_depth[fifo.name])
        prod = model.find_producer(fifo.input[0])
        cons = model.find_consumer(fifo.output[0])
        if prod is not None and not is_plumbing(prod) and prod.name in cfg:
            outs = cfg[prod.name].setdefault("outFIFODepths", [2] * len(prod.output))
            outs += [2] * (len(prod.output) - len(outs))
            outs[list(prod.output).index(fifo.input[0])] = d
        if cons is not None and not is_plumbing(cons) and cons.name in cfg:
            n_in = len(streamed_inputs(model, cons))
            ins = cfg[cons.name].setdefault("inFIFODepths", [2] * n_in)
            ins += [2] * (n_in - len(ins))
            ins[streamed_inputs(model, cons).index(fifo.output[0])] = d
    return cfg
