"""flow.report.plots (report charts) and flow.report.graphs (op sequences, graph diagrams)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from flow.builder.pipeline import build
from flow.compile.steps import assemble_design
from flow.core.config import build_config
from flow.report import plots
from flow.report.graphs import op_sequence, op_summary, render_graph
from flow.report.schema import Report

RED, BLUE, GREEN, GREY = "#c0392b", "#3b6ea8", "#2e8b57", "#9aa5b1"


def _report(**over):
    r = {
        "schema_version": 1,
        "model": "tfc",
        "target": {"name": "pynq-z1", "part": "xc7z020clg400-1", "clock_mhz": 100.0},
        "layers": [
            {"name": "Thresholding_rtl_0", "op_type": "Thresholding_rtl", "pe": 1, "simd": None, "cycles": 784,
             "lut": 300.0, "bram_18k": 0.0, "uram": 0.0, "dsp": 0.0},
            {"name": "MVAU_hls_0", "op_type": "MVAU_hls", "pe": 4, "simd": 16, "cycles": 900,
             "lut": 1200.0, "bram_18k": 8.0, "uram": 0.0, "dsp": 0.0},
            {"name": "LabelSelect_hls_0", "op_type": "LabelSelect_hls", "pe": 1, "simd": None, "cycles": 10,
             "lut": 0.0, "bram_18k": 0.0, "uram": 0.0, "dsp": 0.0},
        ],
        "totals": {"lut": 1500.0, "bram_18k": 8.0, "uram": 0.0, "dsp": 0.0},
        "data_width_converters": {"count": 0, "totals": {"lut": 0.0, "bram_18k": 0.0, "uram": 0.0, "dsp": 0.0}, "converters": []},
        "budget": {"lut": 37240, "bram_18k": 224, "uram": 0, "dsp": 176},
        "fits": True,
        "over_budget": [],
        "max_cycles": 900,
        "bottleneck": "MVAU_hls_0",
        "throughput_fps": 111111.1,
        "latency_us": 16.94,
        "accuracy": 0.95,
        "verification": None,
        "folding": {"mode": "fps", "target_fps": 100000, "file": None},
        "stage": "estimates",
        "skipped": [],
        "timings_s": {},
    }
    r.update(over)
    return Report.from_dict(r)


def _draws(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


def _bars(fig: Figure) -> list[Rectangle]:
    return [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]


# --------------------------------------------------------------------------- plots


def test_cycles_per_layer_marks_the_bottleneck():
    r = _report()
    fig = plots.cycles_per_layer(r)
    assert isinstance(fig, Figure)
    bars = _bars(fig)
    assert [b.get_width() for b in bars] == [784, 900, 10]
    assert [to_hex(b.get_facecolor()) for b in bars] == [BLUE, RED, BLUE]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [layer.name for layer in r.layers]
    assert "MVAU_hls_0" in ax.get_title() and "111,111 FPS" in ax.get_title()
    assert _draws(fig).startswith(b"\x89PNG")


def test_cycles_per_layer_log_scale_and_no_layers():
    assert plots.cycles_per_layer(_report(), log=True).axes[0].get_xscale() == "log"
    fig = plots.cycles_per_layer(_report(layers=[], bottleneck=""))
    assert _bars(fig) == [] and _draws(fig)


def test_resource_use_is_share_of_the_caps():
    r = _report(totals={"lut": 40000.0, "bram_18k": 8.0, "uram": 4.0, "dsp": 0.0}, fits=False, over_budget=["lut", "uram"])
    fig = plots.resource_use(r)
    bars = _bars(fig)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["LUT", "BRAM18", "URAM", "DSP"]
    assert bars[0].get_width() == pytest.approx(40000 / 37240)
    assert bars[1].get_width() == pytest.approx(8 / 224)
    # LUT over its cap, BRAM within, URAM used on a board without URAM, DSP unused
    assert [to_hex(b.get_facecolor()) for b in bars] == [RED, GREEN, RED, GREEN]
    assert "OVER" in fig.axes[0].get_title()
    texts = " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "40,000 / 37,240" in texts and "cap 0" in texts
    assert _draws(fig)


def test_resource_use_unused_missing_resource_is_grey():
    bars = _bars(plots.resource_use(_report()))
    assert to_hex(bars[2].get_facecolor()) == GREY and bars[2].get_width() == 0


def test_accuracy_vs_resources_one_point_per_report_with_accuracy():
    a = _report()
    b = _report(model="sfc", accuracy=0.97, totals={"lut": 50000.0, "bram_18k": 30.0, "uram": 0.0, "dsp": 0.0}, fits=False)
    c = _report(model="no-acc", accuracy=None)
    fig = plots.accuracy_vs_resources([a, b, c], resource="lut")
    ax = fig.axes[0]
    offsets = np.concatenate([coll.get_offsets() for coll in ax.collections])
    assert offsets.tolist() == [[1500.0, 95.0], [50000.0, 97.0]]
    assert [to_hex(coll.get_facecolor()[0]) for coll in ax.collections] == [GREEN, RED]
    assert [t.get_text() for t in ax.texts] == ["tfc @ pynq-z1", "sfc @ pynq-z1"]
    assert ax.get_ylim()[1] <= 100.5
    assert _draws(fig)


def test_accuracy_vs_resources_relative_labels_and_single_report():
    fig = plots.accuracy_vs_resources(_report(), resource="bram_18k", relative=True, labels=["mine"])
    ax = fig.axes[0]
    assert ax.collections[0].get_offsets().tolist() == [[pytest.approx(8 / 224), 95.0]]
    assert ax.texts[0].get_text() == "mine" and "share of the cap" in ax.get_xlabel()


def test_accuracy_vs_resources_errors():
    with pytest.raises(ValueError, match="no report has an accuracy"):
        plots.accuracy_vs_resources([_report(accuracy=None)])
    with pytest.raises(ValueError, match="unknown resource 'ff'"):
        plots.accuracy_vs_resources([_report()], resource="ff")
    with pytest.raises(ValueError, match="2 labels for 1 reports"):
        plots.accuracy_vs_resources([_report()], labels=["a", "b"])


def test_names_with_dollar_signs_are_drawn_verbatim():
    r = _report(model="$x$")
    r = r.model_copy(update={"layers": [dataclasses.replace(r.layers[0], name="a$b$c"), *r.layers[1:]]})
    fig = plots.cycles_per_layer(r)
    assert _draws(fig)
    assert fig.axes[0].get_yticklabels()[0].get_text() == r"a\$b\$c"
    assert _draws(plots.resource_use(r)) and _draws(plots.accuracy_vs_resources(r))


def test_plots_accept_a_real_report(mlp_build):
    for fig in (plots.cycles_per_layer(mlp_build.report), plots.resource_use(mlp_build.report)):
        assert _draws(fig)
    bars = _bars(plots.cycles_per_layer(mlp_build.report))
    assert len(bars) == len(mlp_build.report.layers)
    assert max(b.get_width() for b in bars) == mlp_build.report.max_cycles


# --------------------------------------------------------------------------- show


def _toy():
    vi = helper.make_tensor_value_info
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], np.ones(12, dtype=np.float32))
    s = helper.make_tensor("s", TensorProto.FLOAT, [], [0.5])
    g = helper.make_graph(
        [helper.make_node("Relu", ["w"], ["wr"], name="prep"),
         helper.make_node("MatMul", ["x", "wr"], ["h"], name="mm"),
         helper.make_node("Relu", ["h"], ["h2"], name="act1"),
         helper.make_node("Relu", ["h2"], ["h3"], name="act2"),
         helper.make_node("Mul", ["h3", "s"], ["y"], name="scale")],
        "toy", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 3])], initializer=[w, s],
        value_info=[vi(n, TensorProto.FLOAT, [1, 3]) for n in ("h", "h2", "h3")] + [vi("wr", TensorProto.FLOAT, [4, 3])],
    )
    return ModelWrapper(qonnx_make_model(g))


def _boxes(fig: Figure) -> list[str]:
    ax = fig.axes[0]
    return [p for p in ax.patches if isinstance(p, FancyBboxPatch)]


def test_op_sequence_and_summary_of_a_toy_graph():
    m = _toy()
    assert op_sequence(m) == ["Relu", "MatMul", "Relu", "Relu", "Mul"]
    assert op_sequence(m, data_path=True) == ["MatMul", "Relu", "Relu", "Mul"]
    assert op_summary(m) == "Relu -> MatMul -> Relu x2 -> Mul"


def test_render_graph_draws_one_box_per_data_node():
    fig = render_graph(_toy(), per_row=2)
    assert len(_boxes(fig)) == 4
    ax = fig.axes[0]
    assert ax.get_title(loc="left") == "toy  (1 constant node hidden)"
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["MatMul", "Relu", "Relu", "Mul", "* 0.5"]  # W comes from a node, not an initializer
    assert _draws(fig)
    assert len(_boxes(render_graph(_toy(), data_path=False, title="all"))) == 5


def test_qonnx_checkpoint_hides_weight_quantizers(tiny_mlp_onnx):
    ops = op_sequence(tiny_mlp_onnx)
    data_ops = op_sequence(tiny_mlp_onnx, data_path=True)
    assert ops.count("Quant") == 4 and data_ops.count("Quant") == 2  # 2 weight + 2 activation quantizers
    fig = render_graph(tiny_mlp_onnx)
    assert len(_boxes(fig)) == len(data_ops)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("W 64x16") for t in texts)  # weight shape read through its quantizer
    assert "2 bit" in texts


def test_partitions_are_expanded_into_their_layers(mlp_build):
    design = ModelWrapper(str(mlp_build.design))
    layers = [layer.op_type for layer in mlp_build.report.layers]
    assert op_sequence(design) == layers
    parent = assemble_design(design, mlp_build.design)
    assert op_sequence(parent, expand_partitions=False) == ["StreamingDataflowPartition"]
    assert op_sequence(parent) == layers
    fig = render_graph(parent)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("PE" in t and "SIMD" in t for t in texts)
    assert len(_boxes(fig)) == len(layers)


def test_every_checkpoint_can_be_shown(mlp_build):
    for step, path in mlp_build.checkpoints.items():
        assert op_sequence(path), step
        assert _draws(render_graph(path, title=step))
    texts = [t.get_text() for t in render_graph(mlp_build.checkpoints["streamline"]).axes[0].texts]
    assert "W 64x16" in texts and "W 16x10" in texts and any(t.endswith("x 3 thr") for t in texts)


def test_doctests():
    import doctest

    from flow.report import graphs, style, tradeoff

    for mod in (plots, graphs, style, tradeoff):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0, mod.__name__


@pytest.fixture(scope="module")
def mlp_build(tiny_mlp_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("plots_build")
    return build(tiny_mlp_onnx, build_config(target="pynq-z1", target_fps=100_000, verify_samples=50), out)
