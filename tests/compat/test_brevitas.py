"""The Brevitas workaround is still needed, and works."""

import subprocess
import sys

_IMPORT = "import brevitas.graph.equalize"


def _stderr(code: str) -> str:
    return subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120).stderr


def test_brevitas_warns_about_a_missing_optional_kernel_on_import():
    assert "fast_hadamard_transform" in _stderr(_IMPORT)


def test_the_warning_is_hidden_after_the_cli_asks():
    code = f"from flow.compat.brevitas import hide_optional_kernel_warning; hide_optional_kernel_warning(); {_IMPORT}"
    assert "fast_hadamard_transform" not in _stderr(code)
