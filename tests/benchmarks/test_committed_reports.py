"""Every committed report.json is today's: today's schema, and today's estimates of its own design give its numbers.

Each committed report sits next to ``design-nodes.onnx.gz`` (its folded design with the weight
values zeroed: every node attribute, shape and datatype the estimates read). The check prices
that design with today's :func:`flow.fold.estimate.estimate` and compares every layer's
cycles, LUT, BRAM, URAM and DSP, the converters, the totals, ``fits`` and the frame rate with
the report (``benchmarks/_designs.py``). Regenerate with ``python benchmarks/regenerate.py --update``.
"""

import json
import sys
from pathlib import Path

import pytest

from flow.builder.pipeline import build
from flow.core.config import BuildConfig
from flow.report.schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _designs import NODES, reprice, write_nodes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
REPORTS = sorted(p for p in RESULTS.rglob("report.json") if ".scratch" not in p.relative_to(RESULTS).parts)


def test_there_are_committed_reports_to_check():
    assert any("survey" in p.parts for p in REPORTS) and any("search_vs_hand" in p.parts for p in REPORTS)


@pytest.mark.parametrize("path", REPORTS, ids=[str(p.relative_to(RESULTS).parent) for p in REPORTS])
def test_a_committed_report_is_todays_schema_and_todays_price_of_its_design(path):
    report = json.loads(path.read_text())
    assert report.get("schema_version") == SCHEMA_VERSION, f"{path}: schema_version {report.get('schema_version')}; regenerate it"
    nodes = path.parent / NODES
    assert nodes.is_file(), f"{path}: no {NODES} beside it to price; regenerate it"
    assert reprice(report, nodes) == []


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_mlp_onnx):
    out = tmp_path_factory.mktemp("built")
    build(tiny_mlp_onnx, BuildConfig(target="pynq-z1", target_fps=100000, verify_samples=0), out, model_name="tiny")
    write_nodes(out / "design.onnx", out / NODES)
    return out


def test_the_zeroed_design_prices_exactly_as_the_build_did_and_is_small(built):
    assert reprice(json.loads((built / "report.json").read_text()), built / NODES) == []
    assert (built / NODES).stat().st_size < (built / "design.onnx").stat().st_size / 2


def test_a_report_with_another_lut_or_an_older_schema_is_caught(built):
    report = json.loads((built / "report.json").read_text())
    layer = report["layers"][1]
    stale = {**report, "schema_version": 1, "layers": [*report["layers"][:1], {**layer, "lut": layer["lut"] + 1}, *report["layers"][2:]]}
    found = reprice(stale, built / NODES)
    assert found[0] == f"schema_version 1 (today: {SCHEMA_VERSION})"
    assert f"{layer['name']}.lut {layer['lut'] + 1} (today: {layer['lut']})" in found
    dwc = report["data_width_converters"]
    more = {**report, "data_width_converters": {**dwc, "totals": {**dwc["totals"], "lut": dwc["totals"]["lut"] + 5}}}
    assert reprice(more, built / NODES) == [f"data_width_converters.lut {dwc['totals']['lut'] + 5} (today: {dwc['totals']['lut']})"]
    slower = {**report, "throughput_fps": report["throughput_fps"] * 2, "fits": not report["fits"]}
    assert [f.split()[0] for f in reprice(slower, built / NODES)] == ["fits", "throughput_fps"]
