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
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

__all__ = ["LOOP_ORDERS", "MemoryTiming", "memory_timing"]

LOOP_ORDERS: tuple[str, ...] = tuple("".join(p) for p in permutations("mnk"))
_REL = {"A": "mk", "B": "kn", "C": "mn"}


@dataclass(frozen=True)
class MemoryTiming:
    """Arrays of shape (orders, candidates)."""

    dram_bytes: np.ndarray  # bytes read + written
    cycles: np.ndarray  # total cycles including stalls
    a_loads: np.ndarray  # A tile fetches (for reporting reuse)
    b_loads: np.ndarray  # B tile fetches


def _moved(operand: str, changed: dict[str, np.ndarray], never: np.ndarray) -> np.ndarray:
    """Whether ``operand``'s tile changes when the loops in ``changed`` advance."""
    flags = [changed[d] for d in _REL[operand] if d in changed]
    return np.logical_or.reduce(flags) if flags else never


def memory_timing(trips: tuple[np.ndarray, np.ndarray, np.ndarray], a_bytes: float,
                  b_bytes: float, out_bytes: float, psum_bytes: float, compute: np.ndarray,
                  bytes_per_cycle: float, double_buffering: bool) -> MemoryTiming:
    """Traffic and cycles for every loop order and candidate tiling.

    Args:
        trips: number of tiles along m, n, k (arrays over candidates).
        a_bytes, b_bytes: whole-operand sizes as stored (B may be compressed), bytes.
        out_bytes: whole output at output precision, bytes.
        psum_bytes: whole output at accumulator precision, bytes.
        compute: total compute cycles of each candidate (stall-free).
        bytes_per_cycle: DRAM bandwidth in bytes per core cycle.
        double_buffering: whether transfers overlap compute.
    """
    t = {"m": trips[0], "n": trips[1], "k": trips[2]}
    n_iter = t["m"] * t["n"] * t["k"]
    tiles_of = {x: t[rel[0]] * t[rel[1]] for x, rel in _REL.items()}
    a_tile = a_bytes / tiles_of["A"]
    b_tile = b_bytes / tiles_of["B"]
    c_avg = compute / n_iter

    out_rows = []
    for order in LOOP_ORDERS:
        l1, l2, l3 = tuple(order)
        t1, t2, t3 = t[l1], t[l2], t[l3]
        counts = (t1 * t2 * (t3 - 1), t1 * (t2 - 1), t1 - 1)
        # Which loops change index in each class (a loop with one trip never changes).
        changed = (
            {l3: np.ones_like(t3, dtype=bool)},
            {l2: np.ones_like(t2, dtype=bool), l3: t3 > 1},
            {l1: np.ones_like(t1, dtype=bool), l2: t2 > 1, l3: t3 > 1},
        )

        never = np.zeros_like(t1, dtype=bool)
        loaded = {x: [_moved(x, cls, never) for cls in changed] for x in _REL}
        a_loads = 1 + sum(c * f for c, f in zip(counts, loaded["A"]))
        b_loads = 1 + sum(c * f for c, f in zip(counts, loaded["B"]))
        out_changes = sum(c * f for c, f in zip(counts, loaded["C"]))
        visits = out_changes + 1
        finals = tiles_of["C"]
        spills = visits - finals  # visits that end in a partial-sum write (and later reload)
        store_total = out_bytes + spills * psum_bytes / finals
        psum_load_total = spills * psum_bytes / finals
        avg_store = store_total / visits
        avg_reload = np.divide(psum_load_total, out_changes, out=np.zeros_like(psum_load_total),
                               where=out_changes > 0)
        per_class = [loaded["A"][i] * a_tile + loaded["B"][i] * b_tile
                     + loaded["C"][i] * (avg_store + avg_reload) for i in range(3)]
        first = a_tile + b_tile
        dram = first + sum(c * x for c, x in zip(counts, per_class)) + avg_store
        if double_buffering:
            cycles = (first / bytes_per_cycle
                      + sum(c * np.maximum(c_avg, x / bytes_per_cycle)
                            for c, x in zip(counts, per_class))
                      + c_avg + avg_store / bytes_per_cycle)
        else:
            cycles = dram / bytes_per_cycle + compute
        out_rows.append((dram, cycles, a_loads, b_loads))
    stacked = [np.stack(col) for col in zip(*out_rows)]
    return MemoryTiming(*stacked)
