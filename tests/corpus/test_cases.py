"""The corpus' finn-examples cases: the same files in every session, and the weights the catalogue names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.catalogue import NETWORKS
from tests.corpus import examples
from tests.corpus import cases
from tests.corpus.cases import BY_NAME, CASES, materialize, reference


def test_every_catalogue_network_is_a_case_for_its_first_board():
    cases = {c.name: c for c in CASES if c.name.startswith("fe_")}
    for name, net in NETWORKS.items():
        case = cases["fe_" + name.replace("-", "_")]
        assert case.target == net.boards[0].target and case.input_dtype == net.input_dtype
        assert case.large == net.large and case.data == ("mnist" if net.weights == "mnist" else "synthetic")


@pytest.mark.parametrize("name", ["fe_kws_mlp_w3a3", pytest.param("fe_tfc_w1a1", marks=pytest.mark.slow)])
def test_a_case_exports_the_same_files_twice(name, tmp_path):
    a, b = materialize(BY_NAME[name], tmp_path / "a"), materialize(BY_NAME[name], tmp_path / "b")
    for f in ("model.onnx", "inputs.npy", "torch_outputs.npy"):
        assert (a.parent / f).read_bytes() == (b.parent / f).read_bytes(), f


def test_a_cases_reference_is_its_network_again(tmp_path):
    case = BY_NAME["fe_kws_mlp_w3a3"]
    path = materialize(case, tmp_path / "k")
    ref = reference(case, path.parent)
    np.testing.assert_allclose(ref.logits, np.load(path.parent / "torch_outputs.npy"), rtol=1e-5, atol=1e-5)
    run = ref.record(np.array([3]))
    np.testing.assert_allclose(run.outputs, ref.logits[3:4], rtol=1e-5, atol=1e-5)
    assert len(run.quantizer_inputs) >= 3 and all(len(q) == 1 for q in run.quantizer_inputs)
    cases._NETWORKS.clear()  # a folder from another session: the network is trained again, to the same weights
    np.testing.assert_allclose(reference(case, path.parent).logits, ref.logits, rtol=1e-5, atol=1e-5)


def test_a_materialized_case_is_reused(tmp_path):
    path = materialize(BY_NAME["fe_kws_mlp_w3a3"], tmp_path / "k")
    stamp = path.stat().st_mtime_ns
    assert materialize(BY_NAME["fe_kws_mlp_w3a3"], tmp_path / "k") == path and path.stat().st_mtime_ns == stamp


def test_calibration_spreads_activations_over_their_levels():
    net = NETWORKS["kws-mlp-w3a3"].build()
    x = torch.from_numpy(examples.synthetic(64, net.input_shape, "mfcc", seed=9)[0])
    seen = []
    hook = net.layers[2].register_forward_hook(lambda m, a, out: seen.append(out.value if hasattr(out, "value") else out))
    examples.calibrate_batchnorm(net, net.input_shape, "mfcc")
    with torch.no_grad():
        net(x)
    hook.remove()
    levels = torch.unique(seen[-1]).numel()
    assert levels >= 4  # 3-bit ReLU: most of its 8 levels in use, not stuck at 0 or saturated


@pytest.mark.parametrize("domain, low, high", [("bipolar", -1, 1), ("mfcc", -90, 25), ("iq", -1.5, 1.5), ("unit", 0, 1), ("pixels", 0, 255)])
def test_synthetic_inputs_lie_in_their_domain(domain, low, high):
    x, y = examples.synthetic(32, (600,) if domain == "bipolar" else (2, 64), domain, seed=1)
    assert x.dtype == np.float32 and low <= x.min() and x.max() <= high and len(y) == 32
    if domain == "bipolar":
        assert set(np.unique(x)) == {-1.0, 1.0}
