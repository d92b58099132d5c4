"""Cost of the vector rows of a trace (norms, softmax, activations, residuals, loss, optimizer).

A vector row (docs/trace.md, format 2) does ``elements`` operations of one class and moves
``read_bytes`` in and ``write_bytes`` out, ``count`` times. It runs on the hardware's vector
unit (``sim.config.Vector``), after the op before it and before the next, as products do.
Per repeat, with ``L`` lanes, ``r`` elements per lane per cycle of the row's class and ``bw``
DRAM bytes per cycle::

    compute = elements / (L x r)
    dram    = read_bytes + write_bytes - fused          (compulsory: nothing is read twice)
    cycles  = compute + dram / bw                       (no double buffering)
    cycles  = R/bw + (n - 1) max(c, (R + W)/bw) + c + W/bw   (double buffering)

where the op streams in ``n = ceil(elements / L)`` chunks (one vector of ``L`` elements each,
``c = compute / n``, ``R`` and ``W`` the DRAM bytes read and written per chunk): the chunk after
the current one loads, and the one before it stores, while it computes; the first load and the
last store do not overlap. Both forms are ``>= max(compute, dram / bw)``, the row's roofline,
so a vector op is never faster than its bound (the same rule as ``sim.memory`` for products).

On-chip rule: operands always come from DRAM and results go back to it. The product model
writes every product's output to DRAM and reads every operand from it, so no tensor is on chip
between two ops; a vector op could keep its input on chip only if its producer had, which is
what fusion models: with ``vector.fusion: elementwise`` a ``fusable`` row reads the output of
the product before it from the array's output buffer, so ``fused = min(read_bytes, that
product's output bytes / count)`` leaves DRAM traffic (the product still writes its output,
which backward may need).

Energy per repeat: ``elements x pJ[class]`` plus SRAM bytes (the lanes read and write every
operand byte; DRAM fills and drains pass through SRAM too), DRAM bytes and static power over
the cycles (``sim.energy``). Rates and energy per element do not depend on the row's bits:
its bytes already carry them.

A torch op that gives several rows (a softmax: reduce, exp, reduce, divide) carries its bytes
on its first row, so that row is charged the transfer and the others compute only; the rows
run one after another, as every op does here, so the op's compute and transfer do not overlap
across its rows (an upper bound on a fused kernel's time).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from sim.config import HwConfig, VectorFusion
from sim.cost import OpCost, cost_columns
from sim.energy import energy_j

__all__ = ["preceding_product_bytes", "vector_costs"]


def preceding_product_bytes(ops: pd.DataFrame) -> np.ndarray:
    """Output bytes (all repeats) of the nearest matmul row before each row; 0 if none.

    A product's output is ``M x N`` elements at ``a_bits``, ``count`` times (docs/trace.md).
    """
    is_matmul = ops["kind"].to_numpy() == "matmul"
    out_bytes = (ops["M"].to_numpy(dtype=float) * ops["N"].to_numpy(dtype=float)
                 * ops["a_bits"].to_numpy(dtype=float) / 8.0 * ops["count"].to_numpy(dtype=float))
    idx = np.where(is_matmul, np.arange(len(ops)), -1)
    # The row itself is not "before" it: shift by one.
    last = np.concatenate([[-1], np.maximum.accumulate(idx)[:-1]]) if len(ops) else idx
    return np.where(last >= 0, out_bytes[np.maximum(last, 0)], 0.0)


def _per_class(hw: HwConfig, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(elements per cycle of the whole unit, pJ per element) for each row's class."""
    rates = hw.vector.elements_per_cycle.model_dump()
    pj = hw.vector_pj_per_element
    per_cycle = np.array([rates[c] for c in classes], dtype=float) * hw.vector_lanes
    return per_cycle, np.array([pj[c] for c in classes], dtype=float)


def _cycles(hw: HwConfig, compute: np.ndarray, read: np.ndarray, write: np.ndarray,
            chunks: np.ndarray) -> np.ndarray:
    """Cycles per repeat (module docstring); arrays over rows, bytes are DRAM bytes."""
    bw = hw.dram_bytes_per_cycle
    if not hw.sram.double_buffering:
        return np.asarray(compute + (read + write) / bw)
    c, r, w = compute / chunks, read / chunks, write / chunks
    return np.asarray(r / bw + (chunks - 1) * np.maximum(c, (r + w) / bw) + c + w / bw)


def vector_costs(hw: HwConfig, ops: pd.DataFrame) -> pd.DataFrame:
    """Cost of every vector row of a validated ops table (``sim.trace.validate_ops``).

    Returns one row per vector row of ``ops`` (same index): the ``OpCost`` columns as totals
    over the row's ``count`` repeats, plus ``utilization`` (of the vector unit),
    ``roofline_ratio``, ``bound``, and the product-only columns (``dataflow``, ``loop_order``
    empty, ``tile_*`` 0).
    """
    vec = ops["kind"].to_numpy() == "vector"
    rows = ops[vec]
    count = rows["count"].to_numpy(dtype=float)
    elements = rows["elements"].to_numpy(dtype=float)
    read = rows["read_bytes"].to_numpy(dtype=float)
    write = rows["write_bytes"].to_numpy(dtype=float)
    per_cycle, pj = _per_class(hw, rows["vector_class"].to_numpy())

    fused = np.zeros_like(read)
    if hw.vector.fusion is VectorFusion.elementwise:
        product = preceding_product_bytes(ops)[vec] / count
        fused = np.where(rows["fusable"].to_numpy(dtype=bool), np.minimum(read, product), 0.0)
    dram_read = read - fused
    dram = dram_read + write
    compute = elements / per_cycle
    chunks = np.maximum(np.ceil(elements / hw.vector_lanes), 1.0)
    cycles = _cycles(hw, compute, dram_read, write, chunks)
    memory_roof = dram / hw.dram_bytes_per_cycle
    roof = np.maximum(compute, memory_roof)
    sram = read + write + dram
    energy = energy_j(hw, macs_effective=0.0, cycles_per_mac=1.0, sram_bytes=sram,
                      dram_bytes=dram, cycles=cycles) + elements * pj * 1e-12
    one = {
        "cycles": cycles, "compute_cycles": compute, "stall_cycles": cycles - compute,
        "dram_bytes": dram, "compulsory_bytes": dram, "sram_access_bytes": sram,
        "energy_j": energy, "roofline_cycles": roof, "compute_roof_cycles": compute,
        "memory_roof_cycles": memory_roof, "vector_elements": elements, "fused_bytes": fused,
    }
    zero = np.zeros(len(rows))
    # A cost field the vector unit does not produce (MACs, a new metric) is 0 per repeat.
    table = pd.DataFrame({c: one.get(c, OpCost().as_dict()[c] + zero) * count
                          for c in cost_columns()}, index=rows.index)
    busy = cycles > 0
    table["utilization"] = np.divide(compute, cycles, out=zero.copy(), where=busy)
    table["roofline_ratio"] = np.divide(cycles, roof, out=np.ones(len(rows)), where=roof > 0)
    table["bound"] = np.where(compute >= memory_roof, "compute", "memory")
    table["dataflow"] = None
    table["loop_order"] = None
    for col in ("tile_m", "tile_n", "tile_k"):
        table[col] = 0
    return table
