"""A verifier's report section is the verifier's: stored, validated and shown through the verifier registry."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from flow.core.estimates import Estimates, LayerEstimate
from flow.report.html import render_html
from flow.report.markdown import render_markdown
from flow.report.schema import FoldingInfo, Report
from flow.sim.verify import StageCheck, Verification
from flow.verifiers import builtin
from flow.verifiers.registry import Verifier
from flow.verifiers.rtlsim_section import RtlsimReport, RtlsimView
from flow.verifiers.section import Card, LayerColumn
from hw_targets import load_target

PYNQ = load_target("pynq-z1")
LAYERS = [LayerEstimate("MVAU_hls_0", "MVAU_hls", 1, 1, 64, 100.0, 0.0, 0.0, 0.0),
          LayerEstimate("Thresholding_rtl_0", "Thresholding_rtl", 1, 1, 98, 50.0, 0.0, 0.0, 0.0)]


class Toy(Verifier):
    """A verifier whose section the report has never heard of."""

    name = "toy"
    title = "Toy check"

    def section(self, result):
        return {"checked": result["n"], "odd": result["odd"]}

    def annotate_layers(self, layers, result):
        return [replace(layer, sim_note=f"toy saw {layer.name}") for layer in layers]

    def markdown(self, section, layers):
        return ["", f"Toy check: {section['checked']} checked, {section['odd']} odd"]

    def html(self, section, layers):
        return "<p>toy not run</p>" if section is None else f"<p>toy: {section['checked']} checked</p>"

    def card(self, section):
        return Card("Toy", f"{section['odd']} odd", "of the checked", "ok")

    def layer_column(self, section):
        return LayerColumn("toy note", lambda layer: layer.sim_note or "-", lambda layer: "")

    def summary(self, section):
        return f"(toy: {section['odd']} odd)"


def _estimates() -> Estimates:
    totals = {k: float(sum(getattr(x, k) for x in LAYERS)) for k in ("lut", "bram_18k", "uram", "dsp")}
    return Estimates(layers=LAYERS, totals=totals, budget={k: v for k, v in PYNQ.budget().items() if k in totals}, over_budget=[],
                     max_cycles=98, bottleneck="Thresholding_rtl_0", critical_path_cycles=162, throughput_fps=1e6, latency_us=1.0,
                     clock_mhz=PYNQ.clock_mhz)


def _report(results) -> Report:
    v = Verification(passed=True, stages=[StageCheck("streamlined", "qonnx", 4, True, bit_exact=True)])
    return Report.from_estimates(model="m", target=PYNQ, est=_estimates(), folding=FoldingInfo(mode="fps"), stage="estimates",
                                 verification=v, results=results)


def test_a_new_verifier_adds_its_section_card_column_and_summary_without_the_report_knowing_it(monkeypatch):
    monkeypatch.setattr(builtin, "VERIFIERS", (*builtin.VERIFIERS, Toy()))
    r = _report({"toy": {"n": 8, "odd": 3}})
    d = json.loads(json.dumps(r.to_dict()))
    assert d["sections"] == {"toy": {"checked": 8, "odd": 3}} and d["rtlsim"] is None
    assert [layer["sim_note"] for layer in d["layers"]] == ["toy saw MVAU_hls_0", "toy saw Thresholding_rtl_0"]
    md = render_markdown(r)
    assert "| cycles (FINN) | toy note | LUT |" in md and "| toy saw MVAU_hls_0 |" in md
    assert md.index("Toy check: 8 checked, 3 odd") < md.index("| stage | vs |")  # its own section, then the stage checks
    page = render_html(r)
    assert "<h2>Toy check</h2><p>toy: 8 checked</p>" in page and '<div class="k">Toy</div><div class="v">3 odd</div>' in page
    assert "<th class=n>toy note</th>" in page and "<h2>RTL simulation</h2>" in page
    again = Report.from_dict(d)
    assert render_markdown(again) == md and render_html(again) == page
    assert "<h2>Toy check</h2><p>toy not run</p>" in render_html(_report({}))


def test_a_section_from_a_verifier_the_registry_does_not_list_is_shown_key_by_key_and_escaped():
    r = Report.from_dict({**_report({}).to_dict(), "sections": {"<b>x</b>": {"k": "<script>"}}})
    md, page = render_markdown(r), render_html(r)
    assert md.endswith("## <b>x</b>\n\n- k: <script>\n") and md.index("| stage | vs |") < md.index("## <b>x</b>")
    assert "<h2>&lt;b&gt;x&lt;/b&gt;</h2><ul><li>k: &lt;script&gt;</li></ul>" in page and "<script>" not in page


def test_the_rtl_simulation_keeps_its_own_key_and_its_section_reads_back_validated():
    view = builtin.view_of("rtlsim")
    assert isinstance(view, RtlsimView) and view.report_key == "rtlsim" and builtin.view_of("verify").report_key is None
    section = {"simulator": "Verilator 5.048", "samples": 4, "passed": True, "skipped": True, "layers_hw": 2, "layers_rtl": 0,
               "layers_simulated": 0, "chains": []}
    r = Report.from_dict({**_report({}).to_dict(), "rtlsim": section})
    assert isinstance(r.rtlsim, RtlsimReport) and list(r.to_dict()).index("rtlsim") == list(r.to_dict()).index("timings_s") + 1
    assert "RTL simulation (Verilator 5.048): **skipped**" in render_markdown(r)
    with pytest.raises(Exception, match="rtlsim"):
        Report.from_dict({**_report({}).to_dict(), "rtlsim": {**section, "surprise": 1}})
