"""Results of a simulation: per-op table, totals (sums of ``sim.cost.OpCost``) per phase, layer,
op kind and vector module/class, and the memory footprint."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim.config import HwConfig
from sim.cost import OpCost, cost_columns
from sim.footprint import Footprint, footprint
from sim.trace import PHASES

__all__ = ["Footprint", "GemmResult", "SimResult", "footprint", "totals_by"]


def _is_vector(ops: pd.DataFrame) -> pd.Series:
    """Vector rows of a per-op table (none in a table without ``kind``)."""
    if "kind" not in ops:
        return pd.Series(False, index=ops.index)
    return ops["kind"] == "vector"


def totals_by(ops: pd.DataFrame, key: str, *, rows: np.ndarray | None = None) -> pd.DataFrame:
    """Per value of ``key`` (e.g. phase, layer, kind): the number of rows, every ``OpCost``
    column summed, ``matmul_cycles`` and ``vector_cycles`` (the cycles of each op kind),
    ``utilization`` (compute roof / cycles) and ``roofline_ratio``. ``rows`` (a boolean mask)
    restricts the totals to some rows."""
    frame = ops[list(cost_columns())].copy()
    frame.insert(0, "ops", 1)
    frame["vector_cycles"] = np.where(_is_vector(ops).to_numpy(), ops["cycles"].to_numpy(), 0.0)
    keys = ops[key].to_numpy()
    if rows is not None:
        frame, keys = frame[rows], keys[rows]
    # One pass, grouped on a plain array (much faster than on pandas' string columns).
    table = frame.groupby(keys, sort=True).sum()
    table.index.name = key
    table["matmul_cycles"] = table["cycles"] - table["vector_cycles"]
    # A group of vector rows with no work at all has 0 cycles: utilization 0, ratio 1.
    table["utilization"] = (table["compute_roof_cycles"] / table["cycles"]).fillna(0.0)
    table["roofline_ratio"] = (table["cycles"] / table["roofline_cycles"]).fillna(1.0)
    return table


@dataclass(frozen=True)
class SimResult:
    """A simulated trace. ``ops`` has one row per trace row (totals over its ``count``)."""

    ops: pd.DataFrame
    hw: HwConfig
    dataflow: str
    objective: str
    header: dict[str, Any] = field(default_factory=dict)
    footprint: Footprint | None = None

    @property
    def total(self) -> OpCost:
        """The step's cost: the sum of every op's cost record."""
        return OpCost.total(self.ops)

    @property
    def total_cycles(self) -> float:
        """Cycles of the whole step (ops run one after another)."""
        return float(self.ops["cycles"].sum())

    @property
    def latency_s(self) -> float:
        """Seconds of the whole step at the configured clock."""
        return self.total_cycles / (self.hw.clock_mhz * 1e6)

    @property
    def vector_cycles(self) -> float:
        """Cycles of the step's vector rows (non-matrix work)."""
        return float(self.ops.loc[_is_vector(self.ops), "cycles"].sum())

    @property
    def dram_bytes(self) -> float:
        """Bytes moved to and from DRAM."""
        return float(self.ops["dram_bytes"].sum())

    @property
    def energy_j(self) -> float:
        """Energy of the step, joules."""
        return float(self.ops["energy_j"].sum())

    @property
    def roofline_cycles(self) -> float:
        """Sum of per-op roofline bounds (the step can never be faster)."""
        return float(self.ops["roofline_cycles"].sum())

    def per_phase(self) -> pd.DataFrame:
        """Totals per phase, in step order (fwd, bwd_input, bwd_weight, update)."""
        table = totals_by(self.ops, "phase")
        order = [p for p in PHASES if p in table.index]
        return table.loc[order + [p for p in table.index if p not in order]]

    def per_layer(self) -> pd.DataFrame:
        """Totals per decoder layer (-1: embedding, heads)."""
        return totals_by(self.ops, "layer")

    def per_kind(self) -> pd.DataFrame:
        """Totals per op kind: matmul (the PE array) and vector (the vector unit)."""
        ops = self.ops if "kind" in self.ops else self.ops.assign(kind="matmul")
        return totals_by(ops, "kind")

    def per_vector(self, key: str) -> pd.DataFrame:
        """Totals of the vector rows per ``module`` or per ``vector_class``."""
        return totals_by(self.ops, key, rows=_is_vector(self.ops).to_numpy())

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals: every ``OpCost`` field summed (``cycles`` as ``total_cycles``;
        whole cycles rounded up, whole bytes), latency, breakdowns and the footprint."""
        ops = self.ops
        clock_hz = self.hw.clock_mhz * 1e6
        is_vector = _is_vector(ops)
        total = self.total
        vector_cycles = self.vector_cycles
        out: dict[str, Any] = {
            "hw": self.hw.name, "clock_mhz": self.hw.clock_mhz, "dataflow": self.dataflow,
            "objective": self.objective,
            "ops": int(len(ops)), "products": int(ops.loc[~is_vector, "count"].sum()),
            "vector_ops": int(ops.loc[is_vector, "count"].sum()),
        }
        for name, value in total.to_json().items():
            out["total_cycles" if name == "cycles" else name] = value
        fp = self.footprint
        out.update({
            "latency_s": self.latency_s,
            "matmul_cycles": math.ceil(total.cycles - vector_cycles),
            "vector_cycles": math.ceil(vector_cycles),
            "matmul_latency_s": (total.cycles - vector_cycles) / clock_hz,
            "vector_latency_s": vector_cycles / clock_hz,
            "roofline_ratio": (total.cycles / total.roofline_cycles
                               if total.roofline_cycles else 1.0),
            "utilization": total.compute_roof_cycles / total.cycles if total.cycles else 0.0,
            "peak_memory_bytes": fp.peak_memory_bytes if fp else None,
            "dram_capacity_bytes": self.hw.dram.capacity_bytes,
            "fits_in_dram": fp.fits if fp else None,
            "memory_by_kind": fp.by_kind if fp else None,
            "dataflow_mix": {str(k): int(v) for k, v in
                             ops.loc[~is_vector, "dataflow"].value_counts().sort_index().items()},
            "per_phase": self._block(self.per_phase()),
            "per_layer": self._block(self.per_layer()),
            "per_kind": self._block(self.per_kind()),
            "per_vector_module": self._block(self.per_vector("module")),
            "per_vector_class": self._block(self.per_vector("vector_class")),
            "trace_header": self.header,
        })
        return out

    def _block(self, table: pd.DataFrame) -> dict[str, dict[str, Any]]:
        """A ``totals_by`` table as JSON: one object per group."""
        clock_hz = self.hw.clock_mhz * 1e6
        out: dict[str, dict[str, Any]] = {}
        for key, row in table.to_dict(orient="index").items():
            entry: dict[str, Any] = {"ops": int(row["ops"])}
            entry.update({c: OpCost.json_value(c, row[c]) for c in cost_columns()})
            entry.update({"latency_s": row["cycles"] / clock_hz,
                          "matmul_cycles": math.ceil(row["matmul_cycles"]),
                          "vector_cycles": math.ceil(row["vector_cycles"]),
                          "utilization": float(row["utilization"])})
            out[str(key)] = entry
        return out


@dataclass(frozen=True, kw_only=True)
class GemmResult(OpCost):
    """One product ``out[M, N] = A[M, K] @ B[K, N]`` on one accelerator: its cost record
    (``OpCost`` fields) and its best mapping.

    Cycles are core clock cycles, bytes are bytes, energy in joules.
    """

    M: int
    N: int
    K: int
    hw: str
    rows: int
    cols: int
    w_bits: int
    a_bits: int
    weight_sparsity: float
    sparsity_pattern: str
    utilization: float
    roofline_ratio: float
    bound: str
    dataflow: str
    loop_order: str
    tile_m: int
    tile_n: int
    tile_k: int
    latency_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)
