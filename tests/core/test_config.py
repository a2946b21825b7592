from pathlib import Path

import pytest

from flow.core.config import BuildConfig, build_config
from flow.core.errors import ConfigError
from flow.explore.recipe import load_recipe, recipe_from_dict


def test_default_recipe_is_tfc_w2a2_mnist_on_pynq_z1():
    r = load_recipe()
    assert (r.model.name, r.model.weight_bits, r.model.act_bits) == ("tfc", 2, 2)
    assert r.data.dataset == "mnist"
    assert r.build.target == "pynq-z1"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"model": {"weight_bits": 0}}, "model.weight_bits"),
        ({"model": {"act_bits": 9}}, "model.act_bits"),
        ({"train": {"epochs": -1}}, "train.epochs"),
        ({"train": {"lr": 0}}, "train.lr"),
        ({"data": {"dataset": "cifar100"}}, "data.dataset"),
        ({"build": {"stage": "silicon"}}, "build.stage"),
        ({"build": {"input_dtype": "FLOAT32"}}, "build.input_dtype"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_recipe_values_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        recipe_from_dict(data)


def test_recipe_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)


def test_folding_file_is_relative_to_the_recipe(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[build]\nfolding_file = "fold.json"\n')
    assert load_recipe(p).build.folding_file == tmp_path / "fold.json"


def test_fps_and_folding_file_are_exclusive(tmp_path):
    with pytest.raises(ConfigError, match="not both"):
        build_config(target_fps=10, folding_file=tmp_path / "f.json")


def test_folding_mode():
    assert BuildConfig().folding_mode == "default"
    assert BuildConfig(target_fps=5).folding_mode == "fps"


def test_input_dtype_is_normalised():
    assert build_config(input_dtype="uint8").input_dtype == "UINT8"
    with pytest.raises(ConfigError, match="unknown datatype"):
        build_config(input_dtype="UNIT8")


def test_per_layer_bits_reach_the_model_kwargs():
    r = recipe_from_dict({"model": {"name": "tfc", "layers": {"fc0": {"weight_bits": 8}}}})
    assert r.model.build_kwargs()["layer_bits"] == {"fc0": {"weight_bits": 8}}


@pytest.mark.parametrize("name", ["/abs/x", "../../x", "a/b", "..", ".hidden", "a b", "x" * 81, ""])
def test_recipe_names_are_identifiers(name):
    with pytest.raises(ConfigError, match="name"):
        recipe_from_dict({"name": name})


@pytest.mark.parametrize("data, field", [
    ({"seed": 2**70}, "seed"), ({"seed": -1}, "seed"), ({"train": {"lr": float("inf")}}, "train.lr"),
    ({"build": {"clock_mhz": float("inf")}}, "build.clock_mhz"), ({"build": {"verify_samples": 10**8}}, "build.verify_samples"),
    ({"model": {"options": {"hidden": [200_000]}}}, None),
])
def test_numbers_are_bounded(data, field, tmp_path):
    if field is None:  # model options are checked by the model itself, before any training
        from flow.explore.run import check_recipe

        with pytest.raises(ConfigError, match="hidden must be a list of 1 to 64 ints from 1 to 16384"):
            check_recipe(recipe_from_dict({**data, "data": {"dataset": "digits"}}), load_train=False)
        return
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        recipe_from_dict(data)


def test_relative_paths_resolve_against_the_recipe_folder(tmp_path):
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "r.toml").write_text('[data]\ndataset = "mnist"\nroot = "datasets"\n[build]\ntarget = "boards/mine.toml"\n'
                                   'specialize_file = "spec.json"\n')
    r = load_recipe(folder / "r.toml")
    assert r.data.root == folder / "datasets"
    assert r.build.target == str(folder / "boards/mine.toml")
    assert r.build.specialize_file == folder / "spec.json"
    assert load_recipe(folder / "r.toml").build.target.startswith(str(folder))


def test_a_recipe_that_is_not_utf8_is_one_line(tmp_path):
    p = tmp_path / "r.toml"
    p.write_bytes(b'name = "\xff\xfe"\n')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        load_recipe(p)


def test_infinite_clock_in_a_board_file_is_refused(tmp_path):
    from hw_targets import load_target

    board = tmp_path / "b.toml"
    board.write_text(Path(__file__).resolve().parents[2].joinpath("hw_targets", "pynq-z1.toml").read_text().replace("clock_mhz = 100.0", "clock_mhz = inf"))
    with pytest.raises(ConfigError, match="clock_mhz"):
        load_target(board)
    with pytest.raises(ConfigError, match="clock_mhz"):
        load_target("pynq-z1").with_clock(float("inf"))
