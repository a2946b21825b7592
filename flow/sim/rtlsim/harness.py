"""The C++ AXI-stream testbench of a stitched design (``testbench.cpp`` with its ports filled in).

Why C++ and not Python per cycle: one Python call per clock costs microseconds; the
compiled loop runs millions of cycles per second, so many frames cost milliseconds. The
testbench is generated per design only because Verilator types each port by its width
(``CData`` .. ``QData`` up to 64 bits, ``VlWide<N>`` above); its behaviour is fixed and
described in ``testbench.cpp``: reset as FINN's own testbench does, inputs held until
accepted, optional seeded random back-pressure, optional pacing of inputs (one frame every
T cycles), a transfer counter on every probe, FIFO occupancy peaks, and a deadlock bound
(``deadlock`` after N cycles without any transfer, ``maxcycles`` as a hard stop) so a run
always ends.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from flow.sim.rtlsim.stitch import Design

_TEMPLATE = Path(__file__).with_name("testbench.cpp")


@cache
def _template() -> str:
    return _TEMPLATE.read_text()


def _words32(width: int) -> int:
    return (width + 31) // 32


def _setter(port: str, width: int, src: str) -> str:
    if width <= 64:
        return f"top->{port} = (uint64_t){src}[0] | ((uint64_t)({src}.size() > 1 ? {src}[1] : 0) << 32);"
    return f"for (int i = 0; i < {_words32(width)}; ++i) top->{port}[i] = i < (int){src}.size() ? {src}[i] : 0;"


def _getter(port: str, width: int) -> str:
    if width <= 64:
        return f"{{uint64_t v = top->{port}; w.push_back((uint32_t)v); w.push_back((uint32_t)(v >> 32));}}"
    return f"for (int i = 0; i < {_words32(width)}; ++i) w.push_back(top->{port}[i]);"


def testbench(design: Design) -> str:
    """The testbench source for ``design``'s ports."""
    clear, drive, sample = [], [], []
    for k, p in enumerate(design.inputs):
        clear.append(f"  top->{p.name}_TVALID = 0;")
        drive.append(f"    top->{p.name}_TVALID = vld[{k}];")
        drive.append(f"    if (vld[{k}]) {{ const Word &d = in[{k}][idx[{k}]]; {_setter(p.name + '_TDATA', p.width, 'd')} }}")
        sample.append(f"    f[{k}] = vld[{k}] && top->{p.name}_TREADY;")
    for k, p in enumerate(design.outputs):
        j = len(design.inputs) + k
        clear.append(f"  top->{p.name}_TREADY = 0;")
        drive.append(f"    top->{p.name}_TREADY = rdy[{k}];")
        sample.append(f"    f[{j}] = rdy[{k}] && top->{p.name}_TVALID;")
        sample.append(f"    if (f[{j}]) {{ Word w; {_getter(p.name + '_TDATA', p.width)} fprintf(fo[{k}], \"%lld \", cyc);"
                      f" hexw(fo[{k}], w, {p.width}); fputc('\\n', fo[{k}]); got[{k}]++; }}")
    base = len(design.inputs) + len(design.outputs)
    for e in design.edges:
        sample.append(f"    f[{base + int(e.name)}] = top->dbg_v{e.name} && top->dbg_r{e.name};")
    subs = {"@NI@": str(len(design.inputs)), "@NO@": str(len(design.outputs)), "@NE@": str(len(design.edges)),
            "@CLEAR@": "\n".join(clear), "@DRIVE@": "\n".join(drive), "@SAMPLE@": "\n".join(sample)}
    text = _template()
    for key, value in subs.items():
        text = text.replace(key, value)
    return text
