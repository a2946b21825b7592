"""A corrupted weight or threshold in the memory files FINN generated is caught by RTL simulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import rtl_designs as designs

from flow.sim.rtlsim.run import simulate
from flow.sim.rtlsim.stitch import stitch

pytestmark = pytest.mark.rtlsim


def flip_bit(memfiles: dict, name: str, folder: Path, line: int = 0, bit: int = 0) -> dict:
    """``memfiles`` with ``name`` replaced by a copy whose ``line``-th word has bit ``bit`` flipped."""
    lines = Path(memfiles[name]).read_text().splitlines()
    word = lines[line].strip()
    lines[line] = format(int(word, 16) ^ (1 << bit), f"0{len(word)}x")
    (folder / name).write_text("\n".join(lines) + "\n")
    return {**memfiles, name: folder / name}


# A weight's bit changes every dot product it enters. A threshold's low bit only matters for inputs
# that hit it exactly, so the threshold fault flips bit 5 (a shift of 32 on an INT8 threshold).
@pytest.mark.parametrize("maker, suffix, bit", [(designs.mvau, "__memblock.dat", 0), (designs.thresholding, "_threshs_0_0.dat", 5)])
def test_one_flipped_bit_in_a_memory_file_is_a_mismatch(tmp_path, maker, suffix, bit):
    model = maker(tmp_path)
    batch = designs.random_batch(model, 4)
    want = designs.python_outputs(model, batch)
    design = stitch(model)
    assert simulate(model, batch, want, design=design).bit_exact
    name = next(n for n in design.memfiles if n.endswith(suffix))
    faulty = simulate(model, batch, want, design=design, memfiles=flip_bit(design.memfiles, name, tmp_path, bit=bit))
    assert faulty.cached  # the same model: memory files are read at run time
    assert not faulty.bit_exact
    assert faulty.mismatch.sample == 0 and faulty.mismatch.count > 0
