"""Peak device memory of a step: the liveness timeline of the trace's tensor table.

Each tensor-table row lives from ops row ``first_op`` to ops row ``last_op`` (inclusive,
docs/trace.md): weights, adapters and optimizer state for the whole step; saved activations
from the forward op that made them until backward has released them; activation gradients,
the head's logits chunk and other temporaries for the few ops that use them; the adapters'
gradients from backward to the update. The live bytes at ops row ``i`` are

    live[i] = sum(bytes[t] for t if first_op[t] <= i <= last_op[t])

and the peak is ``max(live)``. A table without ``first_op`` / ``last_op`` (format 1, or a
table written by hand) keeps every tensor live for the whole step, so its peak is the sum.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.config import HwConfig

__all__ = ["Footprint", "footprint", "live_bytes"]


@dataclass(frozen=True)
class Footprint:
    """Memory live during the step (from the trace's tensor table) against DRAM capacity.

    Attributes:
        peak_memory_bytes: the most bytes live at once over the step.
        capacity_bytes: the device's DRAM capacity, bytes.
        by_kind: bytes per tensor ``kind`` live at the peak (they add up to the peak).
        peak_op: ops row at which the peak is first reached (None without lifetimes).
        all_tensors_bytes: the sum of the whole table (what the peak would be if every tensor
            lived for the whole step).
    """

    peak_memory_bytes: int
    capacity_bytes: int
    by_kind: dict[str, int] = field(default_factory=dict)
    peak_op: int | None = None
    all_tensors_bytes: int | None = None

    @property
    def fits(self) -> bool:
        """Whether the step's tensors fit in DRAM."""
        return self.peak_memory_bytes <= self.capacity_bytes


def live_bytes(tensors: pd.DataFrame, n_ops: int | None = None) -> np.ndarray:
    """Bytes live during each ops row, shape (n_ops,), float64.

    Args:
        tensors: tensor table with ``bytes``, ``first_op`` and ``last_op`` (validated:
            ``0 <= first_op <= last_op``).
        n_ops: rows of the ops table (default: the largest ``last_op`` + 1).
    """
    first = tensors["first_op"].to_numpy(dtype=np.int64)
    last = tensors["last_op"].to_numpy(dtype=np.int64)
    size = tensors["bytes"].to_numpy(dtype=np.float64)
    n = int(last.max()) + 1 if n_ops is None and len(last) else int(n_ops or 0)
    change = np.zeros(n + 1)
    np.add.at(change, first, size)
    np.add.at(change, last + 1, -size)
    return np.cumsum(change)[:n]


def footprint(tensors: pd.DataFrame, hw: HwConfig) -> Footprint:
    """Peak memory of a step from its tensor table (module docstring)."""
    total = int(tensors["bytes"].sum())
    if "first_op" not in tensors.columns or tensors.empty:
        by_kind = {str(k): int(v) for k, v in tensors.groupby("kind")["bytes"].sum().items()}
        return Footprint(peak_memory_bytes=total, capacity_bytes=hw.dram.capacity_bytes,
                         by_kind=by_kind, all_tensors_bytes=total)
    live = live_bytes(tensors)
    peak_op = int(np.argmax(live))
    at_peak = tensors[(tensors["first_op"] <= peak_op) & (tensors["last_op"] >= peak_op)]
    by_kind = {str(k): int(v) for k, v in at_peak.groupby("kind")["bytes"].sum().items()}
    return Footprint(peak_memory_bytes=int(at_peak["bytes"].sum()),
                     capacity_bytes=hw.dram.capacity_bytes, by_kind=by_kind, peak_op=peak_op,
                     all_tensors_bytes=total)
