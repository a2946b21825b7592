"""One FINN RTL layer's HDL, as FINN's own codegen wrote it: sources, ports, memory files.

A Verilator model is compiled once and cached, while weights and thresholds are data.
FINN's generated HDL names its memory files either relative to the simulator's working
folder (Thresholding: ``"./<node>_..."``) or by absolute path into the node's codegen
folder (the weight memstream: ``<code_gen_dir>/memblock.dat``). Absolute references are
rewritten to ``./<node>__<file>`` and every memory file is copied into the run folder, so
one cached model serves any weights, and a corrupted ``.dat`` file is exactly what the
simulation reads (the fault check relies on this).

finn-rtllib sources are read in place, except the two :mod:`flow.compat.finn_rtl` fixes
(applied to the copy that is compiled). Ports are read from the node's generated wrapper
(FINN's templates use ANSI port lists), so the stitcher ties off AXI-lite and unused
inputs without a table per op.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from qonnx.custom_op.registry import getCustomOp

from flow.compat.finn_rtl import finn_rtllib, rtllib_text

MEM_SUFFIXES = (".dat", ".mem")
#: Ops whose core takes its weights on ``in1_V`` from a memstream in mem_mode internal_decoupled.
MEMSTREAM_OPS = ("MVAU_rtl", "VVAU_rtl")


class UnsupportedNode(RuntimeError):
    """The node cannot be simulated (HLS, Vivado-only IP, an unsupported mode); the message says why."""


@dataclass
class Source:
    """One HDL file: the name it gets in the build folder, its text, and whether it is shared finn-rtllib code."""

    name: str
    text: str
    library: bool


@dataclass
class Stream:
    """An AXI-stream port group of a module: prefix (``in0_V``), TDATA width, suffix case."""

    prefix: str
    width: int
    upper: bool = True

    def sig(self, what: str) -> str:
        """The port name of ``what`` (``TDATA``/``TVALID``/``TREADY``) on this stream."""
        return f"{self.prefix}_{what.upper() if self.upper else what.lower()}"


@dataclass
class Module:
    """A module to instantiate: its name, ports (name -> direction) and its streams."""

    name: str
    ports: dict[str, str]
    inputs: list[Stream] = field(default_factory=list)
    outputs: list[Stream] = field(default_factory=list)


@dataclass
class NodeHDL:
    """What the stitcher needs about one node."""

    node: str
    op_type: str
    top: Module
    sources: list[Source]
    memfiles: dict[str, Path]  # name in the run folder -> file FINN wrote
    weights: Module | None = None  # memstream feeding top's in1_V (internal_decoupled)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"\(\*.*?\*\)", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _group(text: str, start: int) -> tuple[str, int]:
    """The text inside the parenthesis group opening at ``text[start]``, and the index after it."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1 : i], i + 1
    raise UnsupportedNode("unbalanced parentheses in a generated port list")


def parse_ports(text: str, module: str) -> dict[str, str]:
    """``{port: "input" | "output" | "inout"}`` of ``module``'s ANSI port list in ``text``."""
    body = _strip_comments(text)
    m = re.search(rf"\bmodule\s+{re.escape(module)}\b", body)
    if not m:
        raise UnsupportedNode(f"module {module} is not in its generated wrapper")
    pos = m.end()
    while body[pos].isspace():
        pos += 1
    if body[pos] == "#":
        _, pos = _group(body, body.index("(", pos))
    plist, _ = _group(body, body.index("(", pos))
    ports: dict[str, str] = {}
    direction, depth, item = None, 0, ""
    for ch in plist + ",":
        depth += 1 if ch in "([{" else -1 if ch in ")]}" else 0
        if ch == "," and depth == 0:
            words = re.findall(r"[A-Za-z_$][A-Za-z0-9_$]*", re.sub(r"\[[^\]]*\]", " ", item))
            if words and words[0] in ("input", "output", "inout"):
                direction = words[0]
            if words and direction:
                ports[words[-1]] = direction
            item = ""
        else:
            item += ch
    return ports


def _stream(ports: dict[str, str], prefix: str, width: int) -> Stream:
    for upper in (True, False):
        s = Stream(prefix, width, upper)
        if s.sig("TDATA") in ports:
            return s
    raise UnsupportedNode(f"stream {prefix} has no {prefix}_TDATA port")


def run_name(node: str, file: str) -> str:
    """The name a node's memory file gets in the run folder (unique across nodes)."""
    return file if file.startswith(node + "_") else f"{node}__{file}"


def _relative_memfiles(text: str, code_gen_dir: Path, node: str) -> str:
    """Absolute references into the codegen folder become ``./<run name>`` (run-folder relative)."""
    pattern = re.escape(str(code_gen_dir)) + r"/([A-Za-z0-9_.\-]+)"
    return re.sub(pattern, lambda m: "./" + run_name(node, m.group(1)), text)


def check_simulable(node) -> None:
    """Raise :class:`UnsupportedNode` saying why ``node`` has no HDL qflow can simulate."""
    op = node.op_type
    if op.endswith("_hls"):
        raise UnsupportedNode(f"HLS layer: needs Vitis HLS (no open HLS simulator); {op} runs with its Python semantics only")
    if not op.endswith("_rtl"):
        raise UnsupportedNode(f"{op} is not an RTL layer")
    inst = getCustomOp(node)
    if op == "StreamingFIFO_rtl" and inst.get_nodeattr("impl_style") != "rtl":
        raise UnsupportedNode(f"{node.name}: impl_style={inst.get_nodeattr('impl_style')} is Vivado IP; only impl_style=rtl is simulated")
    if op in MEMSTREAM_OPS and inst.get_nodeattr("mem_mode") != "internal_decoupled":
        raise UnsupportedNode(f"{node.name}: mem_mode={inst.get_nodeattr('mem_mode')} is not simulated (internal_decoupled is)")
    if "runtime_writeable_weights" in inst.get_nodeattr_types() and inst.get_nodeattr("runtime_writeable_weights"):
        raise UnsupportedNode(f"{node.name}: runtime-writeable weights (AXI-lite) are not simulated")


def node_hdl(node, *, apply_fixes: bool = True) -> NodeHDL:
    """The HDL of ``node``, a FINN RTL node whose code FINN generated (``PrepareIP``)."""
    check_simulable(node)
    inst = getCustomOp(node)
    cg = Path(inst.get_nodeattr("code_gen_dir_ipgen"))
    if not inst.get_nodeattr("code_gen_dir_ipgen") or not cg.is_dir():
        raise UnsupportedNode(f"{node.name}: FINN generated no HDL for it (run PrepareIP first)")
    lib = finn_rtllib()
    files = [Path(f) for f in inst.get_rtl_file_list(abspath=True)]
    decoupled = node.op_type in MEMSTREAM_OPS
    if decoupled:
        files += [cg / f"{node.name}_memstream_wrapper.v", lib / "axi/hdl/axilite.sv",
                  lib / "memstream/hdl/memstream_axi.sv", lib / "memstream/hdl/memstream.sv"]
    sources = []
    for f in files:
        library = lib in f.resolve().parents
        if library:
            sources.append(Source(f.name, rtllib_text(f, apply_fixes=apply_fixes), True))
        else:
            name = f.name if f.name.startswith(node.name) else f"{node.name}__{f.name}"
            sources.append(Source(name, _relative_memfiles(f.read_text(), cg, node.name), False))
    top_name = inst.get_verilog_top_module_name()
    top_src = next((s for s in sources if re.search(rf"\bmodule\s+{re.escape(top_name)}\b", s.text)), None)
    if top_src is None:
        raise UnsupportedNode(f"{node.name}: its top module {top_name} is not in its sources")
    ports = parse_ports(top_src.text, top_name)
    intf = inst.get_verilog_top_module_intf_names()
    top = Module(top_name, ports, [_stream(ports, n, w) for n, w in intf["s_axis"]],
                 [_stream(ports, n, w) for n, w in intf["m_axis"]])
    weights = None
    if decoupled:
        wname = f"{node.name}_memstream_wrapper"
        wsrc = next(s for s in sources if s.name == f"{wname}.v")
        wports = parse_ports(wsrc.text, wname)
        width = inst.get_instream_width_padded(1)
        weights = Module(wname, wports, [], [_stream(wports, "m_axis_0", width)])
        top.inputs.append(_stream(ports, "in1_V", width))
    memfiles = {run_name(node.name, f.name): f for f in sorted(cg.iterdir()) if f.suffix in MEM_SUFFIXES}
    return NodeHDL(node.name, node.op_type, top, sources, memfiles, weights)
