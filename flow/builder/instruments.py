"""Instruments around every build step, in the manner of TVM's pass instruments: progress,
timing, checkpoints and error wrapping live here, not inside the steps.

An instrument is ``instrument(step, state, ctx)`` returning a context manager entered around
the step; :data:`INSTRUMENTS` run outermost first.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import ContextManager

from flow.compat import finn as _finn_compat
from flow.compat.qonnx import model_chunks, read_model, release_memory
from flow.core.errors import CompileError, QflowError
from flow.core.fileio import atomic_write_chunks
from flow.core.pipeline import BuildContext, BuildState, StepSpec

Instrument = Callable[[StepSpec, BuildState, BuildContext], ContextManager[None]]


@contextlib.contextmanager
def model_errors(what: str) -> Iterator[None]:
    """Turn a failure of FINN's, qonnx's or onnxruntime's code on this model into a one-line CompileError naming ``what``.

    Every input was checked on import, so what still fails here is a model the compiler cannot
    process; ``--debug`` shows the original traceback.
    """
    try:
        yield
    except (QflowError, KeyboardInterrupt, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001 - FINN states its limits as asserts and many exception types
        detail = " ".join(str(e).split())[:300] or type(e).__name__
        raise CompileError(f"{what} cannot process this model ({type(e).__name__}: {detail}); qflow compiles QONNX models as Brevitas exports them") from e


def progress(callback: Callable[[str], None] | None) -> Instrument:
    """Calls ``callback(step name)`` as each shown step starts (the CLI's progress bar)."""

    @contextlib.contextmanager
    def around(step: StepSpec, state: BuildState, ctx: BuildContext) -> Iterator[None]:
        if callback is not None and step.shown:
            callback(step.name)
        yield

    return around


@contextlib.contextmanager
def checkpoint(step: StepSpec, state: BuildState, ctx: BuildContext) -> Iterator[None]:
    """After a model step: its model saved as ``checkpoints/NN_<name>.onnx`` (and as the stage it produces);
    after every step: what FINN wrote into the output folder recorded."""
    yield
    if step.checkpoint and state.model is not None:
        path = ctx.will_write(f"checkpoints/{len(state.checkpoints):02d}_{step.name}.onnx")
        model = state.model
        atomic_write_chunks(path, lambda: model_chunks(model))
        # the step's replaced weights freed (flow.compat.qonnx): the model dropped before it is parsed again
        state.model = model = None
        release_memory()
        state.model = read_model(path)
        state.checkpoints[step.name] = path
        if step.produces is not None:
            state.stages[step.produces] = path
    if ctx.out is not None:
        ctx.out.close()


@contextlib.contextmanager
def timing(step: StepSpec, state: BuildState, ctx: BuildContext) -> Iterator[None]:
    """Each shown step's seconds into ``state.timings`` (the report's ``timings_s``), and one line to ``ctx.log``."""
    t0 = time.perf_counter()
    yield
    if step.shown:
        state.timings.record(step.name, time.perf_counter() - t0)
        ctx.say(f"  {step.name:<26} {state.timings[step.name]:8.2f} s")


@contextlib.contextmanager
def errors(step: StepSpec, state: BuildState, ctx: BuildContext) -> Iterator[None]:
    """A failure inside the step is one line naming it; FINN's output goes to ``finn.log``."""
    with model_errors(f"step {step.name!r}"), _finn_compat.finn_output_to(ctx.out_dir / "finn.log"):
        yield


def run_step(step: StepSpec, state: BuildState, ctx: BuildContext, instruments: list[Instrument]) -> None:
    """``step`` on ``state`` inside every instrument (the first outermost)."""
    with contextlib.ExitStack() as stack:
        for instrument in instruments:
            stack.enter_context(instrument(step, state, ctx))
        step.run(state, ctx)
