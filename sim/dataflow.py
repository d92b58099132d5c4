"""Closed-form cycles and SRAM accesses of one tile on an R x C systolic array.

A tile computes ``out[m, n] = A[m, k] @ B[k, n]`` where ``k`` is the *effective* reduction
length (after zero skipping and precision packing, see ``sim.opwork``). Per dataflow, the
stationary operand is spread over the array in *folds* of R x C; each fold pays its fill and
drain. The formulas follow SCALE-Sim v3's demand matrices (systolic_compute_{ws,os,is}.py):

=====  ==================  =================================  ===========================
 df     stationary in PEs   folds                              cycles per fold
=====  ==================  =================================  ===========================
 ws     B (k on rows,       ceil(k/R) * ceil(n/C)              R (preload B) + m + R + C - 2
        n on cols)
 os     out (m on rows,     ceil(m/R) * ceil(n/C)              k + R + C - 2
        n on cols)
 is     A (k on rows,       ceil(k/R) * ceil(m/C)              R (preload A) + n + R + C - 2
        m on cols)
=====  ==================  =================================  ===========================

(``R + C - 2`` is the skew: the first operand reaches the last PE after R + C - 2 cycles, the
last result leaves as many cycles after the stream ends.) SCALE-Sim's ``Total Cycles`` is this
count minus one (it reports the index of the last busy cycle).

A fold's *overhead* is everything but the stream: preload plus skew (ws, is: ``2R + C - 2``) or
the skew alone (os: ``R + C - 2``). When the next tile only advances the *streamed* dimension
(ws: m, os: k, is: n) and a tile holds a single fold, the stationary data is still in the PEs
and the stream simply goes on, so that tile pays no overhead (``sim.tiling``). This is how
SCALE-Sim runs an op: its fold sequence is fixed by the array, and a finite SRAM only adds
stalls and DRAM re-reads, never a second preload of the same fold.

Everything here is elementwise numpy over arrays of tiles: no loops over cycles or folds.
"""
from __future__ import annotations

import numpy as np

__all__ = ["DATAFLOWS", "DF_CODE", "STREAMED_DIM", "fold_overhead_cycles", "fold_cycles",
           "single_fold", "sram_accesses"]

DATAFLOWS: tuple[str, ...] = ("ws", "os", "is")
DF_CODE: dict[str, int] = {name: i for i, name in enumerate(DATAFLOWS)}
# The dimension each dataflow streams through the array (0 m, 1 n, 2 k), per DF_CODE.
STREAMED_DIM: tuple[int, ...] = (0, 2, 1)


def _ceil_div(a: np.ndarray, b: float) -> np.ndarray:
    return np.ceil(np.asarray(a, dtype=float) / b)


def fold_cycles(df: np.ndarray | int, m: np.ndarray, n: np.ndarray, k: np.ndarray,
                rows: int, cols: int) -> np.ndarray:
    """Cycles to compute one tile (no stalls), elementwise.

    Args:
        df: dataflow code(s) from ``DF_CODE`` (0 ws, 1 os, 2 is), broadcastable.
        m, n: tile output rows / columns (elements).
        k: tile effective reduction length (steps; already scaled for bits and sparsity).
        rows, cols: array size R x C (PEs).

    Returns:
        cycles (float array); 0 where the tile is empty.
    """
    m = np.asarray(m, dtype=float)
    n = np.asarray(n, dtype=float)
    k = np.asarray(k, dtype=float)
    r, c = float(rows), float(cols)
    skew = r + c - 2.0
    ws = _ceil_div(k, r) * _ceil_div(n, c) * (r + m + skew)
    os_ = _ceil_div(m, r) * _ceil_div(n, c) * (k + skew)
    is_ = _ceil_div(k, r) * _ceil_div(m, c) * (r + n + skew)
    out = np.select([np.asarray(df) == 0, np.asarray(df) == 1], [ws, os_], is_)
    empty = (m <= 0) | (n <= 0) | (k <= 0)
    return np.where(empty, 0.0, out)


def fold_overhead_cycles(df: np.ndarray | int, rows: int, cols: int) -> np.ndarray:
    """Cycles of one fold spent outside the stream: preload plus skew (ws, is) or skew (os)."""
    skew = float(rows) + float(cols) - 2.0
    return np.where(np.asarray(df) == 1, skew, float(rows) + skew)


def single_fold(df: np.ndarray | int, m: np.ndarray, n: np.ndarray, k: np.ndarray,
                rows: int, cols: int) -> np.ndarray:
    """Whether a tile's stationary operand fits the array in one fold (elementwise).

    ws holds B (k rows x n cols), os the output (m rows x n cols), is A (k rows x m cols);
    ``k`` is the effective reduction length.
    """
    df = np.asarray(df)
    m, n, k = (np.asarray(x, dtype=float) for x in (m, n, k))
    ws = (k <= rows) & (n <= cols)
    os_ = (m <= rows) & (n <= cols)
    is_ = (k <= rows) & (m <= cols)
    return np.select([df == 0, df == 1], [ws, os_], is_)


def sram_accesses(df: np.ndarray | int, m: np.ndarray, n: np.ndarray, k_dense: np.ndarray,
                  k_eff: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray,
                                                                   np.ndarray]:
    """Elements the array reads/writes in SRAM for one tile: (A reads, B reads, psum writes).

    The streamed operand is re-read once per fold along the dimension it is not stationary in;
    the stationary one is read once per tile (ws: B, is: A) or per fold row (os). Partial sums
    are written once per reduction fold and read back for every fold but the first (ws/is
    accumulate in the output buffer; os accumulates inside the PEs and writes once per tile).
    Over a whole op every psum write but the first one to each output element is preceded by
    a read, so psum accesses = 2 * sum(psum writes) - M * N.
    B counts dense element positions (scale by stored bits per dense element for bytes).
    """
    m = np.asarray(m, dtype=float)
    n = np.asarray(n, dtype=float)
    k_dense = np.asarray(k_dense, dtype=float)
    k_eff = np.asarray(k_eff, dtype=float)
    df = np.asarray(df)
    k_folds = _ceil_div(k_eff, rows)
    a_reads = np.where(df == 2, m * k_dense, m * k_dense * _ceil_div(n, cols))
    b_reads = np.select([df == 0, df == 1], [k_dense * n, k_dense * n * _ceil_div(m, rows)],
                        k_dense * n * _ceil_div(m, cols))
    psum_writes = np.where(df == 1, m * n, m * n * k_folds)
    return a_reads, b_reads, psum_writes
