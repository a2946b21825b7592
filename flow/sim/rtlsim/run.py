"""Simulate a FINN graph of RTL layers on a batch and compare it, bit for bit, with Python.

:func:`simulate` stitches the graph (:mod:`~flow.sim.rtlsim.stitch`), builds or reuses its
model (:mod:`~flow.sim.rtlsim.cache`), streams the batch through it back to back
(:mod:`~flow.sim.rtlsim.streams`, :mod:`~flow.sim.rtlsim.simulate`) and compares every
output with the expected tensors (the Python execution of the same graph). Cycles per
frame and latency come from the testbench's per-word cycle stamps. The run is bounded
(:func:`bounds`): a design that stops moving data ends as ``deadlock``, never as a hang.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.sim.rtlsim import cache, streams
from flow.sim.rtlsim import simulate as sim
from flow.sim.rtlsim.stitch import Design, stitch


@dataclass
class Mismatch:
    """The first output value where the RTL differs from Python."""

    sample: int
    tensor: str
    index: int  # flat index within the sample
    rtl: float
    python: float
    count: int  # differing values over the whole batch


@dataclass
class RunResult:
    """One design simulated on a batch."""

    status: str  # ok | deadlock | maxcycles
    frames: int
    bit_exact: bool
    mismatch: Mismatch | None
    cycles_per_frame: float | None
    latency: int | None
    total_cycles: int
    verilate_seconds: float
    cached: bool
    sim_seconds: float
    build_seconds: float = 0.0  # what building the model took (also when it came from the cache)
    key: str = ""  # the model's cache key
    peaks: list[int] = field(default_factory=list)
    transfers: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, np.ndarray] = field(default_factory=dict)

    def describe(self) -> str:
        """One phrase: what went wrong, or the measured rate."""
        if self.status != "ok":
            return f"{self.status} after {self.total_cycles} cycles (words per stream: {', '.join(f'{k} {v}' for k, v in self.transfers.items())})"
        if self.mismatch is not None:
            m = self.mismatch
            return f"{m.count} value(s) differ, first at sample {m.sample}, {m.tensor}[{m.index}]: RTL {m.rtl:g}, Python {m.python:g}"
        return f"bit-exact, {self.cycles_per_frame} cycles/frame"


def exp_cycles(nodes) -> list[int]:
    """FINN's expected cycles per frame of each of ``nodes`` (0 where FINN has no estimate)."""
    out = []
    for n in nodes:
        try:
            out.append(int(getCustomOp(n).get_exp_cycles()))
        except Exception:  # noqa: BLE001 - FINN raises assorted errors for ops it cannot time
            out.append(0)
    return out


def bounds(model, frames: int, pace: int = 0) -> tuple[int, int]:
    """(idle, maxcycles): the deadlock bound and the hard cycle bound of a run of ``frames`` frames.

    No node legitimately goes longer than a few frames' worth of its own cycles without a
    transfer anywhere, so ``idle`` is four times the slowest node's frame (at least 10,000);
    ``maxcycles`` allows twenty times a pipelined schedule's length.
    """
    per = exp_cycles(model.graph.node)
    words = [streams.words_per_frame(model, vi.name, consumer=True) for vi in model.graph.input]
    words += [streams.words_per_frame(model, vi.name, consumer=False) for vi in model.graph.output]
    slowest = max(per + words + [1])
    idle = max(10_000, 4 * slowest + 1_000)
    return idle, 20 * ((frames + 2) * max(slowest, pace) + sum(per)) + 100_000


def simulate(model, inputs: dict[str, np.ndarray], expected: dict[str, np.ndarray] | None = None, *,
             design: Design | None = None, cache_dir: str | Path | None = None, drive: sim.Drive | None = None,
             monitors: list[tuple[int, int]] = (), memfiles: dict[str, Path] | None = None) -> RunResult:
    """Run ``inputs`` (graph input -> batch) through the RTL of ``model``; compare with ``expected`` (graph output -> batch)."""
    design = design or stitch(model)
    built = cache.build(design, cache_dir)
    frames = len(next(iter(inputs.values())))
    gin = [p.tensor for p in design.inputs]
    gout = [p.tensor for p in design.outputs]
    drive = drive or sim.Drive()
    idle, maxcycles = bounds(model, frames, drive.pace)
    drive = dataclasses.replace(drive, idle=max(drive.idle, idle), maxcycles=maxcycles)
    words = [streams.pack(model, t, inputs[t]) for t in gin]
    wpf = [streams.words_per_frame(model, t, consumer=True) for t in gin]
    out_wpf = [streams.words_per_frame(model, t, consumer=False) for t in gout]
    res = sim.run(built, design, words, [w * frames for w in out_wpf], words_per_frame=wpf,
                  monitors=monitors, memfiles=memfiles, drive=drive)
    outputs: dict[str, np.ndarray] = {}
    mismatch = None
    if res.status == "ok":
        for k, t in enumerate(gout):
            outputs[t] = got = streams.unpack(model, t, res.outputs[k], frames)
            if expected is None or mismatch is not None:
                continue
            want = np.asarray(expected[t], dtype=np.float32).reshape(got.shape)
            bad = np.argwhere(got != want)
            if len(bad):
                first = tuple(bad[0])
                flat = int(np.ravel_multi_index(first[1:], got.shape[1:])) if got.ndim > 1 else 0
                mismatch = Mismatch(int(first[0]), t, flat, float(got[first]), float(want[first]), int(len(bad)))
    cpf, latency = sim.frame_timing(res, out_wpf[0]) if res.status == "ok" else (None, None)
    exact = res.status == "ok" and mismatch is None and expected is not None
    return RunResult(res.status, frames, exact, mismatch, cpf, latency, res.cycles, built.verilate_seconds, built.cached,
                     res.wall_seconds, built.build_seconds, built.key, res.peaks, res.transfers, outputs)


def subgraph(model, nodes) -> ModelWrapper:
    """``nodes`` of ``model`` as a graph of their own: streamed inputs from outside become graph
    inputs, tensors read outside (or graph outputs) become graph outputs; initializers and
    datatypes are kept."""
    names = {n.name for n in nodes}
    produced = {t for n in nodes for t in n.output}
    outer_out = {vi.name for vi in model.graph.output}
    ins, outs = [], []
    for n in nodes:
        for t in n.input:
            if t and t not in produced and model.get_initializer(t) is None and t not in ins:
                ins.append(t)
        for t in n.output:
            readers = model.find_consumers(t) or []
            if t in outer_out or any(r.name not in names for r in readers) or not readers:
                outs.append(t)

    def vi(t):
        return helper.make_tensor_value_info(t, TensorProto.FLOAT, model.get_tensor_shape(t))

    inner = [vi(t) for n in nodes for t in n.output if t not in outs]
    g = helper.make_graph([copy.deepcopy(n) for n in nodes], "rtlsim", [vi(t) for t in ins], [vi(t) for t in outs], value_info=inner)
    m = ModelWrapper(helper.make_model(g, producer_name="qflow-rtlsim"))
    for n in nodes:
        for t in list(n.input) + list(n.output):
            if not t:
                continue
            init = model.get_initializer(t)
            if init is not None:
                m.set_initializer(t, init)
            m.set_tensor_datatype(t, model.get_tensor_datatype(t))
    return m
