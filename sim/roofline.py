"""Roofline plot of simulated ops: achieved MACs/cycle against operational intensity.

Intensity is effective MACs per compulsory DRAM byte; the bandwidth roof is
``bytes_per_cycle x intensity`` and the compute roof the array's peak MACs/cycle at base
precision (narrower operands raise an op's own roof; the highest such roof in the plotted ops
is drawn dashed). Each op sits on or below its roofs by construction of ``roofline_cycles``.
Vector rows (trace format 2) do no MACs: they are drawn as their own marker with elements in
place of MACs, under the vector unit's add roof (dotted; exp and rsqrt rows sit lower, at
their class's rate). Rows with no work or no DRAM traffic have no point.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sim.config import HwConfig

__all__ = ["plot_roofline"]

# Forward and backward-input products often share a shape; distinct markers keep both visible.
_PHASE_STYLE = {"fwd": ("tab:blue", "o", 36), "bwd_input": ("tab:orange", "x", 22),
                "bwd_weight": ("tab:green", "^", 22)}


def plot_roofline(ops: pd.DataFrame, hw: HwConfig, path: str | Path, *,
                  title: str | None = None) -> Path:
    """Save a roofline PNG of a per-op result table (``SimResult.ops``) and return its path."""
    # A bare Figure (no pyplot) leaves the caller's backend and global state alone.
    from matplotlib.figure import Figure

    is_vector = ops["kind"] == "vector" if "kind" in ops else pd.Series(False, index=ops.index)
    # A product's work is its MACs, a vector row's its elements (it does no MACs).
    work = ops["macs_effective"].where(~is_vector, ops.get("vector_elements", 0.0))
    shown = (work > 0) & (ops["compulsory_bytes"] > 0)
    intensity = work / ops["compulsory_bytes"]
    achieved = work / ops["cycles"]
    peak = hw.peak_macs_per_cycle
    op_peak = (ops["macs_effective"] / ops["compute_roof_cycles"])[~is_vector].max()
    bw = hw.dram_bytes_per_cycle

    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    lo, hi = (intensity[shown].min(), intensity[shown].max()) if shown.any() else (0.1, 100.0)
    x = np.logspace(np.log10(max(lo / 3, 1e-2)), np.log10(hi * 3), 200)
    ax.plot(x, np.minimum(peak, bw * x), color="black", lw=1.5,
            label=f"roof: {peak:.0f} MAC/cycle, {bw:.2f} B/cycle")
    if op_peak > peak * 1.01:
        ax.plot(x, np.minimum(op_peak, bw * x), color="gray", lw=1, ls="--",
                label=f"roof at the narrowest bits in trace: {op_peak:.0f} MAC/cycle")
    phases = ops["phase"] if "phase" in ops else pd.Series(["fwd"] * len(ops), index=ops.index)
    for phase, (color, marker, size) in _PHASE_STYLE.items():
        sel = (phases == phase) & ~is_vector & shown
        if not sel.any():
            continue
        if marker == "o":
            ax.scatter(intensity[sel], achieved[sel], s=size, facecolors="none",
                       edgecolors=color, label=phase)
        else:
            ax.scatter(intensity[sel], achieved[sel], s=size, color=color, marker=marker,
                       label=phase)
    vec = is_vector & shown
    if vec.any():
        add_peak = hw.vector_lanes * hw.vector.elements_per_cycle.add
        ax.plot(x, np.minimum(add_peak, bw * x), color="tab:purple", lw=1, ls=":",
                label=f"vector roof: {add_peak:g} add elements/cycle")
        ax.scatter(intensity[vec], achieved[vec], s=22, color="tab:purple", marker="D",
                   label="vector rows (elements, not MACs)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("operational intensity (effective MACs or vector elements per compulsory "
                  "DRAM byte)")
    ax.set_ylabel("achieved MACs (vector: elements) per cycle")
    ax.set_title(title or f"Roofline on {hw.name}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path
