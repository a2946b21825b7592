"""report.html and the graph view stay readable for designs of hundreds of layers (ResNet-50, MobileNet-v1)."""

from __future__ import annotations

import base64
import io
import re
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from flow.report.graphs import GROUP_ABOVE, cycle_profile, render_graph, repeats, slowest
from flow.report.html import LARGE, TOP, render_html
from flow.report.schema import Report

CHROMIUM = "/usr/bin/chromium"
OPS = ("MVAU_hls", "Thresholding_rtl", "ConvolutionInputGenerator_rtl", "FMPadding_rtl", "DuplicateStreams_hls", "AddStreams_hls")


def _report(n: int, note: str = "ok") -> Report:
    rng = np.random.default_rng(0)
    layers, counters = [], dict.fromkeys(OPS, 0)
    for i in range(n):
        op = OPS[i % len(OPS)]
        name = f"{op}_{counters[op]}"
        counters[op] += 1
        layers.append({"name": name, "op_type": op, "pe": 2, "simd": 4 if op == "MVAU_hls" else None,
                       "cycles": int(rng.integers(100, 50_000)), "lut": float(rng.integers(0, 3000)),
                       "bram_18k": float(i % 3), "uram": 0.0, "dsp": float(i % 2)})
    worst = max(layers, key=lambda x: x["cycles"])
    totals = {k: sum(x[k] for x in layers) for k in ("lut", "bram_18k", "uram", "dsp")}
    return Report.from_dict({
        "schema_version": 2, "model": "resnet50", "target": {"name": "alveo-u250", "part": "xcu250-figd2104-2L-e", "clock_mhz": 250.0},
        "layers": layers, "totals": totals,
        "data_width_converters": {"count": 0, "totals": dict.fromkeys(totals, 0.0), "converters": []},
        "budget": {"lut": 1209600, "bram_18k": 4300, "uram": 1024, "dsp": 9830}, "fits": True, "over_budget": [],
        "max_cycles": worst["cycles"], "bottleneck": worst["name"], "throughput_fps": 250e6 / worst["cycles"], "latency_us": 1000.0,
        "verification": {"passed": True, "stages": [{"name": "specialized", "reference": "hw", "samples": 4, "passed": True,
                                                     "max_abs_err": 0.0, "label_match": 1.0, "bit_exact": True, "first_mismatch": None,
                                                     "note": note}]},
        "folding": {"mode": "auto", "target_fps": None, "file": None}, "stage": "estimates", "skipped": [], "timings_s": {},
    })


def _images(page: str) -> list[np.ndarray]:
    return [mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")
            for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def _section(page: str, start: str, end: str) -> str:
    return page[page.index(start): page.index(end, page.index(start))]


def test_a_large_design_leads_with_its_slowest_layers_in_order():
    r = _report(300)
    page = render_html(r)
    top = _section(page, f"The {TOP} slowest of 300 layers", "</table>")
    names = re.findall(r"<td>([A-Za-z_]+_\d+)(?: \(bottleneck\))?</td>", top)
    assert names == [layer.name for layer in sorted(r.layers, key=lambda x: -x.cycles)[:TOP]]
    assert f"<td>{r.bottleneck} (bottleneck)</td>" in top and "<tr class=hot><td class=n>1</td>" in top


def test_a_large_design_sums_its_layers_per_op_type():
    r = _report(300)
    table = _section(render_html(r), "Layers per op type", "</table>")
    for op in OPS:
        mine = [x for x in r.layers if x.op_type == op]
        row = re.search(rf"<tr><td>{op}</td><td class=n>(\d+)</td><td class=n>([\d,]+)</td><td>(\w+)</td><td class=n>([\d,]+)</td>", table)
        assert row, op
        assert int(row.group(1)) == len(mine) and int(row.group(2).replace(",", "")) == max(x.cycles for x in mine)
        assert row.group(3) == max(mine, key=lambda x: x.cycles).name
        assert int(row.group(4).replace(",", "")) == round(sum(x.lut for x in mine))
    luts = [int(v.replace(",", "")) for v in re.findall(r"<td>\w+</td><td class=n>([\d,]+)</td>(?:<td class=n>[\d,]+</td>){3}</tr>", table)]
    assert luts == sorted(luts, reverse=True)


def test_every_layer_stays_in_a_folded_scrolling_table():
    r = _report(300)
    page = render_html(r)
    full = _section(page, "<details><summary>All 300 layers in dataflow order", "</details>")
    assert '<div class="scroll">' in full and "position:sticky" in page
    assert re.findall(r"<td>([A-Za-z_]+_\d+)(?: \(bottleneck\))?</td>", full) == [x.name for x in r.layers]
    ranks = [int(v) for v in re.findall(r"<tr(?: class=hot)?><td class=n>(\d+)</td>", full)]
    assert sorted(ranks) == list(range(1, 301))
    assert "linear-gradient(90deg,#cfe0f3 100.0%" in full  # the bottleneck's bar is full


def test_a_large_design_gets_charts_of_bounded_size():
    page = render_html(_report(300))
    images = _images(page)
    assert len(images) == 3  # every layer's profile, the slowest layers, the resources
    assert all(img.shape[0] < 1400 for img in images), [img.shape for img in images]


def test_a_small_design_keeps_its_one_table():
    page = render_html(_report(LARGE))
    assert "slowest of" not in page and "<details><summary>All" not in page and len(_images(page)) == 2


def test_a_long_verification_note_is_folded():
    note = ", ".join(f"MVAU_hls_{i}" for i in range(200))
    page = render_html(_report(300, note=note))
    assert f"<details><summary>{note[:240]}...</summary>{note}</details>" in page


def test_slowest_is_ordered_by_cycles_and_cut():
    r = _report(50)
    top = slowest(r.layers, 5)
    assert [x.cycles for x in top] == sorted((x.cycles for x in r.layers), reverse=True)[:5]


def test_cycle_profile_draws_one_bar_per_layer_and_the_bottleneck_red():
    r = _report(120)
    fig = cycle_profile(r)
    ax = fig.axes[0]
    red = [p for p in ax.patches if p.get_facecolor()[:3] == pytest.approx((0xC0 / 255, 0x39 / 255, 0x2B / 255))]
    assert len(ax.patches) == 121 and len(red) == 1  # every layer, and the bottleneck drawn again in red
    assert red[0].get_height() == r.max_cycles


@pytest.mark.parametrize("seq", [list("aaaa"), list("abcabcabcx"), list("xyz"), [], list("abababcdcdcd" * 3)])
def test_repeats_cover_the_sequence_exactly(seq):
    runs = repeats(seq)
    rebuilt = [x for start, length, count in runs for _ in range(count) for x in seq[start: start + length]]
    assert rebuilt == seq
    assert all(seq[s: s + n] * c == seq[s: s + n * c] for s, n, c in runs)


def _chain(pattern: tuple[str, ...], times: int) -> ModelWrapper:
    ops = list(pattern) * times
    vi = helper.make_tensor_value_info
    nodes = [helper.make_node(op, [f"t{i}"], [f"t{i + 1}"], name=f"n{i}") for i, op in enumerate(ops)]
    g = helper.make_graph(nodes, "chain", [vi("t0", TensorProto.FLOAT, [1, 4])], [vi(f"t{len(ops)}", TensorProto.FLOAT, [1, 4])])
    return ModelWrapper(qonnx_make_model(g))


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].texts]


def test_a_long_graph_draws_each_repeated_pattern_once():
    model = _chain(("Relu", "Neg", "Abs", "Sigmoid"), 80)
    grouped = render_graph(model, title="big")
    assert len(model.graph.node) > GROUP_ABOVE
    assert _texts(grouped).count("Relu") == 1 and "x 80" in _texts(grouped)
    assert "320 nodes" in grouped.axes[0].get_title(loc="left")
    assert grouped.get_size_inches()[1] < 5
    full = render_graph(model, group=False)
    assert _texts(full).count("Relu") == 80 and full.get_size_inches()[1] > 30


def test_a_short_graph_is_drawn_node_by_node():
    fig = render_graph(_chain(("Relu", "Neg"), 5))
    assert _texts(fig).count("Relu") == 5 and not any(t.startswith("x ") for t in _texts(fig))


def test_chromium_renders_a_large_report(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("headless Chromium not installed: apt-get install -y chromium")
    page = tmp_path / "report.html"
    page.write_text(render_html(_report(300)), encoding="utf-8")
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0 and "All 300 layers in dataflow order" in dom.stdout
    shot = tmp_path / "shot.png"
    run = subprocess.run([*base, f"--screenshot={shot}", "--window-size=1280,1400", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.stat().st_size > 20_000
    img = mpimg.imread(shot)
    assert float(np.var(img[..., :3])) > 0.001
