import pytest

from flow.core.config import BuildConfig, build_config
from flow.explore.recipe import load_recipe, recipe_from_dict
from flow.core.errors import ConfigError


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
