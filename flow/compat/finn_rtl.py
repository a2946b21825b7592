"""Workarounds for finn-plus 1.6.1's RTL library (finn-rtllib) under Verilator 5.48.

finn-rtllib is used in place from the installed finn-plus and is never edited: two of its
sources need a small rewrite before Verilator 5.48 can elaborate them, and the rewrite is
applied to *copies* written into a build folder. Each fix is a text rewrite keyed on an
exact snippet and raises :class:`FixNotApplicable` when the snippet is gone, so an
upstream change is noticed instead of silently patched around.
``tests/compat/test_finn_rtl.py`` verilates each unfixed source to show the fix is still
needed.

- ``fifo.sv``: ``typedef struct { int unsigned lo; int unsigned hi; } abits_t`` is an
  *unpacked* struct returned by a function that initialises a localparam; Verilator 5.48
  stops with ``CONSPACKUORSTRUCT`` / ``Unknown node type`` there. Declaring the struct
  ``packed`` keeps the same fields and values.
- ``add_multi.sv``: the constant function ``init_leaf_loads`` (with its array typedef) is
  declared inside the ``genTree`` generate block and called to initialise a localparam;
  Verilator 5.48 fails with ``No value found for node`` at ``LEAF_LOAD[i]``. Moving the
  typedef, the function and the localparam to module scope changes nothing else: they
  depend only on the module parameter ``N``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import finn


class FixNotApplicable(RuntimeError):
    """The snippet a fix rewrites is not in the source any more: re-check the fix against FINN."""


@cache
def finn_rtllib() -> Path:
    """The finn-rtllib folder inside the installed finn-plus (read in place, never written)."""
    return Path(finn.__file__).resolve().parent / "finn-rtllib"


_FIFO_STRUCT = "typedef struct {\n\t\tint unsigned  lo;\n\t\tint unsigned  hi;\n\t} abits_t;"


def fix_fifo(text: str) -> str:
    """fifo.sv with its ``abits_t`` struct declared packed."""
    if _FIFO_STRUCT not in text:
        raise FixNotApplicable("fifo.sv: the unpacked `abits_t` struct was not found")
    return text.replace(_FIFO_STRUCT, _FIFO_STRUCT.replace("typedef struct {", "typedef struct packed {"), 1)


_ADD_MULTI_BLOCK = (
    "\t\t// Compute the count of decendents for all nodes in the reduction trees.\n"
    "\t\ttypedef int unsigned  leaf_load_t[2*N-1];\n"
    "\t\tfunction leaf_load_t init_leaf_loads();\n"
    "\t\t\tautomatic leaf_load_t  res;\n"
    "\t\t\tfor(int unsigned  i = 2*N-1; i-- > N-1;)  res[i] = 1;\n"
    "\t\t\tfor(int unsigned  i =   N-1; i-- >   0;)  res[i] = res[2*i+1] + res[2*i+2];\n"
    "\t\t\treturn  res;\n"
    "\t\tendfunction : init_leaf_loads\n"
    "\t\tlocalparam leaf_load_t   LEAF_LOAD = init_leaf_loads();\n"
)
_ADD_MULTI_ANCHOR = "\tlocalparam int unsigned  L = $clog2(N);  // Number of levels with reductions\n"


def fix_add_multi(text: str) -> str:
    """add_multi.sv with its constant function (and what it needs) moved out of the generate block."""
    if _ADD_MULTI_BLOCK not in text or _ADD_MULTI_ANCHOR not in text:
        raise FixNotApplicable("add_multi.sv: the constant function inside the generate block was not found")
    text = text.replace(_ADD_MULTI_BLOCK, "", 1)
    moved = "".join(line[1:] + "\n" for line in _ADD_MULTI_BLOCK.splitlines())  # one tab less
    return text.replace(_ADD_MULTI_ANCHOR, _ADD_MULTI_ANCHOR + "\n" + moved, 1)


#: finn-rtllib file name -> its fix.
FIXES = {"fifo.sv": fix_fifo, "add_multi.sv": fix_add_multi}


def rtllib_text(path: str | Path, *, apply_fixes: bool = True) -> str:
    """The text of a finn-rtllib source, with its fix applied when it has one (and ``apply_fixes``)."""
    p = Path(path)
    text = p.read_text()
    fix = FIXES.get(p.name)
    return fix(text) if fix is not None and apply_fixes else text
