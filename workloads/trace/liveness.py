"""When each tensor of the recorded step lives: its storage's first and last op row.

The tensor table's ``first_op`` / ``last_op`` (docs/trace.md) come from here. Every storage an
operator of the step creates is seen by the vector recorder's dispatch mode (``created``), and
torch keeps one Python object per storage, so a ``weakref.finalize`` on that object fires exactly
when the allocator gets the memory back. A storage is live from the row of the operator that
created it to the last row recorded before it was freed: saved activations die as backward
releases the node that saved them, activation gradients as soon as the next node has consumed
them, the head's logits chunk when its loss gradient is formed.

Storages the step claims as something else (saved activations, the adapters' gradients) become
rows of that kind; the rest become ``temporary`` (created in forward or update) and
``activation_grad`` (created in backward) rows, merged when they share kind, site and interval.
Storages made and freed between two rows (inside one torch operator, e.g. the activation
codec's quantization) did not all live at once: per gap between rows, one row charges the most
of them alive together (in allocation and free order) to the row after the gap.
Memory an operator's kernel allocates internally (below the dispatcher) is not seen.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["Lifetime", "StorageClock"]


@dataclass
class Lifetime:
    """One storage: the raw row index at its creation and after its free (``None``: alive)."""

    first: int
    nbytes: int
    element_bits: int
    is_float: bool
    phase: str
    module: str
    layer: int
    last: int | None = None
    claimed: bool = False


@dataclass
class StorageClock:
    """Watches storages against the growing list of recorded rows (``len(rows)`` is now).

    ``site()`` names where work runs now (``(module, layer)``) and ``phase()`` the step's phase;
    ``skip`` holds storage pointers never to watch (parameters).
    """

    rows: list[Any]
    site: Callable[[], tuple[str, int]]
    phase: Callable[[], str]
    skip: set[int] = field(default_factory=set)
    lifetimes: list[Lifetime] = field(default_factory=list)
    _live: dict[int, int] = field(default_factory=dict)  # storage pointer -> lifetime index
    _events: list[tuple[int, int]] = field(default_factory=list)  # (lifetime index, +1 made / -1 freed)
    enabled: bool = True

    def created(self, tensors: Iterable[Any]) -> None:
        """Watch the storage of every tensor an operator returned, unless already watched."""
        if not self.enabled:
            return
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.layout == torch.strided and t.device.type != "meta":
                self.watch(t)

    def watch(self, tensor: torch.Tensor) -> int | None:
        """The lifetime index of ``tensor``'s storage, watching it from now if it is new
        (``None`` for an empty storage or a skipped one)."""
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or storage.nbytes() == 0 or ptr in self.skip:
            return None
        index = self._live.get(ptr)
        if index is not None:
            return index
        module, layer = self.site()
        index = len(self.lifetimes)
        self.lifetimes.append(Lifetime(first=len(self.rows), nbytes=storage.nbytes(),
                                       element_bits=8 * tensor.element_size(),
                                       is_float=tensor.is_floating_point(), phase=self.phase(),
                                       module=module, layer=layer))
        self._live[ptr] = index
        self._events.append((index, 1))
        weakref.finalize(storage, self._freed, ptr, index)
        return index

    def _freed(self, ptr: int, index: int) -> None:
        self.lifetimes[index].last = len(self.rows) - 1
        self._events.append((index, -1))
        if self._live.get(ptr) == index:
            del self._live[ptr]

    def claim(self, tensor: torch.Tensor) -> Lifetime | None:
        """Mark ``tensor``'s storage as listed elsewhere (not a temporary) and return its
        lifetime (watched from now if it was not yet)."""
        index = self.watch(tensor)
        if index is None:
            return None
        self.lifetimes[index].claimed = True
        return self.lifetimes[index]

    def temporaries(self, *, a_bits: int, update_bits: int) -> list[dict[str, Any]]:
        """Tensor-table rows of the unclaimed storages (raw row indices; ``last_op`` None while
        alive): ``activation_grad`` when created in backward, ``temporary`` otherwise; floating
        ones at the device bits of their phase (``a_bits``, ``update_bits`` in the update; never
        above the host's), integer ones at their own width. Equal (kind, site, interval) merge."""
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        within = {i for i, life in enumerate(self.lifetimes)
                  if not life.claimed and life.last is not None and life.last < life.first}
        for i, life in enumerate(self.lifetimes):
            if life.claimed or i in within:
                continue
            kind = "activation_grad" if life.phase == "bwd_input" else "temporary"
            numel = life.nbytes * 8 // life.element_bits
            bits = self._device_bits(life, a_bits=a_bits, update_bits=update_bits)
            key = (kind, life.module, life.layer, life.first, life.last, bits)
            row = merged.get(key)
            if row is None:
                merged[key] = {"name": f"{life.module}.{kind}", "kind": kind, "layer": life.layer,
                               "numel": numel, "bits": bits, "bytes": math.ceil(numel * bits / 8),
                               "first_op": life.first, "last_op": life.last}
            else:
                row["numel"] += numel
                row["bytes"] = math.ceil(row["numel"] * bits / 8)
        return list(merged.values()) + self._within_rows(within, a_bits=a_bits, update_bits=update_bits)

    @staticmethod
    def _device_bits(life: Lifetime, *, a_bits: int, update_bits: int) -> int:
        device = update_bits if life.phase == "update" else a_bits
        return min(device, life.element_bits) if life.is_float else life.element_bits

    def _within_rows(self, within: set[int], *, a_bits: int, update_bits: int) -> list[dict[str, Any]]:
        """One row per gap between rows: the most device bytes of the storages made and freed
        inside it that were alive at once (events in order), charged to the row after the gap."""
        live: dict[int, int] = {}  # gap (raw row index) -> device bytes alive now
        peak: dict[int, int] = {}
        where: dict[int, Lifetime] = {}  # gap -> its first such storage, for the row's name
        for index, sign in self._events:
            if index not in within:
                continue
            life = self.lifetimes[index]
            bits = self._device_bits(life, a_bits=a_bits, update_bits=update_bits)
            size = math.ceil(life.nbytes * 8 // life.element_bits * bits / 8)
            gap = life.first
            where.setdefault(gap, life)
            live[gap] = live.get(gap, 0) + sign * size
            peak[gap] = max(peak.get(gap, 0), live[gap])
        return [{"name": f"{where[gap].module}.within_op", "kind": "temporary",
                 "layer": where[gap].layer, "numel": size, "bits": 8, "bytes": size,
                 "first_op": gap, "last_op": gap} for gap, size in peak.items()]
