"""DRAM traffic of a tiled op per loop order, and its overlap with compute.

The tile loops over (m, n, k) run in one of six orders. With one tile of each operand on chip
(two with double buffering), an operand tile is fetched again whenever a loop it depends on
advances: A depends on (m, k), B on (k, n), the output on (m, n). When the k loop sits outside
an output loop that iterates, partial sums leave for DRAM at ``accum_bits`` and come back.

Iterations fall into three classes by which loop advanced (innermost only; middle with the
inner one resetting; outer with both resetting), so the bytes moved per iteration of each class
are known in closed form. With double buffering the transfer for iteration i+1 (and the
write-back of i-1) overlaps the compute of iteration i::

    cycles = first_load/bw + sum_classes count * max(c, bytes_class/bw) + c + last_store/bw

where ``c`` is the mean compute cycles per tile. Without double buffering nothing overlaps:
``cycles = dram_bytes/bw + compute``. Both are >= max(compute, dram_bytes/bw), so an op can
never beat its roofline.

The loop order also decides compute: a tile that only advances the dataflow's streamed
dimension (every loop inside it has one trip) continues the previous tile's stream when a tile
holds one fold, and saves that fold's preload and skew (``sim.tiling.TileTotals.continue_saving``).
So the stationary operand stays in the PEs exactly when the streamed dimension's loop is the
innermost one that iterates; any other order reloads it for every tile.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

__all__ = ["LOOP_ORDERS", "MemoryTiming", "continued_tiles", "memory_timing"]

LOOP_ORDERS: tuple[str, ...] = tuple("".join(p) for p in permutations("mnk"))
_REL = {"A": "mk", "B": "kn", "C": "mn"}


@dataclass(frozen=True)
class MemoryTiming:
    """Arrays of shape (orders, ops, candidates)."""

    dram_bytes: np.ndarray  # bytes read + written
    cycles: np.ndarray  # total cycles including stalls
    compute_cycles: np.ndarray  # stall-free compute under each loop order
    a_loads: np.ndarray  # A tile fetches (for reporting reuse)
    b_loads: np.ndarray  # B tile fetches
    a_bytes: np.ndarray  # DRAM bytes of A (reads)
    b_bytes: np.ndarray  # DRAM bytes of B (reads)
    out_bytes: np.ndarray  # DRAM bytes of the output: writes plus partial-sum spills and reloads


# Loop orders as index arrays: _PERM[o] lists the dims (0 m, 1 n, 2 k) from outer to inner;
# _RELEVANT[x][o, p] says whether operand x depends on the loop at position p of order o.
_PERM = np.array([["mnk".index(d) for d in order] for order in LOOP_ORDERS])
_RELEVANT = {x: np.array([[d in rel for d in order] for order in LOOP_ORDERS])
             for x, rel in _REL.items()}


def _loaded(operand: str, more2: np.ndarray, more3: np.ndarray) -> np.ndarray:
    """Whether ``operand``'s tile changes in each iteration class, (3, orders, 1, tiles).

    Classes: the inner loop advanced; the middle one advanced (the inner one resets, which
    changes its index only if it has more than one trip); the outer one advanced.
    """
    rel = _RELEVANT[operand]
    r1, r2, r3 = (rel[:, p, None, None] for p in range(3))
    inner = np.broadcast_to(r3, more3.shape)
    middle = r2 | (r3 & more3)
    outer = r1 | (r2 & more2) | (r3 & more3)
    return np.stack([inner, middle, outer])


def continued_tiles(trips: tuple[np.ndarray, np.ndarray, np.ndarray],
                    streamed_dim: np.ndarray) -> np.ndarray:
    """Tiles that continue the previous tile's stream, per loop order: (orders, T).

    A tile continues when the loop that advanced is the streamed dimension's and every loop
    inside it has a single trip (so the stationary tile did not change).

    Args:
        trips: tiles along m, n, k, each shape (T,).
        streamed_dim: per candidate, the streamed dimension (0 m, 1 n, 2 k), shape (T,).
    """
    t = np.stack([np.asarray(x, dtype=float) for x in trips])[_PERM]  # (orders, 3, T)
    dims = _PERM[:, :, None]  # (orders, 3, 1): dim at each position, outer to inner
    total = np.zeros((len(LOOP_ORDERS), t.shape[-1]))
    for p in range(3):  # the loop at position p advanced
        inner_single = np.prod(t[:, p + 1:, :] == 1, axis=1).astype(bool)
        advances = np.prod(t[:, :p, :], axis=1) * (t[:, p, :] - 1)
        total += np.where((dims[:, p, :] == streamed_dim) & inner_single, advances, 0.0)
    return total


def _pipelined_cycles(*, first: np.ndarray, counts: np.ndarray, per_class: np.ndarray,
                      c_avg: np.ndarray, last_store: np.ndarray,
                      bytes_per_cycle: float) -> np.ndarray:
    """Cycles with double buffering: the first tile's load, then per tile the longer of its
    compute and the next transfer, then the last compute and the last store."""
    overlap = np.maximum(c_avg, per_class / bytes_per_cycle)
    return np.asarray(first / bytes_per_cycle + (counts * overlap).sum(axis=0) + c_avg
                      + last_store / bytes_per_cycle)


def memory_timing(trips: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                  a_bytes: float | np.ndarray, b_bytes: float | np.ndarray,
                  out_bytes: float | np.ndarray, psum_bytes: float | np.ndarray,
                  compute: np.ndarray, bytes_per_cycle: float, double_buffering: bool,
                  continued: np.ndarray | None = None, continue_saving: np.ndarray | None = None
                  ) -> MemoryTiming:
    """Traffic and cycles for every loop order and candidate tiling.

    Args:
        trips: number of tiles along m, n, k (arrays over candidates, shape (T,)).
        a_bytes, b_bytes: whole-operand sizes as stored (B may be compressed), bytes; a scalar
            or one value per op variant, shape (ops, 1).
        out_bytes: whole output at output precision, bytes (scalar or (ops, 1)).
        psum_bytes: whole output at accumulator precision, bytes (scalar or (ops, 1)).
        compute: total compute cycles (stall-free), shape (ops, T) or (T,), with every tile
            paying its full fold overhead.
        bytes_per_cycle: DRAM bandwidth in bytes per core cycle.
        double_buffering: whether transfers overlap compute.
        continued: tiles that continue the previous stream per order, (orders, T)
            (``continued_tiles``); None for none.
        continue_saving: cycles one such tile saves, (ops, T) (``TileTotals``).
    """
    tm, tn, tk = (np.asarray(x, dtype=float) for x in trips)
    n_iter, out_tiles = tm * tn * tk, tm * tn
    a_tile, b_tile = a_bytes / (tm * tk), b_bytes / (tk * tn)
    if continued is not None and continue_saving is not None:
        compute = compute - continued[:, None, :] * continue_saving
    else:
        compute = np.broadcast_to(compute, (len(LOOP_ORDERS), *np.shape(compute)))
    c_avg = compute / n_iter

    t = np.stack([tm, tn, tk])[_PERM]  # (orders, 3, T): trips from outer to inner
    t1, t2, t3 = (t[:, p, None, :] for p in range(3))  # (orders, 1, T): against (ops, T)
    counts = np.stack([t1 * t2 * (t3 - 1), t1 * (t2 - 1), t1 - 1])  # (classes, orders, 1, T)
    more2, more3 = t2 > 1, t3 > 1
    load_a, load_b, load_c = (_loaded(x, more2, more3) for x in ("A", "B", "C"))

    a_loads = 1 + (counts * load_a).sum(axis=0)
    b_loads = 1 + (counts * load_b).sum(axis=0)
    a_moved = a_loads * a_tile
    b_moved = b_loads * b_tile
    out_changes = (counts * load_c).sum(axis=0)
    visits = out_changes + 1
    spills = visits - out_tiles  # visits that end in a partial-sum write (and later reload)
    psum_moved = spills * psum_bytes / out_tiles
    avg_store = (out_bytes + psum_moved) / visits
    avg_reload = np.divide(psum_moved, out_changes, out=np.zeros_like(psum_moved),
                           where=out_changes > 0)
    per_class = load_a * a_tile + load_b * b_tile + load_c * (avg_store + avg_reload)
    first = a_tile + b_tile
    dram = first + (counts * per_class).sum(axis=0) + avg_store
    if double_buffering:
        cycles = _pipelined_cycles(first=first, counts=counts, per_class=per_class, c_avg=c_avg,
                                   last_store=avg_store, bytes_per_cycle=bytes_per_cycle)
    else:
        cycles = dram / bytes_per_cycle + np.broadcast_to(compute, dram.shape)
    return MemoryTiming(dram_bytes=dram, cycles=cycles, compute_cycles=compute, a_loads=a_loads,
                        b_loads=b_loads, a_bytes=a_moved, b_bytes=b_moved,
                        out_bytes=dram - a_moved - b_moved)
