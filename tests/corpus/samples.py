"""A few small corpus models exported into one folder, for tests that run passes on their builds."""

from __future__ import annotations

from pathlib import Path

from corpus import structures as S
from corpus.cases import BY_NAME
from corpus.export import EXPORTERS

from flow.nn.export import export_qonnx


def exported(folder: Path, tfc: bool = True) -> dict[str, tuple[Path, str | None]]:
    """A MobileNet slice and stacked residual blocks (and bnn_pynq's TFC w1a1, exported as FINN's docs do),
    untrained, in ``folder``: name -> (model path, ``input_dtype`` for the build)."""
    found = {}
    for fn in (S.mobilenet_slice, S.residual_stacked):
        name, module, shape, dtype, _ = fn()
        export_qonnx(module, folder / f"{name}.onnx", shape, dtype)
        found[name] = (folder / f"{name}.onnx", dtype)
    if tfc:
        case = BY_NAME["tfc_1w1a"]
        (folder / "tfc").mkdir()
        EXPORTERS[case.export](case.build().eval(), case.shape, folder / "tfc" / "model.onnx")  # clears its folder
        found["tfc"] = (folder / "tfc" / "model.onnx", case.input_dtype)
    return found
