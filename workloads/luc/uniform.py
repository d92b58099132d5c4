"""The uniform baseline: the same sparsity and bit-width in every layer.

A fractional bit average cannot be uniform; it becomes the simplest split by layer index: the
first layers take the wider width (early layers are commonly the more sensitive), as many as
the average needs. This is the "uniform 3/4 split" mixed precision is compared against.
"""
from __future__ import annotations

import math

import numpy as np

from workloads.luc.policy import DENSE_BITS, LayerPolicy, Policy
from workloads.luc.prune import pattern_sparsity
from workloads.luc.table import SensitivityTable

__all__ = ["uniform_policy"]


def uniform_policy(table: SensitivityTable, sparsity: float, bits: float, *, wide_first: bool = True) -> Policy:
    """Same ``sparsity`` everywhere; ``bits`` everywhere if whole, else ``ceil(bits)`` for the
    first layers (``wide_first``; the last ones otherwise) and ``floor(bits)`` for the rest, with
    the parameter-weighted average as close to ``bits`` as whole layers allow. An N:M pattern
    below its ``1 - N/M`` average splits the same way: the first layers dense, the rest N:M."""
    n = table.num_layers
    params = np.asarray(table.layer_params, dtype=float)
    widths = _split(params, bits, wide_first)
    pattern = str(table.key.get("pattern", "unstructured"))
    nm = pattern_sparsity(pattern)
    if nm is not None and 0 < sparsity < nm:
        # Dense layers are the "wide" ones: index split of the N:M share, like the bits.
        sparsities = nm - _split(params, nm - sparsity, wide_first, widths=(0.0, nm))
    else:
        sparsities = np.full(n, float(sparsity))
    return Policy(
        {i: LayerPolicy(float(sparsities[i]), int(widths[i])) for i in range(n)},
        pattern=pattern,
        prune=str(table.key.get("prune", "wanda")),
        quant=str(table.key.get("quant", "rtn")),
        group_size=int(table.key.get("group_size", 128)),
        meta={"rule": "uniform", "budget": {"sparsity": sparsity, "bits": bits}},
    )


def _split(params: np.ndarray, bits: float, wide_first: bool,
           widths: tuple[float, float] | None = None) -> np.ndarray:
    """Per layer ``hi`` for the first (``wide_first``) layers and ``lo`` for the rest, the
    weighted mean nearest ``bits``; ``(lo, hi)`` = ``widths``, else the whole numbers around it."""
    n = len(params)
    if widths is None and (bits == DENSE_BITS or float(bits).is_integer()):
        return np.full(n, int(bits))
    lo, hi = widths if widths is not None else (math.floor(bits), math.ceil(bits))
    weights = params / params.sum()
    order = range(n) if wide_first else range(n - 1, -1, -1)
    out = np.full(n, lo, dtype=float)
    for i in order:
        # Widen layer i only if that brings the average closer to the budget.
        if abs(weights @ out + weights[i] * (hi - lo) - bits) < abs(weights @ out - bits):
            out[i] = hi
        else:
            break
    return out
