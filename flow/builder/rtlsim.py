"""``qflow build --rtlsim``: the folded design's generated RTL simulated against its Python execution.

The Python reference is the specialized design (host graph and dataflow partition) run by
qflow's batched executor on the first ``rtlsim_samples`` verification inputs, with every
tensor of the partition kept: each RTL layer reads what the Python execution of the graph
before it computed (:mod:`flow.sim.rtlsim`). The FIFO depths the chains' simulation sized
go into ``design.onnx`` (the layers' ``inFIFODepths``/``outFIFODepths``) and into
``fifo_depths.json`` (FINN's folding-config format).
"""

from __future__ import annotations

import numpy as np
from qonnx.core.modelwrapper import ModelWrapper

from flow.compile.steps import assemble_design
from flow.core.fileio import atomic_write_bytes, atomic_write_json
from flow.core.outdir import OutputDir
from flow.core.vocab import PARTITION_OP
from flow.sim.execute import execute_batched
from flow.sim.rtlsim.chains import apply_config
from flow.sim.rtlsim.design import DesignSim, simulate_design
from flow.sim.verify import fit_inputs
from hw_targets import Target

FIFO_DEPTHS_FILE = "fifo_depths.json"


def design_reference(design: ModelWrapper, assembled: ModelWrapper, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the partition ``design`` on the batch ``x``, from the Python execution of ``assembled``."""
    tensors = list(dict.fromkeys(t for n in design.graph.node for t in [*n.input, *n.output] if t and design.get_initializer(t) is None))
    partitions = assembled.get_nodes_by_op_type(PARTITION_OP)
    prefix = f"{partitions[0].name}_" if partitions else ""
    out = execute_batched(assembled, fit_inputs(assembled, x), outputs=[prefix + t for t in tensors])
    return {t: out[prefix + t] for t in tensors}


def run_rtlsim(design: ModelWrapper, design_path, x: np.ndarray, samples: int, target: Target, out: OutputDir) -> DesignSim:
    """Simulate ``design`` (saved at ``design_path``) on the first ``samples`` of ``x``; write its FIFO depths."""
    batch = np.asarray(x[:samples])
    reference = design_reference(design, assemble_design(design, design_path), batch)
    sim = simulate_design(design, reference, part=target.part, clk_ns=target.clock_period_ns, build_dir=out.path / "finn_build")
    apply_config(design, sim.fifo_config)
    atomic_write_bytes(out.will_write("design.onnx"), design.model.SerializeToString())
    atomic_write_json(out.will_write(FIFO_DEPTHS_FILE), {"Defaults": {}, **sim.fifo_config})
    return sim
