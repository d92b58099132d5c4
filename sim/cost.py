"""The cost of one op: one record whose fields are the additive per-op metrics.

Every per-op table, total, breakdown and sweep column derives its list of additive metrics from
the fields of ``OpCost`` (after ZigZag's cost results, which add and scale): to add a metric,
add a field here and set it where an op is costed (``sim.scheduler`` for products,
``sim.vector`` for vector rows); totals, ``SimResult.summary()``, ``python -m sim.run --json``
and the sweep table pick it up.

Units follow the names: cycles are core clock cycles, bytes are bytes, ``energy_j`` joules,
``macs`` multiply-accumulates, ``vector_elements`` vector-unit operations (one element of one
op class, docs/trace.md).

Example:
    >>> a = OpCost(cycles=10.0, dram_bytes=64.0)
    >>> (a + a).cycles, (a * 3).dram_bytes
    (20.0, 192.0)
    >>> OpCost.json_value("cycles", 10.2), OpCost.json_value("dram_bytes", 63.6)
    (11, 64)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

__all__ = ["COST_COLUMNS", "OpCost", "cost_columns"]


@dataclass(frozen=True)
class OpCost:
    """Additive cost of an op (or of a sum of ops); every field defaults to 0.

    Attributes:
        cycles: latency in core cycles, stalls included.
        compute_cycles: cycles the op's unit (PE array or vector unit) computes, stall-free.
        stall_cycles: ``cycles - compute_cycles``: waiting for DRAM.
        dram_bytes: bytes read from and written to DRAM.
        compulsory_bytes: bytes that must cross DRAM at least once (operands in, output out;
            minus what fusion keeps on chip).
        sram_access_bytes: bytes read or written in on-chip SRAM (unit side plus DRAM fills/drains).
        energy_j: dynamic plus static energy, joules.
        macs: multiply-accumulates of the products (dense count).
        macs_effective: MACs actually performed after zero skipping.
        roofline_cycles: ``max(compute_roof_cycles, memory_roof_cycles)`` per op (summed).
        compute_roof_cycles: work / peak throughput of the op's unit.
        memory_roof_cycles: compulsory bytes / DRAM bytes per cycle.
        vector_elements: operations done by the vector unit (elements x repeats).
        fused_bytes: DRAM bytes an elementwise-fusing unit kept on chip (``fusion:
            elementwise`` on a ``fusable`` row).
    """

    cycles: float = 0.0
    compute_cycles: float = 0.0
    stall_cycles: float = 0.0
    dram_bytes: float = 0.0
    compulsory_bytes: float = 0.0
    sram_access_bytes: float = 0.0
    energy_j: float = 0.0
    macs: float = 0.0
    macs_effective: float = 0.0
    roofline_cycles: float = 0.0
    compute_roof_cycles: float = 0.0
    memory_roof_cycles: float = 0.0
    vector_elements: float = 0.0
    fused_bytes: float = 0.0

    def __add__(self, other: OpCost) -> OpCost:
        if not isinstance(other, OpCost):
            return NotImplemented
        return OpCost(**{f: getattr(self, f) + getattr(other, f) for f in COST_COLUMNS})

    def __radd__(self, other: object) -> OpCost:
        # sum() starts from the integer 0.
        if other == 0:
            return self
        return NotImplemented

    def __mul__(self, count: float) -> OpCost:
        """The cost of ``count`` identical ops run one after another."""
        if isinstance(count, bool) or not isinstance(count, (int, float)):
            return NotImplemented
        return OpCost(**{f: getattr(self, f) * count for f in COST_COLUMNS})

    __rmul__ = __mul__

    def as_dict(self) -> dict[str, float]:
        """The cost fields, name to value, in field order (a subclass's extra fields left
        out)."""
        return {f: getattr(self, f) for f in COST_COLUMNS}

    @classmethod
    def total(cls, table: pd.DataFrame) -> OpCost:
        """Sum of the cost columns of a per-op table (``SimResult.ops``)."""
        return cls(**{c: float(table[c].sum()) for c in COST_COLUMNS})

    @staticmethod
    def json_value(name: str, value: float) -> int | float:
        """A summed metric as reported in JSON: whole cycles rounded up, whole bytes, MAC and
        element counts as integers, anything else (joules, new metrics) as a float."""
        if name.endswith("cycles"):
            return math.ceil(value)
        if name.endswith("_bytes") or name in ("macs", "macs_effective", "vector_elements"):
            return int(round(value))
        return float(value)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (see ``json_value``)."""
        return {name: self.json_value(name, value) for name, value in self.as_dict().items()}


# The additive per-op metrics, in field order (the columns ``count`` multiplies).
COST_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(OpCost))


def cost_columns() -> tuple[str, ...]:
    """The additive per-op metrics, in field order (the columns ``count`` multiplies)."""
    return COST_COLUMNS
