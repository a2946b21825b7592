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

    from flow.fold.specialize import unspecialize

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
