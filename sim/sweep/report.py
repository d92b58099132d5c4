"""Reading a sweep table: best points, a text summary, and how knobs move a latency ratio.

All functions take the table that ``run_sweep`` returns (or ``pd.read_csv(".../sweep.csv")``)
and return data; nothing here prints.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

__all__ = ["best_points", "best_summary", "ratio_by_value", "ratio_effects", "summary_text"]


def best_points(table: pd.DataFrame, *, by: Sequence[str] = ("config", "trace"),
                metric: str = "latency_s") -> pd.DataFrame:
    """The row with the lowest ``metric`` among status-ok rows, per group of ``by``."""
    ok: pd.DataFrame = table[(table["status"] == "ok")
                             & np.isfinite(pd.to_numeric(table[metric], errors="coerce"))]
    if ok.empty:
        return ok.copy()
    idx = ok.groupby(list(by), sort=False)[metric].idxmin()
    return ok.loc[idx.to_numpy()].reset_index(drop=True)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def best_summary(table: pd.DataFrame, grid_keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """JSON-ready ``{config: {trace: best point}}`` (lowest latency among ok points)."""
    out: dict[str, dict[str, Any]] = {}
    for _, row in best_points(table).iterrows():
        out.setdefault(str(row["config"]), {})[str(row["trace"])] = {
            "grid": {k: _plain(row[k]) for k in grid_keys},
            "latency_s": _plain(row["latency_s"]),
            "energy_j": _plain(row["energy_j"]),
            "utilization": _plain(row["utilization"]),
            "area_mm2": _plain(row["area_mm2"]),
            "point_key": row["point_key"],
        }
    return out


def _fmt_grid(row: pd.Series, grid_keys: Sequence[str]) -> str:
    return " ".join(f"{k}={_plain(row[k])}" for k in grid_keys) or "(no grid)"


def summary_text(table: pd.DataFrame, grid_keys: Sequence[str], *,
                 header_lines: Sequence[str] = ()) -> str:
    """A short plain-text report: the best point per config for each trace, then failures.

    Latency in ms, energy in mJ, area in mm^2 (the proxy of ``sim.sweep.table``).
    """
    lines = list(header_lines)
    counts = table["status"].value_counts() if len(table) else pd.Series(dtype=int)
    lines.append("status: " + (", ".join(f"{k} {int(v)}" for k, v in counts.items())
                               or "no points done"))
    best = best_points(table)
    for trace, sub in table.groupby("trace", sort=False):
        first = sub.iloc[0]
        prov = ", ".join(f"{k} {first[k]}" for k in ("model", "method", "window", "seq_len",
                                                     "batch")
                         if k in sub and pd.notna(first[k]))
        lines.append("")
        lines.append(f"trace {trace} ({prov})")
        tb = best[best["trace"] == trace] if len(best) else best
        if tb.empty:
            lines.append("  no point ran and fit in DRAM")
            continue
        width = max(len(str(c)) for c in tb["config"])
        lines.append(f"  {'config':<{width}}  {'latency ms':>11} {'energy mJ':>10} "
                     f"{'util':>6} {'area mm2':>9}  best grid point")
        for _, row in tb.sort_values("latency_s").iterrows():
            lines.append(f"  {row['config']:<{width}}  {row['latency_s'] * 1e3:>11.3f} "
                         f"{row['energy_j'] * 1e3:>10.3f} {row['utilization']:>6.1%} "
                         f"{row['area_mm2']:>9.2f}  {_fmt_grid(row, grid_keys)}")
        top = tb.loc[cast(Any, tb["latency_s"].idxmin())]
        lines.append(f"  fastest: {top['config']} at {_fmt_grid(top, grid_keys)}")
    failed = table[table["status"] != "ok"]
    if len(failed):
        lines.append("")
        lines.append(f"not ok ({len(failed)} points):")
        groups = failed.groupby(["status", "config", "trace", "reason"], sort=False).size()
        for key, n in groups.items():
            status, config, trace, reason = cast(tuple[Any, ...], key)
            lines.append(f"  {status} {config} x {trace} ({n} point{'s' * (n != 1)}): {reason}")
    return "\n".join(lines) + "\n"


def _ratio_frame(table: pd.DataFrame, numerator: str, denominator: str,
                 keys: Sequence[str], metric: str, statuses: Sequence[str]) -> pd.DataFrame:
    use = table[table["status"].isin(statuses)]
    idx = ["config", *keys]
    num = use[use["trace"] == numerator].set_index(idx)[metric]
    den = use[use["trace"] == denominator].set_index(idx)[metric]
    ratio = (num / den).dropna()
    return ratio.rename("ratio").reset_index()


def ratio_by_value(table: pd.DataFrame, numerator: str, denominator: str,
                   keys: Sequence[str], *, metric: str = "latency_s",
                   statuses: Sequence[str] = ("ok",)) -> pd.DataFrame:
    """Ratio ``metric[numerator] / metric[denominator]`` per config, knob and knob value.

    Each value's ratio is the geometric mean over every setting of the other knobs (only grid
    points where both traces have the metric). Columns: config, knob, value, ratio, points;
    values in the order they first appear in ``table``.
    """
    frame = _ratio_frame(table, numerator, denominator, keys, metric, statuses)
    rows = []
    for config, sub in frame.groupby("config", sort=False):
        for key in keys:
            # Values in the table's order (a sweep table is in grid order), not sorted.
            for value in dict.fromkeys(table[key]):
                grp = sub[sub[key] == value]
                if grp.empty:
                    continue
                rows.append({"config": config, "knob": key, "value": _plain(value),
                             "ratio": float(np.exp(np.log(grp["ratio"]).mean())),
                             "points": len(grp)})
    return pd.DataFrame(rows, columns=["config", "knob", "value", "ratio", "points"])


def ratio_effects(table: pd.DataFrame, numerator: str, denominator: str,
                  keys: Sequence[str], *, metric: str = "latency_s",
                  statuses: Sequence[str] = ("ok",)) -> pd.DataFrame:
    """How much each knob moves the ratio ``metric[numerator] / metric[denominator]``.

    For a knob and one setting of all other knobs, the *swing* is max / min of the ratio over
    the knob's values (1.0: the knob does not move the ratio). Per config and knob this returns
    the geometric mean swing over the other knobs' settings (``swing``), the largest swing
    (``swing_max``), and the number of settings compared. A row with ``config = "all"`` pools
    every config. Sorted by config, then swing descending.
    """
    frame = _ratio_frame(table, numerator, denominator, keys, metric, statuses)
    rows = []
    groups: list[tuple[Any, pd.DataFrame]] = [(c, sub)
                                              for c, sub in frame.groupby("config", sort=False)]
    groups.append(("all", frame))
    for config, sub in groups:
        for key in keys:
            others = ["config", *[k for k in keys if k != key]]
            swings = []
            for _, grp in sub.groupby(others, sort=False):
                if grp[key].nunique() >= 2:
                    swings.append(float(grp["ratio"].max() / grp["ratio"].min()))
            if not swings:
                continue
            rows.append({"config": config, "knob": key,
                         "swing": float(np.exp(np.mean(np.log(swings)))),
                         "swing_max": float(max(swings)), "settings": len(swings)})
    out = pd.DataFrame(rows, columns=["config", "knob", "swing", "swing_max", "settings"])
    return out.sort_values(["config", "swing"], ascending=[True, False],
                           kind="stable").reset_index(drop=True)

