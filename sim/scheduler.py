"""Per-op mapping search: the best dataflow, tiling and loop order for each op.

For one op every candidate (dataflow x tile sizes x loop order, a few thousand) is evaluated at
once with numpy; tiles that do not fit the buffers are dropped first. The objective picks the
winner: ``latency`` (ties broken by energy), ``energy`` (ties by latency) or ``edp``. Ops with the
same shape, bits and sparsity share one evaluation, so a trace of a thousand rows costs only
as many searches as it has distinct shapes.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sim.config import HwConfig
from sim.dataflow import DATAFLOWS
from sim.energy import energy_j
from sim.errors import MappingError, SimError
from sim.memory import LOOP_ORDERS, memory_timing
from sim.opwork import op_work
from sim.tiling import candidate_tiles, tile_buffer_bytes, tile_totals

__all__ = ["OBJECTIVES", "OP_KEY", "evaluate_op", "schedule_ops"]

OBJECTIVES: tuple[str, ...] = ("latency", "energy", "edp")
OP_KEY: tuple[str, ...] = ("M", "N", "K", "w_bits", "a_bits", "weight_sparsity",
                           "sparsity_pattern")


def _check_choice(dataflow: str, objective: str) -> tuple[str, ...]:
    if objective not in OBJECTIVES:
        raise SimError(f"objective must be one of {', '.join(OBJECTIVES)} (got {objective!r})")
    if dataflow == "auto":
        return DATAFLOWS
    if dataflow not in DATAFLOWS:
        raise SimError(f"dataflow must be auto, ws, os or is (got {dataflow!r})")
    return (dataflow,)


def _fits(hw: HwConfig, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    copies = 2.0 if hw.sram.double_buffering else 1.0
    s = hw.sram
    if s.unified_kib is not None:
        return copies * (a + b + c) <= s.unified_kib * 1024
    return ((copies * a <= (s.input_kib or 0) * 1024) & (copies * b <= (s.weight_kib or 0) * 1024)
            & (copies * c <= (s.output_kib or 0) * 1024))


def evaluate_op(hw: HwConfig, m: int, n: int, k: int, *, w_bits: int = 16, a_bits: int = 16,
                weight_sparsity: float = 0.0, sparsity_pattern: str = "dense",
                dataflow: str = "auto", objective: str = "latency") -> dict[str, Any]:
    """Best mapping of one product ``out[m, n] = A[m, k] @ B[k, n]`` on ``hw``.

    Returns a flat dict for one product (multiply by ``count`` for repeats): ``cycles``,
    ``compute_cycles``, ``stall_cycles``, ``utilization``, ``dram_bytes``,
    ``compulsory_bytes``, ``sram_bytes``, ``energy_j``, ``macs``, ``macs_effective``,
    ``roofline_cycles`` (with ``compute_roof_cycles`` and ``memory_roof_cycles``),
    ``roofline_ratio``, ``bound``, ``dataflow``, ``loop_order``, ``tile_m``, ``tile_n``,
    ``tile_k``. Cycles are core clock cycles, bytes are bytes, energy is joules.

    Raises:
        MappingError: no tiling of this op fits the SRAM buffers.
    """
    dataflows = _check_choice(dataflow, objective)
    work = op_work(hw, np.array([w_bits]), np.array([a_bits]), np.array([weight_sparsity]),
                   [sparsity_pattern])
    density = float(work.density[0])
    p_eff = float(work.macs_per_pe_per_cycle[0])
    b_bits = float(work.b_bits[0])
    cpm = float(work.cycles_per_mac[0])
    rows, cols = hw.pe.rows, hw.pe.cols
    acc = float(hw.pe.accum_bits)

    tiles = candidate_tiles(dataflows, m, n, k, rows, cols)
    fit = _fits(hw, *tile_buffer_bytes(tiles, a_bits, b_bits, acc))
    if not fit.any():
        raise MappingError(
            f"op M={m} N={n} K={k} ({a_bits}/{w_bits}-bit) has no tiling that fits the SRAM of "
            f"{hw.name!r}; enlarge sram sizes or disable double_buffering")
    tiles = tiles.take(fit)

    totals = tile_totals(tiles, m, n, k, rows, cols, density, p_eff, a_bits, b_bits, acc,
                         hw.sram.bytes_per_cycle)
    a_bytes = m * k * a_bits / 8.0
    b_bytes = k * n * b_bits / 8.0
    out_bytes = m * n * a_bits / 8.0
    mem = memory_timing(totals.trips, a_bytes, b_bytes, out_bytes, m * n * acc / 8.0,
                        totals.compute_cycles, hw.dram_bytes_per_cycle,
                        hw.sram.double_buffering)
    macs = float(m) * n * k
    macs_eff = macs * density
    compute = np.broadcast_to(totals.compute_cycles, mem.cycles.shape)
    sram = totals.sram_array_bytes + mem.dram_bytes
    energy = energy_j(hw, macs_eff, cpm, sram, mem.dram_bytes, mem.cycles)

    cyc, en = mem.cycles.ravel(), energy.ravel()
    if objective == "latency":
        best = np.lexsort((en, cyc))[0]
    elif objective == "energy":
        best = np.lexsort((cyc, en))[0]
    else:
        best = int(np.argmin(cyc * en))
    order_i, tile_i = np.unravel_index(best, mem.cycles.shape)

    compulsory = a_bytes + b_bytes + out_bytes
    compute_roof = macs_eff / (rows * cols * p_eff)
    memory_roof = compulsory / hw.dram_bytes_per_cycle
    roof = max(compute_roof, memory_roof)
    cycles = float(mem.cycles[order_i, tile_i])
    compute_cycles = float(compute[order_i, tile_i])
    return {
        "cycles": cycles,
        "compute_cycles": compute_cycles,
        "stall_cycles": cycles - compute_cycles,
        "utilization": compute_roof / cycles,
        "dram_bytes": float(mem.dram_bytes[order_i, tile_i]),
        "compulsory_bytes": compulsory,
        "sram_bytes": float(sram[order_i, tile_i]),
        "energy_j": float(energy[order_i, tile_i]),
        "macs": macs,
        "macs_effective": macs_eff,
        "roofline_cycles": roof,
        "compute_roof_cycles": compute_roof,
        "memory_roof_cycles": memory_roof,
        "roofline_ratio": cycles / roof,
        "bound": "compute" if compute_roof >= memory_roof else "memory",
        "dataflow": DATAFLOWS[int(tiles.df[tile_i])],
        "loop_order": LOOP_ORDERS[order_i],
        "tile_m": int(tiles.tm[tile_i]),
        "tile_n": int(tiles.tn[tile_i]),
        "tile_k": int(tiles.tk[tile_i]),
    }


# Columns of one product that scale with ``count`` when a trace row repeats a product.
_ADDITIVE = ("cycles", "compute_cycles", "stall_cycles", "dram_bytes", "compulsory_bytes",
             "sram_bytes", "energy_j", "macs", "macs_effective", "roofline_cycles",
             "compute_roof_cycles", "memory_roof_cycles")


def schedule_ops(hw: HwConfig, ops: pd.DataFrame, *, dataflow: str = "auto",
                 objective: str = "latency") -> pd.DataFrame:
    """Map every op of a validated ops table; one row out per row in.

    Identical products (same ``OP_KEY``) are evaluated once. Additive columns are totals over
    the row's ``count`` products (the products run one after another).
    """
    _check_choice(dataflow, objective)
    keys = list(OP_KEY)
    cache: dict[tuple[Any, ...], dict[str, Any]] = {}
    records: list[dict[str, Any]] = []
    for row in ops[keys].itertuples(index=False, name=None):
        if row not in cache:
            m, n, k, w_bits, a_bits, sparsity, pattern = row
            cache[row] = evaluate_op(hw, int(m), int(n), int(k), w_bits=int(w_bits),
                                     a_bits=int(a_bits), weight_sparsity=float(sparsity),
                                     sparsity_pattern=str(pattern), dataflow=dataflow,
                                     objective=objective)
        records.append(cache[row])
    result = pd.DataFrame.from_records(records, index=ops.index)
    count = ops["count"].to_numpy(dtype=float)
    for col in _ADDITIVE:
        result[col] = result[col].to_numpy() * count
    return pd.concat([ops, result], axis=1)


def unique_ops(ops: pd.DataFrame) -> int:
    """Number of distinct products (mapping searches) in an ops table."""
    return int(ops[list(OP_KEY)].drop_duplicates().shape[0])


def evaluate_shapes(hw: HwConfig, shapes: Sequence[tuple[int, int, int]], **kw: Any
                    ) -> pd.DataFrame:
    """Evaluate dense products given as (M, N, K) tuples; a convenience for sweeps."""
    return pd.DataFrame([{"M": m, "N": n, "K": k, **evaluate_op(hw, m, n, k, **kw)}
                         for m, n, k in shapes])
