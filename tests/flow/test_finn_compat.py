"""Each finn-plus workaround is still needed, and works."""

import os
import subprocess
import sys

import pytest

from flow import _finn_compat

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FINN_", "XILINX_"))}


def _py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=CLEAN_ENV, timeout=120)


@pytest.mark.skipif(_finn_compat.vivado_available(), reason="only without Vivado does the import fail")
def test_finn_builder_steps_do_not_import_without_vivado_and_build_steps_does():
    plain = _py("import finn.util.settings as s; s.initialize_dummy_settings(); import finn.builder.build_dataflow_steps")
    assert plain.returncode != 0 and "XILINX_VIVADO" in plain.stderr
    ours = _py("from flow._finn_compat import build_steps; print(build_steps().step_streamline.__name__)")
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.strip() == "step_streamline"


def test_finn_needs_settings_and_ensure_finn_settings_provides_them(tmp_path):
    plain = _py("from finn.util.basic import make_build_dir; make_build_dir('x_')")
    assert plain.returncode != 0 and "settings" in plain.stderr
    code = (
        "from flow._finn_compat import ensure_finn_settings; from finn.util.basic import make_build_dir; "
        f"ensure_finn_settings({str(tmp_path)!r}); print(make_build_dir('x_'))"
    )
    ours = _py(code)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.strip().startswith(str(tmp_path))
    assert not (tmp_path / "finn_settings.yaml").exists()


def test_unavailable_sim_engine_raises_a_tool_error():
    from flow.errors import ToolMissingError

    with pytest.raises(ToolMissingError, match="Vivado"):
        _finn_compat._SimEngineUnavailable()


def test_finn_output_goes_to_the_log(tmp_path, capsys):
    log = tmp_path / "finn.log"
    with _finn_compat.finn_output_to(log):
        print("Converting quantized matmul layers...")
    assert "Converting" in log.read_text()
    assert "Converting" not in capsys.readouterr().out
