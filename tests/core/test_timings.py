"""Typed step timings: recorded in order, totalled, and the same {step: seconds} object in report.json."""

import json
from pathlib import Path

import pytest

from flow.core.errors import ConfigError
from flow.core.pipeline import BuildState
from flow.core.timings import Timings
from flow.report.schema import Report

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "survey" / "rows" / "tfc-w1a1" / "seed0" / "report.json"


def test_steps_keep_the_order_they_ran_and_a_retimed_step_its_last_time():
    t = Timings()
    for step, s in (("streamline", 1.0), ("fold", 2.0), ("streamline", 0.5)):
        t.record(step, s)
    assert list(t.items()) == [("streamline", 0.5), ("fold", 2.0)] and t.total == 2.5
    assert isinstance(BuildState(name="m").timings, Timings)


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "1"])
def test_a_time_that_is_not_a_finite_non_negative_number_is_refused(bad):
    with pytest.raises(ValueError, match="finite number of seconds"):
        Timings({"fold": bad})


def test_report_json_keeps_its_timings_object_byte_for_byte():
    raw = json.loads(REPORT.read_text())
    report = Report.from_dict(raw)
    assert isinstance(report.timings_s, Timings) and list(report.timings_s) == list(raw["timings_s"])
    assert json.dumps(report.to_dict()["timings_s"]) == json.dumps(raw["timings_s"])
    assert report.timings_s.total == pytest.approx(sum(raw["timings_s"].values()))


def test_a_report_with_a_negative_time_is_not_a_report():
    raw = json.loads(REPORT.read_text())
    raw["timings_s"] = {**raw["timings_s"], "fold": -1.0}
    with pytest.raises(ConfigError, match="timings_s") as e:
        Report.from_dict(raw, source="report.json")
    assert "\n" not in str(e.value)
