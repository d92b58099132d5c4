"""Group-wise asymmetric round-to-nearest (RTN) fake quantization of weights.

Each output row is cut into groups of ``group_size`` consecutive input weights; each group gets
its own ``2^bits``-level grid ``lo + k * scale`` (``k = 0..2^bits-1``) spanning exactly the
range ``[min, max]`` of its *kept* weights (the "scale + min" form of GGUF Q4_1 and HQQ). Pruned
weights are not on the grid at all: a sparse format stores only the kept values and their
positions, so they come back as exact zeros, and pruning narrows the range instead of wasting
levels on weights that are gone. Weights are quantized and de-quantized in float32 ("fake"
quantization): the model runs as before, with the values a ``bits``-wide kernel would use.

Because the grid spans min..max of each group, re-quantizing weights that already sit on such
a grid (the GGUF Q4_1 SmolLM2 at 4 bits, group 32) gives them back unchanged.
"""
from __future__ import annotations

import torch

__all__ = ["QUANT_METHODS", "absmax_quantize", "fake_quantize", "group_params", "rtn_quantize",
           "symmetric_groups"]

QUANT_METHODS = ("rtn", "gptq")


def group_params(w: torch.Tensor, bits: int, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and grid origin ``lo`` per row of ``w [rows, g]`` (one group per row), ``[rows, 1]``.

    ``keep`` (bool, like ``w``) excludes pruned weights from the range.
    """
    if keep is not None:
        big = torch.finfo(w.dtype).max
        lo = torch.where(keep, w, big).min(dim=1, keepdim=True).values
        hi = torch.where(keep, w, -big).max(dim=1, keepdim=True).values
        # A group with every weight pruned: any grid will do, its values are masked anyway.
        empty = ~keep.any(dim=1, keepdim=True)
        lo = torch.where(empty, torch.zeros_like(lo), lo)
        hi = torch.where(empty, torch.zeros_like(hi), hi)
    else:
        lo = w.min(dim=1, keepdim=True).values
        hi = w.max(dim=1, keepdim=True).values
    scale = (hi - lo) / (2**bits - 1)
    # A constant group sits exactly on ``lo``; any positive scale keeps it there.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return scale, lo


def fake_quantize(w: torch.Tensor, scale: torch.Tensor, lo: torch.Tensor, bits: int) -> torch.Tensor:
    """Round to the nearest of the ``2^bits`` levels ``lo + k * scale`` and return its value."""
    k = torch.clamp(torch.round((w - lo) / scale), 0, 2**bits - 1)
    return lo + k * scale


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Group-wise RTN of ``weight [out, in]`` along the input dimension (the last group may be
    shorter); weights outside ``keep`` come back as exact zeros."""
    w = weight.detach().float()
    rows, cols = w.shape
    g = min(group_size, cols)
    pad = (-cols) % g
    # Padding is marked as pruned, so it never widens the last, shorter group's range.
    pkeep = torch.ones(rows, cols, dtype=torch.bool) if keep is None else keep
    pkeep = torch.nn.functional.pad(pkeep, (0, pad), value=False).reshape(-1, g)
    padded = torch.nn.functional.pad(w, (0, pad)).reshape(-1, g)
    scale, lo = group_params(padded, bits, pkeep)
    out = fake_quantize(padded, scale, lo, bits).reshape(rows, cols + pad)[:, :cols]
    return out * keep if keep is not None else out


def absmax_quantize(weight: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Group-wise symmetric round-to-nearest of ``weight [out, in]`` along the input dimension,
    with a float16 scale ``max|w| / (2^(bits-1) - 1)`` per group: the layout of GGUF Q8_0 at 8
    bits and groups of 32, which the checkpoint's tied embedding / LM head already sits on (so
    re-quantizing it that way gives it back unchanged)."""
    w = weight.detach().float()
    rows, cols = w.shape
    g = min(group_size, cols)
    pad = (-cols) % g
    q, scale = symmetric_groups(torch.nn.functional.pad(w, (0, pad)).reshape(-1, g), bits, torch.float16)
    return (q * scale.float()).reshape(rows, cols + pad)[:, :cols]


def symmetric_groups(groups: torch.Tensor, bits: int, scale_dtype: torch.dtype,
                     headroom: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer levels in ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]`` (as floats) and the scale, in
    ``scale_dtype``, of each row of ``groups [n, g]``: ``max|x| / (2^(bits-1) - 1)``, times
    ``1 + headroom`` before the scale is rounded to its dtype. An all-zero row has scale 0
    and levels 0."""
    qmax = 2 ** (bits - 1) - 1
    scale = (groups.abs().amax(dim=1, keepdim=True) / qmax * (1 + headroom)).to(scale_dtype)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale)).float()
    return torch.clamp(torch.round(groups / safe), -qmax, qmax), scale
