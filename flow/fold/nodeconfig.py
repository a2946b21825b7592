"""FINN's per-node JSON configs (folding and specialize-layers files), read safely.

Both map node names to attribute objects, with an optional ``"Defaults"`` entry in FINN's
syntax: each attribute maps to pairs of a value and the op types it applies to (or
``"all"``)::

    {"Defaults": {"PE": [2, ["MVAU_hls"]], "ram_style": ["distributed", "all"]},
     "MVAU_hls_0": {"PE": 16, "SIMD": 49}}

A node's own entry wins over the defaults, as in FINN's ``ApplyConfig``.
:func:`expand_defaults` turns a config into explicit per-node entries for one graph, so
every value is checked against the node it lands on.

>>> expand_defaults({"Defaults": {"PE": [2, ["MVAU_hls"]]}, "MVAU_hls_1": {"PE": 4}},
...                 [("MVAU_hls_0", "MVAU_hls"), ("MVAU_hls_1", "MVAU_hls"), ("Thresholding_rtl_0", "Thresholding_rtl")])
{'MVAU_hls_0': {'PE': 2}, 'MVAU_hls_1': {'PE': 4}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from flow.core.errors import FoldingError
from flow.core.fileio import read_json

DEFAULTS = "Defaults"
#: Longest list of node names an error message spells out.
MAX_NAMES_SHOWN = 12


def shown(names: Iterable[str], limit: int = MAX_NAMES_SHOWN) -> str:
    """``a, b, c`` for a few names, ``a, b, ... (1,234 in all)`` for many: errors stay one short line."""
    names = list(names)
    head = ", ".join(str(n)[:80] for n in names[:limit])
    return head if len(names) <= limit else f"{head}, ... ({len(names):,} in all)"


def check_config_shape(data: Any, source: str) -> dict[str, dict[str, Any]]:
    """``data`` must map names to attribute objects, with ``Defaults`` in FINN's syntax."""
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise FoldingError(f"{source} must map node names to attribute objects, as FINN's configs do")
    for attr, spec in data.get(DEFAULTS, {}).items():
        ok = isinstance(spec, list) and len(spec) >= 2 and len(spec) % 2 == 0
        ops = spec[1::2] if ok else []
        ok = ok and all(o == "all" or (isinstance(o, list) and all(isinstance(t, str) for t in o)) for o in ops)
        if not ok or ("all" in ops and len(spec) > 2):
            raise FoldingError(
                f"{source}: Defaults.{attr} must list a value and the op types it applies to, "
                f'as FINN does: [2, ["MVAU_hls"]] or [2, "all"]; got {str(spec)[:80]}'
            )
    return data


def read_node_config(path: str | Path, what: str) -> dict[str, dict[str, Any]]:
    """Read a FINN per-node config file; :class:`FoldingError` (one line) if it is not one."""
    return check_config_shape(read_json(path, what, FoldingError), f"{what} {path}")


def expand_defaults(
    config: Mapping[str, Mapping[str, Any]], nodes: Iterable[tuple[str, str]], has: Callable[[str, str], bool] = lambda n, a: True
) -> dict[str, dict[str, Any]]:
    """Per-node entries for ``nodes`` (``(name, op_type)`` pairs): FINN's defaults, then each node's own.

    A default for ``"all"`` ops lands only on nodes that have the attribute (``has(name, attr)``).
    """
    defaults = config.get(DEFAULTS, {})
    out: dict[str, dict[str, Any]] = {}
    for name, op in nodes:
        attrs: dict[str, Any] = {}
        for attr, spec in defaults.items():
            for value, ops in zip(spec[::2], spec[1::2]):
                if (ops == "all" and has(name, attr)) or op in ops:
                    attrs[attr] = value
        attrs.update(config.get(name, {}))
        if attrs:
            out[name] = attrs
    return out
