"""FINN's ``InsertDWC`` and its ``dataflow_performance`` and ``unsupported_layers`` analyses scan the graph
for the neighbours of every layer; the replacement (flow.compat.finn_linear.insert_dwc) gives the same
graph, byte for byte, and the analyses the same answers on an indexed view (flow.compat.qonnx_linear)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from corpus.samples import exported
from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
from finn.analysis.fpgadataflow.unsupported_layers import unsupported_layers
from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles
from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp

from flow.builder import build
from flow.compat.qonnx_linear import linear_qonnx
from flow.core.config import build_config


@pytest.fixture(scope="module")
def folded(tmp_path_factory):
    """Folded dataflow graphs (qflow's SetFolding for two frame rates) of a MobileNet slice and stacked residual blocks."""
    tmp = tmp_path_factory.mktemp("dwc")
    found = {}
    for name, (path, _) in exported(tmp, tfc=False).items():
        for fps in (2_000, 200_000):
            result = build(path, build_config(target="pynq-z1", target_fps=fps, verify_samples=0), tmp / f"{name}_{fps}")
            found[f"{name}_{fps}"] = ModelWrapper(str(result.checkpoints["minimize_bit_width"]))
            found[f"{name}_{fps}_hw"] = ModelWrapper(str(result.checkpoints["convert_to_hw"]))
    forks = ModelWrapper(found["res_stacked_200000"].model.SerializeToString())  # both branches of each fork need a converter
    for n in forks.graph.node:
        if n.op_type.startswith("DuplicateStreams"):  # one element per cycle into readers that take two
            getCustomOp(n).set_nodeattr("PE", 1)
            for reader in (getCustomOp(r) for t in n.output for r in forks.find_consumers(t)):
                if "PE" in reader.get_nodeattr_types():
                    reader.set_nodeattr("PE", 2)
    found["res_stacked_forks_at_pe_1"] = forks
    return found


def test_insert_dwc_gives_finns_graph_without_a_scan_per_output(folded, monkeypatch):
    """Why: FINN's InsertDWC calls find_consumers (a scan of every node) for every output of every layer.
    The replacement gives FINN's graph byte for byte (random tensor names seeded alike), with no such
    scan, where SetFolding's converters fall and where both branches of a fork need one (FINN puts the
    second in front of the first)."""
    scans = {"n": 0}
    converted = twice = 0
    for name, model in folded.items():
        if name.endswith("_hw"):
            continue
        random.seed(0)
        theirs = model.transform(InsertDWC())
        random.seed(0)
        with linear_qonnx():
            counted = ModelWrapper.find_consumers
            monkeypatch.setattr(ModelWrapper, "find_consumers", lambda self, t: scans.__setitem__("n", scans["n"] + 1) or counted(self, t))
            ours = model.transform(InsertDWC())
            monkeypatch.setattr(ModelWrapper, "find_consumers", counted)
        assert ours.model.SerializeToString() == theirs.model.SerializeToString(), name
        producer = {o: n.name for n in ours.graph.node for o in n.output}
        fed = Counter(producer[n.input[0]] for n in ours.graph.node if n.op_type.startswith("StreamingDataWidthConverter"))
        converted += sum(fed.values())
        twice += sum(1 for c in fed.values() if c == 2)
    assert scans["n"] == 0
    assert converted >= 10 and twice >= 1



def test_finns_neighbour_scanning_analyses_give_the_same_answers_on_the_indexed_view(folded, monkeypatch):
    """Why: ``dataflow_performance`` looks up every layer's predecessors and ``unsupported_layers`` every
    node's successors by scanning the graph. In qflow's steps they read an indexed view: the same
    critical path and slowest layer, the same verdict (also a False one, where a host op sits between
    two dataflow layers), with no scan."""
    scans = {"n": 0}

    def counting(name):
        real = getattr(ModelWrapper, name)
        return lambda self, *a: scans.__setitem__("n", scans["n"] + 1) or real(self, *a)

    for name, model in folded.items():
        model = model.transform(AnnotateCycles()) if not name.endswith("_hw") else model
        cases = [unsupported_layers] + ([] if name.endswith("_hw") else [dataflow_performance])
        if name.endswith("_hw"):
            broken = ModelWrapper(model.model.SerializeToString())
            layers = [n for n in broken.graph.node if n.domain.startswith("finn.custom_op.fpgadataflow")]
            layers[len(layers) // 2].domain = ""  # a host op in the middle of the dataflow layers
            assert broken.analysis(unsupported_layers)[0] is False
            with linear_qonnx():
                verdict = broken.analysis(unsupported_layers)
            assert verdict[0] is False and verdict[1].name == broken.analysis(unsupported_layers)[1].name
        for analysis in cases:
            theirs = model.analysis(analysis)
            with linear_qonnx():
                for lookup in ("find_consumers", "find_producer"):
                    monkeypatch.setattr(ModelWrapper, lookup, counting(lookup))
                ours = model.analysis(analysis)
                monkeypatch.undo()
            assert ours == theirs, (name, analysis.__name__)
    assert scans["n"] == 0
