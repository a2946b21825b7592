"""Typed sweep and search rows: JSON round trips byte for byte, old rows read in today's meaning, one meaning of LUT."""

import json
from pathlib import Path

import pytest

from flow.core.errors import ConfigError
from flow.explore.compare import result_row
from flow.explore.recipe import Recipe
from flow.explore.reuse import read_row, report_numbers
from flow.explore.rows import Finalist, SweepRow, TrialRow
from flow.explore.trials import cost_of
from flow.report.schema import Report

SURVEY = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "survey"
RUN = SURVEY / "rows" / "tfc-w1a1" / "seed0"


def test_every_committed_result_row_reads_back_and_writes_the_same_json():
    data = json.loads((SURVEY / "results.json").read_text())
    for raw in data["rows"]:
        row = SweepRow.from_json(raw)
        assert row.seeded and len(row.runs) == len(data["seeds"])
        assert json.dumps(row.to_json()) == json.dumps(raw)  # same keys, same order, same values
        assert SweepRow.from_json(row.to_json()) == row


def test_a_row_json_from_before_lut_counted_the_converters_is_read_in_todays_meaning():
    raw = json.loads((RUN / "row.json").read_text())
    assert "lut_with_converters" in raw and "lut_layers" not in raw  # as committed
    row = read_row(RUN)
    assert (row.lut, row.lut_layers) == (raw["lut_with_converters"], raw["lut"])
    assert "lut_with_converters" not in row.to_json() and row.to_json()["lut_layers"] == raw["lut"]


def test_a_row_older_still_or_with_a_wrong_type_is_refused_with_one_line():
    with pytest.raises(ConfigError, match="before rows counted the converters"):
        SweepRow.from_json({"name": "a", "lut": 10.0})
    with pytest.raises(ConfigError, match="lut must be a number") as e:
        SweepRow.from_json({"name": "a", "lut": "many", "lut_layers": 1.0})
    assert "\n" not in str(e.value)
    for bad in ([], {"lut": 1.0}, {"name": "a", "fits": "yes", "lut_layers": None}, {"name": "a", "runs": [{"name": 3}]}):
        with pytest.raises(ConfigError):
            SweepRow.from_json(bad)


def test_lut_means_layers_plus_converters_in_compare_in_search_and_in_the_report():
    report = Report.load(RUN / "report.json")
    layers = report.totals["lut"]
    converters = report.data_width_converters.totals["lut"]
    assert converters > 0  # the committed design has converters, so the two meanings differ
    recipe = Recipe.model_validate(json.loads((RUN / "recipe.json").read_text()))
    row = result_row("tfc-w1a1", recipe, report, {}, train_seconds=None, quantize_seconds=None, row_seconds=0.0)
    assert row.lut == cost_of(report, "lut") == report.resources_used()["lut"] == layers + converters
    assert row.lut_layers == layers
    assert report_numbers(report)["lut"] == row.lut


def test_trial_rows_and_finalists_round_trip():
    t = TrialRow(number=3, state="COMPLETE", params={"fc0_weight_bits": "ternary", "hidden0": 64}, accuracy=0.9, cost=1234.0,
                 fps=1e6, lut=1234.0, bram_18k=2.0, uram=0.0, dsp=0.0, latency_us=1.5, max_cycles=100, fits=True, epochs_run=2,
                 train_s=1.0, build_s=0.5, reason=None)
    flat = t.to_json()
    assert list(flat)[:4] == ["number", "state", "fc0_weight_bits", "hidden0"] and list(flat)[-3:] == ["retry_of", "duplicate_of", "reason"]
    assert TrialRow.from_json(flat, ["fc0_weight_bits", "hidden0"]) == t
    assert "fc0_weight_bits" not in t.metrics_json() and t.completed
    ok = Finalist(trial=3, name="x-t0003", search_accuracy=0.9, report="r.json", accuracy=0.91, fps=1e6, cost=1.0, lut=1.0, fits=True,
                  verified=True, train_s=2.0)
    failed = Finalist(trial=4, name="x-t0004", search_accuracy=0.8, report="r.json", error="VerificationError: x")
    assert list(failed.to_json()) == ["trial", "name", "search_accuracy", "report", "error", "verified"]
    for f in (ok, failed):
        assert Finalist.from_json(f.to_json()) == f
