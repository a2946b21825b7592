"""Every workaround qflow needs to use finn-plus 1.6.1 without Vivado, in one place.

Each function states the reason. ``tests/flow/test_finn_compat.py`` checks that each
one is still needed and that it works.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import shutil
import stat
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import finn.util.settings as finn_settings
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from finn.interface.settings import FINNSettings
from finn.util.fpgadataflow import is_hls_node, is_rtl_node
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.core.errors import ConfigError, ToolMissingError
from flow.core.fileio import atomic_write_bytes, read_regular

_settings_dir: Path | None = None
#: Largest FINN log qflow appends to.
MAX_LOG_BYTES = 1 << 30


def _private_settings_path() -> Path:
    """A settings-file path that cannot exist: a name inside the null device, which is not a folder.

    Nobody can create a file there, so FINN finds no settings file, reads nothing and uses its
    defaults; qflow creates no folder for it and leaves nothing behind.
    """
    null = Path(os.devnull)
    if not stat.S_ISCHR(os.stat(null).st_mode):  # pragma: no cover - every POSIX system has a null device
        raise RuntimeError(f"{null} is not the null device; refusing to hand FINN a settings path")
    return null / "qflow-finn-settings.yaml"


def ensure_finn_settings(build_dir: str | os.PathLike) -> Path:
    """Give finn-plus its global settings, with build dirs under ``build_dir``.

    Reason: FINN transformations that create folders (CreateDataflowPartition,
    PrepareIP, codegen) call ``finn.util.settings.get_settings()``, which raises
    unless FINN was started through its CLI or ``FINN_SETTINGS``/``FINN_BUILD_DIR``
    are set. Setting the module global directly keeps qflow free of environment
    globals and never writes into ``~/.finn``.

    Security: ``FINNSettings.init`` loads its settings file with PyYAML's unsafe
    ``Loader``, so a settings file is code. FINN is pointed at a path that cannot exist
    (:func:`_private_settings_path`): no file in ``build_dir`` (the user's output folder),
    in ``FINN_SETTINGS`` or in ``~/.finn`` is ever read.
    """
    global _settings_dir
    path = Path(build_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    if _settings_dir == path and finn_settings._SETTINGS is not None:
        return path
    settings_file = _private_settings_path()
    finn_settings._SETTINGS = FINNSettings.init(
        override_settings_path=settings_file,
        flow_config=path / "flow.yaml",  # only resolves relative paths; never read
        finn_build_dir=str(path),
        auto_set_environment_vars=False,
    )
    _settings_dir = path
    return path


class _SimEngineUnavailable:
    """Stands in for ``finn.xsi.SimEngine`` when Vivado's XSI is not installed."""

    def __init__(self, *args, **kwargs):
        raise ToolMissingError(
            "RTL simulation needs Vivado's XSI; install Vivado and put `vivado` on PATH"
        )


@cache
def build_steps():
    """Import FINN's builder steps module (``step_*`` functions) without Vivado.

    Reason: ``finn.builder.build_dataflow_steps`` does ``from finn.xsi import
    SimEngine`` at import time, and ``finn.xsi`` resolves that name lazily by
    checking for Vivado, raising ``OSError: XILINX_VIVADO environment variable not
    set``. The name is only used for type hints and rtlsim, so when Vivado is absent
    it is bound to a placeholder that raises ToolMissingError if ever instantiated.
    """
    import finn.xsi as xsi

    if "SimEngine" not in vars(xsi) and not vivado_available():
        xsi.SimEngine = _SimEngineUnavailable
    import finn.builder.build_dataflow_steps as steps

    return steps


def vivado_available() -> bool:
    """True when Vivado is on PATH and its environment is set (needed for ipgen/bitfile)."""
    return shutil.which("vivado") is not None and bool(os.environ.get("XILINX_VIVADO"))


def vitis_hls_available() -> bool:
    """True when Vitis HLS is on PATH (needed for cppsim and HLS IP generation)."""
    return shutil.which("vitis_hls") is not None or shutil.which("vitis-run") is not None


def quiet_finn_logging() -> None:
    """Keep FINN's per-step prints and info logs off qflow's console output.

    Reason: FINN's builder steps print progress lines (``Converting ...``) and log
    warnings that qflow reports in its own words.
    """
    for name in ("finn_logger", "finn", "qonnx"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def finn_output_to(log_path: str | os.PathLike):
    """Send what FINN prints while building (``Converting ...`` lines, warnings) to a log file.

    Reason: FINN's builder steps print progress to stdout; qflow reports in its own words
    and keeps FINN's lines in ``<out>/finn.log`` for reference. The lines are collected and
    appended when the block ends by rewriting the log atomically, so the log is never opened
    for writing in place (a link or hard link planted at its name is replaced, not written through).
    """
    path = Path(log_path)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        try:
            old = read_regular(path, "FINN log", ConfigError, limit=MAX_LOG_BYTES, follow=False) if path.exists() else b""
        except ConfigError:
            old = b""
        atomic_write_bytes(path, old + buf.getvalue().encode("utf-8", "replace"))


@contextlib.contextmanager
def finn_warnings_silenced():
    """Raise FINN's logger to ERROR for the duration (its warnings are reported by qflow in its words).

    Reason: FINN's ``step_specialize_layers`` logs a warning for every layer whose
    requested variant it cannot build and keeps; the cost model asks for every layer's
    other variant on purpose.
    """
    log = logging.getLogger("finn_logger")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


#: Ops whose own ``lut_estimation`` returns 0 although they have fabric logic ("DSP-based").
ZERO_LUT_OPS = ("MVAU_rtl", "VVAU_rtl")


def finn_lut_blind(inst) -> bool:
    """True when FINN's LUT estimate of the layer is 0 by construction, not a result.

    Reason: ``MVAU_rtl``/``VVAU_rtl`` return 0 from their own ``lut_estimation``, and
    every op without one inherits ``HWCustomOp.lut_estimation``, which returns 0 (Pool_hls,
    FMPadding_rtl, LabelSelect_hls, ...). qflow gives its own count for some of them and
    marks the others as not estimated (:mod:`flow.compile.lut_model`).
    """
    return inst.onnx_node.op_type in ZERO_LUT_OPS or type(inst).lut_estimation is HWCustomOp.lut_estimation


def cached_attr_instance(node):
    """A FINN custom-op instance of a private copy of ``node`` whose attribute reads are memoized.

    Reason: FINN's estimation methods re-read node attributes dozens of times, each a
    linear search over the protobuf; the cost model calls them for thousands of settings.
    The instance's ``get_nodeattr``/``set_nodeattr``/``get_nodeattr_types`` are replaced on
    this private instance only: values are the same, only cached, and writes still go
    through FINN's setter.
    """
    inst = getCustomOp(copy.deepcopy(node))
    types = inst.get_nodeattr_types()
    cache: dict[str, Any] = {}
    get, put = inst.get_nodeattr, inst.set_nodeattr

    def get_cached(name):
        if name not in cache:
            cache[name] = get(name)
        v = cache[name]
        return list(v) if isinstance(v, list) else v

    def set_cached(name, value):
        cache.pop(name, None)
        put(name, value)

    inst.get_nodeattr_types = lambda: types
    inst.get_nodeattr = get_cached
    inst.set_nodeattr = set_cached
    return inst


#: A node name that is also a plain folder name.
_FOLDER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}")


def _fresh_folder(root: Path, name: str) -> Path:
    """A new, empty folder ``root/name`` made here (``name-2``, ``name-3``, ... when something else holds the name)."""
    for i in range(1, 10_000):
        folder = root / (name if i == 1 else f"{name}-{i}")
        try:
            folder.mkdir()  # never follows a link at the name: an existing entry of any kind is FileExistsError
            return folder
        except FileExistsError:
            continue
    raise ConfigError(f"{root}: no free folder name for {name}; empty the folder")  # pragma: no cover - 10,000 entries


def codegen_in_named_folders(model: ModelWrapper, root: Path, cfg) -> dict[str, Path]:
    """Generate every HLS/RTL layer's sources into a fresh folder named after the layer, ``root/MVAU_hls_0``;
    returns layer -> folder.

    Reason: FINN's ``PrepareIP`` (``step_hw_codegen``) makes each layer's folder with
    ``tempfile.mkdtemp(prefix="code_gen_ipgen_<layer>_")``, a new random name on every build
    (``code_gen_ipgen_MVAU_hls_0_sy62enka``), and skips a layer whose ``code_gen_dir_ipgen`` already
    names a folder. So the folder is made here, recorded in the layer's ``code_gen_dir_ipgen``, and
    the layer's own ``code_generation_ipgen`` fills it, as ``PrepareIP`` would: every path FINN records
    (``code_gen_dir_ipgen``, ``ipgen_path``, ``ip_path``) and writes into the sources is the final one.
    FINN's step afterwards finds every layer done. A name that is not a plain folder name becomes
    ``node_<index>``; a name already taken in ``root`` gets a suffix, so nothing there is written into.
    ``cfg`` is FINN's ``DataflowBuildConfig``, whose part and clock ``step_hw_codegen`` would use.
    """
    fpgapart, clk_ns = cfg._resolve_fpga_part(), cfg._resolve_hls_clk_period()
    folders: dict[str, Path] = {}
    for index, node in enumerate(model.graph.node):
        if not (is_hls_node(node) or is_rtl_node(node)):
            continue
        name = node.name if _FOLDER_NAME.fullmatch(node.name or "") and node.name not in (".", "..") else f"node_{index}"
        folder = _fresh_folder(root, name)
        inst = getCustomOp(node)
        inst.set_nodeattr("code_gen_dir_ipgen", str(folder))
        inst.code_generation_ipgen(model, fpgapart, clk_ns)
        folders[node.name] = folder
    return folders
