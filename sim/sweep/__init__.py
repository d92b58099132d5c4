"""The architect's sweep: hardware configs x a grid of overrides x traces, resumable.

``python -m sim.sweep`` (``sim.sweep.cli``) or ``run_sweep`` in code. One stage per module:

- ``plan``: configs, grid and traces validated into points, each with a content key;
- ``worker``: one task (a config on its traces) simulated, in any process;
- ``run``: the run itself (resume from the store, local processes or a Dask cluster via
  ``cluster``), ending in the tables, summary and plots;
- ``store``: the append-only ``points.jsonl`` log and atomically written tables;
- ``table``: the sweep table, one row per point (identity, metrics, area proxy, Pareto set);
- ``report`` and ``plots``: reading the table (best points, summaries, knob effects, PNGs).

Example:
    >>> from sim.sweep import parse_grid
    >>> [(axis.key, axis.values) for axis in parse_grid(["pe.rows=8,16"])]
    [('pe.rows', (8, 16))]
"""
from sim.errors import SweepError
from sim.sweep.cli import build_parser, main
from sim.sweep.plan import Point, SweepPlan, parse_grid
from sim.sweep.report import best_points, ratio_by_value, ratio_effects
from sim.sweep.run import SweepInterrupted, prepare, run_sweep

__all__ = ["Point", "SweepError", "SweepInterrupted", "SweepPlan", "best_points", "build_parser",
           "main", "parse_grid", "prepare", "ratio_by_value", "ratio_effects", "run_sweep"]
