"""Cell texts shared by report.md, report.html and the summary line: LUT counts with their basis,
the bottleneck layers, and resources against the board (the verifiers' own cells are theirs:
:mod:`flow.report.sections`).

A LUT count that is not FINN's carries a mark (``*`` qflow's count calibrated on Yosys,
``**`` qflow's structural count, ``n/e`` not estimated by anyone), explained by
:data:`LUT_LEGEND`.
"""

from __future__ import annotations

from flow.core.estimates import LayerEstimate
from flow.core.vocab import RESOURCE_LABELS
from flow.report.schema import Report

LUT_MARKS = {"finn": "", "qflow-yosys-fit": "*", "qflow-structural": "**"}
LUT_LEGEND = ("LUT: FINN's estimate unless marked. * qflow's count where FINN says 0, fitted to Yosys synth_xilinx on the generated RTL; "
              "** qflow's structural count, not calibrated (no open synthesis of that layer); n/e: FINN has no estimate and neither has qflow.")


def lut_cell(layer: LayerEstimate) -> str:
    if layer.lut_basis == "none":
        return "n/e"
    return f"{layer.lut:,.0f}{LUT_MARKS.get(layer.lut_basis, '?')}"


def bottleneck_names(report: Report) -> list[str]:
    """Every layer at the design's maximum cycles per frame (several when they tie)."""
    return [b for b in (report.bottlenecks or [report.bottleneck]) if b]


def bottleneck_text(report: Report, limit: int | None = None) -> str:
    """``bottleneck X``, or ``2 tied bottlenecks X and Y``; with ``limit``, at most that many names and a count of the rest.

    >>> class R: bottlenecks, bottleneck = ["Thresholding_rtl_0", "MVAU_hls_0"], "Thresholding_rtl_0"
    >>> bottleneck_text(R())
    '2 tied bottlenecks Thresholding_rtl_0 and MVAU_hls_0'
    >>> R.bottlenecks = ["A", "B", "C", "D"]; bottleneck_text(R(), limit=2)
    '4 tied bottlenecks A, B and 2 more'
    """
    names = bottleneck_names(report)
    if not names:
        return "no bottleneck (no layers)"
    if len(names) == 1:
        return f"bottleneck {names[0]}"
    if limit is not None and len(names) > limit:
        listed = f"{', '.join(names[:limit])} and {len(names) - limit} more"
    else:
        listed = f"{', '.join(names[:-1])} and {names[-1]}"
    return f"{len(names)} tied bottlenecks {listed}"


#: The resources of a board, in table order; FINN estimates every one but FF.
BOARD_RESOURCES = ("lut", "ff", "bram_18k", "uram", "dsp")
RESOURCE_NAMES = {**RESOURCE_LABELS, "ff": "FF"}
FF_NOTE = "n/e: not estimated; FINN's resource estimates have no flip-flop count, so FF is shown against the board only."


def resource_rows(report: Report) -> list[dict]:
    """One row per board resource: ``label``, ``layers``, ``converters``, ``used`` (layers plus converters;
    None for FF, which FINN does not estimate), ``budget`` (the cap in units), ``cap`` (its fraction of
    the board), ``total`` (the board's), ``use`` (used / budget, None without a budget or an estimate)."""
    used, conv = report.resources_used(), report.data_width_converters.totals
    totals, caps = report.target.resources or {}, report.target.caps or {}
    rows = []
    for k in BOARD_RESOURCES:
        estimated = k in used
        if not estimated and k not in totals:
            continue  # FF of a report that predates the board's totals
        budget = report.budget.get(k) if k in report.budget else (int(totals[k] * caps[k] + 1e-9) if k in totals and k in caps else None)
        u = used.get(k)
        rows.append({"key": k, "label": RESOURCE_NAMES[k], "layers": float(report.totals.get(k, 0.0)) if estimated else None,
                     "converters": float(conv.get(k, 0.0)) if estimated else None, "used": u, "budget": budget,
                     "cap": caps.get(k), "total": totals.get(k), "use": u / budget if u is not None and budget else None})
    return rows


def use_text(row: dict) -> str:
    """A resource's use of its cap: ``12.3%``, ``n/a (cap 0)`` (nothing used of nothing), ``over (cap 0)``, ``n/e`` (not estimated)."""
    if row["used"] is None:
        return "n/e"
    if row["use"] is not None:
        return f"{100 * row['use']:.1f}%"
    return "over (cap 0)" if row["used"] > 0 else "n/a (cap 0)"


def cap_text(row: dict) -> str:
    """The budget and where it comes from: ``37,240 (70% of 53,200)``; the budget alone when the board's totals are unknown."""
    if row["budget"] is None:
        return "-"
    if row["cap"] is None or row["total"] is None:
        return f"{row['budget']:,.0f}"
    return f"{row['budget']:,.0f} ({100 * row['cap']:g}% of {row['total']:,})"
