"""Model-to-model build steps in the shape of FINN's builder: ``step(model, ctx) -> model``.

:func:`model_step` makes such a function a :class:`~flow.core.pipeline.StepSpec`: it replaces
the build's model, is checkpointed as ``checkpoints/NN_<name>.onnx`` and, when its output is
one of the models verification compares, names the :class:`~flow.core.stages.Stage` it
produces. It runs inside :func:`flow.compat.qonnx_linear.linear_qonnx` (qonnx's whole-graph
passes in linear time).

>>> from flow.compile.steps import step_streamline
>>> spec = model_step("streamline", step_streamline, produces=Stage.STREAMLINED)
>>> spec.checkpoint, spec.produces.value, spec.doc.startswith("FINN's streamlining")
(True, 'streamlined', True)
"""

from __future__ import annotations

from collections.abc import Callable

from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.qonnx_linear import linear_qonnx
from flow.core.pipeline import BuildContext, BuildState, StepSpec
from flow.core.stages import Stage

ModelFn = Callable[[ModelWrapper, BuildContext], ModelWrapper]


def model_step(name: str, fn: ModelFn, *, produces: Stage | None = None, doc: str | None = None) -> StepSpec:
    """The build step ``name`` that replaces the build's model by ``fn(model, ctx)``."""

    def run(state: BuildState, ctx: BuildContext) -> None:
        if state.model is None:
            raise ValueError(f"build step {name!r} needs a model")
        with linear_qonnx():
            state.model = fn(state.model, ctx)

    first = (doc or fn.__doc__ or "").strip().splitlines()
    return StepSpec(name, run, produces=produces, checkpoint=True, requires=("model",), provides=("model", "stages"), doc=first[0] if first else "")
