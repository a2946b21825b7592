"""Untrusted files never run code: FINN's settings loader is never pointed at them."""

import os
import subprocess
import sys

from flow.compat import finn as _finn_compat

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FINN_", "XILINX_"))}


def _payload(marker) -> str:
    # PyYAML's unsafe Loader calls os.system on this tag: a settings file is code.
    return f"finn_build_dir: !!python/object/apply:os.system ['touch {marker}']\n"


def test_finn_executes_a_settings_file_it_is_pointed_at(tmp_path):
    """Why ensure_finn_settings never lets FINN read a file a user could have written."""
    marker = tmp_path / "ran"
    settings = tmp_path / "settings.yaml"
    settings.write_text(_payload(marker))
    code = (
        "from pathlib import Path; from finn.interface.settings import FINNSettings\n"
        f"try:\n FINNSettings.init(override_settings_path=Path({str(settings)!r}), auto_set_environment_vars=False)\n"
        "except Exception:\n pass\n"
    )
    subprocess.run([sys.executable, "-c", code], env=CLEAN_ENV, timeout=120, capture_output=True)
    assert marker.exists(), "FINN no longer executes its settings file: the private settings path may be dropped"


def test_planted_settings_files_do_not_run(tmp_path, tiny_mlp_onnx):
    """A settings file in --out, in FINN_SETTINGS or in ~/.finn is never loaded by a build."""
    out = tmp_path / "out"
    home = tmp_path / "home"
    markers = [tmp_path / f"ran_{i}" for i in range(4)]
    (out / "finn_build").mkdir(parents=True)
    (out / "finn_build" / "finn_settings.yaml").write_text(_payload(markers[0]))
    (out / "finn_build" / "settings.yaml").write_text(_payload(markers[1]))
    (home / ".finn").mkdir(parents=True)
    (home / ".finn" / "settings.yaml").write_text(_payload(markers[2]))
    env_file = tmp_path / "env_settings.yaml"
    env_file.write_text(_payload(markers[3]))
    env = {**CLEAN_ENV, "HOME": str(home), "FINN_SETTINGS": str(env_file)}
    proc = subprocess.run(
        [sys.executable, "-m", "flow", "build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--stage", "codegen"],
        env=env, timeout=600, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "report.json").exists()
    assert [m.name for m in markers if m.exists()] == []


def test_settings_path_is_private_and_never_created(tmp_path):
    _finn_compat.ensure_finn_settings(tmp_path / "b")
    path = _finn_compat._private_settings_path()
    assert not path.exists()
    assert not path.parent.is_relative_to(tmp_path)
    assert (path.parent.stat().st_mode & 0o777) == 0o700
