"""Pruning masks from importance scores: magnitude and Wanda scores, unstructured and N:M
selection. A mask is a bool tensor shaped like the weight, ``True`` where the weight is kept.

SparseGPT's masks come from the OBS loop in ``obs.py``, which reuses ``keep_mask`` block by
block on its own scores.
"""
from __future__ import annotations

import re

import torch

__all__ = ["PER_ROW_METHODS", "PRUNE_METHODS", "keep_mask", "magnitude_scores", "parse_nm",
           "pattern_sparsity", "pruned_count", "wanda_scores"]

PRUNE_METHODS = ("magnitude", "wanda", "sparsegpt")


def parse_nm(pattern: str) -> tuple[int, int] | None:
    """``(N, M)`` for an ``"N:M"`` pattern (N weights kept in every M consecutive inputs), else
    None for ``"unstructured"``."""
    match = re.fullmatch(r"(\d+):(\d+)", pattern)
    return (int(match.group(1)), int(match.group(2))) if match else None


def pattern_sparsity(pattern: str) -> float | None:
    """The sparsity an N:M pattern fixes (``1 - N/M``), or None for unstructured."""
    nm = parse_nm(pattern)
    return None if nm is None else 1.0 - nm[0] / nm[1]


# Methods that prune each output row alike (Wanda's per-output comparison); the others prune
# the whole matrix at once (magnitude, SparseGPT).
PER_ROW_METHODS = ("wanda",)


def pruned_count(rows: int, cols: int, sparsity: float, pattern: str = "unstructured", *,
                 prune: str = "magnitude") -> int:
    """How many weights of a ``[rows, cols]`` matrix ``prune`` removes at ``sparsity``: the
    count ``keep_mask`` (and SparseGPT's block-wise selection) leave out, so that what the
    trace charges is what the compressor made.

    - ``sparsity <= 0``: none (the layer stays dense, whatever the pattern);
    - ``N:M``: ``M - N`` of every ``M`` consecutive inputs;
    - unstructured, per row (Wanda): ``round(sparsity * cols)`` in each row;
    - unstructured, whole matrix (magnitude, SparseGPT): ``round(sparsity * rows * cols)``.
    """
    if sparsity <= 0:
        return 0
    nm = parse_nm(pattern)
    if nm is not None:
        return rows * (cols // nm[1]) * (nm[1] - nm[0])
    if prune in PER_ROW_METHODS:
        return rows * int(round(sparsity * cols))
    return int(round(sparsity * (rows * cols)))


def magnitude_scores(weight: torch.Tensor) -> torch.Tensor:
    """``|W|``: the smallest weights go first."""
    return weight.detach().abs().float()


def wanda_scores(weight: torch.Tensor, sq_norm: torch.Tensor) -> torch.Tensor:
    """Wanda's ``|W_ij| * ||X_j||_2``: a weight matters as much as the input it multiplies.

    ``sq_norm`` is the per-input-feature sum of squares over calibration tokens ``[in]``.
    """
    return weight.detach().abs().float() * sq_norm.float().clamp_min(0).sqrt()[None, :]


def keep_mask(scores: torch.Tensor, sparsity: float, pattern: str = "unstructured", *, per_row: bool = True) -> torch.Tensor:
    """Keep the highest-scoring weights.

    - ``unstructured`` with ``per_row``: each output row loses ``round(sparsity * in)`` weights
      (Wanda's per-output comparison, which keeps every output neuron alive);
    - ``unstructured`` without ``per_row``: the ``round(sparsity * numel)`` lowest scores of the
      whole matrix go (classic layer-wise magnitude pruning);
    - ``N:M``: in each group of M consecutive inputs of a row the N highest scores stay
      (``sparsity`` is implied by the pattern and ignored). ``in_features`` must divide by M.
    """
    rows, cols = scores.shape
    nm = parse_nm(pattern)
    if nm is not None:
        n, m = nm
        if cols % m:
            raise ValueError(f"N:M pattern {pattern} needs in_features divisible by {m} (got {cols})")
        grouped = scores.reshape(rows, cols // m, m)
        top = grouped.topk(n, dim=-1).indices
        mask = torch.zeros_like(grouped, dtype=torch.bool).scatter_(-1, top, True)
        return mask.reshape(rows, cols)
    if sparsity <= 0:
        return torch.ones_like(scores, dtype=torch.bool)
    # argsort rather than topk: far faster when k is a large share of the elements.
    if per_row:
        k = pruned_count(rows, cols, sparsity, prune=PER_ROW_METHODS[0]) // rows
        mask = torch.ones_like(scores, dtype=torch.bool)
        return mask.scatter_(1, scores.argsort(dim=1)[:, :k], False) if k else mask
    k = pruned_count(rows, cols, sparsity)
    mask = torch.ones(scores.numel(), dtype=torch.bool)
    if k:
        mask[scores.reshape(-1).argsort()[:k]] = False
    return mask.reshape(rows, cols)
