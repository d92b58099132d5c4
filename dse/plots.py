"""The study's figures, returned as matplotlib ``Figure`` objects (no pyplot, so the caller's
backend is left alone); ``dse.report`` saves them.

Perplexities of a study span many decades (an over-pruned design predicts 1e8), so the
perplexity axis is logarithmic when the values span more than two decades and is clipped a
little above the accuracy budget, with the trials beyond drawn as triangles on the top edge.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from optuna.trial import FrozenTrial

__all__ = ["CLIP_OVER_BUDGET", "CONSTRAINT_NAMES", "LOG_DECADES", "PREDICTED", "broken",
           "front_figure", "hypervolume_figure", "wants_log"]

LOG_DECADES = 2.0  # a positive axis whose values span more than this many decades is logarithmic
CLIP_OVER_BUDGET = 2.0  # the perplexity axis ends at this multiple of the accuracy budget
PREDICTED = ("predicted perplexity = exp(dense model's loss measured after brief tuning "
             "+ compression loss predicted from per-layer sensitivities), calibration split")
# What each constraint of dse.pipeline.Search.objective means, for the legend.
CONSTRAINT_NAMES = {"perplexity": "over the accuracy budget", "dram": "overflows DRAM", "area": "over the area cap"}


def wants_log(values: Sequence[float] | np.ndarray) -> bool:
    """Whether positive ``values`` span more than ``LOG_DECADES`` decades."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return len(v) > 1 and float(np.log10(v.max() / v.min())) > LOG_DECADES


def broken(trial: FrozenTrial) -> str | None:
    """The constraints ``trial`` breaks, named for a legend (None: feasible)."""
    names = [CONSTRAINT_NAMES.get(k, k) for k, c in trial.constraints.items() if c > 0]
    return " and ".join(names) or None


def front_figure(
    trials: Sequence[FrozenTrial],
    front_numbers: set[int],
    reference: dict[str, float],
    *,
    budget: float | None,
    real: dict[int, float] | None = None,
    title: str = "study",
) -> Figure:
    """Predicted perplexity against simulated latency (left) and peak memory (right) of the
    complete ``trials``, with the front (``front_numbers``), the vanilla design
    (``reference``: perplexity, latency_s, memory_bytes), the accuracy ``budget`` (perplexity)
    and the real perplexity of re-measured members (``real``: trial number -> perplexity on the
    held-out split) beside their predicted one."""
    fig = Figure(figsize=(12, 6.0))
    axes = fig.subplots(1, 2)
    real = real or {}
    if trials:
        vals = np.array([t.values for t in trials], dtype=float)
        ppl, lat_ms, mem_mib = vals[:, 0], vals[:, 1] * 1e3, vals[:, 2] / 2**20
        labels = [broken(t) for t in trials]
        numbers = [t.number for t in trials]
        shown = [*ppl, *real.values(), *([reference["perplexity"]] if reference else [])]
        log_y = wants_log(shown)
        top = _top(shown, budget)
        for ax, x, xlabel, xref, color, clabel in (
            (axes[0], lat_ms, "simulated latency per tuning step (ms)", "latency_s", mem_mib, "memory (MiB)"),
            (axes[1], mem_mib, "peak memory of a tuning step (MiB)", "memory_bytes", lat_ms, "latency (ms)"),
        ):
            ok = np.array([lab is None for lab in labels])
            y = np.minimum(ppl, top)
            over = ppl > top
            sc = ax.scatter(x[ok & ~over], y[ok & ~over], c=color[ok & ~over], s=16, cmap="viridis", alpha=0.8,
                            label="feasible trials (predicted)")
            if (ok & ~over).any():
                fig.colorbar(sc, ax=ax, label=clabel)
            _draw_infeasible(ax, x, y, labels, ~over)
            if over.any():
                ax.scatter(x[over], y[over], marker="^", c="lightgrey", edgecolors="grey", s=22, clip_on=False,
                           label=f"{int(over.sum())} trials above {top:.3g} (up to {ppl.max():.3g}), on the edge")
            on_front = np.array([n in front_numbers for n in numbers])
            ax.scatter(x[on_front], y[on_front], facecolors="none", edgecolors="red", s=70, label="Pareto front")
            _draw_real(ax, x, ppl, numbers, real, top)
            if reference:
                rx = reference[xref] * (1e3 if xref == "latency_s" else 1 / 2**20)
                ax.scatter([rx], [min(reference["perplexity"], top)], marker="*", s=180, c="black", zorder=5,
                           label="vanilla tuning (predicted)")
            _draw_budget(ax, budget, top)
            _scale_axes(ax, x, log_y=log_y, top=top)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("perplexity (lower is better)")
            ax.grid(True, which="both", alpha=0.25)
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(f"{title}: perplexity vs simulated cost of a tuning step\n{PREDICTED};\n"
                 "measured = compressed, tuned and evaluated for real on the held-out split", fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def _draw_infeasible(ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str | None],
                     shown: np.ndarray) -> None:
    """The infeasible trials among ``shown`` (a boolean mask), one grey marker per reason
    (``labels``: the reason of each trial, None for a feasible one; up to four reasons)."""
    for lab, marker in zip(sorted({lab for lab in labels if lab}), ("x", "+", "1", "2"), strict=False):
        sel = np.array([lb == lab for lb in labels]) & shown
        if sel.any():
            ax.scatter(x[sel], y[sel], marker=marker, c="grey", s=20, label=f"infeasible: {lab}")


def _draw_budget(ax: Any, budget: float | None, top: float) -> None:
    """The accuracy budget (perplexity) as a dashed line, or only as a legend entry when it lies
    above ``top`` (every trial is well within it: the axis is not stretched to show it)."""
    if budget is not None and budget <= top:
        ax.axhline(budget, color="tab:red", ls="--", lw=1, label=f"accuracy budget: perplexity {budget:.3g}")
    elif budget is not None:
        ax.plot([], [], color="tab:red", ls="--", lw=1,
                label=f"accuracy budget: perplexity {budget:.3g} (above every trial)")


def _scale_axes(ax: Any, x: np.ndarray, *, log_y: bool, top: float) -> None:
    """Log scales (with plain tick labels) where the values span decades, and the perplexity
    axis cut at ``top`` with room for the markers on its edge."""
    if log_y:
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
    if wants_log(x):
        ax.set_xscale("log")
        _plain_log(ax.xaxis)
    ax.set_ylim(top=top * (1.15 if log_y else 1.04))


def _plain_log(axis: Any) -> None:
    """Label a log axis with plain numbers (20, 50, 100 rather than 2x10^1), no minor labels."""
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 10 else f"{v:.3g}"))
    axis.set_minor_formatter(NullFormatter())


def _top(values: Sequence[float], budget: float | None) -> float:
    """Upper end of the perplexity axis: the largest value, clipped above the budget."""
    finite = [v for v in values if np.isfinite(v)]
    hi = max(finite) if finite else 1.0
    return min(hi, CLIP_OVER_BUDGET * budget) if budget is not None else hi


def _draw_real(ax: Axes, x: np.ndarray, ppl: np.ndarray, numbers: list[int], real: dict[int, float],
               top: float) -> None:
    """Each re-measured member: a diamond at its real perplexity, joined to its prediction."""
    first = True
    for i, n in enumerate(numbers):
        if n not in real:
            continue
        ax.plot([x[i], x[i]], [min(ppl[i], top), min(real[n], top)], color="black", lw=0.8, alpha=0.6)
        ax.scatter([x[i]], [min(real[n], top)], marker="D", c="tab:orange", edgecolors="black", s=40, zorder=6,
                   label="front member measured for real (held-out)" if first else None)
        ax.annotate(f"#{n}", (x[i], min(real[n], top)), fontsize=7, xytext=(4, 4), textcoords="offset points")
        first = False


def hypervolume_figure(history: np.ndarray) -> Figure:
    """Hypervolume (normalized by vanilla) after each complete trial."""
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    ax.plot(np.arange(1, len(history) + 1), history)
    ax.set_xlabel("complete trials")
    ax.set_ylabel("hypervolume (normalized by vanilla)")
    ax.set_title("hypervolume history (feasible trials)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
