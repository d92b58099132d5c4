"""Saved-activation compression: the tensors autograd keeps for backward, stored in few bits.

In an adaptive step the window's saved activations are most of the device memory (about 20 MiB
per SmolLM2 layer at float16 for 4 x 256 tokens, against 2 MiB of 4-bit weights), so they decide
how deep a window fits a memory budget. They are only read again by the backward pass, so
storing them as integers with one bfloat16 scale per group of ``GROUP`` consecutive values
(symmetric absmax; bfloat16 rather than float16 because a gradient-sized group, max 1e-4,
would put a float16 scale among the subnormals and lose most of its levels) leaves the forward pass,
the loss and the evaluation exact and only rounds what the gradients are computed from, as in
ActNN (Chen et al., ICML 2021) and GACT (Liu et al., ICML 2022). Backward de-quantizes.

Small tensors (attention log-sum-exp, RMSNorm's reciprocal RMS, integer indices) stay exact:
only floating tensors of at least ``MIN_NUMEL`` values are packed, and never one marked with
``keep_exact`` (the loss gradient the chunked head saves is not an activation). The device
account (``stored_bits``) and the host codec follow the same rule.
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NamedTuple

import torch

from workloads.errors import UserError
from workloads.luc.quantize import symmetric_groups

__all__ = ["ACT_BITS", "ActivationCodec", "CODEC", "EXACT_BITS", "GROUP", "MIN_NUMEL", "Packed",
           "SCALE_BITS", "View", "cache_tag", "check_bits", "compressible", "dequantize",
           "keep_exact", "quantize", "storage_numel", "stored_bits"]

GROUP = 64  # values per bfloat16 scale
SCALE_BITS = 16
MIN_NUMEL = 1 << 16  # smaller tensors are kept as computed
EXACT_BITS = 16  # "not compressed": device float16
ACT_BITS = (2, 3, 4, 5, 6, 7, 8, EXACT_BITS)
CODEC = f"g{GROUP}bf16v2"  # names the packing rule in cache keys: bump when what is packed, or how, changes


def cache_tag(bits: int) -> str:
    """What names packed runs in cache keys and file names ("" when nothing is packed, so keys
    of exact runs stay as they were)."""
    return f"a{bits}{CODEC}" if bits < EXACT_BITS else ""


def check_bits(bits: int) -> int:
    """``bits`` if the codec supports it (2..8, or ``EXACT_BITS`` for no packing).

    Raises:
        UserError: any other width.
    """
    if bits not in ACT_BITS:
        raise UserError(f"--act-bits must be 2..8 or {EXACT_BITS} (got {bits})")
    return bits


_EXACT = "_edgellm_keep_exact"


def keep_exact(tensor: torch.Tensor) -> torch.Tensor:
    """Mark a tensor an autograd function saves as one the codec must store as it is."""
    setattr(tensor, _EXACT, True)
    return tensor


def compressible(tensor: torch.Tensor) -> bool:
    """Whether the codec packs the storage behind this saved tensor (the device account's rule too)."""
    return (tensor.is_floating_point() and storage_numel(tensor) >= MIN_NUMEL
            and not getattr(tensor, _EXACT, False))


def storage_numel(tensor: torch.Tensor) -> int:
    """Elements of the whole storage under ``tensor`` (a view may show only part of it)."""
    return tensor.untyped_storage().nbytes() // tensor.element_size()


def stored_bits(numel: int, bits: int) -> int:
    """Device bits of a packed storage: the values plus one bfloat16 scale per group."""
    return numel * bits + math.ceil(numel / GROUP) * SCALE_BITS


class Packed(NamedTuple):
    """A whole storage, quantized; views of it are rebuilt from ``View``."""

    q: torch.Tensor  # int8 values, [groups, GROUP] (the last group zero-padded)
    scale: torch.Tensor  # bfloat16, [groups, 1]
    numel: int
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Host bytes of the packed values and their scales."""
        return self.q.nbytes + self.scale.nbytes


class View(NamedTuple):
    """A saved tensor as autograd sees it: the packed storage and the view's shape, stride and
    offset into it (elements).
    """
    packed: Packed
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    offset: int


def quantize(flat: torch.Tensor, bits: int) -> Packed:
    """Symmetric per-group quantization of a 1-D tensor to ``bits`` (2..8), values held in int8."""
    x = flat.detach().float()
    x = torch.nn.functional.pad(x, (0, -x.numel() % GROUP)).view(-1, GROUP)
    # Rounded up into bfloat16 (whose rounding moves a value by at most 2^-8 of it), so the
    # largest value of a group still fits its grid and no value is clamped.
    q, scale = symmetric_groups(x, bits, torch.bfloat16, headroom=2**-7)
    return Packed(q.to(torch.int8), scale, flat.numel(), flat.dtype)


def dequantize(packed: Packed) -> torch.Tensor:
    """The storage's values as a 1-D tensor of its dtype."""
    return (packed.q.float() * packed.scale.float()).view(-1)[:packed.numel].to(packed.dtype)


def _whole_storage(tensor: torch.Tensor) -> torch.Tensor:
    return torch.empty(0, dtype=tensor.dtype).set_(tensor.untyped_storage()).detach()


@dataclass
class ActivationCodec:
    """``saved_tensors_hooks`` pair packing what autograd saves during a forward pass.

    Packing works on whole storages, the unit torch frees and the trace counts: a tensor saved
    by several ops, or as several views (a layer input feeds q, k and v), is quantized and
    stored once. A pack is reused only while its storage object is alive (a weak reference; torch
    keeps one Python object per storage) and unmodified (the version counter its views share),
    so an address the allocator handed to another tensor after a free can never alias.
    """

    bits: int = 8
    exclude: Iterable[torch.Tensor] = ()  # parameters: weights, not activations, stay as they are
    _memo: dict[int, tuple[weakref.ref, int, Packed]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.bits == EXACT_BITS:
            raise UserError(f"ActivationCodec needs fewer than {EXACT_BITS} bits (got {self.bits})")
        self._skip = {t.untyped_storage().data_ptr() for t in self.exclude}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)

    def pack(self, tensor: torch.Tensor) -> Any:
        """``saved_tensors_hooks`` pack: a compressible float tensor becomes a ``View`` of its whole
        storage quantized to ``bits`` (one pack per storage version, shared by its views); other
        tensors and excluded storages are kept as they are.
        """
        if not compressible(tensor) or tensor.untyped_storage().data_ptr() in self._skip:
            return tensor
        storage = tensor.untyped_storage()
        hit = self._memo.get(storage.data_ptr())
        if hit is not None and hit[0]() is storage and hit[1] == tensor._version:
            packed = hit[2]
        else:
            packed = quantize(_whole_storage(tensor), self.bits)
            self._memo[storage.data_ptr()] = (weakref.ref(storage), tensor._version, packed)
        return View(packed, tuple(tensor.shape), tensor.stride(), tensor.storage_offset())

    @staticmethod
    def unpack(saved: Any) -> torch.Tensor:
        """``saved_tensors_hooks`` unpack: a ``View`` is dequantized and re-viewed with its shape,
        stride and offset; anything else is returned as it is.
        """
        if not isinstance(saved, View):
            return saved
        return dequantize(saved.packed).as_strided(saved.shape, saved.stride, saved.offset)

    def __enter__(self) -> ActivationCodec:
        self._hooks.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._hooks.__exit__(exc_type, exc, tb)
        self.reset()

    def reset(self) -> None:
        """Forget the packs of this forward pass (the graph holds what backward needs)."""
        self._memo.clear()
