"""The structure streamlining driver: FINN's and qflow's passes repeated to a fixed point.

:func:`prepare_qonnx` runs on the QONNX graph before FINN's conversion;
:func:`streamline_structures` after FINN's ``step_streamline`` (convs are lowered to
Im2Col + MatMul by then).
"""

from __future__ import annotations

import copy

from finn.transformation.streamline.absorb import (
    Absorb1BitMulIntoMatMul,
    AbsorbAddIntoMultiThreshold,
    AbsorbConsecutiveTransposes,
    AbsorbMulIntoMultiThreshold,
    AbsorbScalarMulAddIntoTopK,
    AbsorbTransposeIntoMultiThreshold,
    FactorOutMulSignMagnitude,
)
from finn.transformation.streamline.collapse_repeated import (
    CollapseRepeatedAdd,
    CollapseRepeatedMul,
)
from finn.transformation.streamline.reorder import (
    MoveAddPastMul,
    MoveLinearPastFork,
    MoveScalarAddPastMatMul,
    MoveScalarLinearPastInvariants,
    MoveScalarMulPastMatMul,
    MakeScaleResizeNHWC,
    MoveScalesPastIm2Col,
    MoveTransposePastFork,
)
from finn.transformation.streamline.round_thresholds import RoundAndClipThresholds
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import GiveUniqueParameterTensors, SortGraph
from qonnx.transformation.remove import RemoveIdentityOps

from flow.compat.qonnx_linear import transforms_in_place
from flow.compat.finn_streamline import (
    ConvertSingletonTransposeToReshape,
    MoveEqualTransposesPastJoinAdd,
    MoveForkFreeLinearPastEltwiseAdd,
)
from flow.compile.passes.conv1d import Lift1DTo2D
from flow.compile.passes.deconv import LowerConvTranspose, MoveScalarMulPastConvTranspose
from flow.compile.passes.depthwise import (
    MoveChannelwiseMulPastIm2Col,
    MoveMulPastDepthwiseMatMul,
)
from flow.compile.passes.graph import NameUnnamedNodes, graph_digest, refresh
from flow.compile.passes.input_pad import PadInputOnHost
from flow.compile.passes.joins import MoveConstAddPastJoinAdd, UnifyEqualScalesAtJoinAdd
from flow.compile.passes.layout import CollapseRepeatedReshape, MoveLinearPastLayoutOp
from flow.compile.passes.mappable import check_lowerable_convs
from flow.compile.passes.pixelshuffle import MoveDepthToSpacePastElementwise, MoveLinearPastDepthToSpace
from flow.compile.passes.pools import (
    ConvertAveragePoolToSumPool,
    ConvertGlobalAveragePoolToAccPool,
    ConvertWholeMapAveragePoolToGlobal,
    MoveChannelwiseLinearPastAveragePool,
    MoveChannelwiseMulPastMaxPool,
)
from flow.compile.passes.transposes import PushTransposesDownstream
from flow.compile.passes.trunc import ConvertRoundingTruncToMultiThreshold
from flow.compile.passes.upsample import MoveLinearPastNearestResize

#: Rounds of the pass list at most (the structures here converge in 2-5).
MAX_ROUNDS = 50


def structure_passes() -> list[Transformation]:
    """The rewrite list, in the order one round applies it (each to its own fixed point).

    Every move goes forward (scales towards thresholds, Transposes towards their partners),
    so the list converges. Moving a Mul past a forking Transpose or MaxPool makes the Mul a
    fork, hence a second ``MoveLinearPastFork`` before the join merge.
    """
    return [
        # scales through layout ops, forks and residual joins
        MoveLinearPastFork(),  # FINN: one copy of a forking Mul/Add per branch
        MoveLinearPastLayoutOp(),
        MoveLinearPastNearestResize(),
        MoveLinearPastDepthToSpace(),
        MoveDepthToSpacePastElementwise(),  # a pixel shuffle goes last, to the host
        MoveScalarLinearPastInvariants(),  # FINN: scalars past GAP/Flatten/...
        MoveChannelwiseMulPastMaxPool(),
        MoveConstAddPastJoinAdd(),
        MoveLinearPastFork(),
        UnifyEqualScalesAtJoinAdd(),
        MoveForkFreeLinearPastEltwiseAdd(),  # FINN's (x*c)+(y*c) -> (x+y)*c, forks split first
        PushTransposesDownstream(),  # FINN's four Transpose moves below, in one sweep
        MoveTransposePastFork(),  # FINN
        MakeScaleResizeNHWC(),  # FINN: a nearest Resize between lowered convs goes NHWC
        MoveEqualTransposesPastJoinAdd(),  # FINN's, perm check fixed
        AbsorbConsecutiveTransposes(),  # FINN
        AbsorbTransposeIntoMultiThreshold(),  # FINN
        ConvertSingletonTransposeToReshape(),  # instead of FINN's AbsorbTransposeIntoFlatten
        CollapseRepeatedReshape(),
        # scales through convs: a padded first conv pads the raw input, per-channel scales for depthwise convs
        PadInputOnHost(),
        MoveChannelwiseMulPastIm2Col(),
        MoveScalesPastIm2Col(),  # FINN (scalars)
        MoveMulPastDepthwiseMatMul(),
        MoveScalarMulPastMatMul(),  # FINN
        MoveScalarMulPastConvTranspose(),
        LowerConvTranspose(),  # FINN's pixel-padding deconv
        MoveScalarAddPastMatMul(),  # FINN
        # average pools
        MoveChannelwiseLinearPastAveragePool(),
        ConvertWholeMapAveragePoolToGlobal(),
        ConvertGlobalAveragePoolToAccPool(),
        ConvertAveragePoolToSumPool(),
        # collapse and absorb into thresholds (FINN)
        MoveAddPastMul(),
        CollapseRepeatedAdd(),
        CollapseRepeatedMul(),
        AbsorbAddIntoMultiThreshold(),
        FactorOutMulSignMagnitude(),
        AbsorbMulIntoMultiThreshold(),
        Absorb1BitMulIntoMatMul(),
        AbsorbScalarMulAddIntoTopK(),
    ]


class Tracked(Transformation):
    """``inner`` as it is, remembering whether any of its ``apply`` calls changed the graph."""

    def __init__(self, inner: Transformation):
        super().__init__()
        self.inner, self.changed = inner, False

    def apply(self, model):
        model, changed = self.inner.apply(model)
        self.changed |= changed
        return model, changed


def streamline_structures(model: ModelWrapper, max_rounds: int = MAX_ROUNDS, *, owned: bool = False) -> ModelWrapper:
    """Streamline residual joins, average pools and depthwise convs; run after FINN's streamlining.

    Repeats :func:`structure_passes` until a full round leaves the graph unchanged or brings
    it back to an earlier state, then rounds and clips thresholds (FINN's
    ``RoundAndClipThresholds``) for the inputs that became integer, and names new nodes. A graph
    without these structures is returned as it was. What could
    not be streamlined is left for :func:`flow.compile.passes.mappable.check_mappable`.

    The passes rewrite one private copy of ``model`` in place (qonnx's ``transform`` would copy
    every weight for every pass), and identity ops are removed after each pass that changed
    the graph: a round costs the same whatever the number of moves. ``owned``: the caller
    hands ``model`` over (a build step's own model), which is then rewritten without a copy
    and returned even when no structure changed.
    """
    start = graph_digest(model)
    with transforms_in_place():
        work = model if owned else copy.deepcopy(model)
        work = work.transform(GiveUniqueParameterTensors()).transform(RemoveIdentityOps())
        work = refresh(work)
        seen = {graph_digest(work)}
        for _ in range(max_rounds):
            for t in structure_passes():
                tracked = Tracked(t)
                work = work.transform(tracked)
                if tracked.changed:
                    work = work.transform(RemoveIdentityOps())
            work = refresh(work.transform(SortGraph()))
            digest = graph_digest(work)
            if digest in seen:
                break
            seen.add(digest)
        if len(seen) == 1 or graph_digest(work) == start:
            return work if owned else model
        work = work.transform(RoundAndClipThresholds()).transform(NameUnnamedNodes())
        return refresh(work)


def prepare_qonnx(model: ModelWrapper) -> ModelWrapper:
    """qflow's QONNX-level structure step, before FINN's conversion: refuse convs FINN cannot lower
    (StructureError naming them), lift 1D layers to 2D and make rounding ``TruncAvgPool2d`` heads mappable."""
    check_lowerable_convs(model)
    model = model.transform(Lift1DTo2D())
    return model.transform(ConvertRoundingTruncToMultiThreshold())
