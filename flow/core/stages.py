"""The stages of the flow, named once for the builder, verification and the report.

A stage is a model the flow computes with: the trained network (``pytorch``), the
exported QONNX graph, FINN's dialect of it, the streamlined graph (float logits, then
integer with its label select), the graph of hardware layers, the specialized and folded
design, and the generated RTL simulated (``rtlsim``). Compiler steps declare the stage
their output is (:class:`flow.core.pipeline.StepSpec`); verification compares the
stages in this order.

>>> Stage.HW.value, Stage("qonnx") is Stage.QONNX
('hw', True)
>>> [s.value for s in FLOAT_STAGES]
['qonnx', 'finn_onnx', 'streamlined']
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    PYTORCH = "pytorch"
    QONNX = "qonnx"
    FINN_ONNX = "finn_onnx"
    STREAMLINED = "streamlined"
    STREAMLINED_INTEGER = "streamlined_integer"
    HW = "hw"
    SPECIALIZED = "specialized"
    RTLSIM = "rtlsim"


#: Stages whose outputs are float logits, compared within a tolerance.
FLOAT_STAGES: tuple[Stage, ...] = (Stage.QONNX, Stage.FINN_ONNX, Stage.STREAMLINED)
#: Stages computing in integers, compared bit for bit with the first of them.
INTEGER_STAGES: tuple[Stage, ...] = (Stage.STREAMLINED_INTEGER, Stage.HW, Stage.SPECIALIZED)
