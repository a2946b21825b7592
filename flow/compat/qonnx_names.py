"""qonnx 1.0.0's tensor renaming passes in linear time.

``GiveUniqueTensorNames`` and ``GiveReadableTensorNames`` (FINN's tidy-up runs the latter after
every streamlining transformation) rename every tensor with ``ModelWrapper.rename_tensor``,
which searches the graph's inputs, outputs, value infos, initializers and annotations (building
a list of all their names each time) and every node: O(n) per tensor, O(n^2) per pass.
:class:`TensorRenamer` makes the same renames, one ``rename_tensor`` at a time with its exact
rules (the first occurrence in each node, qonnx's error for a name listed twice), through
dictionaries kept in step with the graph.
"""

from __future__ import annotations

from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation import general as qonnx_general


class TensorRenamer:
    """``ModelWrapper.rename_tensor`` for one graph, each rename O(uses of the name)."""

    def __init__(self, model: ModelWrapper):
        g = model.graph
        self.graph = g
        self.init_index = 3
        self.tables: list[tuple[str, dict[str, list]]] = []
        for container, field in ((g.input, "name"), (g.output, "name"), (g.value_info, "name"),
                                 (g.initializer, "name"), (g.quantization_annotation, "tensor_name")):
            table: dict[str, list] = {}
            for item in container:
                table.setdefault(getattr(item, field), []).append(item)
            self.tables.append((field, table))
        self.uses: dict[str, dict[str, list]] = {"input": {}, "output": {}}
        for n in g.node:
            for attr, table in self.uses.items():
                for t in getattr(n, attr):
                    table.setdefault(t, []).append(n)

    def is_initializer(self, name: str) -> bool:
        return bool(self.tables[self.init_index][1].get(name))

    def rename(self, old: str, new: str) -> None:
        """What ``model.rename_tensor(old, new)`` does."""
        for field, table in self.tables:
            items = table.get(old)
            if not items:
                continue
            if len(items) > 1:
                raise Exception("Found multiple get_by_name matches, undefined behavior")
            item = items.pop()
            setattr(item, field, new)
            table.setdefault(new, []).append(item)
        for attr, table in self.uses.items():
            users = table.pop(old, [])
            seen: list = []
            for n in users:
                if any(n is s for s in seen):
                    table.setdefault(old, []).append(n)  # a further use of ``old`` in the same node stays
                    continue
                seen.append(n)
                seq = getattr(n, attr)
                seq[list(seq).index(old)] = new
                table.setdefault(new, []).append(n)


def give_unique_tensor_names(model: ModelWrapper) -> None:
    """qonnx's ``GiveUniqueTensorNames``: every named value info (value infos, inputs, outputs) becomes ``tensor_<i>``."""
    renamer = TensorRenamer(model)
    for i, name in enumerate(model.get_all_tensor_names()):
        renamer.rename(name, f"tensor_{i}")


def give_readable_tensor_names(model: ModelWrapper) -> ModelWrapper:
    """qonnx's ``GiveReadableTensorNames``: unique names first (as qonnx, through ``transform``, so with
    its cleanup), then ``<node>_out<k>``, ``<node>_param<k>``, ``global_in``, ``global_out``."""
    model = model.transform(qonnx_general.GiveUniqueTensorNames())
    renamer = TensorRenamer(model)
    for n in model.graph.node:
        assert n.name != "", "Found empty node name"
        for k in range(len(n.output)):
            renamer.rename(n.output[k], f"{n.name}_out{k}")
        params = 0
        for k in range(len(n.input)):
            if renamer.is_initializer(n.input[k]):
                renamer.rename(n.input[k], f"{n.name}_param{params}")
                params += 1
    for i, inp in enumerate(model.graph.input):
        renamer.rename(inp.name, "global_in" if i == 0 else f"global_in_{i}")
    for i, outp in enumerate(model.graph.output):
        renamer.rename(outp.name, "global_out" if i == 0 else f"global_out_{i}")
    return model
