"""The sweep table: one row per point, built from the plan (identity) and stored records.

Identity columns (config, swept values, trace provenance) always come from the *current*
plan, metrics from the stored record with the same key: a record computed by an earlier sweep
with a different grid is reused under this sweep's column names.

Area proxy (columns ``pe_count``, ``sram_bytes``, ``area_mm2``, ``area_source``)::

    area_mm2 = (pe_count * pe_um2 + sram_bytes / 1024 * sram_um2_per_kib) / 1e6

with ``pe_um2`` (um^2 per PE, MAC plus its registers) and ``sram_um2_per_kib`` (um^2 per KiB
of SRAM macro) from the config's ``area`` section (``area_source = config``). A config without
that section uses ``DEFAULT_PE_UM2`` and ``DEFAULT_SRAM_UM2_PER_KIB`` (``area_source =
default``), the coefficients of ``hwconfigs/edge_llm.yaml``: a 16-bit precision-scalable MAC
with pipeline registers, and 1.5 mm^2 per MiB of SRAM, a 28 nm-class macro density. It is a
proxy for ranking designs in a sweep, not a layout estimate.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sim.config import HwConfig
from sim.sweep_plan import Plan, Point
from sim.sweep_worker import metric_columns

__all__ = [
    "DEFAULT_PE_UM2", "DEFAULT_SRAM_UM2_PER_KIB", "METRIC_COLUMNS", "PROVENANCE_KEYS",
    "area_proxy", "build_table", "pareto_mask",
]

DEFAULT_PE_UM2 = 2500.0  # um^2 per PE when the config has no `area` section
DEFAULT_SRAM_UM2_PER_KIB = 1500.0  # um^2 per KiB of SRAM when the config has no `area` section

PROVENANCE_KEYS: tuple[str, ...] = ("model", "method", "policy", "window", "seq_len", "batch")

# One per metric of a point: derived from the cost record (sim.cost) in sim.sweep_worker.
METRIC_COLUMNS: tuple[str, ...] = metric_columns()


def area_proxy(hw: HwConfig) -> dict[str, Any]:
    """PE count, SRAM bytes and the mm^2 proxy of a config (see module docstring)."""
    if hw.area is not None:
        pe_um2, sram_um2, source = hw.area.pe_um2, hw.area.sram_um2_per_kib, "config"
    else:
        pe_um2, sram_um2, source = DEFAULT_PE_UM2, DEFAULT_SRAM_UM2_PER_KIB, "default"
    sram_bytes = hw.sram.total_bytes
    return {"pe_count": hw.pe_count, "sram_bytes": sram_bytes,
            "area_mm2": (hw.pe_count * pe_um2 + sram_bytes / 1024 * sram_um2) / 1e6,
            "area_source": source}


def _cell(value: Any) -> Any:
    """A provenance value as one CSV cell: scalars as is, lists and dicts as JSON."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


def pareto_mask(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> np.ndarray:
    """Points not dominated when minimizing both x and y (duplicates of a member are members)."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    mask = np.zeros(len(xs), dtype=bool)
    order = np.lexsort((ys, xs))
    best_y = np.inf
    last: tuple[float, float] | None = None
    for i in order:
        if not (np.isfinite(xs[i]) and np.isfinite(ys[i])):
            continue
        if ys[i] < best_y or last == (xs[i], ys[i]):
            mask[i] = True
            best_y = ys[i]
            last = (xs[i], ys[i])
    return mask


def _identity(plan: Plan, point: Point) -> dict[str, Any]:
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
        row.update(area_proxy(point.hw))
    else:
        row.update({"pe_count": np.nan, "sram_bytes": np.nan, "area_mm2": np.nan,
                    "area_source": None})
    return row


def build_table(plan: Plan, records: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
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
    for _, idx in table[ok].groupby("trace").groups.items():
        sub = table.loc[idx]
        table.loc[idx, "pareto"] = pareto_mask(sub["latency_s"], sub["energy_j"])
    return table
