"""Results of a simulation: per-op table, totals per phase and per layer, memory footprint."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from sim.config import HwConfig

__all__ = ["Footprint", "GemmResult", "SimResult", "footprint", "totals_by"]

_SUMMED = ("cycles", "compute_cycles", "stall_cycles", "dram_bytes", "compulsory_bytes",
           "energy_j", "macs", "macs_effective", "roofline_cycles")


@dataclass(frozen=True)
class Footprint:
    """Memory live during the step (from the trace's tensor table) against DRAM capacity."""

    peak_memory_bytes: int
    capacity_bytes: int
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        """Whether the step's tensors fit in DRAM."""
        return self.peak_memory_bytes <= self.capacity_bytes


def footprint(tensors: pd.DataFrame, hw: HwConfig) -> Footprint:
    """Peak memory of a tuning step: all listed tensors are live between forward and backward."""
    by_kind = {str(k): int(v) for k, v in tensors.groupby("kind")["bytes"].sum().items()}
    return Footprint(peak_memory_bytes=int(tensors["bytes"].sum()),
                     capacity_bytes=hw.dram.capacity_bytes, by_kind=by_kind)


def totals_by(ops: pd.DataFrame, key: str) -> pd.DataFrame:
    """Sum cycles, bytes, energy and MACs per value of ``key`` (e.g. phase, layer)."""
    grouped = ops.groupby(key, sort=True)
    table = grouped[list(_SUMMED)].sum()
    table.insert(0, "ops", grouped.size())
    table["utilization"] = grouped["cycles"].sum().rdiv(
        (ops["compute_roof_cycles"]).groupby(ops[key]).sum())
    table["roofline_ratio"] = table["cycles"] / table["roofline_cycles"]
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
    def total_cycles(self) -> float:
        """Cycles of the whole step (ops run one after another)."""
        return float(self.ops["cycles"].sum())

    @property
    def latency_s(self) -> float:
        """Seconds of the whole step at the configured clock."""
        return self.total_cycles / (self.hw.clock_mhz * 1e6)

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
        """Totals per phase (fwd, bwd_input, bwd_weight)."""
        return totals_by(self.ops, "phase")

    def per_layer(self) -> pd.DataFrame:
        """Totals per decoder layer (-1: embedding, heads)."""
        return totals_by(self.ops, "layer")

    def summary(self) -> dict[str, Any]:
        """JSON-ready totals (cycles rounded up to whole cycles)."""
        ops = self.ops
        compute_roof = float(ops["compute_roof_cycles"].sum())
        fp = self.footprint

        def block(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for key, row in table.iterrows():
                out[str(key)] = {
                    "ops": int(row["ops"]), "cycles": math.ceil(row["cycles"]),
                    "compute_cycles": math.ceil(row["compute_cycles"]),
                    "stall_cycles": math.ceil(row["stall_cycles"]),
                    "latency_s": row["cycles"] / (self.hw.clock_mhz * 1e6),
                    "dram_bytes": int(round(row["dram_bytes"])),
                    "energy_j": float(row["energy_j"]), "macs": int(row["macs"]),
                    "roofline_cycles": math.ceil(row["roofline_cycles"]),
                    "utilization": float(row["utilization"]),
                }
            return out

        return {
            "hw": self.hw.name,
            "dataflow": self.dataflow,
            "objective": self.objective,
            "ops": int(len(ops)),
            "products": int(ops["count"].sum()),
            "total_cycles": math.ceil(self.total_cycles),
            "compute_cycles": math.ceil(float(ops["compute_cycles"].sum())),
            "stall_cycles": math.ceil(float(ops["stall_cycles"].sum())),
            "latency_s": self.latency_s,
            "dram_bytes": int(round(self.dram_bytes)),
            "compulsory_bytes": int(round(float(ops["compulsory_bytes"].sum()))),
            "energy_j": self.energy_j,
            "macs": int(ops["macs"].sum()),
            "roofline_cycles": math.ceil(self.roofline_cycles),
            "roofline_ratio": self.total_cycles / self.roofline_cycles,
            "utilization": compute_roof / self.total_cycles,
            "peak_memory_bytes": fp.peak_memory_bytes if fp else None,
            "dram_capacity_bytes": self.hw.dram.capacity_bytes,
            "fits_in_dram": fp.fits if fp else None,
            "memory_by_kind": fp.by_kind if fp else None,
            "dataflow_mix": {str(k): int(v) for k, v in
                             ops["dataflow"].value_counts().sort_index().items()},
            "per_phase": block(self.per_phase()),
            "per_layer": block(self.per_layer()),
            "trace_header": self.header,
        }


@dataclass(frozen=True)
class GemmResult:
    """One product ``out[M, N] = A[M, K] @ B[K, N]`` on one accelerator.

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
    cycles: float
    compute_cycles: float
    stall_cycles: float
    utilization: float
    dram_bytes: float
    compulsory_bytes: float
    sram_bytes: float
    energy_j: float
    macs: float
    macs_effective: float
    roofline_cycles: float
    compute_roof_cycles: float
    memory_roof_cycles: float
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
