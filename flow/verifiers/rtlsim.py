"""The Verilator verifier (``--rtlsim``): the folded design's generated RTL simulated against its Python execution.

The Python reference is the specialized design (host graph and dataflow partition) run by
qflow's batched executor on the first ``rtlsim_samples`` verification inputs, with every
tensor of the partition kept: each RTL layer reads what the Python execution of the graph
before it computed (:mod:`flow.sim.rtlsim`). The FIFO depths the chains' simulation sized
go into ``design.onnx`` (the layers' ``inFIFODepths``/``outFIFODepths``) and into
``fifo_depths.json`` (FINN's folding-config format). Its stage check is the verification
stage ``rtlsim``; its section is report.json's ``rtlsim``, shown as :mod:`flow.verifiers.rtlsim_section` says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compat import finn as _finn_compat
from flow.compile.steps import assemble_design
from flow.core.fileio import atomic_write_bytes, atomic_write_json
from flow.core.pipeline import BuildContext, BuildState
from flow.core.vocab import PARTITION_OP
from flow.sim.execute import execute_batched
from flow.sim.rtlsim.chains import apply_config
from flow.sim.rtlsim.design import DesignSim, simulate_design, stage_check
from flow.sim.rtlsim.toolchain import find_verilator
from flow.sim.verify import fit_inputs
from flow.verifiers.registry import Verifier, VerifierResult
from flow.verifiers.rtlsim_section import RtlsimView

FIFO_DEPTHS_FILE = "fifo_depths.json"


def design_reference(design: ModelWrapper, assembled: ModelWrapper, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the partition ``design`` on the batch ``x``, from the Python execution of ``assembled``."""
    tensors = list(dict.fromkeys(t for n in design.graph.node for t in [*n.input, *n.output] if t and design.get_initializer(t) is None))
    partitions = assembled.get_nodes_by_op_type(PARTITION_OP)
    prefix = f"{partitions[0].name}_" if partitions else ""
    out = execute_batched(assembled, fit_inputs(assembled, x), outputs=[prefix + t for t in tensors])
    return {t: out[prefix + t] for t in tensors}


def run_rtlsim(design: ModelWrapper, design_path: Path, x: np.ndarray, samples: int, ctx: BuildContext,
               log: Callable[[str], None] | None = None) -> DesignSim:
    """Simulate ``design`` (saved at ``design_path``) on the first ``samples`` of ``x``; write its FIFO depths."""
    batch = np.asarray(x[:samples])
    reference = design_reference(design, assemble_design(design, design_path), batch)
    target = ctx.target
    sim = simulate_design(design, reference, part=target.part, clk_ns=target.clock_period_ns, build_dir=ctx.out_dir / "finn_build", log=log)
    apply_config(design, sim.fifo_config)
    atomic_write_bytes(ctx.will_write("design.onnx"), design.model.SerializeToString())
    atomic_write_json(ctx.will_write(FIFO_DEPTHS_FILE), {"Defaults": {}, **sim.fifo_config})
    return sim


class RtlsimVerifier(RtlsimView, Verifier):
    """FINN's generated RTL simulated with Verilator: every RTL layer bit for bit, chains stitched, FIFOs sized."""

    name = "rtlsim"
    options = ("rtlsim", "rtlsim_samples")
    files = (FIFO_DEPTHS_FILE,)

    def enabled(self, ctx: BuildContext) -> bool:
        return ctx.cfg.rtlsim

    def samples(self, ctx: BuildContext) -> int:
        return ctx.cfg.rtlsim_samples

    def check(self, ctx: BuildContext) -> None:
        find_verilator()

    def run(self, state: BuildState, ctx: BuildContext) -> VerifierResult:
        assert state.model is not None and state.design is not None and state.inputs is not None
        log = (lambda line: ctx.say(f"  rtlsim: {line}")) if ctx.log is not None else None
        with _finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
            sim = run_rtlsim(state.model, state.design, state.inputs, ctx.cfg.rtlsim_samples, ctx, log=log)
        return VerifierResult(checks=[stage_check(sim)], section=sim)
