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
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from sim.config import HwConfig
from sim.cost import OpCost, cost_columns
from sim.dataflow import DATAFLOWS, STREAMED_DIM
from sim.energy import energy_j
from sim.errors import MappingError, SimError
from sim.memory import LOOP_ORDERS, continued_tiles, memory_timing
from sim.opwork import OpWork, op_work
from sim.tiling import TileSet, buffer_copies, candidate_tiles, tile_buffer_bytes, tile_totals
from sim.vector import vector_costs

__all__ = ["MAPPING_OBJECTIVES", "OP_KEY", "OpKey", "evaluate_op", "evaluate_shapes",
           "evaluate_variants", "schedule_ops", "unique_ops"]

MAPPING_OBJECTIVES: tuple[str, ...] = ("latency", "energy", "edp")


class OpKey(NamedTuple):
    """What a product's cost depends on: its shape, bits, sparsity and the stored bytes of a
    weight operand (one search each)."""

    M: int
    N: int
    K: int
    w_bits: int
    a_bits: int
    weight_sparsity: float
    sparsity_pattern: str
    weight_bytes: int  # 0: not given (docs/trace.md)


OP_KEY: tuple[str, ...] = OpKey._fields


def _check_choice(dataflow: str, objective: str) -> tuple[str, ...]:
    if objective not in MAPPING_OBJECTIVES:
        raise SimError(f"objective must be one of {', '.join(MAPPING_OBJECTIVES)} "
                       f"(got {objective!r})")
    if dataflow == "auto":
        return DATAFLOWS
    if dataflow not in DATAFLOWS:
        raise SimError(f"dataflow must be auto, ws, os or is (got {dataflow!r})")
    return (dataflow,)


def _fits(hw: HwConfig, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Whether buffers holding ``a``, ``b``, ``c`` bytes (all copies) fit the SRAM."""
    s = hw.sram
    if s.unified_kib is not None:
        return np.asarray(a + b + c <= s.unified_kib * 1024)
    return ((a <= (s.input_kib or 0) * 1024) & (b <= (s.weight_kib or 0) * 1024)
            & (c <= (s.output_kib or 0) * 1024))


def evaluate_op(hw: HwConfig, m: int, n: int, k: int, *, w_bits: int = 16, a_bits: int = 16,
                weight_sparsity: float = 0.0, sparsity_pattern: str = "dense",
                weight_bytes: int = 0, dataflow: str = "auto", objective: str = "latency"
                ) -> dict[str, Any]:
    """Best mapping of one product ``out[m, n] = A[m, k] @ B[k, n]`` on ``hw``; B takes
    ``weight_bytes`` as stored when given (> 0), else the hardware's storage model
    (``sim.opwork``).

    Returns a flat dict for one product (multiply by ``count`` for repeats): the fields of
    ``sim.cost.OpCost`` (``cycles``, ``compute_cycles``, ``stall_cycles``, ``dram_bytes``,
    ``compulsory_bytes``, ``sram_access_bytes``, ``energy_j``, ``macs``, ``macs_effective``,
    ``roofline_cycles`` with ``compute_roof_cycles`` and ``memory_roof_cycles``, ...), then
    ``utilization``, ``roofline_ratio``, ``bound``, ``dataflow``, ``loop_order``, ``tile_m``,
    ``tile_n``, ``tile_k``. Cycles are core clock cycles, bytes are bytes, energy is joules.

    Raises:
        MappingError: no tiling of this op fits the SRAM buffers.
    """
    return evaluate_variants(hw, m, n, k, w_bits=[w_bits], a_bits=[a_bits],
                             weight_sparsity=[weight_sparsity],
                             sparsity_patterns=[sparsity_pattern], weight_bytes=[weight_bytes],
                             dataflow=dataflow, objective=objective)[0]


def _column(values: Any, variants: int) -> np.ndarray:
    """Per-variant values as a column ``(variants, 1)`` that broadcasts over candidates."""
    return np.asarray(values, dtype=float).reshape(variants, 1)


def _fitting_tiles(hw: HwConfig, work: OpWork, dataflows: tuple[str, ...], m: int, n: int,
                   k: int, w_bits: Sequence[int]) -> tuple[TileSet, np.ndarray]:
    """The candidate tilings some variant can use, and which variant fits which:
    (tiles, fit ``(variants, T)``).

    Raises:
        MappingError: a variant fits no candidate.
    """
    g = len(w_bits)
    tiles = candidate_tiles(dataflows, m, n, k, hw.pe.rows, hw.pe.cols)
    copies = buffer_copies(tiles, m, n, k, double_buffering=hw.sram.double_buffering)
    need = tile_buffer_bytes(tiles, _column(work.a_bits, g), _column(work.b_bits, g),
                             float(hw.pe.accum_bits))
    a, b, c = (x * n_copies for x, n_copies in zip(need, copies, strict=True))
    fit = _fits(hw, a, b, c)
    no_fit = np.flatnonzero(~fit.any(axis=1))
    if no_fit.size:
        i = int(no_fit[0])
        raise MappingError(
            f"op M={m} N={n} K={k} ({int(work.a_bits[i])}/{int(w_bits[i])}-bit) has no tiling "
            f"that fits the SRAM of {hw.name!r}; enlarge sram sizes or disable double_buffering")
    usable = fit.any(axis=0)  # candidates no variant can use are dropped before costing
    return tiles.take(usable), fit[:, usable]


@dataclass(frozen=True)
class _Candidates:
    """Every (loop order, variant, candidate) of one shape costed: arrays (orders, variants, T)
    except ``compulsory``, ``compute_roof`` and ``memory_roof`` (variants,)."""

    cycles: np.ndarray  # inf where the variant does not fit the candidate
    compute_cycles: np.ndarray
    dram_bytes: np.ndarray
    sram_bytes: np.ndarray
    energy: np.ndarray
    macs: float
    macs_effective: np.ndarray
    compulsory: np.ndarray
    compute_roof: np.ndarray
    memory_roof: np.ndarray


def _cost_candidates(hw: HwConfig, work: OpWork, tiles: TileSet, fit: np.ndarray, m: int,
                     n: int, k: int) -> _Candidates:
    """Compute, SRAM, DRAM, energy and roofline of every candidate for every variant."""
    g = len(work.a_bits)
    rows, cols = hw.pe.rows, hw.pe.cols
    acc = float(hw.pe.accum_bits)
    a_b, b_b = work.a_bits, work.b_bits
    totals = tile_totals(tiles, m=m, n=n, k=k, rows=rows, cols=cols, density=work.density,
                         macs_per_pe=work.macs_per_pe_per_cycle, a_bits=a_b, b_bits=b_b,
                         accum_bits=acc, sram_bytes_per_cycle=hw.sram.bytes_per_cycle)
    a_bytes, b_bytes, out_bytes = m * k * a_b / 8.0, work.b_bytes(k * n), m * n * a_b / 8.0
    streamed = np.take(STREAMED_DIM, tiles.df.astype(int))
    mem = memory_timing(totals.trips, a_bytes=_column(a_bytes, g), b_bytes=_column(b_bytes, g),
                        out_bytes=_column(out_bytes, g), psum_bytes=m * n * acc / 8.0,
                        compute=totals.compute_cycles, bytes_per_cycle=hw.dram_bytes_per_cycle,
                        double_buffering=hw.sram.double_buffering,
                        continued=continued_tiles(totals.trips, streamed),
                        continue_saving=totals.continue_saving)
    macs = float(m) * n * k
    macs_eff = macs * work.density
    sram = totals.sram_array_bytes + mem.dram_bytes
    energy = energy_j(hw, macs_effective=_column(macs_eff, g),
                      cycles_per_mac=_column(work.cycles_per_mac, g), sram_bytes=sram,
                      dram_bytes=mem.dram_bytes, cycles=mem.cycles)
    compulsory = a_bytes + b_bytes + out_bytes
    return _Candidates(
        cycles=np.where(fit, mem.cycles, np.inf), compute_cycles=mem.compute_cycles,
        dram_bytes=mem.dram_bytes, sram_bytes=sram, energy=energy, macs=macs,
        macs_effective=macs_eff, compulsory=compulsory,
        compute_roof=macs_eff / (rows * cols * work.macs_per_pe_per_cycle),
        memory_roof=compulsory / hw.dram_bytes_per_cycle)


def _chosen(c: _Candidates, tiles: TileSet, v: int, objective: str) -> dict[str, Any]:
    """The best mapping of variant ``v``: its ``OpCost`` fields and its mapping columns."""
    cyc, en = c.cycles[:, v, :], c.energy[:, v, :]
    order_i, tile_i = _best(cyc, en, objective)
    cycles = float(cyc[order_i, tile_i])
    compute_cycles = float(c.compute_cycles[order_i, v, tile_i])
    compute_roof, memory_roof = float(c.compute_roof[v]), float(c.memory_roof[v])
    roof = max(compute_roof, memory_roof)
    cost = OpCost(
        cycles=cycles, compute_cycles=compute_cycles, stall_cycles=cycles - compute_cycles,
        dram_bytes=float(c.dram_bytes[order_i, v, tile_i]),
        compulsory_bytes=float(c.compulsory[v]),
        sram_access_bytes=float(c.sram_bytes[order_i, v, tile_i]),
        energy_j=float(en[order_i, tile_i]), macs=c.macs,
        macs_effective=float(c.macs_effective[v]), roofline_cycles=roof,
        compute_roof_cycles=compute_roof, memory_roof_cycles=memory_roof)
    return {
        **cost.as_dict(),
        "utilization": compute_roof / cycles,
        "roofline_ratio": cycles / roof,
        "bound": "compute" if compute_roof >= memory_roof else "memory",
        "dataflow": DATAFLOWS[int(tiles.df[tile_i])],
        "loop_order": LOOP_ORDERS[order_i],
        "tile_m": int(tiles.tm[tile_i]),
        "tile_n": int(tiles.tn[tile_i]),
        "tile_k": int(tiles.tk[tile_i]),
    }


def evaluate_variants(hw: HwConfig, m: int, n: int, k: int, *, w_bits: Sequence[int],
                      a_bits: Sequence[int], weight_sparsity: Sequence[float],
                      sparsity_patterns: Sequence[str], weight_bytes: Sequence[int] | None = None,
                      dataflow: str = "auto", objective: str = "latency"
                      ) -> list[dict[str, Any]]:
    """``evaluate_op`` for several bits/sparsity/weight-bytes variants of one shape, in one
    numpy pass.

    The candidate tilings depend only on the shape, so variants share them and every cost
    array gets a leading variant axis: arrays are (loop orders, variants, candidates).

    Raises:
        MappingError: some variant fits no tiling of the SRAM buffers.
    """
    dataflows = _check_choice(dataflow, objective)
    work = op_work(hw, np.asarray(w_bits), np.asarray(a_bits), np.asarray(weight_sparsity),
                   list(sparsity_patterns), weight_bytes=None if weight_bytes is None
                   else np.asarray(weight_bytes), b_numel=k * n)
    tiles, fit = _fitting_tiles(hw, work, dataflows, m, n, k, w_bits)
    costed = _cost_candidates(hw, work, tiles, fit, m, n, k)
    return [_chosen(costed, tiles, v, objective) for v in range(len(w_bits))]


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
    if "weight_bytes" not in ops:  # not given: the hardware's storage model (docs/trace.md)
        ops = ops.assign(weight_bytes=0)
    keys = [OpKey(*row) for row in ops[list(OP_KEY)].itertuples(index=False, name=None)]
    # Distinct products, grouped by shape: one vectorized search per shape.
    by_shape: dict[tuple[int, int, int], list[OpKey]] = {}
    for key in dict.fromkeys(keys):
        by_shape.setdefault((int(key.M), int(key.N), int(key.K)), []).append(key)
    cache: dict[OpKey, dict[str, Any]] = {}
    for (m, n, k), variants in by_shape.items():
        # Chunks bound the (orders x variants x candidates) arrays to a few MB.
        for start in range(0, len(variants), _VARIANT_CHUNK):
            chunk = variants[start:start + _VARIANT_CHUNK]
            found = evaluate_variants(
                hw, m, n, k, w_bits=[int(v.w_bits) for v in chunk],
                a_bits=[int(v.a_bits) for v in chunk],
                weight_sparsity=[float(v.weight_sparsity) for v in chunk],
                sparsity_patterns=[str(v.sparsity_pattern) for v in chunk],
                weight_bytes=[int(v.weight_bytes) for v in chunk],
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
    if "weight_bytes" not in products:
        products = products.assign(weight_bytes=0)
    return int(products[list(OP_KEY)].drop_duplicates().shape[0])


def evaluate_shapes(hw: HwConfig, shapes: Sequence[tuple[int, int, int]], **kw: Any
                    ) -> pd.DataFrame:
    """Evaluate dense products given as (M, N, K) tuples; a convenience for sweeps."""
    return pd.DataFrame([{"M": m, "N": n, "K": k, **evaluate_op(hw, m, n, k, **kw)}
                         for m, n, k in shapes])
