"""Packed storage of a compressed weight: the bytes a device holds for it.

The compressor (``compress.py``) returns float weights that sit on the quantizer's grids, with
pruned weights as exact zeros. ``pack_weight`` turns such a weight into the buffers a kernel
would read, and ``packed_bytes`` gives their size in closed form from the shape and the
policy alone; the trace's tensor table charges ``packed_bytes`` (``workloads.trace.annotate``),
and the tests pack real compressed weights and compare, byte for byte.

Layout of a ``[rows, cols]`` weight (``cols`` = input features; each buffer is padded to a
whole byte on its own):

- ``values``: the kept weights' codes at ``bits`` bits each, bit-packed in row-major order; a
  16-bit (unquantized) weight stores float16 values instead.
- quantized (``bits < 16``): each row is cut into ``ceil(cols / min(group, cols))`` groups (a
  group never spans two rows, exactly as ``quantize.py`` cuts them); each group stores a float16
  ``scale`` and, for the asymmetric layer grid, a float16 ``zero`` (the grid origin ``lo``);
  the symmetric embedding / head grid stores the scale only.
- sparse: an ``N:M`` pattern stores ``ceil(log2 M)`` bits of position per kept value;
  unstructured sparsity stores a one-bit-per-weight bitmap. A quantized weight always uses the
  sparse layout once any weight is pruned, because a pruned weight is not on its group's grid
  (``quantize.py``): a dense code array could not give back the exact zero. A float16 weight
  takes the dense layout when that is smaller (at low sparsity the bitmap costs more than it
  saves), since zero is a float16 value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from workloads.luc.policy import DENSE_BITS
from workloads.luc.prune import parse_nm
from workloads.luc.quantize import group_params

__all__ = ["PackedWeight", "groups_per_row", "pack_weight", "packed_bytes", "unpack_weight"]

SCALE_BYTES = 2  # float16 scale per group
ZERO_BYTES = 2  # float16 grid origin per group (asymmetric grids)


def groups_per_row(cols: int, group_size: int) -> int:
    """Quantization groups in one row of ``cols`` inputs: ``ceil(cols / min(group_size, cols))``."""
    return math.ceil(cols / min(group_size, cols))


def _sparse_layout(bits: int, pattern: str, kept: int, numel: int) -> str:
    if kept >= numel:
        return "dense"
    if parse_nm(pattern) is not None:
        return "nm"
    if bits < DENSE_BITS:
        return "bitmap"
    # float16: zero is representable, so the smaller of the two layouts.
    return "dense" if numel * DENSE_BITS <= kept * DENSE_BITS + numel else "bitmap"


def packed_bytes(rows: int, cols: int, *, bits: int, group_size: int, kept: int | None = None,
                 pattern: str = "unstructured", symmetric: bool = False) -> int:
    """Bytes of ``pack_weight``'s buffers for a ``[rows, cols]`` weight with ``kept`` non-pruned
    weights (``None``: all), from the layout in the module docstring.

    Example:
        >>> packed_bytes(64, 64, bits=4, group_size=128)  # 2048 B of codes + 64 groups x 4 B
        2304
    """
    numel = rows * cols
    kept = numel if kept is None else kept
    layout = _sparse_layout(bits, pattern, kept, numel)
    stored = numel if layout == "dense" else kept
    total = math.ceil(stored * bits / 8)
    if layout == "nm":
        total += math.ceil(kept * math.ceil(math.log2(parse_nm(pattern)[1])) / 8)  # type: ignore[index]
    elif layout == "bitmap":
        total += math.ceil(numel / 8)
    if bits < DENSE_BITS:
        total += rows * groups_per_row(cols, group_size) * (SCALE_BYTES + (0 if symmetric else ZERO_BYTES))
    return total


@dataclass(frozen=True)
class PackedWeight:
    """The buffers of one packed weight (all ``uint8`` or ``float16`` numpy arrays).

    ``values``: codes (bit-packed, ``bits`` each) or float16 values; ``scales`` / ``zeros``:
    float16 ``[rows, groups_per_row]`` (empty when unquantized; ``zeros`` empty when
    symmetric); ``index``: bit-packed bitmap or N:M positions (empty when dense)."""

    shape: tuple[int, int]
    kept: int  # non-pruned weights
    bits: int
    group_size: int
    layout: str  # "dense", "bitmap" or "nm"
    pattern: str
    symmetric: bool
    values: np.ndarray
    scales: np.ndarray
    zeros: np.ndarray
    index: np.ndarray

    @property
    def nbytes(self) -> int:
        """Bytes of all buffers together."""
        return int(self.values.nbytes + self.scales.nbytes + self.zeros.nbytes + self.index.nbytes)


def _pack_bits(codes: np.ndarray, width: int) -> np.ndarray:
    """Non-negative integers ``< 2**width`` packed ``width`` bits each, little-endian, into bytes."""
    planes = (codes.astype(np.uint32)[:, None] >> np.arange(width, dtype=np.uint32)) & 1
    return np.packbits(planes.astype(np.uint8).reshape(-1), bitorder="little")


def _unpack_bits(data: np.ndarray, width: int, count: int) -> np.ndarray:
    planes = np.unpackbits(data, bitorder="little")[: count * width].reshape(count, width)
    return (planes.astype(np.uint32) << np.arange(width, dtype=np.uint32)).sum(axis=1)


def _grouped(w: torch.Tensor, g: int) -> tuple[torch.Tensor, int]:
    """``w [rows, cols]`` padded with zeros to whole groups of ``g`` and viewed ``[rows * gpr, g]``."""
    pad = (-w.shape[1]) % g
    return torch.nn.functional.pad(w, (0, pad)).reshape(-1, g), pad


def pack_weight(weight: torch.Tensor, *, bits: int, group_size: int, keep: torch.Tensor | None = None,
                pattern: str = "unstructured", symmetric: bool = False) -> PackedWeight:
    """Pack a compressed ``weight [rows, cols]`` (as ``compress_weight`` / ``compress_head``
    return it) into the buffers of the module docstring.

    ``keep`` (bool, like ``weight``) marks the non-pruned weights (``None``: none pruned).
    The codes come from each group's grid over its kept weights (``quantize.group_params``,
    the asymmetric RTN grid, whose ends every RTN group hits) or, with ``symmetric``, from the
    ``max|w|`` scale of the head's grid.

    Raises:
        ValueError: a shape or mask that does not fit, or an N:M mask that keeps more than N.
    """
    w = weight.detach().float().cpu()
    if w.dim() != 2:
        raise ValueError(f"pack_weight needs a 2-D weight (got shape {tuple(w.shape)})")
    rows, cols = w.shape
    mask = torch.ones_like(w, dtype=torch.bool) if keep is None else keep.to(torch.bool).cpu()
    if mask.shape != w.shape:
        raise ValueError(f"keep mask {tuple(mask.shape)} does not match the weight {tuple(w.shape)}")
    kept = int(mask.sum())
    layout = _sparse_layout(bits, pattern, kept, rows * cols)
    stored = torch.ones_like(mask) if layout == "dense" else mask
    empty16 = np.zeros((0,), dtype=np.float16)
    if bits >= DENSE_BITS:
        values = w[stored].numpy().astype(np.float16)
        scales = zeros = empty16
    else:
        g = min(group_size, cols)
        groups, pad = _grouped(w, g)
        gkeep, _ = _grouped(stored.float(), g)
        if symmetric:
            qmax = 2 ** (bits - 1) - 1
            scale = (groups.abs().amax(dim=1, keepdim=True) / qmax).to(torch.float16).float()
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))
            codes = torch.clamp(torch.round(groups / safe), -qmax, qmax) + qmax  # offset to >= 0
            zeros = empty16
        else:
            scale, lo = group_params(groups, bits, gkeep.bool())
            codes = torch.clamp(torch.round((groups - lo) / scale), 0, 2**bits - 1)
            zeros = lo.to(torch.float16).reshape(rows, -1).numpy()
        scales = scale.to(torch.float16).reshape(rows, -1).numpy()
        codes = codes.reshape(rows, cols + pad)[:, :cols]
        values = _pack_bits(codes[stored].numpy().astype(np.int64), bits)
    index = np.zeros((0,), dtype=np.uint8)
    if layout == "bitmap":
        index = np.packbits(mask.numpy().reshape(-1), bitorder="little")
    elif layout == "nm":
        n, m = parse_nm(pattern)  # type: ignore[misc]
        if cols % m or (mask.reshape(rows, -1, m).sum(dim=-1) > n).any():
            raise ValueError(f"the keep mask does not follow the {pattern} pattern")
        position = torch.arange(cols).remainder(m).expand(rows, cols)
        index = _pack_bits(position[mask].numpy(), math.ceil(math.log2(m)))
    return PackedWeight((rows, cols), kept, bits, group_size, layout, pattern, symmetric, values,
                        scales, zeros, index)


def unpack_weight(packed: PackedWeight) -> torch.Tensor:
    """The float32 weight ``[rows, cols]`` the buffers hold (pruned weights as zeros)."""
    rows, cols = packed.shape
    if packed.layout == "dense":
        stored = torch.ones(rows, cols, dtype=torch.bool)
    elif packed.layout == "bitmap":
        bitmap = np.unpackbits(packed.index, bitorder="little")[: rows * cols]
        stored = torch.from_numpy(bitmap.astype(bool)).reshape(rows, cols)
    else:
        m = parse_nm(packed.pattern)[1]  # type: ignore[index]
        width = math.ceil(math.log2(m))
        positions = _unpack_bits(packed.index, width, packed.kept)
        stored = _nm_mask(positions, rows, cols, m)
    out = torch.zeros(rows, cols)
    n = int(stored.sum())
    if packed.bits >= DENSE_BITS:
        out[stored] = torch.from_numpy(packed.values.astype(np.float32))
        return out
    codes = torch.from_numpy(_unpack_bits(packed.values, packed.bits, n).astype(np.float32))
    g = min(packed.group_size, cols)
    group_of = (torch.arange(rows)[:, None] * packed.scales.shape[1] + torch.arange(cols)[None, :] // g)[stored]
    scale = torch.from_numpy(packed.scales.astype(np.float32)).reshape(-1)[group_of]
    if packed.symmetric:
        out[stored] = (codes - (2 ** (packed.bits - 1) - 1)) * scale
    else:
        out[stored] = torch.from_numpy(packed.zeros.astype(np.float32)).reshape(-1)[group_of] + codes * scale
    return out


def _nm_mask(positions: np.ndarray, rows: int, cols: int, m: int) -> torch.Tensor:
    """The keep mask of kept values listed row-major with their position inside each M-block."""
    mask = torch.zeros(rows * cols, dtype=torch.bool)
    # A new M-block starts where the position does not grow; each row holds cols / m blocks.
    block = np.concatenate([[0], np.cumsum(positions[1:] <= positions[:-1])])
    # Blocks may be skipped when empty; with N >= 1 kept per block (the pattern) none is.
    mask[torch.from_numpy(block * m + positions.astype(np.int64))] = True
    return mask.reshape(rows, cols)
