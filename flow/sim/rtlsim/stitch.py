"""One top-level module, ``qf_top``, for a graph of FINN RTL layers.

FINN stitches with Vivado's IP Integrator, which qflow does not assume. The top written
here instantiates each node's generated top module as FINN's IPI hierarchy does (a
memstream drives ``in1_V`` of an MVAU_rtl/VVAU_rtl in mem_mode internal_decoupled), wires
the AXI streams between nodes by ONNX tensor, ties every other input (AXI-lite, set
selectors, ``ap_clk2x``) to zero, and brings each internal handshake out as a probe port
(``dbg_v<j>``/``dbg_r<j>``) so the testbench counts transfers per edge, derives FIFO
occupancy and says where a deadlock stopped.

``DuplicateStreams_*`` (HLS only in FINN) is stood in for by ``qf_fork``, a broadcast
written here: every output takes each input word once, and the input is released when
all outputs took it, which is what the HLS node does at the stream level. It lets fork/join
(residual) graphs be simulated, the shape in which too-shallow FIFOs deadlock; the builder
never puts one into a chain (its chains hold generated HDL only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qonnx.custom_op.registry import getCustomOp

from flow.sim.rtlsim.hdl import (
    Module,
    NodeHDL,
    Source,
    Stream,
    UnsupportedNode,
    node_hdl,
)

FORK_SV = """// qflow rtlsim: broadcast one AXI stream to N (stands in for FINN's DuplicateStreams_hls).
module qf_fork #(parameter int WIDTH = 8, parameter int N = 2)(
  input  logic ap_clk, input logic ap_rst_n,
  input  logic [WIDTH-1:0] in0_V_TDATA, input logic in0_V_TVALID, output logic in0_V_TREADY,
  output logic [N*WIDTH-1:0] out_TDATA, output logic [N-1:0] out_TVALID, input logic [N-1:0] out_TREADY
);
  logic [N-1:0] done;  // output k already took the current word
  assign in0_V_TREADY = &(done | out_TREADY);
  assign out_TVALID = {N{in0_V_TVALID}} & ~done;
  assign out_TDATA = {N{in0_V_TDATA}};
  always_ff @(posedge ap_clk) begin
    if (!ap_rst_n) done <= '0;
    else if (in0_V_TVALID) done <= in0_V_TREADY ? '0 : (done | out_TREADY);
  end
endmodule
"""
FORK_OPS = ("DuplicateStreams_hls", "DuplicateStreams")
_SIGNALS = ("TDATA", "TVALID", "TREADY")


@dataclass
class Probe:
    """A handshake the testbench watches: a top-level stream or an internal edge."""

    name: str  # top-level stream prefix (in0_V / out0_V), or the edge number as text
    tensor: str
    producer: str  # node name, or "input"
    consumer: str  # node name, or "output"
    width: int


@dataclass
class Design:
    """A stitched design: the top's text, every source, its I/O streams and internal edges."""

    top: str
    sources: list[Source]
    inputs: list[Probe]
    outputs: list[Probe]
    edges: list[Probe]
    memfiles: dict[str, Path] = field(default_factory=dict)
    nodes: list[NodeHDL] = field(default_factory=list)

    def probe_index(self) -> dict[str, int]:
        """ONNX tensor -> probe number in the testbench (inputs, outputs, then internal edges)."""
        idx = {p.tensor: k for k, p in enumerate(self.inputs)}
        idx.update({p.tensor: len(self.inputs) + k for k, p in enumerate(self.outputs)})
        base = len(self.inputs) + len(self.outputs)
        idx.update({e.tensor: base + int(e.name) for e in self.edges})
        return idx

    def probe_labels(self) -> list[str]:
        """A label per probe, in testbench order."""
        return ([f"{p.name}({p.tensor})" for p in self.inputs] + [f"{p.name}({p.tensor})" for p in self.outputs]
                + [f"{e.producer}->{e.consumer}" for e in self.edges])


def _instance(mod: Module, inst: str, bound: dict[str, str]) -> str:
    conns = []
    for port, direction in mod.ports.items():
        if port in bound:
            conns.append(f".{port}({bound[port]})")
        elif port in ("ap_clk", "ap_rst_n"):
            conns.append(f".{port}({port})")
        else:
            conns.append(f".{port}('0)" if direction == "input" else f".{port}()")
    return f"  {mod.name} {inst} (\n    " + ",\n    ".join(conns) + "\n  );"


def _bind(pairs: list[tuple[Stream, str]]) -> dict[str, str]:
    return {stream.sig(s): f"{wire}_{s.lower()}" for stream, wire in pairs for s in _SIGNALS}


def _top_ports(inputs: list[Probe], outputs: list[Probe], edges: list[Probe]) -> list[str]:
    ports = ["input logic ap_clk", "input logic ap_rst_n"]
    for p in inputs:
        ports += [f"input logic [{p.width - 1}:0] {p.name}_TDATA", f"input logic {p.name}_TVALID", f"output logic {p.name}_TREADY"]
    for p in outputs:
        ports += [f"output logic [{p.width - 1}:0] {p.name}_TDATA", f"output logic {p.name}_TVALID", f"input logic {p.name}_TREADY"]
    for e in edges:
        ports += [f"output logic dbg_v{e.name}", f"output logic dbg_r{e.name}"]
    return ports


def _wires(inputs: list[Probe], outputs: list[Probe], edges: list[Probe]) -> list[str]:
    lines = []
    for p in inputs + outputs:
        lines += [f"  wire [{p.width - 1}:0] {p.name}_tdata;", f"  wire {p.name}_tvalid, {p.name}_tready;"]
        if p in inputs:
            lines += [f"  assign {p.name}_tdata = {p.name}_TDATA;", f"  assign {p.name}_tvalid = {p.name}_TVALID;",
                      f"  assign {p.name}_TREADY = {p.name}_tready;"]
        else:
            lines += [f"  assign {p.name}_TDATA = {p.name}_tdata;", f"  assign {p.name}_TVALID = {p.name}_tvalid;",
                      f"  assign {p.name}_tready = {p.name}_TREADY;"]
    for e in edges:
        lines += [f"  wire [{e.width - 1}:0] e{e.name}_tdata;", f"  wire e{e.name}_tvalid, e{e.name}_tready;",
                  f"  assign dbg_v{e.name} = e{e.name}_tvalid;", f"  assign dbg_r{e.name} = e{e.name}_tready;"]
    return lines


def _fork(node, src: str, outs: list[str], width: int) -> list[str]:
    n, fw = len(outs), f"{node.name}_f"
    lines = [f"  wire [{n * width - 1}:0] {fw}_tdata;", f"  wire [{n - 1}:0] {fw}_tvalid, {fw}_tready;"]
    for k, wire in enumerate(outs):
        lines += [f"  assign {wire}_tdata = {fw}_tdata[{(k + 1) * width - 1}:{k * width}];",
                  f"  assign {wire}_tvalid = {fw}_tvalid[{k}];", f"  assign {fw}_tready[{k}] = {wire}_tready;"]
    lines.append(f"  qf_fork #(.WIDTH({width}), .N({n})) {node.name} (.ap_clk(ap_clk), .ap_rst_n(ap_rst_n), "
                 f".in0_V_TDATA({src}_tdata), .in0_V_TVALID({src}_tvalid), .in0_V_TREADY({src}_tready), "
                 f".out_TDATA({fw}_tdata), .out_TVALID({fw}_tvalid), .out_TREADY({fw}_tready));")
    return lines


def stitch(model, *, apply_fixes: bool = True) -> Design:
    """The stitched ``qf_top`` of every node of ``model`` (RTL nodes with generated HDL, and forks)."""
    g = model.graph
    producers: dict[str, str] = {}
    consumers: dict[str, str] = {}
    blocks = []  # (node, NodeHDL or None for a fork, streamed inputs, outputs)
    for node in g.node:
        dyn = [t for t in node.input if t and model.get_initializer(t) is None]
        blocks.append((node, None if node.op_type in FORK_OPS else node_hdl(node, apply_fixes=apply_fixes), dyn, list(node.output)))
        for t in dyn:
            if t in consumers:
                raise UnsupportedNode(f"tensor {t} feeds two nodes; FINN puts a DuplicateStreams there")
            consumers[t] = node.name
        producers.update({t: node.name for t in node.output})
    widths: dict[str, int] = {}
    for node, nh, dyn, outs in blocks:
        inst = getCustomOp(node)
        for i, t in enumerate(outs):
            widths[t] = inst.get_outstream_width_padded(i) if nh is None else nh.top.outputs[i].width
        for i, t in enumerate(dyn):
            w = inst.get_instream_width_padded(0) if nh is None else nh.top.inputs[i].width
            if widths.setdefault(t, w) != w:
                raise UnsupportedNode(f"{node.name} reads {w}-bit words from {t}, its producer writes {widths[t]}; FINN's InsertDWC belongs there")
    inputs = [Probe(f"in{k}_V", vi.name, "input", consumers[vi.name], widths[vi.name]) for k, vi in enumerate(g.input)]
    outputs = [Probe(f"out{k}_V", vi.name, producers[vi.name], "output", widths[vi.name]) for k, vi in enumerate(g.output)]
    wire = {p.tensor: p.name for p in inputs + outputs}
    edges: list[Probe] = []
    for t, prod in producers.items():
        if t in wire:
            continue
        if t not in consumers:
            raise UnsupportedNode(f"tensor {t} from {prod} is read by no node")
        wire[t] = f"e{len(edges)}"
        edges.append(Probe(str(len(edges)), t, prod, consumers[t], widths[t]))
    lines = ["// generated by qflow (flow.sim.rtlsim.stitch): FINN layers wired by ONNX tensor",
             "module qf_top (\n  " + ",\n  ".join(_top_ports(inputs, outputs, edges)) + "\n);"]
    lines += _wires(inputs, outputs, edges)
    sources: list[Source] = []
    seen: set[str] = set()
    memfiles: dict[str, Path] = {}
    nodes: list[NodeHDL] = []
    for node, nh, dyn, outs in blocks:
        if nh is None:
            lines += _fork(node, wire[dyn[0]], [wire[t] for t in outs], widths[dyn[0]])
            if "qf_fork.sv" not in seen:
                seen.add("qf_fork.sv")
                sources.append(Source("qf_fork.sv", FORK_SV, True))
            continue
        nodes.append(nh)
        pairs = [(nh.top.inputs[i], wire[t]) for i, t in enumerate(dyn)] + [(nh.top.outputs[i], wire[t]) for i, t in enumerate(outs)]
        if nh.weights is not None:
            ww, ws = f"{node.name}_w", nh.weights.outputs[0]
            lines += [f"  wire [{ws.width - 1}:0] {ww}_tdata;", f"  wire {ww}_tvalid, {ww}_tready;"]
            lines.append(_instance(nh.weights, f"{node.name}_wstrm", _bind([(ws, ww)])))
            pairs.append((nh.top.inputs[len(dyn)], ww))
        lines.append(_instance(nh.top, f"{node.name}_i", _bind(pairs)))
        for s in nh.sources:
            key = s.name if s.library else f"{node.name}/{s.name}"
            if key not in seen:
                seen.add(key)
                sources.append(s)
        memfiles.update(nh.memfiles)
    lines.append("endmodule")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise UnsupportedNode(f"two sources share a file name: {sorted({n for n in names if names.count(n) > 1})}")
    return Design("\n".join(lines) + "\n", sources, inputs, outputs, edges, memfiles, nodes)
