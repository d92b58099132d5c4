"""Plots of a sweep table: latency-energy Pareto, latency heat map, where the time goes.

Each function draws on a bare ``matplotlib.figure.Figure`` (no pyplot, so no global state and
no display needed) and saves a PNG. Only points with status ``ok`` are ranked; points that
do not fit DRAM are drawn as crosses in the scatter and left blank in the heat map.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.sweep.plan import GridAxis
from sim.sweep.report import best_points
from sim.trace import PHASES

__all__ = ["choose_heatmap_keys", "plot_heatmap", "plot_pareto", "plot_time"]

_PHASE_COLORS = {"fwd": "tab:blue", "bwd_input": "tab:orange", "bwd_weight": "tab:green",
                 "update": "tab:purple"}


def _figure(nrows: int, ncols: int, width: float, height: float) -> tuple[Any, np.ndarray]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {lab: cmap(i % 10) for i, lab in enumerate(labels)}


def _ms(value: float) -> str:
    """Milliseconds for a cell label: three significant digits, no exponent."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _plain_log_axes(ax: Any) -> None:
    """Log axes labelled with plain numbers (1,000 rather than 10^3; no minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    fmt = FuncFormatter(lambda v, _pos: _ms(v))
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(fmt)
        axis.set_minor_formatter(NullFormatter())


def choose_heatmap_keys(axes: Sequence[GridAxis]) -> tuple[str, str] | None:
    """The first two grid keys with at least two values each (None if there are fewer)."""
    keys = [a.key for a in axes if len(a.values) >= 2]
    return (keys[0], keys[1]) if len(keys) >= 2 else None


def plot_pareto(table: pd.DataFrame, path: Path) -> Path:
    """Latency vs energy per trace (one panel each), configs by colour, Pareto set marked."""
    traces = list(dict.fromkeys(table["trace"]))
    configs = list(dict.fromkeys(table["config"]))
    colors = _colors(configs)
    fig, axes = _figure(1, len(traces), max(4.6, 7.0 / len(traces)), 3.8)
    for ax, trace in zip(axes[0], traces, strict=True):
        sub = table[(table["trace"] == trace) & table["latency_s"].notna()]
        for config in configs:
            rows = sub[sub["config"] == config]
            ok = rows[rows["status"] == "ok"]
            bad = rows[rows["status"] != "ok"]
            ax.scatter(ok["latency_s"] * 1e3, ok["energy_j"] * 1e3, s=14, alpha=0.75,
                       color=colors[config], label=config)
            if len(bad):
                ax.scatter(bad["latency_s"] * 1e3, bad["energy_j"] * 1e3, s=14, marker="x",
                           alpha=0.5, color=colors[config])
        front = sub[sub["pareto"].astype(bool)].sort_values("latency_s")
        if len(front):
            ax.step(front["latency_s"] * 1e3, front["energy_j"] * 1e3, where="post",
                    color="black", lw=0.8, alpha=0.7)
            ax.scatter(front["latency_s"] * 1e3, front["energy_j"] * 1e3, s=46,
                       facecolors="none", edgecolors="black", lw=1.0, label="Pareto set")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_axes(ax)
        ax.set_xlabel("latency per step (ms)")
        ax.set_ylabel("energy per step (mJ)")
        ax.set_title(f"{trace}", fontsize=10)
        ax.grid(True, which="both", alpha=0.2)
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    fig.legend(uniq.values(), uniq.keys(), loc="outside lower center", ncols=len(uniq),
               fontsize=8, frameon=False)
    fig.suptitle("latency vs energy (crosses: does not fit DRAM; circles: Pareto set)",
                 fontsize=10)
    fig.savefig(path, dpi=110, format="png")
    return path


def _latency_grids(table: pd.DataFrame, keys: tuple[str, str], xvals: list[Any],
                   yvals: list[Any]) -> dict[tuple[str, str], np.ndarray]:
    """Per (config, trace): the best ok latency at each (y value, x value) cell, seconds
    (NaN where no point ran and fit), shape ``(len(yvals), len(xvals))``."""
    xkey, ykey = keys
    ok = table[table["status"] == "ok"]
    panels: dict[tuple[str, str], np.ndarray] = {}
    for config in dict.fromkeys(table["config"]):
        for trace in dict.fromkeys(table["trace"]):
            sub = ok[(ok["config"] == config) & (ok["trace"] == trace)]
            grid = np.full((len(yvals), len(xvals)), np.nan)
            for (xv, yv), lat in sub.groupby([xkey, ykey])["latency_s"].min().items():
                if xv in xvals and yv in yvals:
                    grid[yvals.index(yv), xvals.index(xv)] = lat
            panels[(config, trace)] = grid
    return panels


def plot_heatmap(table: pd.DataFrame, axes_: Sequence[GridAxis], keys: tuple[str, str],
                 path: Path) -> Path:
    """Latency over two grid keys, one panel per config (rows) and trace (columns).

    Other grid keys are projected out by the minimum (the best latency reachable at that
    cell). Colour is latency relative to the panel's best cell (shared log scale); each cell
    is annotated with its latency in ms.
    """
    from matplotlib.colors import LogNorm

    by_key = {a.key: a for a in axes_}
    xkey, ykey = keys
    xvals, yvals = list(by_key[xkey].values), list(by_key[ykey].values)
    traces = list(dict.fromkeys(table["trace"]))
    configs = list(dict.fromkeys(table["config"]))
    panels = _latency_grids(table, keys, xvals, yvals)
    worst = max([1.0, *(float(np.nanmax(g) / np.nanmin(g)) for g in panels.values()
                        if np.isfinite(g).any())])
    fig, ax_grid = _figure(len(configs), len(traces), max(3.4, 6.0 / len(traces)), 2.8)
    vmax = max(worst, 1.01)
    norm = LogNorm(vmin=1.0, vmax=vmax)
    image = None
    for i, config in enumerate(configs):
        for j, trace in enumerate(traces):
            ax = ax_grid[i][j]
            grid = panels[(config, trace)]
            if np.isfinite(grid).any():
                rel = grid / np.nanmin(grid)
                image = ax.imshow(np.ma.masked_invalid(rel), origin="lower", cmap="viridis_r",
                                  norm=norm, aspect="auto")
                for (r, c), lat in np.ndenumerate(grid):
                    text = _ms(lat * 1e3) if np.isfinite(lat) else "x"
                    ax.text(c, r, text, ha="center", va="center", fontsize=7,
                            color="white" if np.isfinite(lat) and rel[r, c] > worst ** 0.5
                            else "black")
            else:
                ax.text(0.5, 0.5, "no ok point", transform=ax.transAxes, ha="center")
                ax.set_xlim(-0.5, len(xvals) - 0.5)
                ax.set_ylim(-0.5, len(yvals) - 0.5)
            ax.set_xticks(range(len(xvals)), [str(v) for v in xvals], fontsize=7)
            ax.set_yticks(range(len(yvals)), [str(v) for v in yvals], fontsize=7)
            ax.set_xlabel(xkey, fontsize=8)
            ax.set_ylabel(ykey, fontsize=8)
            ax.set_title(f"{config} / {trace}", fontsize=8)
    if image is not None:
        from matplotlib.ticker import FuncFormatter

        bar = fig.colorbar(image, ax=ax_grid, shrink=0.6, label="latency / best in panel")
        ticks = [t for t in (1, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
                 if t <= vmax]
        bar.set_ticks(ticks)
        bar.ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}x"))
        bar.ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _pos: ""))
    others = [a.key for a in axes_ if a.key not in keys and len(a.values) > 1]
    note = f"; min over {', '.join(others)}" if others else ""
    fig.suptitle(f"latency per step in ms over {xkey} x {ykey}{note}", fontsize=10)
    fig.savefig(path, dpi=110, format="png")
    return path


def plot_time(table: pd.DataFrame, path: Path) -> Path:
    """Where the time goes at each config's best point: compute and stall per phase.

    One panel per trace, one bar per config, stacked as fractions of the step's cycles
    (hatched: stall); the step's latency in ms is written above each bar.
    """
    best = best_points(table)
    traces = list(dict.fromkeys(table["trace"]))
    configs = list(dict.fromkeys(table["config"]))
    fig, axes = _figure(1, len(traces), max(3.0, 0.9 * len(configs) + 1.2), 3.8)
    for ax, trace in zip(axes[0], traces, strict=True):
        sub = best[best["trace"] == trace].set_index("config") if len(best) else best
        present = [c for c in configs if c in getattr(sub, "index", [])]
        x = np.arange(len(present))
        bottom = np.zeros(len(present))
        for phase in PHASES:
            for part, hatch, alpha in (("compute", None, 0.9), ("stall", "///", 0.45)):
                vals = np.array([sub.loc[c, f"{part}_cycles_{phase}"] / sub.loc[c, "cycles"]
                                 for c in present], dtype=float)
                ax.bar(x, vals, bottom=bottom, color=_PHASE_COLORS[phase], alpha=alpha,
                       hatch=hatch, edgecolor="white", lw=0.3, label=f"{phase} {part}")
                bottom += vals
        for xi, config in zip(x, present, strict=True):
            ax.text(xi, 1.02, f"{sub.loc[config, 'latency_s'] * 1e3:.3g} ms", ha="center",
                    fontsize=7)
        ax.set_xticks(x, present, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("fraction of step cycles")
        ax.set_title(f"{trace} (best point per config)", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    fig.legend(uniq.values(), uniq.keys(), loc="outside lower center", ncols=3, fontsize=8,
               frameon=False)
    fig.savefig(path, dpi=110, format="png")
    return path
