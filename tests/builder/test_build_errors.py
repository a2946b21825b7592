"""Bad input to a build: a typed error, nothing half-written, no report.json."""

import json

import pytest
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper

from flow.builder.pipeline import build
from flow.core.config import build_config
from flow.core.errors import (
    ConfigError,
    FoldingError,
    InputDatatypeError,
    ModelFileError,
    OverBudgetError,
    UnknownTargetError,
    UnquantizedModelError,
    UnsupportedOpError,
)


def _cfg(**kw):
    kw.setdefault("verify_samples", 0)
    return build_config(**kw)


def _no_report(out):
    assert not (out / "report.json").exists()


def test_float_model_is_rejected(float_onnx, tmp_path):
    with pytest.raises(UnquantizedModelError, match="no quantization nodes"):
        build(float_onnx, _cfg(), tmp_path)
    _no_report(tmp_path)


def test_non_onnx_file_is_rejected(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ModelFileError, match="not an ONNX model"):
        build(bad, _cfg(), tmp_path / "out")
    _no_report(tmp_path / "out")


def test_unknown_target(tiny_mlp_onnx, tmp_path):
    with pytest.raises(UnknownTargetError, match="known boards"):
        build(tiny_mlp_onnx, _cfg(target="pynq-z9"), tmp_path)
    _no_report(tmp_path)


def test_unsupported_op_in_the_middle_names_node_and_op(tiny_mlp_onnx, tmp_path):
    m = ModelWrapper(str(tiny_mlp_onnx))
    matmuls = m.get_nodes_by_op_type("MatMul")
    first = matmuls[0]
    # an elementwise op FINN has no hardware layer for, between the two layers
    t = first.output[0]
    new_t = t + "_sin"
    for n in m.find_consumers(t):
        n.input[list(n.input).index(t)] = new_t
    m.graph.node.insert(list(m.graph.node).index(first) + 1, helper.make_node("Sin", [t], [new_t], name="the_sin"))
    m.set_tensor_shape(new_t, m.get_tensor_shape(t))
    path = tmp_path / "with_sin.onnx"
    m.save(str(path))
    with pytest.raises(UnsupportedOpError, match=r"the_sin.*\(Sin\)|Sin"):
        build(path, _cfg(), tmp_path / "out")
    _no_report(tmp_path / "out")


def test_float_input_without_input_quantizer_needs_input_dtype(tiny_mlp_onnx, tmp_path):
    m = ModelWrapper(str(tiny_mlp_onnx))
    quant = next(n for n in m.graph.node if n.op_type == "Quant" and m.get_initializer(n.input[0]) is None)
    for c in m.find_consumers(quant.output[0]):  # the first layer reads the pixels directly
        c.input[list(c.input).index(quant.output[0])] = quant.input[0]
    m.graph.node.remove(quant)
    m.set_tensor_datatype(m.graph.input[0].name, DataType["FLOAT32"])
    path = tmp_path / "float_in.onnx"
    m.save(str(path))
    with pytest.raises(InputDatatypeError, match="no input quantizer.*--input-dtype"):
        build(path, _cfg(), tmp_path / "out")
    _no_report(tmp_path / "out")
    # and the fix works
    r = build(path, _cfg(input_dtype="UINT8"), tmp_path / "ok")
    assert r.report.layers[0].op_type.startswith("MVAU")


def test_folding_file_naming_missing_nodes(tiny_mlp_onnx, tmp_path):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({"Defaults": {}, "MVAU_hls_99": {"PE": 2}}))
    with pytest.raises(FoldingError, match="MVAU_hls_99"):
        build(tiny_mlp_onnx, _cfg(folding_file=f), tmp_path / "out")
    _no_report(tmp_path / "out")


def test_folding_breaking_divisibility_names_the_layer(tiny_mlp_onnx, tmp_path):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({"MVAU_hls_0": {"PE": 3, "SIMD": 1}}))  # MH = 16 is not divisible by 3
    with pytest.raises(FoldingError, match=r"MVAU_hls_0.*PE"):
        build(tiny_mlp_onnx, _cfg(folding_file=f), tmp_path / "out")


def test_folding_with_bad_values(tiny_mlp_onnx, tmp_path):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({"MVAU_hls_0": {"PE": 0}}))
    with pytest.raises(FoldingError, match="positive integer"):
        build(tiny_mlp_onnx, _cfg(folding_file=f), tmp_path / "out")
    f.write_text("{not json")
    with pytest.raises(FoldingError, match="not valid JSON"):
        build(tiny_mlp_onnx, _cfg(folding_file=f), tmp_path / "out")


def _tiny_board(tmp_path):
    p = tmp_path / "tiny-board.toml"
    p.write_text(
        'display_name = "Tiny"\npart = "xc7z020clg400-1"\nfinn_board = "Pynq-Z1"\nshell = "zynq"\nclock_mhz = 100.0\n'
        "[resources]\nlut = 100\nff = 200\nbram_18k = 0\nuram = 0\ndsp = 0\n"
    )
    return p


def test_over_budget_design_reports_fits_false(tiny_mlp_onnx, tmp_path):
    r = build(tiny_mlp_onnx, _cfg(target=str(_tiny_board(tmp_path))), tmp_path / "out")
    assert r.report.fits is False
    assert "lut" in r.report.over_budget
    assert json.loads((tmp_path / "out" / "report.json").read_text())["fits"] is False


def test_strict_over_budget_raises(tiny_mlp_onnx, tmp_path):
    with pytest.raises(OverBudgetError, match=r"caps: LUT [0-9,]+ > 70"):
        build(tiny_mlp_onnx, _cfg(target=str(_tiny_board(tmp_path)), strict=True), tmp_path / "out")


def test_a_failed_rebuild_leaves_no_earlier_result(tiny_mlp_onnx, tmp_path):
    out = tmp_path / "out"
    build(tiny_mlp_onnx, _cfg(verify_samples=4), out)
    (out / "notes.txt").write_text("mine")
    earlier = ("report.json", "report.md", "report.html", "design.onnx", "folding.json", "specialize_layers.json")
    assert all((out / f).exists() for f in earlier)
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({"MVAU_hls_0": {"PE": 1000}}))
    with pytest.raises(FoldingError):
        build(tiny_mlp_onnx, _cfg(folding_file=f), out)
    assert [f for f in earlier if (out / f).exists()] == []
    assert (out / "notes.txt").read_text() == "mine"


def test_a_report_qflow_did_not_write_is_kept_and_refused(tiny_mlp_onnx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.json").write_text('{"fits": true}')
    with pytest.raises(ConfigError, match="report.json, which qflow did not write"):
        build(tiny_mlp_onnx, _cfg(), out)
    assert (out / "report.json").read_text() == '{"fits": true}'


def test_finns_defaults_syntax_folds_every_layer_of_an_op(tiny_mlp_onnx, tmp_path):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({"Defaults": {"PE": [2, ["MVAU_hls"]], "ram_style": ["distributed", "all"]}, "MVAU_hls_1": {"PE": 1}}))
    r = build(tiny_mlp_onnx, _cfg(folding_file=f, verify_samples=8), tmp_path / "out").report
    pe = {layer.name: layer.pe for layer in r.layers}
    assert pe["MVAU_hls_0"] == 2 and pe["MVAU_hls_1"] == 1 and r.verification.passed


@pytest.mark.parametrize("payload, match", [
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"MVAU_hls_0": {"PE": 2}}\xff', "not UTF-8"),
    (b'{"MVAU_hls_0": {"PE": NaN}}', "not valid JSON"),
    (b'{"Defaults": {"PE": [2]}}', r"Defaults.PE must list a value and the op types"),
    (b'{"MVAU_hls_0": {"ram_style": "bogus"}}', "ram_style must be one of"),
    (b'{"MVAU_hls_0": {"PE": "4"}}', "PE must be a positive integer"),
])
def test_bad_folding_files_are_one_line(tiny_mlp_onnx, tmp_path, payload, match):
    f = tmp_path / "fold.json"
    f.write_bytes(payload)
    with pytest.raises(FoldingError, match=match):
        build(tiny_mlp_onnx, _cfg(folding_file=f), tmp_path / "out")


def test_a_folding_naming_200k_missing_nodes_gives_a_short_line(tiny_mlp_onnx, tmp_path):
    f = tmp_path / "fold.json"
    f.write_text(json.dumps({f"Node_{i}": {"PE": 1} for i in range(200_000)}))
    with pytest.raises(FoldingError) as e:
        build(tiny_mlp_onnx, _cfg(folding_file=f), tmp_path / "out")
    assert len(str(e.value)) < 1000 and "(200,000 in all)" in str(e.value)
