"""The sweep table: one row per point, built from the plan (identity) and stored records.

Identity columns (config, swept values, trace provenance) always come from the *current*
plan, metrics from the stored record with the same key: a record computed by an earlier sweep
with a different grid is reused under this sweep's column names.

The area columns (``pe_count``, ``sram_bytes``, ``area_mm2``, ``area_source``) are
``HwConfig.area_proxy(fallback=True)``: the config's ``area`` coefficients, or the stated
``sim.config.DEFAULT_AREA`` (``area_source = default``) when it has none.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from common.pareto import pareto_mask
from sim.sweep.plan import Point, SweepPlan
from sim.sweep.worker import metric_columns

__all__ = ["METRIC_COLUMNS", "PROVENANCE_KEYS", "build_table", "pareto_mask"]

PROVENANCE_KEYS: tuple[str, ...] = ("model", "method", "policy", "window", "seq_len", "batch")

# One per metric of a point: derived from the cost record (sim.cost) in sim.sweep.worker.
METRIC_COLUMNS: tuple[str, ...] = metric_columns()


def _cell(value: Any) -> Any:
    """A provenance value as one CSV cell: scalars as is, lists and dicts as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


def _identity(plan: SweepPlan, point: Point) -> dict[str, Any]:
    config = plan.configs[point.config]
    trace = plan.traces[point.trace]
    overrides = {**plan.fixed, **{a.key: v for a, v in zip(plan.axes, point.grid, strict=True)}}
    row: dict[str, Any] = {"point_key": point.key, "config": config.label,
                           "config_path": str(config.path)}
    for axis, value in zip(plan.axes, point.grid, strict=True):
        row[axis.key] = value
    row["overrides"] = json.dumps(overrides, sort_keys=True)
    row.update({"trace": trace.label, "trace_path": str(trace.path),
                "trace_hash": trace.content_hash[:16]})
    for key in PROVENANCE_KEYS:
        row[key] = _cell(trace.header.get(key))
    row["trace_header"] = json.dumps(trace.header, sort_keys=True)
    row.update({"dataflow": point.dataflow, "objective": plan.objective})
    if point.hw is not None:
        row.update(point.hw.area_proxy(fallback=True))
    else:
        row.update({"pe_count": np.nan, "sram_bytes": np.nan, "area_mm2": np.nan,
                    "area_source": None})
    return row


def build_table(plan: SweepPlan, records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per plan point that has a record, in plan order, with a ``pareto`` column.

    ``pareto`` marks the points (status ok) on the latency-energy front of their trace,
    across every config and grid point of the sweep.
    """
    rows = []
    for point in plan.points:
        rec = records.get(point.key)
        if rec is None:
            continue
        row = _identity(plan, point)
        row["status"] = rec.get("status")
        row["reason"] = rec.get("reason", "")
        metrics = rec.get("metrics") or {}
        for col in METRIC_COLUMNS:
            row[col] = metrics.get(col, np.nan)
        mix = metrics.get("dataflow_mix")
        row["dataflow_mix"] = json.dumps(mix, sort_keys=True) if mix else None
        row["run_id"] = rec.get("run_id")
        row["point_seconds"] = rec.get("seconds", np.nan)
        rows.append(row)
    grid_cols = [a.key for a in plan.axes]
    if not rows:
        columns = ["point_key", "config", "config_path", *grid_cols, "status", "reason",
                   *METRIC_COLUMNS, "pareto"]
        return pd.DataFrame(columns=columns)
    table = pd.DataFrame(rows)
    # Status and reason right after the identity, so a failed row reads left to right.
    front = ["point_key", "config", "config_path", *grid_cols, "trace", "status", "reason"]
    table = table[front + [c for c in table.columns if c not in front]]
    table["pareto"] = False
    ok = table["status"] == "ok"
    for _, sub in table[ok].groupby("trace"):
        table.loc[sub.index, "pareto"] = pareto_mask(sub["latency_s"], sub["energy_j"])
    return table
