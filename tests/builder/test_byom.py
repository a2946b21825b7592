"""Bring your own model: exports qflow did not write itself build and verify (tiny models, built in-test)."""

import json

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from brevitas.export import export_qonnx
from brevitas.quant import (
    SignedBinaryActPerTensorConst,
    SignedBinaryWeightPerTensorConst,
    Uint8ActPerTensorFloat,
)
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.insert_topk import InsertTopK
from qonnx.util.cleanup import cleanup_model
from torch import nn

from flow.builder.pipeline import build
from flow.cli import main
from flow.compile.steps import assemble_design
from flow.core.config import build_config
from flow.sim.verify import verify_stages
from tests.conftest import _randomize_bn


def _export(model, path, **kw):
    with torch.no_grad():
        export_qonnx(model.eval(), torch.zeros(1, 1, 8, 8), str(path), dynamo=False, **kw)
    return path


def _stages(report):
    return {s.name: s for s in report.verification.stages}


class Centered(nn.Module):
    """[0, 255] -> [-1, 1], as bnn_pynq's networks centre their input before a binary quantizer."""

    def forward(self, x):
        return x / 127.5 - 1.0


def random_bnn(seed=0):
    """An untrained binarized MLP: its integer class scores tie often."""
    torch.manual_seed(seed)
    return _randomize_bn(nn.Sequential(
        Centered(), nn.Flatten(),
        qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True),
        qnn.QuantLinear(64, 16, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
        nn.BatchNorm1d(16),
        qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst, return_quant_tensor=True),
        qnn.QuantLinear(16, 10, bias=False, weight_quant=SignedBinaryWeightPerTensorConst),
    ))


@pytest.fixture(scope="module")
def bnn_build(tmp_path_factory):
    d = tmp_path_factory.mktemp("bnn")
    return build(_export(random_bnn(), d / "bnn.onnx"), build_config(input_dtype="UINT8", target_fps=100_000, verify_samples=300), d / "out")


def test_ties_in_a_random_binarized_network_are_counted_not_failed(bnn_build):
    st = _stages(bnn_build.report)
    assert bnn_build.report.verification.passed
    assert st["hw"].ties > 0 and st["hw"].bit_exact
    for name in ("streamlined_integer", "hw", "specialized"):  # labels differ only where the reference ties
        assert round((1 - st[name].label_match) * st[name].samples) <= st[name].ties


def _flip_last_weight(model: ModelWrapper, op: str) -> ModelWrapper:
    """One binary weight of the last layer flipped (0 <-> 1): one class score off by one on every sample."""
    node = model.get_nodes_by_op_type(op)[-1]
    w = model.get_initializer(node.input[1]).copy()
    w.flat[0] = 1 - w.flat[0]
    model.set_initializer(node.input[1], w)
    return model


def test_an_off_by_one_in_the_integer_graph_is_caught_among_ties(bnn_build):
    """A verifier that forgives ties must still fail a wrong integer graph, at the right stage."""
    ck = bnn_build.checkpoints
    x = np.random.default_rng(1).integers(0, 256, size=(300, 1, 8, 8)).astype(np.float32)
    streamlined = ModelWrapper(str(ck["streamline"]))
    wrong = _flip_last_weight(ModelWrapper(str(ck["insert_label_select"])), "XnorPopcountMatMul")
    v = verify_stages(x, float_stages=[("streamlined", streamlined)], integer_stages=[("streamlined_integer", wrong)])
    bad = v.stages[-1]
    assert not v.passed and bad.name == "streamlined_integer" and bad.reference == "streamlined"
    assert bad.ties > 0 and bad.first_mismatch is not None
    right = ModelWrapper(str(ck["insert_label_select"]))
    hw = _flip_last_weight(ModelWrapper(str(ck["convert_to_hw"])), "MVAU")
    v = verify_stages(x, float_stages=[("streamlined", streamlined)], integer_stages=[("streamlined_integer", right), ("hw", hw)])
    assert [(s.name, s.passed) for s in v.stages] == [("streamlined_integer", True), ("hw", False)]
    assert v.stages[0].ties > 0


def test_topk_headed_model_is_verified_as_labels(tiny_mlp_onnx, tmp_path):
    path = tmp_path / "topk.onnx"
    cleanup_model(ModelWrapper(str(tiny_mlp_onnx))).transform(InsertTopK(k=1)).save(str(path))
    r = build(path, build_config(target_fps=100_000, verify_samples=200), tmp_path / "out").report
    st = _stages(r)
    assert r.verification.passed and st["hw"].bit_exact
    assert st["finn_onnx"].label_match is not None and st["streamlined_integer"].max_abs_err is not None


def test_an_input_quantizer_on_a_float_input_runs_on_the_host(tmp_path):
    """A network that quantizes its own float input needs no --input-dtype: the quantizer stays on the host."""
    torch.manual_seed(0)
    net = _randomize_bn(nn.Sequential(
        nn.Flatten(), qnn.QuantIdentity(act_quant=Uint8ActPerTensorFloat, bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(64, 16, bias=False, weight_bit_width=4), nn.BatchNorm1d(16),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True), qnn.QuantLinear(16, 10, bias=False, weight_bit_width=4),
    ))
    res = build(_export(net, tmp_path / "f.onnx"), build_config(target_fps=100_000, verify_samples=200), tmp_path / "out")
    host = [n.op_type for n in assemble_design(ModelWrapper(str(res.design)), res.design).graph.node]
    assert host[0] == "MultiThreshold" and res.report.verification.passed
    assert not res.report.layers[0].op_type.startswith("Thresholding")


@pytest.fixture(scope="module")
def reference_pair(tmp_path_factory, tiny_mlp_model):
    d = tmp_path_factory.mktemp("ref")
    x = np.random.default_rng(1).integers(0, 256, size=(40, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        y = tiny_mlp_model(torch.from_numpy(x)).numpy()
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", y)
    np.save(d / "labels.npy", y.argmax(axis=1))
    np.save(d / "other.npy", np.roll(y, 1, axis=0))  # the outputs of other samples
    return d


def test_reference_outputs_check_the_first_stage(tiny_mlp_onnx, reference_pair, tmp_path, capsys):
    d = reference_pair
    args = ["build", str(tiny_mlp_onnx), "--verify-inputs", str(d / "x.npy"), "--fps", "100000"]
    assert main([*args, "--reference-outputs", str(d / "y.npy"), "--out", str(tmp_path / "ok")]) == 0
    first = json.loads((tmp_path / "ok" / "report.json").read_text())["verification"]["stages"][0]
    assert (first["name"], first["reference"], first["passed"], first["samples"]) == ("qonnx", "pytorch", True, 40)
    assert main([*args, "--reference-outputs", str(d / "labels.npy"), "--out", str(tmp_path / "labels")]) == 0
    assert main([*args, "--reference-outputs", str(d / "other.npy"), "--out", str(tmp_path / "bad")]) == 3
    assert "stage 'qonnx' differs from 'pytorch'" in capsys.readouterr().err


def _bad(path, arr):
    np.save(path, arr)
    return path


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "y.npy", "needs --verify-inputs"),
    (lambda d: _bad(d / "short.npy", np.zeros((39, 10), np.float32)), "holds 39 samples, the verification inputs 40"),
    (lambda d: _bad(d / "wide.npy", np.zeros((40, 7), np.float32)), r"shape \(7,\); the model computes 10 score"),
    (lambda d: _bad(d / "nan.npy", np.full((40, 10), np.nan, np.float32)), "sample 0 holds NaN"),
    (lambda d: _bad(d / "cls.npy", np.full(40, 12)), r"not class indices in 0..9"),
    (lambda d: _bad(d / "str.npy", np.array(["a"] * 40)), "numeric"),
])
def test_bad_reference_outputs_are_one_line_exit_2(tiny_mlp_onnx, reference_pair, tmp_path, capsys, make, match):
    ref = make(reference_pair)
    args = ["build", str(tiny_mlp_onnx), "--reference-outputs", str(ref), "--out", str(tmp_path / "o")]
    if "needs" not in match:
        args += ["--verify-inputs", str(reference_pair / "x.npy")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pytest.importorskip("re").search(match, err), err
    assert not (tmp_path / "o" / "report.json").exists()
