"""`qflow search` on three objectives: accuracy, frames/s and cost together; finalists spread over the
front and chosen on validation accuracy; points folded toward the frame-rate floor."""

import itertools
import json

import numpy as np
import optuna
import pytest

from flow.compat import optuna as optuna_compat
from flow.core.errors import ConfigError
from flow.explore.finalize import choose, finalists, losses, spread
from flow.explore.recipe import recipe_from_dict
from flow.explore.rows import Finalist, TrialRow
from flow.explore.search import SearchOptions, load_study, search
from flow.explore.space import point_recipe, search_space
from flow.explore.study import check_options

RECIPE = {"name": "dig", "model": {"name": "tfc", "options": {"hidden": [16, 16]}}, "data": {"dataset": "digits"},
          "train": {"epochs": 1, "batch_size": 64, "threads": 1}, "build": {"verify_samples": 20}}


def _opts(tmp_path, **kw):
    base = recipe_from_dict(RECIPE)
    return SearchOptions(recipe=base.model_dump(mode="json", exclude_unset=True), target="pynq-z1", trials=2, out_dir=str(tmp_path), **kw)


def test_the_default_study_has_three_directions_and_no_pruner(tmp_path):
    study = load_study(_opts(tmp_path, study_name="s"))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE", "MINIMIZE"]
    assert isinstance(study.pruner, optuna.pruners.NopPruner)
    single = load_study(_opts(tmp_path, study_name="t", objective="accuracy"))
    assert [d.name for d in single.directions] == ["MAXIMIZE"] and isinstance(single.pruner, optuna.pruners.HyperbandPruner)


@pytest.mark.parametrize("kw, match", [({"objective": "lut"}, "--objective"), ({"folding": "x"}, "--folding"),
                                       ({"folding": "fps", "min_fps": 0.0}, "--min-fps")])
def test_bad_objective_and_folding_options_are_refused(tmp_path, kw, match):
    with pytest.raises(ConfigError, match=match):
        check_options(_opts(tmp_path, **kw))


def test_a_point_folded_toward_the_floor_asks_finn_for_whole_cycles_not_one_fewer():
    base = recipe_from_dict(RECIPE)
    space = search_space(base, weight_bits=(2,), act_bits=(2,))
    point = space.point({k: c[0] for k, c in space.params.items()})
    r = point_recipe(base, point, target="pynq-z1", fold_to_fps=1e8 / 98)  # 1,020,408.16 FPS = 98 cycles at 100 MHz
    assert not r.build.auto and r.build.target_fps == 1_020_408 and int(1e8 / r.build.target_fps) == 98
    assert point_recipe(base, point, target="pynq-z1").build.auto


def _row(n, acc, fps, cost):
    return TrialRow(number=n, state="COMPLETE", params={}, accuracy=acc, fps=fps, cost=cost, fits=True)


def test_finalists_spread_over_the_front_by_hypervolume_and_match_the_best_subset():
    rows = [_row(0, 0.98, 1e6, 30000), _row(1, 0.979, 1e6, 29900), _row(2, 0.95, 1e6, 9000), _row(3, 0.93, 1e6, 6000),
            _row(4, 0.90, 2e6, 20000)]
    got = spread(rows, 3)
    pts = losses(rows)
    ref = np.array([0.0, 0.0, 1.1 * pts[:, 2].max() + 1.0])
    best = max(itertools.combinations(range(len(rows)), 3), key=lambda c: optuna_compat.hypervolume(pts[list(c)], ref))
    assert optuna_compat.hypervolume(losses(got), ref) == pytest.approx(optuna_compat.hypervolume(pts[list(best)], ref), rel=0.02)
    assert {r.number for r in got} != {0, 1, 2}  # not simply the most accurate
    assert finalists(rows, 2, 0.0) == rows[:2] and len(finalists(rows, 2, 0.0, spread_out=True)) == 2
    assert finalists(rows, 9, 1.5e6, spread_out=True) == [rows[4]]


def test_the_chosen_design_is_picked_on_validation_accuracy_not_test_accuracy():
    def done(trial, val, test, cost, verified=True):
        return Finalist(trial=trial, name=f"t{trial}", search_accuracy=val, report="r", accuracy=test, cost=cost, fps=1.0,
                        verified=verified, fits=True)

    results = [done(0, 0.95, 0.97, 10.0), done(1, 0.96, 0.90, 20.0), done(2, 0.99, 0.99, 5.0, verified=False)]
    assert choose(results).trial == 1
    assert choose(results, acc_tolerance=0.02).trial == 0  # cheaper, within 2 validation points


def test_a_three_objective_search_writes_all_three_axes_of_its_front(tmp_path):
    res = search(recipe_from_dict(RECIPE), "pynq-z1", tmp_path, trials=3, weight_bits=(1, 2, 4), act_bits=(1, 2, 4), finalists=1,
                 val_samples=200, heartbeat_interval=2, progress=False, log=lambda s: None, folding="fps", min_fps=10000.0)
    study = optuna.load_study(study_name=res.study_name, storage=res.storage)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert done and all(len(t.values) == 3 for t in done)
    for t in done:
        assert t.values == [t.user_attrs["accuracy"], t.user_attrs["fps"], t.user_attrs["cost"]]
    meta = json.loads((tmp_path / "pareto.json").read_text())
    assert meta["directions"] == {"accuracy": "maximize", "fps": "maximize", "cost": "minimize (lut)"}
    assert meta["front"] and all({"accuracy", "fps", "cost", "lut"} <= set(p) for p in meta["front"])
    assert "SetFolding" in meta["folding"] and meta["pruner"].startswith("none")
    report = json.loads((tmp_path / "final" / res.finalists[0].name / "report.json").read_text())
    assert report["folding"]["mode"] == "fps" and report["folding"]["target_fps"] == 10000
    assert res.chosen is not None and res.chosen.search_accuracy == res.finalists[0].search_accuracy
