"""Each finn-plus workaround is still needed, and works."""

import os
import subprocess
import sys

import pytest

from flow.compat import finn as _finn_compat

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FINN_", "XILINX_"))}


def _py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=CLEAN_ENV, timeout=120)


@pytest.mark.skipif(_finn_compat.vivado_available(), reason="only without Vivado does the import fail")
def test_finn_builder_steps_do_not_import_without_vivado_and_build_steps_does():
    plain = _py("import finn.util.settings as s; s.initialize_dummy_settings(); import finn.builder.build_dataflow_steps")
    assert plain.returncode != 0 and "XILINX_VIVADO" in plain.stderr
    ours = _py("from flow.compat.finn import build_steps; print(build_steps().step_streamline.__name__)")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.strip() == "step_streamline"


def test_finn_needs_settings_and_ensure_finn_settings_provides_them(tmp_path):
    plain = _py("from finn.util.basic import make_build_dir; make_build_dir('x_')")
    assert plain.returncode != 0 and "settings" in plain.stderr
    code = (
        "from flow.compat.finn import ensure_finn_settings; from finn.util.basic import make_build_dir; "
        f"ensure_finn_settings({str(tmp_path)!r}); print(make_build_dir('x_'))"
    )
    ours = _py(code)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.strip().startswith(str(tmp_path))
    assert not (tmp_path / "finn_settings.yaml").exists()


def test_unavailable_sim_engine_raises_a_tool_error():
    from flow.core.errors import ToolMissingError

    with pytest.raises(ToolMissingError, match="Vivado"):
        _finn_compat._SimEngineUnavailable()


def test_finn_output_goes_to_the_log(tmp_path, capsys):
    log = tmp_path / "finn.log"
    with _finn_compat.finn_output_to(log):
        print("Converting quantized matmul layers...")
    assert "Converting" in log.read_text()
    assert "Converting" not in capsys.readouterr().out


@pytest.fixture(scope="module")
def specialized_mlp(tiny_mlp_onnx, tmp_path_factory):
    from qonnx.core.modelwrapper import ModelWrapper

    from flow.builder import build
    from flow.core.config import build_config

    r = build(tiny_mlp_onnx, build_config(verify_samples=0), tmp_path_factory.mktemp("compat_mlp"))
    return ModelWrapper(str(r.checkpoints["specialize_layers"]))


def test_finn_warns_when_it_keeps_a_variant_and_the_silencer_hides_it(specialized_mlp, caplog):
    import logging

    from finn.builder.build_dataflow_config import DataflowBuildConfig

    from flow.compile.specialize import unspecialize

    label = next(n.name for n in specialized_mlp.graph.node if n.op_type.startswith("LabelSelect"))
    generic = unspecialize(specialized_mlp, {label: "rtl"})  # LabelSelect has no RTL variant
    cfg = DataflowBuildConfig(output_dir="unused", fpga_part="xc7z020clg400-1", generate_outputs=[])
    with caplog.at_level(logging.WARNING, logger="finn_logger"):
        _finn_compat.build_steps().step_specialize_layers(generic, cfg)
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="finn_logger"), _finn_compat.finn_warnings_silenced():
        _finn_compat.build_steps().step_specialize_layers(unspecialize(specialized_mlp, {label: "rtl"}), cfg)
    assert not [r for r in caplog.records if r.name == "finn_logger"]


def test_finn_estimates_reread_attributes_and_the_cached_instance_agrees(specialized_mlp):
    from qonnx.custom_op.registry import getCustomOp

    node = next(n for n in specialized_mlp.graph.node if n.op_type.startswith("MVAU"))
    inst = getCustomOp(node)
    calls = []
    real = inst.get_nodeattr
    inst.get_nodeattr = lambda name: (calls.append(name), real(name))[1]
    plain = inst.node_res_estimation("xc7z020clg400-1")
    assert len(calls) > 3 * len(set(calls))  # each attribute read several times per estimate: why it is cached
    cached = _finn_compat.cached_attr_instance(node)
    assert cached.node_res_estimation("xc7z020clg400-1") == plain
    cached.set_nodeattr("PE", 2)  # writes still reach FINN (on the private copy only)
    assert cached.get_nodeattr("PE") == 2 and getCustomOp(node).get_nodeattr("PE") == inst.get_nodeattr("PE")


def test_finn_names_codegen_folders_at_random_and_named_folders_hold_its_sources(tiny_mlp_onnx, tmp_path):
    import re
    from pathlib import Path

    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp

    from flow.builder import build
    from flow.core.config import build_config

    design = build(tiny_mlp_onnx, build_config(verify_samples=0), tmp_path / "b").design
    cfg = DataflowBuildConfig(output_dir=str(tmp_path / "unused"), fpga_part="xc7z020clg400-1", synth_clk_period_ns=10.0, generate_outputs=[])
    _finn_compat.ensure_finn_settings(tmp_path / "finn")
    finn = _finn_compat.build_steps().step_hw_codegen(ModelWrapper(str(design)), cfg)
    theirs = {n.name: Path(getCustomOp(n).get_nodeattr("code_gen_dir_ipgen")) for n in finn.graph.node}
    for name, folder in theirs.items():  # a new random name on every build: why qflow names the folders
        assert re.fullmatch(rf"code_gen_ipgen_{name}_\w{{8}}", folder.name), folder

    (tmp_path / "named").mkdir()
    ours = ModelWrapper(str(design))
    folders = _finn_compat.codegen_in_named_folders(ours, tmp_path / "named", cfg)
    assert {k: v.name for k, v in folders.items()} == {k: k for k in theirs}
    for node in ours.graph.node:
        folder = folders[node.name]
        assert getCustomOp(node).get_nodeattr("code_gen_dir_ipgen") == str(folder)
        mine = {p.name: p.read_bytes().replace(str(folder).encode(), b"<dir>") for p in folder.iterdir() if p.is_file()}
        same = {p.name: p.read_bytes().replace(str(theirs[node.name]).encode(), b"<dir>") for p in theirs[node.name].iterdir() if p.is_file()}
        assert mine == same and mine, node.name  # the very sources FINN writes, the folder's path apart
    before = sorted((tmp_path / "finn").iterdir())
    done = _finn_compat.build_steps().step_hw_codegen(ours, cfg)  # FINN's step finds every layer done
    assert sorted((tmp_path / "finn").iterdir()) == before
    assert {n.name: getCustomOp(n).get_nodeattr("code_gen_dir_ipgen") for n in done.graph.node} == {k: str(v) for k, v in folders.items()}


def test_a_name_held_by_something_else_gets_a_suffix_and_is_left_alone(tmp_path):
    (tmp_path / "MVAU_hls_0").mkdir()
    (tmp_path / "MVAU_hls_0" / "notes.txt").write_text("mine")
    (tmp_path / "MVAU_hls_0-2").symlink_to(tmp_path / "elsewhere")
    assert _finn_compat._fresh_folder(tmp_path, "MVAU_hls_0") == tmp_path / "MVAU_hls_0-3"
    assert (tmp_path / "MVAU_hls_0" / "notes.txt").read_text() == "mine" and not (tmp_path / "elsewhere").exists()
