"""What a report says is what the design is: every tied bottleneck named, RTL simulation with nothing
to simulate reported as skipped, the board's totals, caps and FF beside the estimates, and the
``--strict`` and summary lines in the same totals as the tables."""

from __future__ import annotations

import json
import re

import pytest

from flow.cli import main
from flow.compile.estimate import Estimates, LayerEstimate
from flow.report.cells import bottleneck_text, resource_rows
from flow.report.html import render_html
from flow.report.markdown import render_markdown
from flow.report.plots import cycles_per_layer
from flow.report.schema import SCHEMA_VERSION, FoldingInfo, Report
from flow.sim.rtlsim.design import DesignSim, stage_check
from flow.sim.rtlsim.layers import LayerSim
from flow.sim.verify import StageCheck, Verification
from hw_targets import load_target

PYNQ = load_target("pynq-z1")


def _layer(name: str, cycles: int, lut: float = 100.0) -> LayerEstimate:
    return LayerEstimate(name=name, op_type=name.rsplit("_", 1)[0], pe=1, simd=1, cycles=cycles, lut=lut, bram_18k=0.0, uram=0.0, dsp=0.0)


def _estimates(layers: list[LayerEstimate], bottleneck: str) -> Estimates:
    totals = {k: float(sum(getattr(x, k) for x in layers)) for k in ("lut", "bram_18k", "uram", "dsp")}
    budget = {k: v for k, v in PYNQ.budget().items() if k in totals}
    top = max(x.cycles for x in layers)
    return Estimates(layers=layers, totals=totals, budget=budget, over_budget=[], max_cycles=top, bottleneck=bottleneck,
                     critical_path_cycles=sum(x.cycles for x in layers), throughput_fps=PYNQ.clock_mhz * 1e6 / top,
                     latency_us=1.0, clock_mhz=PYNQ.clock_mhz)


def _report(layers, bottleneck, **kw) -> Report:
    return Report.from_estimates(model="m", target=PYNQ, est=_estimates(layers, bottleneck), folding=FoldingInfo(mode="fps"),
                                 stage="estimates", **kw)


TIED = [_layer("Thresholding_rtl_0", 98), _layer("MVAU_hls_0", 98), _layer("MVAU_hls_1", 64), _layer("LabelSelect_hls_0", 10)]


def test_every_tied_bottleneck_is_in_report_json_with_finns_first():
    r = _report(TIED, "Thresholding_rtl_0")
    d = json.loads(json.dumps(r.to_dict()))
    assert d["schema_version"] == SCHEMA_VERSION == 4
    assert d["bottleneck"] == "Thresholding_rtl_0" and d["bottlenecks"] == ["Thresholding_rtl_0", "MVAU_hls_0"]
    # FINN's pick stays first even when it is not the first in dataflow order
    assert _report(TIED, "MVAU_hls_0").bottlenecks == ["MVAU_hls_0", "Thresholding_rtl_0"]
    assert _report([_layer("A_0", 5), _layer("B_0", 7)], "B_0").bottlenecks == ["B_0"]


def test_markdown_html_and_chart_mark_every_tied_bottleneck():
    r = _report(TIED, "Thresholding_rtl_0")
    md = render_markdown(r)
    assert "2 tied bottlenecks Thresholding_rtl_0 and MVAU_hls_0, 98 cycles/frame" in md
    assert re.findall(r"^\| (\w+) \*\*\(bottleneck\)\*\*", md, re.M) == ["Thresholding_rtl_0", "MVAU_hls_0"]
    page = render_html(r)
    assert re.findall(r"<tr class=hot><td>(\w+) \(bottleneck\)</td>", page) == ["Thresholding_rtl_0", "MVAU_hls_0"]
    assert "2 tied bottlenecks Thresholding_rtl_0 and MVAU_hls_0" in page
    ax = cycles_per_layer(r).axes[0]
    colours = [tuple(round(c, 3) for c in p.get_facecolor()[:3]) for p in ax.patches]
    red = colours[0]
    assert colours[1] == red and colours[2] != red and colours[3] != red
    assert "2 tied bottlenecks" in ax.get_title()


def test_a_report_before_bottlenecks_loads_with_its_one_bottleneck():
    d = _report(TIED, "Thresholding_rtl_0").to_dict()
    for key in ("bottlenecks",):
        d.pop(key)
    d["schema_version"] = 3
    d["target"] = {k: d["target"][k] for k in ("name", "part", "clock_mhz")}
    old = Report.from_dict(d)
    assert old.bottlenecks == ["Thresholding_rtl_0"]
    assert [row["key"] for row in resource_rows(old)] == ["lut", "bram_18k", "uram", "dsp"]  # no FF without the board's totals
    assert "37,240" in render_markdown(old) and "n/e" not in render_markdown(old).split("| resource")[1].split("| layer")[0]


def test_resources_show_the_board_totals_the_cap_fractions_and_ff():
    r = _report(TIED, "Thresholding_rtl_0")
    assert r.target.resources == {"lut": 53200, "ff": 106400, "bram_18k": 280, "uram": 0, "dsp": 220}
    assert r.target.caps == {"lut": 0.7, "ff": 0.5, "bram_18k": 0.8, "uram": 0.8, "dsp": 0.8}
    rows = {row["key"]: row for row in resource_rows(r)}
    assert list(rows) == ["lut", "ff", "bram_18k", "uram", "dsp"]
    assert rows["lut"]["budget"] == PYNQ.budget()["lut"] == 37240 and rows["ff"]["budget"] == PYNQ.budget()["ff"] == 53200
    assert rows["ff"]["used"] is None  # FINN estimates no flip-flops: never shown as 0 used
    page = render_html(r)
    lut_row = re.search(r"<tr><td>LUT</td>(.*?)</tr>", page).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", lut_row) == ["400", "0", "400", "53,200", "70%", "37,240", "1.1%"]
    ff_row = re.search(r"<tr><td>FF</td>(.*?)</tr>", page).group(1)
    assert re.findall(r"<td[^>]*>([^<]*)</td>", ff_row) == ["n/e", "n/e", "n/e", "106,400", "50%", "53,200", "n/e"]
    assert "no flip-flop count" in page
    md = render_markdown(r)
    assert "| LUT | 400 | 0 | 37,240 (70% of 53,200) | 1.1% |" in md and "| FF | n/e | n/e | 53,200 (50% of 106,400) | n/e |" in md


def _sim(simulated: bool) -> DesignSim:
    layers = [LayerSim("MVAU_hls_0", "MVAU_hls", False, note="HLS layer: Python semantics only"),
              LayerSim("Thresholding_rtl_0", "Thresholding_rtl", simulated, note=None if simulated else "HLS layer",
                       status="ok" if simulated else None, bit_exact=True if simulated else None)]
    return DesignSim(samples=4, layers=layers, chains=[], fifo_config={})


def test_rtlsim_with_nothing_simulated_is_skipped_and_says_how_to_get_rtl_layers():
    check = stage_check(_sim(False))
    assert check.skipped and check.passed and check.bit_exact is None
    assert "--prefer-rtl" in check.note and "--standalone-thresholds" in check.note
    ran = stage_check(_sim(True))
    assert not ran.skipped and ran.passed and ran.bit_exact


def test_a_skipped_rtlsim_stage_reads_skipped_in_every_report():
    check = stage_check(_sim(False))
    v = Verification(passed=True, stages=[StageCheck("streamlined", "qonnx", 4, True, bit_exact=True), check])
    r = _report(TIED, "Thresholding_rtl_0", verification=v)
    assert r.to_dict()["verification"]["stages"][1]["skipped"] is True
    md, page = render_markdown(r), render_html(r)
    assert "| rtlsim | specialized | 4 | skipped |" in md
    assert '<td>rtlsim</td><td>specialized</td><td class=n>4</td><td><span class="muted">skipped</span>' in page


TINY_BOARD = ('display_name = "Tiny"\npart = "xc7z020clg400-1"\nfinn_board = "Pynq-Z1"\nshell = "zynq"\nclock_mhz = 100.0\n'
              "[resources]\nlut = 100\nff = 200\nbram_18k = 0\nuram = 0\ndsp = 0\n")


def _used_lut(report: dict) -> float:
    return report["totals"]["lut"] + report["data_width_converters"]["totals"]["lut"]


def test_strict_names_the_summarys_lut_total_once(tiny_mlp_onnx, tmp_path, capsys):
    board = tmp_path / "tiny.toml"
    board.write_text(TINY_BOARD)
    rc = main(["build", str(tiny_mlp_onnx), "--target", str(board), "--out", str(tmp_path / "o"), "--strict", "--samples", "0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rc == 4 and err.startswith("qflow: error: design exceeds tiny's caps: LUT "), err
    assert f"LUT {_used_lut(report):,.0f} > 70" in err
    assert not re.search(r"\b(\w+)\s+\1\b", err, re.I), err  # "lut lut"


def test_the_summary_names_report_html_the_lut_cap_and_every_bottleneck(tiny_mlp_onnx, tmp_path, capsys):
    rc = main(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--samples", "0"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rc == 0
    tied = [x["name"] for x in report["layers"] if x["cycles"] == report["max_cycles"]]
    assert sorted(report["bottlenecks"]) == sorted(tied) and report["bottlenecks"][0] == report["bottleneck"]
    assert bottleneck_text(Report.from_dict(report), limit=3) in out
    assert f"LUT {_used_lut(report):,.0f}/37,240 (the cap: 70% of the board's 53,200)" in out
    assert f"report: {tmp_path / 'o' / 'report.html'}" in out


@pytest.mark.rtlsim
def test_rtlsim_of_an_all_hls_design_is_skipped_end_to_end(tiny_mlp_onnx, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(["build", str(tiny_mlp_onnx), "--out", str(first), "--samples", "0"]) == 0
    spec = json.loads((first / "specialize_layers.json").read_text())
    hls = {k: {**v, "preferred_impl_style": "hls"} for k, v in spec.items() if k != "Defaults"}
    (tmp_path / "hls.json").write_text(json.dumps(hls))
    capsys.readouterr()
    out = tmp_path / "o"
    assert main(["build", str(tiny_mlp_onnx), "--out", str(out), "--specialize", str(tmp_path / "hls.json"), "--rtlsim", "--samples", "4"]) == 0
    line = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert all(not x["op_type"].endswith("_rtl") for x in report["layers"])
    stage = report["verification"]["stages"][-1]
    assert stage["name"] == "rtlsim" and stage["skipped"] is True and "--prefer-rtl" in stage["note"]
    assert report["rtlsim"]["skipped"] is True and report["rtlsim"]["layers_simulated"] == 0
    assert "RTL simulation skipped" in line and "| rtlsim | specialized | 8 | skipped |" in (out / "report.md").read_text()
