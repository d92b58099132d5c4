"""The uniform baseline: the same sparsity and bit-width in every layer.

A fractional bit average cannot be uniform; it becomes the simplest split by layer index: the
first layers take the wider width (early layers are commonly the more sensitive), as many as
the average needs. This is the "uniform 3/4 split" mixed precision is compared against.
"""
from __future__ import annotations

import math

import numpy as np

from workloads.luc.policy import DENSE_BITS, LayerPolicy, Policy
from workloads.luc.table import SensitivityTable


def uniform_policy(table: SensitivityTable, sparsity: float, bits: float, *, wide_first: bool = True) -> Policy:
    """Same ``sparsity`` everywhere; ``bits`` everywhere if whole, else ``ceil(bits)`` for the
    first layers (``wide_first``; the last ones otherwise) and ``floor(bits)`` for the rest, with
    the parameter-weighted average as close to ``bits`` as whole layers allow."""
    n = table.num_layers
    widths = _split(np.asarray(table.layer_params, dtype=float), bits, wide_first)
    return Policy(
        {i: LayerPolicy(float(sparsity), int(widths[i])) for i in range(n)},
        pattern=str(table.key.get("pattern", "unstructured")),
        prune=str(table.key.get("prune", "wanda")),
        quant=str(table.key.get("quant", "rtn")),
        group_size=int(table.key.get("group_size", 128)),
        meta={"rule": "uniform", "budget": {"sparsity": sparsity, "bits": bits}},
    )


def _split(params: np.ndarray, bits: float, wide_first: bool) -> np.ndarray:
    n = len(params)
    if bits == DENSE_BITS or float(bits).is_integer():
        return np.full(n, int(bits))
    lo, hi = math.floor(bits), math.ceil(bits)
    weights = params / params.sum()
    order = range(n) if wide_first else range(n - 1, -1, -1)
    widths = np.full(n, lo)
    for i in order:
        # Widen layer i only if that brings the average closer to the budget.
        if abs(weights @ widths + weights[i] - bits) < abs(weights @ widths - bits):
            widths[i] = hi
        else:
            break
    return widths
