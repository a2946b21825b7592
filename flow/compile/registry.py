"""Compiler steps registered by name, as FINN's builder registers its ``step_*`` functions.

A step is ``step(model, ctx) -> model``. Registering it gives it a name (the build's
checkpoint is ``checkpoints/NN_<name>.onnx``) and, when its output is one of the models
verification compares, the :class:`~flow.core.stages.Stage` it produces. A build runs
:data:`DEFAULT_STEPS` unless its config lists other step names; unknown names are a
:class:`~flow.core.errors.ConfigError` naming the registered ones.

>>> from flow.compile import steps   # registers the compiler steps
>>> get_step("streamline").produces.value
'streamlined'
>>> get_step("no_such_step")
Traceback (most recent call last):
...
flow.core.errors.ConfigError: unknown build step 'no_such_step'; registered steps: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qonnx.core.modelwrapper import ModelWrapper

from flow.compat.qonnx_linear import linear_qonnx
from flow.core.errors import ConfigError
from flow.core.stages import Stage

Step = Callable[[ModelWrapper, "object"], ModelWrapper]


@dataclass(frozen=True)
class StepInfo:
    """A registered step: its name, the function, and the stage its output model is (if any)."""

    name: str
    fn: Step
    produces: Stage | None = None

    def __call__(self, model: ModelWrapper, ctx) -> ModelWrapper:
        with linear_qonnx():  # qonnx's whole-graph passes in linear time (flow.compat.qonnx_linear)
            return self.fn(model, ctx)


_STEPS: dict[str, StepInfo] = {}

#: The steps of ``qflow build``, in order: compile (``flow.compile.steps``), then fold and
#: minimize bit widths (``flow.fold.step``).
DEFAULT_STEPS: tuple[str, ...] = (
    "qonnx_to_finn", "set_input_datatype", "streamline", "flatten_input_on_host", "insert_label_select",
    "convert_to_hw", "create_dataflow_partition", "specialize_layers", "fold", "minimize_bit_width",
)


def register_step(name: str, *, produces: Stage | None = None) -> Callable[[Step], Step]:
    """Decorator registering ``fn`` as build step ``name``; a name registers once."""

    def deco(fn: Step) -> Step:
        if name in _STEPS and _STEPS[name].fn is not fn:
            raise ValueError(f"build step {name!r} is already registered by {_STEPS[name].fn.__module__}")
        _STEPS[name] = StepInfo(name, fn, produces)
        return fn

    return deco


def get_step(name: str) -> StepInfo:
    try:
        return _STEPS[name]
    except KeyError:
        raise ConfigError(f"unknown build step {name!r}; registered steps: {', '.join(_STEPS)}") from None


def registered_steps() -> tuple[str, ...]:
    return tuple(_STEPS)
