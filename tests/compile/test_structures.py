"""Structures beyond FINN's default flow, end to end: residual blocks, average-pool heads, depthwise convs
and a Brevitas MobileNet slice (tests/corpus/structures.py) build with ``flow.builder.build`` and verify
bit-exact through every stage, with FINN's SetFolding (``target_fps``) and with ``--auto``.

Models are trained for one epoch on sklearn's 8x8 digits (upscaled where a model needs a larger
input), so their outputs are not tied; verification runs 24 held-out digits through PyTorch,
QONNX, FINN-ONNX, the streamlined graph, the integer graph, the HW layers and the specialized
design.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from corpus import structures as S
from qonnx.core.modelwrapper import ModelWrapper

from flow.builder import build
from flow.compile.steps import dataflow_parent
from flow.core.config import build_config
from flow.core.errors import InputDatatypeError, StructureError
from flow.core.stages import Stage
from flow.core.vocab import PARTITION_OP, is_hw_node
from flow.nn.reference import torch_reference
from flow.nn.data import Dataset, load_digits_dataset
from flow.nn.export import export_qonnx
from flow.nn.train import TrainConfig, train
from flow.sim.verify import fit_inputs, output_tail

SAMPLES = 24
STAGES = ["qonnx", "finn_onnx", "streamlined", "streamlined_integer", "hw", "specialized"]
#: Every structure with FINN's SetFolding, one of each family with --auto; the rest with -m slow.
FAST = [
    S.residual_identity, S.residual_projection, S.residual_stacked, S.gap_per_tensor, S.gap_per_channel,
    S.avgpool_global, S.avgpool_inner, S.trunc_avgpool_floor, S.trunc_avgpool_round, S.depthwise_stride1,
    S.depthwise_stride2, S.mobilenet_slice, S.preprocessed_padded,
]
FAST_AUTO = [
    S.residual_projection, S.gap_per_channel, S.avgpool_inner, S.trunc_avgpool_round, S.depthwise_stride2, S.mobilenet_slice,
    S.preprocessed_padded,
]
SLOW_AUTO = [fn for fn in FAST if fn not in FAST_AUTO]
LARGER = [S.residual_wide, S.depthwise_k5, S.proxyless_slice]


def digits(shape, split: str) -> Dataset:
    """sklearn's digits at ``shape`` (C, H, W): each pixel repeated to at least H x W, then center-cropped."""
    d = load_digits_dataset(split)
    _, h, w = shape
    rep = max(1, -(-h // 8), -(-w // 8))
    x = np.kron(d.images, np.ones((1, 1, rep, rep), np.uint8))
    top, left = (x.shape[2] - h) // 2, (x.shape[3] - w) // 2
    return Dataset(d.name, split, np.ascontiguousarray(x[:, :, top : top + h, left : left + w]), d.labels, d.num_classes)


class Zoo:
    """Each structure model trained, exported and kept (and each build's result) for the session."""

    def __init__(self, root):
        self.root, self.models, self.builds = root, {}, {}

    def model(self, fn):
        if fn not in self.models:
            name, module, shape, dtype, _ = fn()
            train(module, digits(shape, "train"), TrainConfig(epochs=1, batch_size=64, lr=5e-3, threads=1), progress=False)
            path = self.root / f"{name}.onnx"
            export_qonnx(module, path, shape, dtype)
            x = digits(shape, "test").images[:SAMPLES].astype(np.float32)
            self.models[fn] = (name, ModelWrapper(str(path)), path, x, torch_reference(module, x))
        return self.models[fn]

    def build(self, fn, folding: str):
        key = (fn, folding)
        if key not in self.builds:
            name, _, path, x, ref = self.model(fn)
            opts = {"auto": True} if folding == "auto" else {"target_fps": 10_000}
            cfg = build_config(target="pynq-z1", verify_samples=0, **opts)
            self.builds[key] = build(path, cfg, self.root / f"{name}_{folding}", verify_inputs=x, reference=ref)
        return self.builds[key]


@pytest.fixture(scope="session")
def zoo(tmp_path_factory):
    torch.set_num_threads(1)
    return Zoo(tmp_path_factory.mktemp("structures"))


def ids(fns):
    return [fn.__name__ for fn in fns]


def check_design(result) -> None:
    """Verified bit-exact at every stage, and the accelerator is integer hardware only."""
    v = result.report.verification
    assert v.passed, [s for s in v.stages if not s.passed]
    assert [s.name for s in v.stages] == ["qonnx", *STAGES[1:]]
    for s in v.stages[3:]:
        assert s.passed and (s.bit_exact is not False), s
    design = ModelWrapper(str(result.design))
    assert all(is_hw_node(n) for n in design.graph.node)
    for n in design.graph.node:
        for t in n.input:
            if t and design.get_initializer(t) is None:
                assert design.get_tensor_datatype(t).is_integer(), (n.name, t)
    host = [n.op_type for n in dataflow_parent(design).graph.node if n.op_type != PARTITION_OP]
    front = host[: host.index("Pad") + 1] if "Pad" in host else []  # a padded first conv's raw input
    assert set(front) <= {"Transpose", "Pad"} and set(host[len(front):]) <= {"Transpose", "Reshape", "Mul", "Add", "TopK"}, host
    assert result.report.throughput_fps > 0 and result.report.totals["lut"] > 0


@pytest.mark.parametrize("fn", FAST, ids=ids(FAST))
def test_structure_builds_and_verifies_bit_exact_with_set_folding(zoo, fn):
    check_design(zoo.build(fn, "fps"))


@pytest.mark.parametrize("fn", FAST_AUTO, ids=ids(FAST_AUTO))
def test_structure_builds_and_verifies_bit_exact_with_auto_folding(zoo, fn):
    check_design(zoo.build(fn, "auto"))


@pytest.mark.slow
@pytest.mark.parametrize("fn", SLOW_AUTO + LARGER, ids=ids(SLOW_AUTO + LARGER))
def test_every_structure_builds_and_verifies_bit_exact_with_auto_folding(zoo, fn):
    check_design(zoo.build(fn, "auto"))


@pytest.mark.slow
@pytest.mark.parametrize("fn", LARGER, ids=ids(LARGER))
def test_larger_structure_builds_and_verifies_bit_exact_with_set_folding(zoo, fn):
    check_design(zoo.build(fn, "fps"))


def test_the_streamlined_integers_are_the_qonnx_outputs_rescaled(zoo):
    """The integer graph's output tail is ``integers * a + b``, and the integers are exactly the QONNX
    float outputs with that affine map undone (here a biased classifier: a per-class b)."""
    from flow.sim.execute import execute_batched

    result = zoo.build(S.mobilenet_slice, "fps")
    _, qonnx, _, x, _ = zoo.model(S.mobilenet_slice)
    integer = ModelWrapper(str(result.stages[Stage.STREAMLINED]))
    tail = output_tail(integer, integer.graph.output[0].name)
    t, a, b = tail.tensor, tail.scale, tail.bias
    assert t != integer.graph.output[0].name and np.asarray(b).size > 1
    yq = execute_batched(qonnx, x)[qonnx.graph.output[0].name].reshape(len(x), -1)
    yi = execute_batched(integer, fit_inputs(integer, x), outputs=[t])[t].reshape(len(x), -1)
    np.testing.assert_array_equal(yi, np.round((yq - b.reshape(1, -1)) / a.reshape(1, -1)))


def test_a_per_class_bias_keeps_the_label_select_on_the_host(zoo):
    result = zoo.build(S.mobilenet_slice, "fps")
    design = ModelWrapper(str(result.design))
    assert not any(n.op_type.startswith("LabelSelect") for n in design.graph.node)
    assert [n.op_type for n in dataflow_parent(design).graph.node][-3:] == ["Mul", "Add", "TopK"]


def test_a_padded_first_conv_behind_the_input_normalisation_pads_the_raw_pixels_on_the_host(zoo):
    """x/128 - 1 maps the pixel 128 to 0: the host pads the UINT8 image with 128 and the accelerator's first
    layer (a window generator, no FMPadding) reads it, 16x16."""
    design = ModelWrapper(str(zoo.build(S.preprocessed_padded, "fps").design))
    parent = dataflow_parent(design)
    pad = parent.get_nodes_by_op_type("Pad")[0]
    assert float(parent.get_initializer(pad.input[2])) == 128.0
    assert list(parent.get_initializer(pad.input[1])) == [1, 1, 1, 1]
    first = design.graph.node[0]
    assert first.op_type.startswith("ConvolutionInputGenerator"), first.op_type
    assert design.get_tensor_datatype(first.input[0]).name == "UINT8"
    assert design.get_tensor_shape(first.input[0]) == [1, 16, 16, 1]


@pytest.mark.parametrize(
    "fn, node_op, words",
    [
        (S.bad_preprocessed_padded, "(MatMul)", ["no UINT8 input value becomes exactly 0", "QuantIdentity", "Im2Col"]),
        (S.bad_residual_float, "(Add)", ["not on one integer grid", "shared quantizer"]),
        (S.bad_gap_per_channel, "(MatMul)", ["per-tensor quantizer", "(Mul)"]),
    ],
    ids=["normalised_input_before_padding", "float_residual_body", "per_channel_gap_without_requantizer"],
)
def test_an_unmappable_structure_is_refused_naming_node_op_neighbours_and_fix(zoo, fn, node_op, words, tmp_path):
    _, _, path, x, _ = zoo.model(fn)
    with pytest.raises(StructureError) as e:
        build(path, build_config(target="pynq-z1", verify_samples=0), tmp_path / "out", verify_inputs=x)
    msg = str(e.value)
    assert node_op in msg and "inputs from:" in msg and "feeds:" in msg and "\n" not in msg
    for w in words:
        assert w in msg, msg
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_float_input_with_its_own_quantizer_builds_and_one_without_asks_for_an_input_datatype(zoo, tmp_path):
    """The residual net quantizes its input itself: as FLOAT32 that quantizer stays on the host. Without it,
    the stem conv would compute on floats, so the build asks for --input-dtype."""
    from qonnx.core.datatype import DataType

    _, model, _, x, _ = zoo.model(S.residual_identity)
    m = ModelWrapper(model.model.__deepcopy__())
    m.set_tensor_datatype(m.graph.input[0].name, DataType["FLOAT32"])
    res = build(m, build_config(target="pynq-z1", verify_samples=0), tmp_path / "quantized", verify_inputs=x[:4])
    assert res.report.verification.passed
    net = S.ResNet(blocks=1).eval()
    net.inp = torch.nn.Identity()
    path = tmp_path / "bare.onnx"
    export_qonnx(net, path, S.DIGITS, "FLOAT32")
    with pytest.raises(InputDatatypeError, match="--input-dtype"):
        build(path, build_config(target="pynq-z1", verify_samples=0), tmp_path / "bare")
