"""``--from-step``: a build resumed from the checkpoints an earlier build of the same model left in ``--out``.

The checkpoints are untrusted input: each must be a file qflow wrote there (its bytes match a
SHA-256 the output folder's manifest records, :meth:`flow.core.outdir.OutputDir.read_proven`),
the imported model (``checkpoints/00_qonnx.onnx``) must be this build's, every node's domain one
a build writes (qonnx imports the module a domain names, so a forged checkpoint could otherwise run
code), no node may hold a subgraph, and a path recorded in a checkpoint (the dataflow partition's
host graph, a partition's own model) must be a proven file inside ``--out``, checked the same way.
Everything is read before the folder is claimed, and written back after.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf.message import DecodeError
from onnx import AttributeProto, ModelProto
from qonnx.core.modelwrapper import ModelWrapper

from flow.compile.load import ALLOWED_DOMAINS
from flow.compile.steps import PARENT_PROP
from flow.core.errors import ConfigError
from flow.core.fileio import atomic_write_bytes
from flow.core.outdir import OutputDir
from flow.core.pipeline import BuildState, StepSpec, checkpoint_names
from flow.core.stages import Stage
from flow.core.vocab import HW_DOMAIN, PARTITION_OP

#: Largest checkpoint read back (bytes).
MAX_CHECKPOINT_BYTES = 2**31
#: Node domains a checkpoint may hold: a model's (:data:`flow.compile.load.ALLOWED_DOMAINS`) and FINN's hardware layers'.
CHECKPOINT_DOMAINS = ALLOWED_DOMAINS | {HW_DOMAIN, f"{HW_DOMAIN}.hls", f"{HW_DOMAIN}.rtl"}
#: How deep partitions may nest (FINN makes one level).
MAX_NESTING = 4
#: State a build starts with: the imported model (a resumed one: restored from checkpoints) and its stages.
RESTORED = ("model", "stages")


@dataclass
class Resume:
    """The proven files a resumed build starts from: checkpoint (and host graph) paths inside ``--out`` and their bytes."""

    step: str
    files: dict[str, bytes] = field(default_factory=dict)
    checkpoints: list[tuple[StepSpec | None, str]] = field(default_factory=list)


def _proven(out: OutputDir, rel: str, step: str) -> bytes:
    data = out.read_proven(rel, MAX_CHECKPOINT_BYTES)
    if data is None:
        raise ConfigError(f"--from-step {step}: {out.path / rel} is missing or not a file qflow wrote there; "
                          "run the build without --from-step first")
    return data


def _inside(out: OutputDir, recorded: str, step: str) -> str:
    """The path ``recorded`` in a checkpoint, relative to ``out``; ConfigError when it is not inside."""
    path, root = Path(os.path.normpath(recorded)), out.path.resolve()
    if not path.is_absolute() or not path.is_relative_to(root):
        raise ConfigError(f"--from-step {step}: a checkpoint names {recorded[:200]!r}, outside {out.path}; "
                          "run the build without --from-step first")
    return path.relative_to(root).as_posix()  # read without following links


def _check_model(out: OutputDir, res: Resume, rel: str, step: str, depth: int) -> None:
    """The proven model ``res.files[rel]`` holds only domains a build writes and no subgraph; the models its
    partitions name are proven files inside ``out`` (added to ``res.files``), checked the same way."""
    def refuse(why: str) -> ConfigError:
        return ConfigError(f"--from-step {step}: {out.path / rel} {why}; run the build without --from-step first")

    try:
        proto = ModelProto.FromString(res.files[rel])
    except (DecodeError, RuntimeWarning, ValueError):
        raise refuse("is not an ONNX model") from None
    for node in [*proto.graph.node, *(n for f in proto.functions for n in f.node)]:
        if node.domain not in CHECKPOINT_DOMAINS:
            raise refuse(f"holds node {node.name[:60]!r} of domain {node.domain[:60]!r}, which no build writes")
        if any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for a in node.attribute):
            raise refuse(f"holds node {node.name[:60]!r} with a subgraph, which no build writes")
        if node.op_type == PARTITION_OP:
            if depth >= MAX_NESTING:
                raise refuse("nests partitions deeper than a build does")
            model = next((a.s.decode(errors="replace") for a in node.attribute if a.name == "model"), "")
            child = _inside(out, model, step)
            if child not in res.files:
                res.files[child] = _proven(out, child, step)
                _check_model(out, res, child, step, depth + 1)


def read_resume(out: OutputDir, steps: list[StepSpec], start: int, qonnx: ModelWrapper) -> Resume:
    """Check and read what resuming ``steps`` at index ``start`` needs from ``out`` (nothing is written)."""
    step = steps[start]
    names = checkpoint_names(steps)
    model_steps = [s for s in steps if s.checkpoint]
    done = [s for s in steps[:start] if s.checkpoint]
    res = Resume(step.name)
    for spec, rel in zip([None, *model_steps], names):
        if spec is not None and spec not in done:
            break
        res.files[rel] = _proven(out, rel, step.name)
        res.checkpoints.append((spec, rel))
    if res.files[names[0]] != qonnx.model.SerializeToString():
        raise ConfigError(f"--from-step {step.name}: {out.path} holds the checkpoints of another model; "
                          "resume in the output folder of a build of this model")
    for _, rel in res.checkpoints:
        _check_model(out, res, rel, step.name, 0)
    last = ModelProto.FromString(res.files[res.checkpoints[-1][1]])
    parent = next((p.value for p in last.graph.metadata_props if p.key == PARENT_PROP), None)
    if parent:
        rel = _inside(out, parent, step.name)
        res.files[rel] = _proven(out, rel, step.name)
        _check_model(out, res, rel, step.name, 0)
    return res


def restore(res: Resume, out: OutputDir, state: BuildState) -> None:
    """Write the resumed files back into the claimed ``out`` and fill ``state`` from them."""
    for rel, data in res.files.items():
        atomic_write_bytes(out.will_write(rel), data)
    for spec, rel in res.checkpoints:
        path = out.path / rel
        state.checkpoints["qonnx" if spec is None else spec.name] = path
        stage = Stage.QONNX if spec is None else spec.produces
        if stage is not None:
            state.stages[stage] = path
    state.model = ModelWrapper(str(out.path / res.checkpoints[-1][1]))
