"""Group-wise asymmetric round-to-nearest (RTN) fake quantization of weights.

Each output row is cut into groups of ``group_size`` consecutive input weights; each group gets
its own scale and integer zero point on a ``2^bits``-level grid spanning ``[min(w, 0),
max(w, 0)]``. Zero is always on the grid (the zero point is an integer level), so pruned
weights quantize to exactly zero; the range is taken over *kept* weights only, so pruning
narrows it instead of wasting levels on weights that are gone. Weights are quantized and
de-quantized in float32 ("fake" quantization): the model runs as before, with values on the
grid that a ``bits``-wide integer kernel would use.
"""
from __future__ import annotations

import torch

QUANT_METHODS = ("rtn", "gptq")


def group_params(w: torch.Tensor, bits: int, keep: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point per row of ``w [rows, g]`` (one group per row), shapes ``[rows, 1]``.

    ``keep`` (bool, like ``w``) excludes pruned weights from the range.
    """
    if keep is not None:
        w = torch.where(keep, w, torch.zeros((), dtype=w.dtype))
    maxq = 2**bits - 1
    lo = w.min(dim=1, keepdim=True).values.clamp(max=0)
    hi = w.max(dim=1, keepdim=True).values.clamp(min=0)
    scale = (hi - lo) / maxq
    # An all-zero group: any positive scale maps it to zero.
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-lo / scale).clamp(0, maxq)
    return scale, zero


def fake_quantize(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """Quantize to integers ``0..2^bits-1`` and back: ``(clamp(round(w/s) + z) - z) * s``."""
    q = torch.clamp(torch.round(w / scale) + zero, 0, 2**bits - 1)
    return (q - zero) * scale


def rtn_quantize(weight: torch.Tensor, bits: int, group_size: int, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Group-wise RTN of ``weight [out, in]`` along the input dimension (the last group may be
    shorter); weights outside ``keep`` come back as exact zeros."""
    w = weight.detach().float()
    if keep is not None:
        w = w * keep
    rows, cols = w.shape
    g = min(group_size, cols)
    pad = (-cols) % g
    # Pad the last partial group with zeros, which never widen a range that already holds 0.
    padded = torch.nn.functional.pad(w, (0, pad)).reshape(rows * ((cols + pad) // g), g)
    pkeep = None
    if keep is not None:
        pkeep = torch.nn.functional.pad(keep, (0, pad)).reshape(padded.shape)
    scale, zero = group_params(padded, bits, pkeep)
    out = fake_quantize(padded, scale, zero, bits).reshape(rows, cols + pad)[:, :cols]
    return out * keep if keep is not None else out
