"""Per-op mapping search: the best dataflow, tiling and loop order for each op.

For one op every candidate (dataflow x tile sizes x loop order, a few thousand) is evaluated at
once with numpy; tiles that do not fit the buffers are dropped first. The objective picks the
winner: ``latency`` (ties broken by energy), ``energy`` (ties by latency) or ``edp``. Ops with the
same shape, bits and sparsity share one evaluation, and the variants (bits, sparsity) of one
shape share one vectorized pass, so a trace of a thousand rows costs one search per distinct
shape.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from sim.config import HwConfig
from sim.cost import OpCost, cost_columns
from sim.dataflow import DATAFLOWS, STREAMED_DIM
from sim.energy import energy_j
from sim.errors import MappingError, SimError
from sim.memory import LOOP_ORDERS, continued_tiles, memory_timing
from sim.opwork import op_work
from sim.tiling import buffer_copies, candidate_tiles, tile_buffer_bytes, tile_totals
from sim.vector import vector_costs

__all__ = ["OBJECTIVES", "OP_KEY", "evaluate_op", "evaluate_shapes", "evaluate_variants",
           "schedule_ops", "unique_ops"]

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
    """Whether buffers holding ``a``, ``b``, ``c`` bytes (all copies) fit the SRAM."""
    s = hw.sram
    if s.unified_kib is not None:
        return a + b + c <= s.unified_kib * 1024
    return ((a <= (s.input_kib or 0) * 1024) & (b <= (s.weight_kib or 0) * 1024)
            & (c <= (s.output_kib or 0) * 1024))


def evaluate_op(hw: HwConfig, m: int, n: int, k: int, *, w_bits: int = 16, a_bits: int = 16,
                weight_sparsity: float = 0.0, sparsity_pattern: str = "dense",
                dataflow: str = "auto", objective: str = "latency") -> dict[str, Any]:
    """Best mapping of one product ``out[m, n] = A[m, k] @ B[k, n]`` on ``hw``.

    Returns a flat dict for one product (multiply by ``count`` for repeats): the fields of
    ``sim.cost.OpCost`` (``cycles``, ``compute_cycles``, ``stall_cycles``, ``dram_bytes``,
    ``compulsory_bytes``, ``sram_access_bytes``, ``energy_j``, ``macs``, ``macs_effective``,
    ``roofline_cycles`` with ``compute_roof_cycles`` and ``memory_roof_cycles``, ...), then
    ``utilization``, ``roofline_ratio``, ``bound``, ``dataflow``, ``loop_order``, ``tile_m``,
    ``tile_n``, ``tile_k``. Cycles are core clock cycles, bytes are bytes, energy is joules.

    Raises:
        MappingError: no tiling of this op fits the SRAM buffers.
    """
    return evaluate_variants(hw, m, n, k, [w_bits], [a_bits], [weight_sparsity],
                             [sparsity_pattern], dataflow=dataflow, objective=objective)[0]


def evaluate_variants(hw: HwConfig, m: int, n: int, k: int, w_bits: Sequence[int],
                      a_bits: Sequence[int], weight_sparsity: Sequence[float],
                      sparsity_patterns: Sequence[str], *, dataflow: str = "auto",
                      objective: str = "latency") -> list[dict[str, Any]]:
    """``evaluate_op`` for several bits/sparsity variants of one shape, in one numpy pass.

    The candidate tilings depend only on the shape, so variants share them and every cost
    array gets a leading variant axis: arrays are (loop orders, variants, candidates).
    """
    dataflows = _check_choice(dataflow, objective)
    g = len(w_bits)
    work = op_work(hw, np.asarray(w_bits), np.asarray(a_bits), np.asarray(weight_sparsity),
                   list(sparsity_patterns))
    col = lambda x: np.asarray(x, dtype=float).reshape(g, 1)  # noqa: E731 (variant axis)
    density, p_eff = work.density, work.macs_per_pe_per_cycle
    a_b, b_b = work.a_bits, work.b_bits
    rows, cols = hw.pe.rows, hw.pe.cols
    acc = float(hw.pe.accum_bits)

    tiles = candidate_tiles(dataflows, m, n, k, rows, cols)
    copies = buffer_copies(tiles, m, n, k, double_buffering=hw.sram.double_buffering)
    fit = _fits(hw, *(x * c for x, c in zip(tile_buffer_bytes(tiles, col(a_b), col(b_b), acc),
                                            copies)))  # (variants, T)
    no_fit = np.flatnonzero(~fit.any(axis=1))
    if no_fit.size:
        i = int(no_fit[0])
        raise MappingError(
            f"op M={m} N={n} K={k} ({int(a_b[i])}/{int(w_bits[i])}-bit) has no tiling that "
            f"fits the SRAM of {hw.name!r}; enlarge sram sizes or disable double_buffering")
    usable = fit.any(axis=0)  # candidates no variant can use are dropped before costing
    tiles, fit = tiles.take(usable), fit[:, usable]

    totals = tile_totals(tiles, m, n, k, rows, cols, density, p_eff, a_b, b_b, acc,
                         hw.sram.bytes_per_cycle)
    a_bytes = m * k * a_b / 8.0
    b_bytes = k * n * b_b / 8.0
    out_bytes = m * n * a_b / 8.0
    streamed = np.take(STREAMED_DIM, tiles.df.astype(int))
    mem = memory_timing(totals.trips, col(a_bytes), col(b_bytes), col(out_bytes),
                        m * n * acc / 8.0, totals.compute_cycles, hw.dram_bytes_per_cycle,
                        hw.sram.double_buffering,
                        continued=continued_tiles(totals.trips, streamed),
                        continue_saving=totals.continue_saving)
    macs = float(m) * n * k
    macs_eff = macs * density
    sram = totals.sram_array_bytes + mem.dram_bytes
    energy = energy_j(hw, col(macs_eff), col(work.cycles_per_mac), sram, mem.dram_bytes,
                      mem.cycles)
    cycles_all = np.where(fit, mem.cycles, np.inf)  # a variant may not fit every candidate

    compulsory = a_bytes + b_bytes + out_bytes
    compute_roof = macs_eff / (rows * cols * p_eff)
    memory_roof = compulsory / hw.dram_bytes_per_cycle
    results = []
    for v in range(g):
        cyc, en = cycles_all[:, v, :], energy[:, v, :]
        order_i, tile_i = _best(cyc, en, objective)
        cycles = float(cyc[order_i, tile_i])
        compute_cycles = float(mem.compute_cycles[order_i, v, tile_i])
        roof = max(compute_roof[v], memory_roof[v])
        cost = OpCost(
            cycles=cycles, compute_cycles=compute_cycles, stall_cycles=cycles - compute_cycles,
            dram_bytes=float(mem.dram_bytes[order_i, v, tile_i]),
            compulsory_bytes=float(compulsory[v]),
            sram_access_bytes=float(sram[order_i, v, tile_i]),
            energy_j=float(en[order_i, tile_i]), macs=macs, macs_effective=float(macs_eff[v]),
            roofline_cycles=float(roof), compute_roof_cycles=float(compute_roof[v]),
            memory_roof_cycles=float(memory_roof[v]))
        results.append({
            **cost.as_dict(),
            "utilization": float(compute_roof[v] / cycles),
            "roofline_ratio": float(cycles / roof),
            "bound": "compute" if compute_roof[v] >= memory_roof[v] else "memory",
            "dataflow": DATAFLOWS[int(tiles.df[tile_i])],
            "loop_order": LOOP_ORDERS[order_i],
            "tile_m": int(tiles.tm[tile_i]),
            "tile_n": int(tiles.tn[tile_i]),
            "tile_k": int(tiles.tk[tile_i]),
        })
    return results


def _best(cycles: np.ndarray, energy: np.ndarray, objective: str) -> tuple[int, int]:
    """(loop order, candidate) of the best mapping of one variant; arrays (orders, candidates),
    ``inf`` cycles where the candidate does not fit."""
    ok = np.isfinite(cycles)
    if objective == "latency":
        best = np.lexsort((energy.ravel(), cycles.ravel()))[0]
    elif objective == "energy":
        best = np.lexsort((cycles.ravel(), np.where(ok, energy, np.inf).ravel()))[0]
    else:
        best = int(np.argmin(np.where(ok, cycles * energy, np.inf).ravel()))
    order_i, tile_i = np.unravel_index(best, cycles.shape)
    return int(order_i), int(tile_i)


_VARIANT_CHUNK = 32
# Columns of a per-op result beside the cost record (an empty table still has them).
_RESULT_COLUMNS = (*cost_columns(), "utilization", "roofline_ratio", "bound", "dataflow",
                   "loop_order", "tile_m", "tile_n", "tile_k")

def schedule_ops(hw: HwConfig, ops: pd.DataFrame, *, dataflow: str = "auto",
                 objective: str = "latency") -> pd.DataFrame:
    """Cost every op of a validated ops table; one row out per row in, in order.

    Products (``kind = matmul``; every row of a table without ``kind``) get the best mapping,
    identical ones (same ``OP_KEY``) searched once; vector rows are costed by ``sim.vector``.
    The ``OpCost`` columns are totals over the row's ``count`` repeats (they run one after
    another), beside ``utilization``, ``roofline_ratio``, ``bound``, ``dataflow``,
    ``loop_order`` and ``tile_*``.
    """
    _check_choice(dataflow, objective)
    is_vector = (ops["kind"] == "vector").to_numpy() if "kind" in ops else np.zeros(len(ops), bool)
    parts = [_schedule_products(hw, ops[~is_vector], dataflow=dataflow, objective=objective)]
    if is_vector.any():
        parts.append(vector_costs(hw, ops))
    result = pd.concat([p for p in parts if len(p)], axis=0).reindex(ops.index) \
        if len(parts) > 1 else parts[0]
    return pd.concat([ops, result], axis=1)


def _schedule_products(hw: HwConfig, ops: pd.DataFrame, *, dataflow: str, objective: str
                       ) -> pd.DataFrame:
    """Mapping-search results of the product rows of ``ops`` (same index), cost x ``count``."""
    keys = [tuple(row) for row in ops[list(OP_KEY)].itertuples(index=False, name=None)]
    # Distinct products, grouped by shape: one vectorized search per shape.
    by_shape: dict[tuple[int, int, int], list[tuple[Any, ...]]] = {}
    for key in dict.fromkeys(keys):
        by_shape.setdefault((int(key[0]), int(key[1]), int(key[2])), []).append(key)
    cache: dict[tuple[Any, ...], dict[str, Any]] = {}
    for (m, n, k), variants in by_shape.items():
        # Chunks bound the (orders x variants x candidates) arrays to a few MB.
        for start in range(0, len(variants), _VARIANT_CHUNK):
            chunk = variants[start:start + _VARIANT_CHUNK]
            found = evaluate_variants(
                hw, m, n, k, [int(v[3]) for v in chunk], [int(v[4]) for v in chunk],
                [float(v[5]) for v in chunk], [str(v[6]) for v in chunk],
                dataflow=dataflow, objective=objective)
            cache.update(zip(chunk, found, strict=True))
    records = [cache[key] for key in keys]
    result = pd.DataFrame.from_records(records, index=ops.index,
                                       columns=None if records else _RESULT_COLUMNS)
    count = ops["count"].to_numpy(dtype=float)
    for col in cost_columns():
        result[col] = result[col].to_numpy(dtype=float) * count
    return result


def unique_ops(ops: pd.DataFrame) -> int:
    """Number of distinct products (mapping searches) in an ops table."""
    products = ops[ops["kind"] == "matmul"] if "kind" in ops else ops
    return int(products[list(OP_KEY)].drop_duplicates().shape[0])


def evaluate_shapes(hw: HwConfig, shapes: Sequence[tuple[int, int, int]], **kw: Any
                    ) -> pd.DataFrame:
    """Evaluate dense products given as (M, N, K) tuples; a convenience for sweeps."""
    return pd.DataFrame([{"M": m, "N": n, "K": k, **evaluate_op(hw, m, n, k, **kw)}
                         for m, n, k in shapes])
