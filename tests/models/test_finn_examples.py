"""finn-examples' networks (models.catalogue): shapes, quantization, and structure against finn-examples' own numbers."""

from __future__ import annotations

import doctest

import brevitas.nn as qnn
import numpy as np
import pytest
import torch
from finn.util.basic import part_map
from qonnx.core.modelwrapper import ModelWrapper

import models.bnn_pynq
import models.catalogue
import models.cybsec
import models.espcn
import models.imagenet
import models.kws
import models.preprocess
import models.radioml
import models.resnet
from flow.core.errors import ConfigError, UnknownModelError
from flow.nn.export import export_qonnx
from hw_targets import load_target
from models.catalogue import NETWORKS, build_example, example
from models.resnet import Bottleneck

SMALL = sorted(n for n, e in NETWORKS.items() if not e.large)
LARGE = sorted(n for n, e in NETWORKS.items() if e.large)


def _weight_layers(net: torch.nn.Module) -> dict[str, int]:
    """Weight layers as FINN maps them: a depthwise conv is a VVAU, every other conv or linear an MVAU."""
    counts = {"MVAU": 0, "VVAU": 0}
    for m in net.modules():
        if isinstance(m, (qnn.QuantConv1d, qnn.QuantConv2d, qnn.QuantConvTranspose2d, qnn.QuantLinear)):
            depthwise = getattr(m, "groups", 1) > 1 and m.groups == m.in_channels
            counts["VVAU" if depthwise else "MVAU"] += 1
    return counts


def _inputs(net, n=3, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if net.accelerator_input == "BIPOLAR":
        return torch.where(torch.rand(n, *net.input_shape, generator=g) > 0.5, 1.0, -1.0)
    if net.input_dtype == "UINT8":
        return torch.randint(0, 256, (n, *net.input_shape), generator=g).float()
    return torch.randn(n, *net.input_shape, generator=g)


def test_module_docstrings_run():
    mods = (models.preprocess, models.bnn_pynq, models.kws, models.cybsec, models.radioml, models.imagenet, models.resnet,
            models.espcn, models.catalogue)
    for mod in mods:
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


def test_catalogue_names_every_finn_examples_network():
    expected = {"tfc-w1a1", "tfc-w1a2", "tfc-w2a2", "cnv-w1a1", "cnv-w1a2", "cnv-w2a2", "kws-mlp-w3a3", "cybsec-mlp-w2a2",
                "vgg10-radioml-w4a4", "gtsrb-cnv-w1a1", "mobilenet-v1-w4a4", "resnet50-w1a2"}
    assert expected <= set(NETWORKS)
    assert {n for n, e in NETWORKS.items() if e.finn_examples_dir} == expected


def test_unknown_network_lists_the_catalogue():
    with pytest.raises(UnknownModelError, match="available: tfc-w1a1"):
        example("resnet18")


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_board_is_a_qflow_target_on_the_part_finn_maps_it_to(name):
    for board in example(name).boards:
        target = load_target(board.target)
        assert target.part == part_map[board.finn_board]
        assert board.clock_mhz == pytest.approx(1000 / board.clock_ns)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_finn_examples_files_belong_to_the_network_folder(name):
    net = example(name)
    for board in net.boards:
        for path in (board.folding, board.specialize):
            if path is not None:
                assert path.startswith(net.finn_examples_dir + "/") and path.endswith(".json")


@pytest.mark.parametrize("name", SMALL)
def test_small_networks_run_on_their_inputs(name):
    net = example(name)
    model = build_example(name)
    assert tuple(model.input_shape) == net.input_shape
    with torch.no_grad():
        y = model(_inputs(net))
    y = y.value if hasattr(y, "value") else y
    expected = (3, 1) if net.output == "bipolar" else (3, net.num_classes)
    assert tuple(y.shape) == expected and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(n for n, e in NETWORKS.items() if e.layers))
def test_weight_layers_match_finn_examples_folding_config(name):
    # example(name).layers counts the MVAU/VVAU entries of finn-examples' folding config for it
    net = example(name)
    model = net.build()
    assert tuple(model.input_shape) == net.input_shape
    assert {k: v for k, v in _weight_layers(model).items() if v} == net.layers


def test_resnet50_residual_joins_share_one_quantizer_per_stage():
    model = build_example("resnet50-w1a2").net
    stages = list(model.stages)
    assert [len(s) for s in stages] == [3, 4, 6, 3]
    shared = [{id(b.shared) for b in s} for s in stages]
    assert all(len(ids) == 1 for ids in shared) and len(set.union(*shared)) == 4
    assert sum(b.proj is not None for s in stages for b in s) == 4
    assert isinstance(stages[0][0].entry, torch.nn.Identity) and all(isinstance(b, Bottleneck) for s in stages for b in s)


def _bits(module) -> int:
    return int(module.weight_quant.bit_width())


def test_resnet50_keeps_first_and_last_layers_at_eight_bits():
    model = build_example("resnet50-w1a2").net
    convs = [m for m in model.modules() if isinstance(m, qnn.QuantConv2d)]
    assert _bits(convs[0]) == 8 and _bits(model.fc) == 8
    assert {_bits(c) for c in convs[1:]} == {1}
    residual = {int(b.shared.act_quant.bit_width()) for s in model.stages for b in s}
    assert residual == {4}


def test_mobilenet_v1_is_brevitas_w4a4_with_an_eight_bit_first_layer():
    model = build_example("mobilenet-v1-w4a4").net
    convs = [m for m in model.modules() if isinstance(m, qnn.QuantConv2d)]
    assert len(convs) == 27 and _bits(convs[0]) == 8 and {_bits(c) for c in convs[1:]} == {4}
    assert convs[0].padding == (0, 0)  # the normalisation in front can move through it


def test_mobilenet_normalisation_is_finn_examples_one():
    pre = build_example("mobilenet-v1-w4a4")
    pre.net = torch.nn.Identity()  # what the network receives
    with torch.no_grad():
        x = pre(torch.full((1, 3, 224, 224), 255.0))
    expected = (1.0 - torch.tensor(models.imagenet.MOBILENET_MEAN)) / 0.226
    assert torch.allclose(x[0, :, 0, 0], expected)


def test_vgg10_has_finn_examples_widths():
    model = build_example("vgg10-radioml-w4a4")
    convs = [m for m in model.modules() if isinstance(m, qnn.QuantConv1d)]
    fcs = [m for m in model.modules() if isinstance(m, qnn.QuantLinear)]
    assert [c.out_channels for c in convs] == [32] * 7 and convs[0].in_channels == 2
    assert [(f.in_features, f.out_features) for f in fcs] == [(256, 128), (128, 128), (128, 24)]
    assert {_bits(m) for m in convs + fcs} == {4}


def test_vgg10_length_must_survive_its_pools():
    with pytest.raises(ConfigError, match="divisible by 128"):
        models.radioml.Vgg10(length=1000)


def test_cybsec_maps_bipolar_inputs_to_binary_features():
    model = build_example("cybsec-mlp-w2a2")
    seen = {}
    model.layers.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0]))
    x = torch.tensor([[1.0, -1.0] * 300])
    with torch.no_grad():
        y = model(x)
    assert torch.equal(seen["x"], (x + 1) / 2) and float(y.abs()) == 1.0


@pytest.mark.parametrize("upsample", models.espcn.UPSAMPLERS)
def test_espcn_upsamples_by_its_factor(upsample):
    model = models.espcn.espcn(upsample, upscale_factor=2, in_hw=(8, 12)).eval()
    with torch.no_grad():
        y = model(torch.randint(0, 256, (2, 3, 8, 12)).float())
    assert tuple(y.shape) == (2, 3, 16, 24)
    ints = y * 255.0  # an 8-bit image in [0, 1]: integers 0..255 over 255
    assert torch.allclose(ints, ints.round(), atol=1e-3) and float(ints.min()) >= 0 and float(ints.max()) <= 255


def test_espcn_rejects_an_unknown_upsampler():
    with pytest.raises(ConfigError, match="subpixel, resize, deconv"):
        models.espcn.espcn("bilinear")


def test_bnn_pynq_bit_widths_are_finn_examples_ones():
    with pytest.raises(ConfigError, match="w1a1, w1a2, w2a2"):
        models.bnn_pynq.tfc(4, 4)
    assert models.bnn_pynq.gtsrb_cnv().net.linear_features[-2].out_features == 43


def test_export_takes_the_catalogue_input(tmp_path):
    net = example("kws-mlp-w3a3")
    m: ModelWrapper = export_qonnx(build_example(net.name), tmp_path / "kws.onnx", net.input_shape, input_dtype="FLOAT32")
    assert tuple(m.get_tensor_shape(m.graph.input[0].name)) == (1, *net.input_shape)
    assert m.graph.node[0].op_type in ("Reshape", "Flatten", "Quant")


@pytest.mark.parametrize("name", LARGE)
def test_large_networks_take_their_full_size_inputs(name):
    assert np.prod(example(name).input_shape) >= 3 * 224 * 224
