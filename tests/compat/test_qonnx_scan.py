"""qflow's one-pass ModelWrapper lookups (flow.compat.qonnx_scan) answer as qonnx's and edit models byte for byte
alike, on real models at every stage of a build; qonnx's own make several passes of Python per lookup."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from corpus import structures as S
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

from flow.builder import build
from flow.compat import qonnx_scan
from flow.compat.qonnx_linear import REPLACEMENTS
from flow.core.config import build_config
from flow.nn.export import export_qonnx
from tests.compat.test_qonnx_linear import lines_run

STAGES = ["qonnx", "qonnx_to_finn", "streamline", "convert_to_hw"]
LOOKUPS = ["get_tensor_valueinfo", "get_tensor_shape", "set_tensor_shape", "set_initializer", "find_consumers"]
QONNX = {name: getattr(ModelWrapper, name) for name in LOOKUPS}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Every stage's checkpoint of builds of a residual block with a projection conv and a MobileNet slice."""
    tmp = tmp_path_factory.mktemp("qonnx_scan")
    found = []
    for fn in (S.residual_projection, S.mobilenet_slice):
        name, module, shape, dtype, _ = fn()
        path = tmp / f"{name}.onnx"
        export_qonnx(module, path, shape, dtype)
        result = build(path, build_config(target="pynq-z1", target_fps=10_000, verify_samples=0), tmp / name)
        found += [ModelWrapper(str(result.checkpoints[stage])) for stage in STAGES]
    return found


def _names(model: ModelWrapper) -> list[str]:
    g = model.graph
    names = {t for n in g.node for t in (*n.input, *n.output)} | {x.name for x in (*g.input, *g.output, *g.value_info, *g.initializer)}
    return sorted(names - {""}) + ["not_a_tensor"]


def test_every_replacement_is_swapped_in_by_linear_qonnx():
    swapped = {(owner, attr): fn for owner, attr, fn in REPLACEMENTS}
    for name in LOOKUPS:
        assert swapped[ModelWrapper, name] is getattr(qonnx_scan, name)


def test_lookups_answer_as_qonnxs_for_every_tensor_at_every_stage(models):
    for model in models:
        for t in _names(model):
            assert qonnx_scan.get_tensor_valueinfo(model, t) == QONNX["get_tensor_valueinfo"](model, t)
            assert qonnx_scan.get_tensor_shape(model, t) == QONNX["get_tensor_shape"](model, t)
            mine, theirs = qonnx_scan.find_consumers(model, t), QONNX["find_consumers"](model, t)
            assert len(mine) == len(theirs) and all(a is b for a, b in zip(mine, theirs))


def _edited(model: ModelWrapper, edit, ours: bool) -> bytes:
    m = ModelWrapper(copy.deepcopy(model.model))
    edit(m, qonnx_scan if ours else None)
    return m.model.SerializeToString()


def _call(m: ModelWrapper, mod, name: str, *args):
    return (getattr(mod, name) if mod is not None else QONNX[name])(m, *args)


def test_edits_give_qonnxs_model_byte_for_byte_at_every_stage(models):
    rng = np.random.default_rng(0)
    for model in models:
        g = model.graph
        some = [g.input[0].name, g.output[0].name, *[v.name for v in g.value_info[:: max(1, len(g.value_info) // 6)]], "brand_new"]
        inits = [i.name for i in g.initializer[:: max(1, len(g.initializer) // 4)]] + ["new_weight"]

        def reshape(m, mod):
            for k, t in enumerate(some):
                _call(m, mod, "set_tensor_shape", t, [1, k + 2, 3], TensorProto.FLOAT if k % 2 else None)

        def reweigh(m, mod):
            for t in inits:
                _call(m, mod, "set_initializer", t, rng_values[t])

        rng_values = {t: rng.normal(size=(2, 3)).astype(np.float32) for t in inits}
        assert _edited(model, reshape, True) == _edited(model, reshape, False)
        assert _edited(model, reweigh, True) == _edited(model, reweigh, False)


def _duplicated() -> ModelWrapper:
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["y"], ["z"])], "g",
                          [vi("x", TensorProto.FLOAT, [1, 4])], [vi("z", TensorProto.FLOAT, [1, 4])],
                          value_info=[vi("y", TensorProto.FLOAT, [1, 4]), vi("y", TensorProto.FLOAT, [1, 4])])
    return ModelWrapper(qonnx_make_model(g))


@pytest.mark.parametrize("name", ["get_tensor_valueinfo", "get_tensor_shape"])
def test_a_name_given_two_value_infos_fails_as_in_qonnx(name):
    with pytest.raises(AssertionError, match="Multiple ValueInfoProto"):
        QONNX[name](_duplicated(), "y")
    with pytest.raises(AssertionError, match="Multiple ValueInfoProto"):
        getattr(qonnx_scan, name)(_duplicated(), "y")


def test_a_node_reading_a_tensor_twice_is_its_consumer_twice_as_in_qonnx():
    vi = helper.make_tensor_value_info
    g = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "g", [vi("x", TensorProto.FLOAT, [1])], [vi("y", TensorProto.FLOAT, [1])])
    m = ModelWrapper(qonnx_make_model(g))
    assert len(QONNX["find_consumers"](m, "x")) == len(qonnx_scan.find_consumers(m, "x")) == 2


def test_qonnxs_lookups_run_several_python_steps_per_value_info_and_the_replacements_one(models):
    """Why the replacements exist: per call, qonnx builds several Python lists over every value_info
    (set_tensor_shape: four), so FINN's per-node calls cost several times the graph's size. Counted as
    the Python lines one call runs per value_info added to the graph."""
    model = models[0]
    t = model.graph.value_info[0].name
    extra = 400

    def per_value_info(fn, *args) -> float:
        def lines(m):
            m = ModelWrapper(copy.deepcopy(m.model))
            return lines_run(lambda: fn(m, t, *args))

        wider = ModelWrapper(copy.deepcopy(model.model))
        wider.graph.value_info.extend(helper.make_tensor_value_info(f"unused{i}", TensorProto.FLOAT, [1]) for i in range(extra))
        return (lines(wider) - lines(model)) / extra

    assert per_value_info(QONNX["get_tensor_shape"]) >= 2.0 > 1.0 >= per_value_info(qonnx_scan.get_tensor_shape)
    assert per_value_info(QONNX["set_tensor_shape"], [1, 2]) >= 4.0 > 1.0 >= per_value_info(qonnx_scan.set_tensor_shape, [1, 2])
    assert per_value_info(QONNX["get_tensor_valueinfo"]) >= 2.0 > 1.0 >= per_value_info(qonnx_scan.get_tensor_valueinfo)
