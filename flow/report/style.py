"""One look for every chart qflow draws: colours, figures built without pyplot, PNG output.

Figures are ``matplotlib.figure.Figure`` objects rendered by the Agg canvas they carry: no
pyplot, no global backend switch, no global figure state.

>>> fig = figure(3, 2)
>>> png_data_uri(fig).startswith("data:image/png;base64,")
True
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from flow.core.fileio import atomic_write_bytes

BLUE, RED, GREEN, GREY, INK = "#3b6ea8", "#c0392b", "#2e8b57", "#9aa5b1", "#1f2933"
PALETTE = (BLUE, RED, GREEN, "#8e44ad", "#d35400", "#16a085")


def text(s: Any) -> str:
    """A label matplotlib draws verbatim ($ would start mathtext)."""
    return str(s).replace("$", r"\$")


def figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def png_bytes(fig: Figure, dpi: int = 130) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def png_data_uri(fig: Figure, dpi: int = 110) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(fig, dpi)).decode("ascii")


def save_png(fig: Figure, path: str | Path, dpi: int = 130) -> Path:
    """Render ``fig`` to PNG and write it atomically to ``path``."""
    atomic_write_bytes(path, png_bytes(fig, dpi))
    return Path(path)
