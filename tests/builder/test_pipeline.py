"""The build as registered steps: registries, flows, custom steps and verifiers, --from-step/--to-step, progress lines."""

import hashlib
import json

import numpy as np
import onnx
from onnx import numpy_helper
import pytest
from fuzzing import run_cli
from qonnx.core.modelwrapper import ModelWrapper

from flow.builder import build, get_step, register_flow, register_step, register_verifier
from flow.builder.registry import COMPILE_FLOW, REGISTRY
from flow.cli import BITFILE_SKIPPED, main
from flow.compile.registry import model_step
from flow.core.checks import StageCheck
from flow.core.config import build_config
from flow.core.errors import ConfigError, VerificationError
from flow.core.pipeline import StepRegistry, StepSpec
from flow.verifiers.registry import Verifier, VerifierResult

FOLDED = (*COMPILE_FLOW, "fold", "minimize_bit_width", "design", "estimate")


def _tag(model, ctx):
    """Mark the model (a custom model step)."""
    model.set_metadata_prop("tagged_by", "test")
    return model


TAG = model_step("tag", _tag)


class Parity(Verifier):
    """Counts the even labels of the specialized design's checkpoint run (a toy verifier)."""

    name = "parity"

    def __init__(self, fail: bool = False):
        self.fail = fail

    def run(self, state, ctx):
        section = ParitySection(len(state.inputs))
        check = StageCheck("parity", "specialized", len(state.inputs), passed=not self.fail, note="toy")
        return VerifierResult(checks=[check], section=section)


class ParitySection:
    def __init__(self, n):
        self.n = n

    def to_json(self):
        return {"samples": self.n, "verifier": "parity"}


PARITY = register_verifier(Parity())


class Failing(Parity):
    name = "always_fails"

    def __init__(self):
        super().__init__(fail=True)


FAILING = register_verifier(Failing())


def _report(out):
    return json.loads((out / "report.json").read_text())


def _layers(path):
    """Every node of a design with its attributes, and every initializer (FINN names some tensors at random)."""
    m = onnx.load(str(path))
    nodes = [(n.op_type, n.name, [(a.name, onnx.helper.get_attribute_value(a)) for a in n.attribute]) for n in m.graph.node]
    return nodes, [numpy_helper.to_array(t).tolist() for t in m.graph.initializer]


def _same_numbers(a, b):
    for r in (a, b):
        r.pop("timings_s")
        r.pop("skipped")
    assert a == b


def test_a_registry_refuses_a_second_step_of_the_same_name():
    reg = StepRegistry([StepSpec("a", lambda s, c: None)])
    with pytest.raises(ValueError, match="already registered"):
        reg.register_step(StepSpec("a", lambda s, c: None))
    with pytest.raises(ConfigError, match="unknown build step 'b'"):
        reg.register_flow("ab", ("a", "b"))


def test_every_wing_exports_its_steps_and_the_default_flow_is_qflow_build():
    assert REGISTRY.flow("default")[: len(FOLDED)] == FOLDED
    assert REGISTRY.flow("default")[len(FOLDED):] == ("inputs", "verify", "rtlsim", "codegen", "bitfile", "report")
    assert get_step("streamline").checkpoint and not get_step("verify").checkpoint
    assert REGISTRY.flow("compile")[-1] == "specialize_layers"


def test_unknown_flow_and_step_are_exit_2(tiny_mlp_onnx, tmp_path):
    out = run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--flow", "nope"])
    assert out.code == 2 and "unknown flow 'nope'" in out.err and "registered flows: " in out.err
    out = run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--steps", "qonnx_to_finn,nope"])
    assert out.code == 2 and "unknown build step 'nope'" in out.err
    out = run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--from-step", "fold", "--to-step", "streamline"])
    assert out.code == 2 and "comes after --to-step" in out.err
    out = run_cli(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--steps", "qonnx_to_finn,verify"])
    assert out.code == 2 and "step 'verify' needs the build's design, inputs, which no step before it provides" in out.err
    assert not (tmp_path / "o" / "report.json").exists()


def test_a_registered_step_runs_in_a_registered_flow_and_is_checkpointed(tiny_mlp_onnx, tmp_path):
    register_step(TAG)
    register_flow("tagged", (*FOLDED[:8], "tag", *FOLDED[8:], "report"))
    res = build(tiny_mlp_onnx, build_config(target_fps=10_000, verify_samples=0, flow="tagged"), tmp_path / "o")
    tagged = ModelWrapper(str(res.checkpoints["tag"]))
    assert res.checkpoints["tag"].name == "09_tag.onnx" and tagged.get_metadata_prop("tagged_by") == "test"
    assert ModelWrapper(str(res.design)).get_metadata_prop("tagged_by") == "test"
    r = _report(tmp_path / "o")
    assert "tag" in r["timings_s"] and r["verification"] is None and r["throughput_fps"] > 0


def test_the_compile_flow_stops_before_the_estimate_and_writes_no_report(tiny_mlp_onnx, tmp_path):
    res = build(tiny_mlp_onnx, build_config(flow="compile", verify_samples=0), tmp_path / "o")
    assert res.report is None and res.stopped_after is None and not (tmp_path / "o" / "report.json").exists()
    assert ModelWrapper(str(res.checkpoints["specialize_layers"])).graph.node[0].op_type.endswith(("_hls", "_rtl"))


def test_from_step_after_to_step_equals_a_full_build(tiny_mlp_onnx, tmp_path):
    cfg = build_config(target_fps=10_000, verify_samples=16)
    full = build(tiny_mlp_onnx, cfg, tmp_path / "full")
    first = build(tiny_mlp_onnx, cfg, tmp_path / "half", to_step="specialize_layers")
    assert first.report is None and first.stopped_after == "specialize_layers"
    second = build(tiny_mlp_onnx, cfg, tmp_path / "half", from_step="fold")
    assert _layers(second.design) == _layers(full.design)
    assert [c.name for c in second.report.verification.stages] == [c.name for c in full.report.verification.stages]
    assert second.report.verification.passed
    _same_numbers(_report(tmp_path / "half"), _report(tmp_path / "full"))


def test_to_step_after_the_estimate_reports_where_it_stopped(tiny_mlp_onnx, tmp_path):
    res = build(tiny_mlp_onnx, build_config(target_fps=10_000, verify_samples=4), tmp_path / "o", to_step="estimate")
    r = _report(tmp_path / "o")
    assert res.stopped_after == "estimate" and r["verification"] is None
    assert "steps after estimate: not run (--to-step estimate): inputs, verify" in r["skipped"]
    full = build(tiny_mlp_onnx, build_config(target_fps=10_000, verify_samples=0), tmp_path / "f", to_step="codegen")
    assert full.stopped_after is None and _report(tmp_path / "f")["skipped"] == []  # nothing after codegen was to run


def test_from_step_refuses_foreign_or_missing_checkpoints(tiny_mlp_onnx, tiny_cnn_onnx, tmp_path):
    """Each refusal is exit 2 before --out is touched (and, as every refused build, retires the results qflow proves it wrote)."""
    cfg = build_config(target_fps=10_000, verify_samples=0)
    with pytest.raises(ConfigError, match="missing or not a file qflow wrote"):
        build(tiny_mlp_onnx, cfg, tmp_path / "empty", from_step="fold")
    build(tiny_mlp_onnx, cfg, tmp_path / "o", to_step="specialize_layers")
    with pytest.raises(ConfigError, match="needs the build's estimate"):
        build(tiny_mlp_onnx, cfg, tmp_path / "o", from_step="report")
    build(tiny_mlp_onnx, cfg, tmp_path / "o", to_step="specialize_layers")
    with pytest.raises(ConfigError, match="checkpoints of another model"):
        build(tiny_cnn_onnx, cfg, tmp_path / "o", from_step="fold")
    build(tiny_mlp_onnx, cfg, tmp_path / "o", to_step="specialize_layers")
    ck = tmp_path / "o" / "checkpoints" / "08_specialize_layers.onnx"
    ck.write_bytes(ck.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="08_specialize_layers.onnx is missing or not a file qflow wrote"):
        build(tiny_mlp_onnx, cfg, tmp_path / "o", from_step="fold")
    assert ck.exists()  # a file qflow cannot prove it wrote is left alone


def test_a_changed_host_graph_is_refused(tiny_mlp_onnx, tmp_path):
    cfg = build_config(target_fps=10_000, verify_samples=0)
    out = tmp_path / "o"
    build(tiny_mlp_onnx, cfg, out, to_step="fold")
    (out / "finn" / "intermediate_models" / "dataflow_parent.onnx").write_bytes(b"forged")
    with pytest.raises(ConfigError, match="dataflow_parent.onnx is missing or not a file qflow wrote"):
        build(tiny_mlp_onnx, cfg, out, from_step="minimize_bit_width")


def test_a_checkpoint_naming_a_graph_outside_out_is_refused(tiny_mlp_onnx, tmp_path, outside):
    """A forged manifest proves a forged checkpoint; the host-graph path inside it must still lie inside --out."""
    cfg = build_config(target_fps=10_000, verify_samples=0)
    out = tmp_path / "o"
    build(tiny_mlp_onnx, cfg, out, to_step="specialize_layers")
    rel = "checkpoints/08_specialize_layers.onnx"
    m = ModelWrapper(str(out / rel))
    m.set_metadata_prop("qflow_dataflow_parent", str(outside / "parent.onnx"))
    data = m.model.SerializeToString()
    (out / rel).write_bytes(data)
    manifest = json.loads((out / ".qflow-manifest.json").read_text())
    manifest["files"][rel].append(hashlib.sha256(data).hexdigest())
    (out / ".qflow-manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="outside"):
        build(tiny_mlp_onnx, cfg, out, from_step="fold")


def test_a_verifier_registered_by_a_test_adds_its_checks_and_section(tiny_mlp_onnx, tmp_path):
    steps = (*FOLDED, "inputs", "verify", "parity", "report")
    res = build(tiny_mlp_onnx, build_config(target_fps=10_000, verify_samples=6, steps=steps), tmp_path / "o")
    r = _report(tmp_path / "o")
    assert [s["name"] for s in r["verification"]["stages"]][-1] == "parity" and r["verification"]["passed"]
    assert r["sections"] == {"parity": {"samples": 6, "verifier": "parity"}} and res.report.sections["parity"]["samples"] == 6
    assert "## parity" in (tmp_path / "o" / "report.md").read_text()
    with pytest.raises(VerificationError, match="stage 'parity' differs from 'specialized'"):
        build(tiny_mlp_onnx, build_config(target_fps=10_000, verify_samples=2, steps=(*FOLDED, "inputs", "always_fails", "report")), tmp_path / "f")
    assert _report(tmp_path / "f")["verification"]["passed"] is False


def test_a_default_build_has_no_sections_key(tiny_mlp_onnx, tmp_path):
    build(tiny_mlp_onnx, build_config(target_fps=10_000, verify_samples=2), tmp_path / "o")
    assert "sections" not in _report(tmp_path / "o")


def test_cli_round_trip_and_one_line_per_step_without_a_terminal(tiny_mlp_onnx, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--to-step", "convert_to_hw"]) == 0
    first = capsys.readouterr()
    timed = [line for line in first.err.splitlines() if line.startswith("  ")]
    assert [line.split()[0] for line in timed] == list(COMPILE_FLOW[:6]) and all(line.endswith(" s") for line in timed)
    assert "stopped after convert_to_hw" in first.out and first.err == "".join(f"{line}\n" for line in timed)
    assert main(["build", str(tiny_mlp_onnx), "--out", str(out), "--samples", "4", "--from-step", "create_dataflow_partition"]) == 0
    second = capsys.readouterr()
    assert [line.split()[0] for line in second.err.splitlines() if line.startswith("  ")] == [
        "create_dataflow_partition", "specialize_layers", "fold", "minimize_bit_width", "estimate", "verify"]
    assert "verification passed" in second.out and _report(out)["verification"]["passed"]
    assert main(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "q"), "--samples", "0", "--no-progress"]) == 0
    quiet = capsys.readouterr()
    assert not [line for line in quiet.out.splitlines() + quiet.err.splitlines() if line.startswith("  ")]


def test_bitfile_without_vivado_prints_the_summary_then_what_was_skipped(tiny_mlp_onnx, tmp_path, capsys):
    assert main(["build", str(tiny_mlp_onnx), "--out", str(tmp_path / "o"), "--samples", "0", "--stage", "bitfile", "--no-progress"]) == 5
    cap = capsys.readouterr()
    assert "FPS" in cap.out and "report:" in cap.out
    assert cap.err.startswith(BITFILE_SKIPPED) and len(cap.err.strip().splitlines()) == 1 and "qflow: error" not in cap.err
    r = _report(tmp_path / "o")
    assert r["stage"] == "bitfile" and r["skipped"][0].startswith("bitfile: Vivado is not on PATH") and (tmp_path / "o" / "codegen").is_dir()


def test_verify_inputs_reach_every_verifier(tiny_mlp_onnx, tmp_path):
    x = np.random.default_rng(3).integers(0, 4, size=(5, 1, 8, 8)).astype(np.float32)
    build(tiny_mlp_onnx, build_config(target_fps=10_000, verify_samples=0, steps=(*FOLDED, "inputs", "verify", "parity", "report")),
          tmp_path / "o", verify_inputs=x)
    r = _report(tmp_path / "o")
    assert r["sections"]["parity"]["samples"] == 5 and all(s["samples"] == 5 for s in r["verification"]["stages"])
