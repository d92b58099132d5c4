"""Tiling of one op into DRAM-level tiles: candidates, buffer fit, and per-op totals.

An op ``M x N x K`` is cut into tiles ``Tm x Tn x Tk`` (dense element counts) that live in the
SRAM buffers; the array then folds each tile (``sim.dataflow``). Candidates per dimension are
the whole dimension and geometric splits of it rounded up to the array dimension it maps onto
under the dataflow, so folds stay full. Edge tiles are exact: every total sums the full tiles
and the remainder tiles of each dimension (2 x 2 x 2 size classes), in closed form.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.dataflow import DF_CODE, fold_cycles, fold_overhead_cycles, single_fold, sram_accesses

__all__ = ["TileSet", "buffer_copies", "candidate_tiles", "dim_candidates", "tile_buffer_bytes",
           "tile_totals"]

# Up to 4096 ways: a vocabulary-wide LM head (49152) must still split into tiles that fit a
# small SRAM; the loop stops at the array unit, so small dimensions pay nothing for it.
_SPLITS = tuple(2**i for i in range(1, 13))


def dim_candidates(dim: int, unit: int) -> np.ndarray:
    """Tile sizes for one dimension: ``dim`` itself and ceil(dim / 2^i) rounded up to ``unit``."""
    unit = max(1, min(int(unit), dim))
    sizes = {dim}
    for j in _SPLITS:
        size = -(-dim // j)
        size = -(-size // unit) * unit
        if size < dim:
            sizes.add(size)
        if size <= unit:
            break
    return np.array(sorted(sizes), dtype=float)


@dataclass(frozen=True)
class TileSet:
    """Candidate (dataflow, tile) pairs, as aligned float arrays."""

    df: np.ndarray  # dataflow code (sim.dataflow.DF_CODE)
    tm: np.ndarray  # tile rows of A / out (elements)
    tn: np.ndarray  # tile columns of B / out (elements)
    tk: np.ndarray  # tile reduction length, dense elements

    def __len__(self) -> int:
        return int(self.df.size)

    def take(self, mask: np.ndarray | np.bool_) -> TileSet:
        """The subset where ``mask`` holds."""
        return TileSet(self.df[mask], self.tm[mask], self.tn[mask], self.tk[mask])


def candidate_tiles(dataflows: tuple[str, ...], m: int, n: int, k: int, rows: int,
                    cols: int) -> TileSet:
    """All candidate tiles for the given dataflows.

    The candidate set depends only on the shape and the array, never on the op's bits or
    sparsity, so narrower or sparser operands can only shrink every candidate's cost (the
    search is then monotone: fewer bits or more zeros are never slower).

    Args:
        dataflows: subset of ("ws", "os", "is").
        m, n, k: op shape (elements).
        rows, cols: array size.
    """
    free = 8  # streamed dimension: any size works, keep it a multiple of a typical burst
    # K maps onto the rows after packing p reduction entries per PE (p = 1, 2, 4, 8, 16 for
    # 16-bit down to 1-bit operands), so align K tiles to rows * p for each p.
    k_sizes = np.unique(np.concatenate([dim_candidates(k, rows * 2**i) for i in range(5)]))
    per_df = {"ws": (dim_candidates(m, free), dim_candidates(n, cols), k_sizes),
              "os": (dim_candidates(m, rows), dim_candidates(n, cols), dim_candidates(k, free)),
              "is": (dim_candidates(m, cols), dim_candidates(n, free), k_sizes)}
    parts = []
    for name in dataflows:
        gm, gn, gk = np.meshgrid(*per_df[name], indexing="ij")
        code = np.full(gm.size, DF_CODE[name], dtype=float)
        parts.append((code, gm.ravel(), gn.ravel(), gk.ravel()))
    return TileSet(*(np.concatenate(arrs) for arrs in zip(*parts, strict=True)))


def tile_buffer_bytes(tiles: TileSet, a_bits: float | np.ndarray, b_bits: float | np.ndarray,
                      accum_bits: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bytes one copy of each tile needs: (A tile, B tile, output/psum tile).

    ``a_bits``/``b_bits`` may carry a variant axis, shape (variants, 1), giving (variants, T).
    """
    return (tiles.tm * tiles.tk * a_bits / 8.0, tiles.tk * tiles.tn * b_bits / 8.0,
            tiles.tm * tiles.tn * accum_bits / 8.0)


def buffer_copies(tiles: TileSet, m: int, n: int, k: int, *, double_buffering: bool
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copies of each tile a buffer must hold: (A, B, output), each shape (T,).

    Double buffering keeps a second copy so the next tile loads while this one computes; a
    tile that is the whole operand never changes (loaded once before compute, or, for the
    output, written once after it), so it needs one copy even with double buffering. This is
    how ZigZag keeps an operand resident in a level that holds it whole.
    """
    two = 2.0 if double_buffering else 1.0
    a = np.where((tiles.tm >= m) & (tiles.tk >= k), 1.0, two)
    b = np.where((tiles.tk >= k) & (tiles.tn >= n), 1.0, two)
    c = np.where((tiles.tm >= m) & (tiles.tn >= n), 1.0, two)
    return a, b, c


def _classes(dim: int, tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sizes and counts of the full and the remainder tiles of one dimension, shape (2, T)."""
    full = np.floor(dim / tile)
    rem = dim - full * tile
    sizes = np.stack([tile, rem])
    counts = np.stack([full, (rem > 0).astype(float)])
    return sizes, counts


@dataclass(frozen=True)
class TileTotals:
    """Totals over all tiles of the op; arrays of shape (ops, candidates)."""

    n_tiles: np.ndarray  # tile iterations, shape (candidates,)
    trips: tuple[np.ndarray, np.ndarray, np.ndarray]  # tiles along m, n, k, (candidates,)
    compute_cycles: np.ndarray  # sum over tiles of max(array cycles, SRAM-port cycles)
    array_cycles: np.ndarray  # sum over tiles of the fold formula
    sram_array_bytes: np.ndarray  # bytes the array moves to/from SRAM (A, B, psums)
    # Mean cycles a tile saves when it continues the previous tile's stream (same single
    # fold still in the PEs, only the streamed dimension advanced): its fold overhead, less
    # what the SRAM ports would still take. 0 for tiles of more than one fold.
    continue_saving: np.ndarray


def tile_totals(tiles: TileSet, *, m: int, n: int, k: int, rows: int, cols: int,
                density: np.ndarray | float, macs_per_pe: np.ndarray | float,
                a_bits: np.ndarray | float, b_bits: np.ndarray | float, accum_bits: float,
                sram_bytes_per_cycle: float) -> TileTotals:
    """Sum cycles and SRAM traffic over every tile, for every op variant and candidate.

    The op variants share the shape (m, n, k) and differ in ``density``, ``macs_per_pe``,
    ``a_bits`` and ``b_bits`` (1-D arrays of equal length, or scalars for one variant). The
    effective reduction length of a tile with ``tk`` dense entries is
    ``ceil(tk * density / macs_per_pe)``: skipped zeros cost nothing and a PE doing p MACs
    per cycle consumes p reduction entries per cycle.
    """
    def per_op(x: np.ndarray | float) -> np.ndarray:  # (ops, 1, 1, 1, 1) against the tiles
        return np.asarray(x, dtype=float).reshape(-1, 1, 1, 1, 1)

    sm, cm = _classes(m, tiles.tm)
    sn, cn = _classes(n, tiles.tn)
    sk, ck = _classes(k, tiles.tk)
    # Broadcast to (ops, 2, 2, 2, T): op variant, full/remainder class along m, n, k, tile.
    ms, ns, ks = sm[None, :, None, None], sn[None, None, :, None], sk[None, None, None, :]
    count = cm[:, None, None] * cn[None, :, None] * ck[None, None, :]
    keff = np.ceil(ks * per_op(density) / per_op(macs_per_pe) - 1e-9)
    cyc = fold_cycles(tiles.df, ms, ns, keff, rows, cols)
    a_r, b_r, p_w = sram_accesses(tiles.df, ms, ns, ks, keff, rows, cols)
    a_b, b_b = per_op(a_bits), per_op(b_bits)
    tile_bytes = a_r * a_b / 8.0 + b_r * b_b / 8.0 + 2.0 * p_w * accum_bits / 8.0
    sram_cycles = tile_bytes / sram_bytes_per_cycle
    busy = np.maximum(cyc, sram_cycles)
    axes = (1, 2, 3)
    # Whether the full tile (remainders are smaller) holds one fold, (ops, T).
    one_fold = single_fold(tiles.df, tiles.tm, tiles.tn, keff[:, 0, 0, 0, :], rows, cols)
    overhead = fold_overhead_cycles(tiles.df, rows, cols) * one_fold[:, None, None, None, :]
    busy_continued = np.where(cyc > 0, np.maximum(cyc - overhead, sram_cycles), 0.0)
    psum_total = (count * p_w).sum(axis=axes)
    sram_bytes = ((count * (a_r * a_b + b_r * b_b)).sum(axis=axes) / 8.0
                  + (2.0 * psum_total - m * n) * accum_bits / 8.0)
    trips = (cm.sum(0), cn.sum(0), ck.sum(0))
    n_tiles = trips[0] * trips[1] * trips[2]
    compute = (count * busy).sum(axis=axes)
    return TileTotals(n_tiles=n_tiles, trips=trips, compute_cycles=compute,
                      array_cycles=(count * cyc).sum(axis=axes),
                      sram_array_bytes=sram_bytes,
                      continue_saving=(compute - (count * busy_continued).sum(axis=axes))
                      / n_tiles)
