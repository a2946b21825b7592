"""search_vs_hand: a hand row is dominated only on all three axes, on the same board; otherwise the losing axes are named."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from flow.explore.rows import SweepRow  # noqa: E402
from search_vs_hand import eligible, hypervolume, judge, shortfalls  # noqa: E402

HAND = SweepRow("tfc-w4a4", accuracy=0.985, accuracy_max=0.987, seeds=(0, 1, 2), throughput_fps=1.02e6, lut=31000.0)


def _design(name, acc, fps, lut, **kw):
    return {"name": name, "accuracy": acc, "fps": fps, "lut": lut, "verified": True, "fits": True, "target": "pynq-z1", **kw}


def test_more_accurate_and_as_fast_but_larger_is_not_domination():
    big = _design("big", 0.986, 1.02e6, 36500.0)
    e = judge(HAND, [big])
    assert e["dominated_by"] is None and e["losses"]["design"] == "big" and e["losses"]["axes"] == {"lut": pytest.approx(5500.0)}


def test_the_closest_design_loses_on_the_fewest_axes_then_by_the_least():
    near = _design("near", 0.983, 1.02e6, 21000.0)  # 0.2 points short: 0.2% of the row's accuracy
    small = _design("small", 0.90, 1.02e6, 5000.0)  # 8.5 points short
    big = _design("big", 0.99, 1.02e6, 40000.0)  # 9,000 LUT over: 29%
    e = judge(HAND, [small, big, near])
    assert e["losses"]["design"] == "near" and set(e["losses"]["every_design"]) == {"near", "small", "big"}


def test_the_cheapest_design_better_on_all_three_axes_dominates_and_says_if_it_beats_the_best_seed():
    designs = [_design("a", 0.986, 1.02e6, 30000.0), _design("b", 0.990, 1.05e6, 29000.0), _design("c", 0.99, 1.0e6, 1000.0)]
    e = judge(HAND, designs, {"b": "search_vs_hand/designs/b/report.json"})
    assert e["dominated_by"]["design"] == "b" and e["dominated_by"]["accuracy_above_best_seed"]
    assert e["dominated_by"]["report"] == "search_vs_hand/designs/b/report.json"
    assert judge(HAND, designs[:1])["dominated_by"]["accuracy_above_best_seed"] is False  # 0.986 < 0.987: inside the seed range
    assert shortfalls(designs[2], HAND) == {"throughput_fps": pytest.approx(-2e4)}


def test_unverified_unfitting_and_other_board_designs_do_not_count():
    designs = [_design("u", 0.99, 2e6, 100.0, verified=False), _design("f", 0.99, 2e6, 100.0, fits=False),
               _design("z", 0.99, 2e6, 100.0, target="zcu104"), _design("n", None, 2e6, 100.0)]
    assert eligible(designs, "pynq-z1") == []
    assert judge(HAND, []) ["losses"] is None


def test_hypervolume_from_the_fixed_reference_in_points_mfps_klut():
    ref = {"accuracy": 0.90, "throughput_fps": 0.0, "lut": 37240.0}
    assert hypervolume([(0.95, 1e6, 17240.0)], ref) == pytest.approx(5 * 1 * 20)
    assert hypervolume([(0.95, 1e6, 17240.0), (0.93, 1e6, 7240.0)], ref) == pytest.approx(5 * 20 + 3 * 10)
    assert hypervolume([(0.89, 1e6, 1000.0), (0.99, 1e6, 40000.0)], ref) == 0.0
