"""Look at a graph at any stage of the flow: its op sequence and a left-to-right box diagram.

Every build checkpoints the model after each step (``BuildResult.checkpoints`` maps the
step name to its ONNX file); these helpers take such a path or a ``ModelWrapper``.
The diagram is drawn with matplotlib alone (no graphviz binary needed).

* :func:`op_sequence` -- the op types in execution order, dataflow partitions expanded;
* :func:`op_summary` -- the same as one line, repeats collapsed (``Quant x4``);
* :func:`render_graph` -- a matplotlib ``Figure`` with one box per node (op type plus its
  key shapes: weight matrix, thresholds, bit width, PE/SIMD) and arrows in execution
  order. By default only the data path is drawn: nodes that depend on no graph input,
  such as QONNX's weight quantizers, are hidden and counted in the title. A long graph
  (ResNet-50's 300 layers) draws each run of a repeated op pattern once, framed, ``x N``;
* :func:`repeats` -- that grouping: a sequence as (start, pattern length, repetitions) runs;
* :func:`cycle_profile` -- every layer of a report as one thin bar in dataflow order, for
  designs of any size; :func:`slowest` -- a report's slowest layers.

>>> import numpy as np
>>> from onnx import TensorProto, helper
>>> from qonnx.core.modelwrapper import ModelWrapper
>>> from qonnx.util.basic import qonnx_make_model
>>> vi = helper.make_tensor_value_info
>>> w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, dtype=np.float32))
>>> g = helper.make_graph(
...     [helper.make_node("Relu", ["w"], ["wr"], name="prep"),
...      helper.make_node("MatMul", ["x", "wr"], ["h"], name="mm"),
...      helper.make_node("Relu", ["h"], ["y"], name="act")],
...     "g", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 3])],
...     initializer=[w], value_info=[vi("h", TensorProto.FLOAT, [1, 3]), vi("wr", TensorProto.FLOAT, [4, 3])])
>>> model = ModelWrapper(qonnx_make_model(g))
>>> op_sequence(model)
['Relu', 'MatMul', 'Relu']
>>> op_sequence(model, data_path=True)
['MatMul', 'Relu']
>>> op_summary(model)
'Relu -> MatMul -> Relu'
>>> fig = render_graph(model, title="toy")
>>> fig.axes[0].get_title(loc="left")
'toy  (1 constant node hidden)'
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from onnx import helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.vocab import PARTITION_OP, is_hw_node
from flow.report.cells import bottleneck_names, bottleneck_text
from flow.report.schema import Report
from flow.report.style import BLUE, GREY, PALETTE, RED, figure, text

__all__ = ["op_sequence", "op_summary", "render_graph", "node_detail", "repeats", "cycle_profile", "slowest"]

PARTITION_OPS = (PARTITION_OP, "GenericPartition")

# Box colours by kind of node.
_COLORS = {
    "hw": "#cfe0f3",  # FINN hardware layer (fpgadataflow domain)
    "quant": "#fde2c4",  # quantizers and thresholds
    "compute": "#d5ecd9",  # MatMul / Conv / Gemm
    "partition": "#e6dcf2",
    "other": "#eceff3",
}
_EDGE = "#52606d"


def _as_model(model: ModelWrapper | str | Path) -> ModelWrapper:
    return model if isinstance(model, ModelWrapper) else ModelWrapper(str(model))


def _is_partition(node) -> bool:
    return node.op_type in PARTITION_OPS


def _child(node) -> ModelWrapper | None:
    try:
        path = getCustomOp(node).get_nodeattr("model")
    except Exception:  # noqa: BLE001 - unregistered partition op: leave it unexpanded
        return None
    return ModelWrapper(path) if path and Path(path).is_file() else None


def _data_nodes(model: ModelWrapper) -> set[str]:
    """Indices of the nodes that depend (transitively) on a non-initializer graph input."""
    init = {i.name for i in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in init}
    keep = set()
    for k, node in enumerate(model.graph.node):  # ONNX graphs are topologically sorted
        if any(i in live for i in node.input if i):
            keep.add(k)
            live.update(o for o in node.output if o)
    return keep


def _walk(model: ModelWrapper, data_path: bool, expand: bool):
    """(node, model) in execution order, partitions expanded into their child's nodes."""
    keep = _data_nodes(model) if data_path else None
    for k, node in enumerate(model.graph.node):
        if keep is not None and k not in keep:
            continue
        child = _child(node) if expand and _is_partition(node) else None
        if child is not None:
            yield from _walk(child, data_path, expand)
        else:
            yield node, model


def op_sequence(model: ModelWrapper | str | Path, *, data_path: bool = False, expand_partitions: bool = True) -> list[str]:
    """The op types of ``model``'s nodes in execution order.

    ``model`` is a ``ModelWrapper`` or the path of an ONNX file (e.g. a build checkpoint).
    ``data_path=True`` keeps only the nodes that depend on a graph input (dropping weight
    quantizers and other constant sub-graphs). Dataflow partition nodes are replaced by
    their child model's nodes unless ``expand_partitions=False``.
    """
    return [node.op_type for node, _ in _walk(_as_model(model), data_path, expand_partitions)]


def op_summary(model: ModelWrapper | str | Path, *, data_path: bool = False, expand_partitions: bool = True) -> str:
    """:func:`op_sequence` as one line, runs of the same op collapsed: ``Quant x4 -> Div -> ...``."""
    ops = op_sequence(model, data_path=data_path, expand_partitions=expand_partitions)
    parts: list[str] = []
    i = 0
    while i < len(ops):
        j = i
        while j < len(ops) and ops[j] == ops[i]:
            j += 1
        parts.append(ops[i] if j - i == 1 else f"{ops[i]} x{j - i}")
        i = j
    return " -> ".join(parts)


def _shape(a) -> str:
    return "x".join(str(int(d)) for d in np.shape(a)) or "scalar"


def _attr(node, name: str):
    for a in node.attribute:
        if a.name == name:

            return helper.get_attribute_value(a)
    return None


def node_detail(model: ModelWrapper, node) -> str:
    """A short description of ``node``'s parameters for the diagram (may be empty).

    Hardware layers: PE/SIMD and matrix size; MatMul/Conv: weight shape; MultiThreshold:
    channels x thresholds; Quant: bit width; TopK: k.
    """
    op = node.op_type
    base = op[:-4] if op.endswith(("_hls", "_rtl")) else op
    if is_hw_node(node):
        parts = []
        if base in ("MVAU", "VVAU"):
            mw, mh = _attr(node, "MW"), _attr(node, "MH")
            if mw and mh:
                parts.append(f"{mw}->{mh}")
        elif base in ("Thresholding",):
            parts.append(f"{_attr(node, 'NumChannels')} ch")
        elif base.startswith("ConvolutionInputGenerator"):
            k = _attr(node, "ConvKernelDim")
            if k:
                parts.append("k " + "x".join(map(str, k)))
        elif base == "LabelSelect":
            parts.append(f"top-{_attr(node, 'K')} of {_attr(node, 'Labels')}")
        pe, simd = _attr(node, "PE"), _attr(node, "SIMD")
        fold = " ".join(s for s in (f"PE {pe}" if pe else "", f"SIMD {simd}" if simd else "") if s)
        return "\n".join(p for p in (" ".join(parts), fold) if p)
    params = [model.get_initializer(i) if i else None for i in node.input]
    if op in ("MatMul", "Gemm", "Conv", "ConvTranspose") and len(params) > 1:
        w = params[1]
        if w is not None:
            return f"W {_shape(w)}"
        src = model.find_producer(node.input[1])  # QONNX: the weights come out of a quantizer
        if src is not None and src.op_type in ("Quant", "BipolarQuant"):
            w = model.get_initializer(src.input[0])
            if w is not None:
                return f"W {_shape(w)}\n{node_detail(model, src)}"
        return ""
    if op == "MultiThreshold" and len(params) > 1 and params[1] is not None:
        t = params[1]
        return f"{t.shape[0]} ch x {t.shape[1]} thr"
    if op in ("Quant", "BipolarQuant"):
        if op == "BipolarQuant":
            return "1 bit"
        bw = params[3] if len(params) > 3 else None
        return f"{float(np.asarray(bw).reshape(-1)[0]):g} bit" if bw is not None else ""
    if op in ("Mul", "Add", "Sub", "Div") and len(params) > 1 and params[1] is not None:
        c = np.asarray(params[1])
        sym = {"Mul": "*", "Add": "+", "Sub": "-", "Div": "/"}[op]
        return f"{sym} {float(c.reshape(-1)[0]):.4g}" if c.size == 1 else f"{sym} const {_shape(c)}"
    if op == "TopK":
        k = params[1] if len(params) > 1 else None
        return f"k={int(np.asarray(k).reshape(-1)[0])}" if k is not None else ""
    if op in ("MaxPool", "MaxPoolNHWC"):
        k = _attr(node, "kernel_shape")
        return "k " + "x".join(map(str, k)) if k else ""
    return ""


def _kind(node) -> str:
    op = node.op_type
    if _is_partition(node):
        return "partition"
    if is_hw_node(node):
        return "hw"
    if op in ("Quant", "BipolarQuant", "Trunc", "MultiThreshold"):
        return "quant"
    if op in ("MatMul", "Gemm", "Conv", "ConvTranspose"):
        return "compute"
    return "other"


def repeats(seq: list, max_len: int = 16) -> list[tuple[int, int, int]]:
    """``seq`` as consecutive runs ``(start, pattern length, repetitions)``: at each place the
    pattern of at most ``max_len`` items that repeats back to back over the longest stretch
    (the shorter pattern on a tie), else one item once.

    >>> repeats(list("abcbcbcd"))
    [(0, 1, 1), (1, 2, 3), (7, 1, 1)]
    """
    out, i, n = [], 0, len(seq)
    while i < n:
        best = (1, 1)
        for length in range(1, min(max_len, (n - i) // 2) + 1):
            count = 1
            while seq[i + count * length: i + (count + 1) * length] == seq[i: i + length]:
                count += 1
            if count > 1 and length * count > best[0] * best[1]:
                best = (length, count)
        out.append((i, *best))
        i += best[0] * best[1]
    return out


#: Above this many nodes :func:`render_graph` draws repeated patterns once.
GROUP_ABOVE = 60


def render_graph(
    model: ModelWrapper | str | Path,
    *,
    title: str | None = None,
    data_path: bool = True,
    expand_partitions: bool = True,
    per_row: int = 7,
    group: bool | None = None,
):
    """A left-to-right box diagram of ``model`` as a matplotlib ``Figure``.

    One box per node in execution order (rows wrap after ``per_row`` boxes), labelled
    with the op type and :func:`node_detail`; colours: blue = FINN hardware layer,
    orange = quantizer/thresholds, green = MatMul/Conv, grey = other. Arrows follow
    execution order (the flow's graphs are chains). ``data_path=True`` hides nodes that
    depend on no graph input (e.g. weight quantizers) and says how many in the title.
    ``group`` (default: above :data:`GROUP_ABOVE` nodes) draws each run of a repeated op
    pattern (:func:`repeats`) once, on its own row, framed and marked ``x N`` (the details
    shown are its first occurrence's).
    """
    m = _as_model(model)
    walked = list(_walk(m, data_path, expand_partitions))
    hidden = len(list(_walk(m, False, expand_partitions))) - len(walked) if data_path else 0
    per_row = max(1, int(per_row))
    runs = [(i, 1, 1) for i in range(len(walked))]
    if group or (group is None and len(walked) > GROUP_ABOVE):
        runs = repeats([node.op_type for node, _ in walked])
        per_row = max(per_row, min(16, max((length for _, length, count in runs if count > 1), default=1)))
    cells, frames, col, row = [], [], 0, 0  # (node, owner, col, row); (first cell, last cell, count)
    for start, length, count in runs:
        if count > 1 and col and col + length > per_row:
            col, row = 0, row + 1
        first = len(cells)
        for node, owner in walked[start: start + length]:
            if col == per_row:
                col, row = 0, row + 1
            cells.append((node, owner, col, row))
            col += 1
        if count > 1:
            frames.append((first, len(cells) - 1, count))
            col, row = 0, row + 1
    n = len(cells)
    cols = min(per_row, max(n, 1))
    rows = max(1, cells[-1][3] + 1 if cells else 1)
    box_w, box_h, gap_x, gap_y = 1.7, 1.0, 0.55, 0.75
    fig = figure(0.4 + cols * (box_w + gap_x) * 0.95, 0.7 + rows * (box_h + gap_y) * 0.95)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_xlim(-0.2, cols * (box_w + gap_x) - gap_x + 0.2)
    ax.set_ylim(-(rows * (box_h + gap_y)) + gap_y - 0.2, 0.2 + 0.05)
    ax.set_aspect("equal")

    def pos(i: int) -> tuple[float, float]:
        c, r = cells[i][2], cells[i][3]
        return c * (box_w + gap_x), -r * (box_h + gap_y) - box_h  # lower-left corner

    for i, (node, owner, _, _) in enumerate(cells):
        x, y = pos(i)
        ax.add_patch(FancyBboxPatch((x, y), box_w, box_h, boxstyle="round,pad=0,rounding_size=0.12",
                                    facecolor=_COLORS[_kind(node)], edgecolor=_EDGE, linewidth=0.9))
        label = node.op_type if len(node.op_type) <= 18 else textwrap.fill(node.op_type, 16)
        ax.text(x + box_w / 2, y + box_h * 0.68, label.replace("$", r"\$"), ha="center", va="center",
                fontsize=7.5, fontweight="bold")
        detail = node_detail(owner, node)
        if detail:
            ax.text(x + box_w / 2, y + box_h * 0.28, detail.replace("$", r"\$"), ha="center", va="center",
                    fontsize=6.5, color="#323f4b", linespacing=1.1)
        if i + 1 < n:
            nx, ny = pos(i + 1)
            if ny == y:  # same row: straight arrow
                start, end = (x + box_w, y + box_h / 2), (nx, ny + box_h / 2)
            else:  # wrap to the next row: down, back to the left, down into the next box
                mid = y - gap_y / 2
                ax.plot([x + box_w / 2, x + box_w / 2, nx + box_w / 2], [y, mid, mid], color=_EDGE, linewidth=0.9)
                start, end = (nx + box_w / 2, mid), (nx + box_w / 2, ny + box_h)
            ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, color=_EDGE,
                                         linewidth=0.9, shrinkA=0, shrinkB=1))
    for first, last, count in frames:
        (x0, y0), (x1, y1) = pos(first), pos(last)
        pad = 0.14
        ax.add_patch(FancyBboxPatch((x0 - pad, min(y0, y1) - pad), x1 - x0 + box_w + 2 * pad, max(y0, y1) - min(y0, y1) + box_h + 2 * pad,
                                    boxstyle="round,pad=0,rounding_size=0.15", fill=False, edgecolor=BLUE, linestyle="--", linewidth=1.1))
        ax.text(x1 + box_w + pad, max(y0, y1) + box_h + pad, f"x {count}", ha="right", va="bottom", fontsize=8, color=BLUE, fontweight="bold")
    if n == 0:
        ax.text(0.5, 0.5, "(no nodes)", ha="center", va="center", transform=ax.transAxes)
    label = title if title is not None else (m.graph.name or "graph")
    if hidden:
        label += f"  ({hidden} constant node{'s' if hidden != 1 else ''} hidden)"
    if frames:
        label += f"  ({len(walked)} nodes; each dashed frame is one pattern repeated x N)"
    ax.set_title(label.replace("$", r"\$"), fontsize=9, loc="left")
    return fig


def slowest(layers: list, n: int) -> list:
    """The ``n`` layers with the most cycles per frame, slowest first (dataflow order on ties)."""
    return sorted(layers, key=lambda layer: -layer.cycles)[:n]


def cycle_profile(report: Report, *, top: int = 5):
    """Every layer's cycles per frame as one thin bar, in dataflow order (log scale), coloured by op
    type, the bottleneck red and the ``top`` slowest named: the balance of a design of any size."""
    layers = list(report.layers)
    fig = figure(11.0, 3.6)
    ax = fig.add_subplot()
    ops = sorted({layer.op_type for layer in layers}, key=lambda op: -sum(x.op_type == op for x in layers))
    palette = [c for c in PALETTE if c != RED] + ["#b7950b", "#2c3e50", "#7d3c98"]  # red marks the bottleneck only
    color = {op: (palette[i] if i < len(palette) else GREY) for i, op in enumerate(ops)}
    for op in ops:
        xs = [i for i, layer in enumerate(layers) if layer.op_type == op]
        ax.bar(xs, [max(layers[i].cycles, 1) for i in xs], width=0.9, color=color[op], label=text(op))
    hot = set(bottleneck_names(report))
    for i, layer in enumerate(layers):
        if layer.name in hot:
            ax.bar([i], [max(layer.cycles, 1)], width=0.9, color=RED)
    for layer in slowest(layers, top):
        i = layers.index(layer)
        ax.annotate(text(layer.name), (i, max(layer.cycles, 1)), xytext=(0, 3), textcoords="offset points", rotation=60, fontsize=6.5, ha="left")
    ax.set_yscale("log")
    ax.set_ylim(top=max((layer.cycles for layer in layers), default=1) * 8)  # room for the names
    ax.set_xlim(-1, max(len(layers), 1))
    ax.set_xlabel(f"layer in dataflow order ({len(layers)} layers)")
    ax.set_ylabel("cycles per frame")
    ax.set_title(text(f"Cycles of every layer: {report.model} on {report.target.name}; {bottleneck_text(report, limit=3)} in red"), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    if ops:
        ax.legend(fontsize=6.5, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)  # beside the bars, never over them
    return fig
