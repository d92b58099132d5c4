"""Recording the step's non-matrix work from the real torch run (docs/trace.md, ``vector`` rows).

A ``TorchDispatchMode`` sees every aten operator the step executes: forward, backward and
optimizer. Products, views and allocations are skipped (products are rows of their own); every
other operator becomes vector rows through ``vector_ops``, in execution order, at device bits.

Attribution:

- forward: the innermost running module (the recorder's module stack), or the exit head whose
  code is running (``head.running_exit``);
- backward: the autograd node torch is executing (``torch._C._current_autograd_node``) is mapped
  to the module that created it in forward, through its sequence number (the counter autograd
  bumps for every node it creates; torch's own compiler links forward and backward the same
  way, ``torch/fx/proxy.py``);
- update: the region the recorder names (``grad_clip``, ``adamw``) and the layer of the
  parameter being updated.

Work done while recording is paused (the attention function, whose fused kernel is recorded from
its shapes; the activation codec, recorded from its rule) is left out, in forward and in the
backward of the nodes created meanwhile.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from workloads.trace.vector_ops import (
    NO_WORK,
    PRODUCTS,
    Passes,
    op_work,
    product_macs,
    tensor_bytes,
    vector_rows,
)

__all__ = ["MAX_ROW_BITS", "PACK", "Site", "UNPACK", "VectorRecorder"]

PACK: Passes = (("reduce", 1), ("rsqrt", 1), ("move", 1))  # group absmax, divide by the scale, round and pack
UNPACK: Passes = (("add", 1),)  # multiply by the group's scale
MAX_ROW_BITS = 32  # the contract's range of w_bits / a_bits; an int64-only op's bytes carry its width


@dataclass(frozen=True)
class Site:
    """Where vector work ran: the trace's ``module`` label and decoder ``layer``; ``phase``
    overrides the recorder's (the head forms its loss gradient inside the forward pass)."""

    module: str
    layer: int
    phase: str | None = None
    floats_only: bool = False  # integer and boolean work here is index bookkeeping, not recorded


_UNMAPPED = Site("autograd", -1)  # a node no forward operator created (gradient accumulation)


def _storage(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


class VectorRecorder(TorchDispatchMode):
    """Appends vector rows (``vector_ops.vector_rows``) to ``rows`` for every operator torch
    dispatches while the mode is active.

    ``site()`` names the forward site (``None``: not device work of the step, left out);
    ``a_bits`` are the device bits of floating tensors in forward and backward, ``update_bits``
    of the optimizer's floating temporaries; ``fixed_bits`` (storage pointer -> bits) overrides
    both for parameters, gradients and optimizer state. Set ``phase`` to ``fwd``,
    ``bwd_input`` or ``update`` as the step proceeds. ``created`` is called with the outputs
    of every operator that allocates (not views, not in-place or ``out=`` operators), paused or
    not: the storage clock of ``workloads.trace.liveness``.
    """

    def __init__(self, *, rows: list[dict[str, Any]], site: Callable[[], Site | None], a_bits: int,
                 update_bits: int, fixed_bits: dict[int, int],
                 created: Callable[[Iterable[Any]], None] | None = None) -> None:
        super().__init__()
        self.rows = rows
        self._created = created
        self.phase = "fwd"
        self.unclassified: set[str] = set()
        self._site = site
        self.a_bits = a_bits
        self._update_bits = update_bits
        self._fixed_bits = fixed_bits
        self._nodes: dict[int, Site | None] = {}
        self._next_seq = torch.autograd._get_sequence_nr()
        self._paused = 0
        self._muted = 0
        self._hidden: set[int] = set()
        self._last_product: set[int] = set()
        self._region = "update"
        self._update_layers: dict[int, int] = {}
        self._update_layer = -1
        self.product_macs = 0  # MACs of the products torch ran outside paused blocks
        self.unknown_products: set[str] = set()  # product kernels whose MACs cannot be read off

    @contextmanager
    def paused(self, *, hide_nodes: bool = True) -> Iterator[None]:
        """Run a block without recording its operators. ``hide_nodes``: the backward of the
        autograd nodes the block creates is left out too (a fused kernel recorded from its
        shapes); without it the block's operators are invisible altogether (host work inside
        another operator, such as the codec packing what that operator saves)."""
        if hide_nodes:
            self._paused += 1
        else:
            self._muted += 1
        try:
            yield
        finally:
            if hide_nodes:
                self._paused -= 1
            else:
                self._muted -= 1

    @contextmanager
    def region(self, module: str) -> Iterator[None]:
        """Name the ``update`` work of a block (``grad_clip``, ``adamw``)."""
        previous, self._region = self._region, module
        try:
            yield
        finally:
            self._region = previous

    def track(self, tensors: Iterable[tuple[torch.Tensor, int, int]]) -> None:
        """Register (tensor, device bits, layer) of parameters, gradients and optimizer state."""
        for t, bits, layer in tensors:
            self._fixed_bits[_storage(t)] = bits
            self._update_layers[_storage(t)] = layer

    def current_site(self) -> Site | None:
        """The site of the work running now (``None``: not recorded)."""
        if self._muted:
            return None  # invisible: leaves the node map to the operator it runs inside
        if self.phase == "fwd":
            site = self._site()
            self._map_new_nodes(site)
            return None if self._paused else site
        if self.phase == "update":
            return Site(self._region, self._update_layer)
        seq = self._running_node()
        return None if seq is None or seq in self._hidden else self._nodes.get(seq, _UNMAPPED)

    def _map_new_nodes(self, site: Site | None) -> None:
        """Give the autograd nodes created since the last operator this forward site (their
        backward runs in the backward phase, whatever phase the forward site names)."""
        peek = torch.autograd._get_sequence_nr()
        node_site = site if site is None or site.phase is None else Site(site.module, site.layer)
        for seq in range(self._next_seq, peek):
            self._nodes[seq] = node_site
            if self._paused:
                self._hidden.add(seq)
        self._next_seq = peek

    @staticmethod
    def _running_node() -> int | None:
        node = torch._C._current_autograd_node()
        return None if node is None else node._sequence_nr()

    def add_derived(self, *, site: Site, passes: Passes, elements: int, read_bytes: int, write_bytes: int,
                    count: int = 1, fusable: bool = False) -> None:
        """Rows of work recorded from shapes, not from dispatched operators (the fused
        attention's softmax, the activation codec)."""
        self.rows.extend(vector_rows(
            layer=site.layer, module=site.module, phase=self.phase, passes=passes, elements=elements,
            read_bytes=read_bytes, write_bytes=write_bytes, bits=self.a_bits, count=count,
            fusable=fusable and self._follows_product(elements, count)))

    def _follows_product(self, elements: int, count: int) -> bool:
        """Whether the last row is the product whose whole output an op of ``elements`` values
        (``count`` repeats) reads: the contract's promise for ``fusable`` (docs/trace.md)."""
        last = self.rows[-1] if self.rows else None
        return (last is not None and last["kind"] == "matmul" and last["M"] * last["N"] == elements
                and last["count"] == count)

    def add_packing(self, numel: int, stored_bytes: int, *, unpack: bool) -> None:
        """One storage of ``numel`` values packed (forward) or unpacked (backward) by the codec."""
        if self.phase == "fwd":
            site = self._site()
        else:  # the node unpacking it, even inside a fused kernel recorded from its shapes
            seq = self._running_node()
            site = self._nodes.get(seq) if seq is not None else None
        layer = site.layer if site is not None else -1
        floats = tensor_bytes(numel, self.a_bits)
        self.add_derived(site=Site("act_unpack" if unpack else "act_pack", layer), passes=UNPACK if unpack else PACK,
                         elements=numel, read_bytes=stored_bytes if unpack else floats,
                         write_bytes=floats if unpack else stored_bytes)

    def bits(self, t: torch.Tensor) -> int:
        """Device bits of one element of ``t``."""
        if not t.is_floating_point():
            return t.element_size() * 8
        fixed = self._fixed_bits.get(_storage(t))
        if fixed is not None:
            return fixed
        return self._update_bits if self.phase == "update" else self.a_bits

    def __torch_dispatch__(self, func: torch._ops.OpOverload, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self._created is not None and not func.is_view and not func._schema.is_mutable:
            self._created(tree_leaves(out))
        site = self.current_site()
        name = func.overloadpacket.__name__
        if self._paused or self._muted or func.is_view or name in NO_WORK:
            return out
        if name in PRODUCTS:
            self._last_product = {_storage(t) for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
            if not self._hidden_backward():
                self._count_product(name, args)
        elif site is not None:
            self._record(func, args, kwargs, out, site)
        return out

    def _hidden_backward(self) -> bool:
        """Whether a backward node created in a paused block (a fused kernel) is running."""
        if self.phase != "bwd_input":
            return False
        seq = self._running_node()
        return seq is not None and seq in self._hidden

    def _count_product(self, name: str, args: tuple[Any, ...]) -> None:
        """Add the MACs of one product kernel to ``product_macs`` (the recorder checks them
        against its product rows). A ``K = 1`` product is an outer product, elementwise work
        (the rotary tables' ``inv_freq x positions``), and not a product row."""
        macs = product_macs(name, args)
        if macs is None:
            self.unknown_products.add(name)
        else:
            self.product_macs += macs

    def _record(self, func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any,
                site: Site) -> None:
        work = op_work(func, args, kwargs, out)
        touched = work.read + work.written + tuple(src for src, _ in work.gathered)
        if all(t.dim() == 0 for t in touched):
            return  # host bookkeeping on scalars: the loss value, the step counter, the clip coefficient
        if site.floats_only and not any(t.is_floating_point() for t in touched):
            return  # position ids and masks the decoder's own code prepares (a host decision)
        if not work.known:
            self.unclassified.add(func.overloadpacket.__name__)
        fused = [t for t in work.read if _storage(t) in self._last_product and t.numel() == work.elements]
        fused = fused if self._follows_product(work.elements, 1) else []
        self._last_product = set()
        if self.phase == "update":
            site = Site(self._region, self._update_layer_of(func, touched))
        operands = [src for src, _ in work.gathered] + list(work.read) + list(work.written)
        main = fused[0] if fused else next((t for t in operands if t.is_floating_point()), operands[0])
        read = sum(tensor_bytes(t.numel(), self.bits(t)) for t in work.read)
        read += sum(tensor_bytes(n, self.bits(src)) for src, n in work.gathered)
        write = sum(tensor_bytes(t.numel(), self.bits(t)) for t in work.written)
        self.rows.extend(vector_rows(
            layer=site.layer, module=site.module, phase=site.phase or self.phase, passes=work.passes,
            elements=work.elements,
            read_bytes=read, write_bytes=write, bits=min(self.bits(main), MAX_ROW_BITS), fusable=bool(fused)))

    def _update_layer_of(self, func: torch._ops.OpOverload, touched: tuple[torch.Tensor, ...]) -> int:
        """The layer of the parameter an update operator works on: torch's single-tensor AdamW
        loops over parameters, so a temporary belongs to the last parameter seen; an operator
        over a list of tensors (``_foreach_*``) covers every parameter (-1)."""
        if isinstance(func._schema.arguments[0].type, torch.ListType):
            return -1
        for t in touched:
            layer = self._update_layers.get(_storage(t))
            if layer is not None:
                self._update_layer = layer
                break
        return self._update_layer
