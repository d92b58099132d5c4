"""Optimal Brain Surgeon updates shared by SparseGPT (pruning) and GPTQ (quantization).

Both minimize the layer-wise reconstruction error ``||W X - W' X||^2`` one input column at a
time: column ``j`` is pruned and/or rounded, and its error is spread over the columns not yet
processed through the inverse Hessian ``H^-1`` (``H = 2/n X^T X``), whose upper Cholesky
factor gives every update in one pass (Frantar & Alistarh 2022, 2023). Because pruning and
quantization share the loop, a weight that survives pruning is rounded *after* absorbing the
errors of the weights pruned and rounded before it: joint pruning + quantization.

Columns go in blocks ("lazy batch" updates). For SparseGPT the mask of a block is chosen at
its start (N:M: every M columns) from the OBS saliency ``w^2 / [H^-1]_jj^2`` of the current,
already corrected weights; a quantization group never straddles a block, so its scale and origin come from
its corrected, kept weights just before it is rounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from workloads.luc.prune import keep_mask, parse_nm
from workloads.luc.quantize import fake_quantize, group_params

__all__ = ["BLOCK_COLUMNS", "HessianInverse", "block_columns", "hessian_inverse", "obs_compress"]

BLOCK_COLUMNS = 128


@dataclass(frozen=True)
class HessianInverse:
    """Upper Cholesky factor ``U`` of the damped ``H^-1`` (``H^-1 = U^T U``), ``[in, in]``."""

    upper: torch.Tensor


def hessian_inverse(hessian: torch.Tensor, *, damp: float = 0.01) -> HessianInverse:
    """Damp ``H`` by ``damp`` times its mean diagonal (more if Cholesky still fails), invert it.

    Inputs that never fire on the calibration data (zero diagonal) get a unit diagonal, so
    their weights are just rounded, not used to absorb other errors.
    """
    h = hessian.double().clone()
    diag = h.diagonal()
    diag[diag == 0] = 1.0
    mean = float(diag.mean())
    for attempt in range(6):
        eye = torch.eye(h.shape[0], dtype=h.dtype) * (damp * (10**attempt) * mean)
        chol, info = torch.linalg.cholesky_ex(h + eye)
        if int(info) == 0:
            inv = torch.cholesky_inverse(chol)
            upper, info2 = torch.linalg.cholesky_ex(inv, upper=True)
            if int(info2) == 0:
                return HessianInverse(upper.float())
    raise RuntimeError("Hessian is not positive definite even after heavy damping")


def block_columns(cols: int, group_size: int, m: int | None) -> int:
    """Block width: a multiple of the quantization group and of M (so no group straddles a
    block and N:M groups are whole), about ``BLOCK_COLUMNS`` wide."""
    g = min(group_size, cols)
    unit = math.lcm(g, m) if m else g
    return min(cols, unit * max(1, BLOCK_COLUMNS // unit)) if unit < cols else cols


@torch.no_grad()
def obs_compress(
    weight: torch.Tensor,
    hinv: HessianInverse,
    *,
    sparsity: float = 0.0,
    pattern: str = "unstructured",
    bits: int = 16,
    group_size: int = 128,
    keep: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune and/or quantize ``weight [out, in]`` with OBS error compensation.

    - ``keep`` given: that mask is fixed (e.g. from Wanda) and only compensated for;
    - else ``sparsity > 0`` or an N:M pattern: SparseGPT chooses the mask (unstructured:
      exactly ``round(sparsity * numel)`` weights go, block by block);
    - ``bits < 16``: kept weights are rounded group-wise (GPTQ), pruned ones are exact zeros.

    Returns the new weight (float32) and the keep mask.
    """
    w_all = weight.detach().float().clone()
    rows, cols = w_all.shape
    nm = parse_nm(pattern)
    select = keep is None and (nm is not None or sparsity > 0)
    quant = bits < 16
    g = min(group_size, cols)
    width = block_columns(cols, g, nm[1] if (nm and select) else None)
    u = hinv.upper
    # N:M masks are chosen from the corrected weights every M columns (SparseGPT's adaptive
    # selection), or once per quantization group when rounding, since a group's scale needs
    # to know which of its weights survive.
    span = (math.lcm(g, nm[1]) if quant else nm[1]) if nm else 0
    mask_all = torch.ones(rows, cols, dtype=torch.bool) if keep is None else keep.clone()
    for i1 in range(0, cols, width):
        i2 = min(i1 + width, cols)
        w1 = w_all[:, i1:i2].clone()
        u1 = u[i1:i2, i1:i2]
        d = u1.diagonal()
        if select and nm is None:
            mask_all[:, i1:i2] = _select_unstructured(w1, d, sparsity, rows, i1, i2)
        m1 = mask_all[:, i1:i2]  # a view: N:M selection below writes through
        q1, err1 = _compress_block(w1, u1, m1, i1, pattern=pattern if select and nm is not None else None,
                                   span=span, bits=bits if quant else None, group=g)
        w_all[:, i1:i2] = q1
        # ... and, once per block, over every column after the block.
        if i2 < cols:
            w_all[:, i2:].sub_(err1 @ u[i1:i2, i2:])
    return w_all, mask_all


def _compress_block(w1: torch.Tensor, u1: torch.Tensor, m1: torch.Tensor, i1: int, *,
                    pattern: str | None, span: int, bits: int | None,
                    group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune and/or quantize one block of columns ``w1 [rows, block]`` (starting at column
    ``i1`` of the matrix) column by column, spreading each column's error over the block's
    remaining columns through ``u1``, the block's part of the upper Cholesky factor of the
    inverse Hessian (OBS; SparseGPT / GPTQ, Frantar et al. 2022-23). ``m1`` (the block's keep
    mask) is updated in place when ``pattern`` (N:M) selects every ``span`` columns; ``bits``
    rounds kept weights with one scale per ``group`` columns. Returns the compressed block and
    the per-column scaled errors (both ``[rows, block]``)."""
    d = u1.diagonal()
    q1 = torch.zeros_like(w1)
    err1 = torch.zeros_like(w1)
    scale = lo = None
    for j in range(w1.shape[1]):
        if pattern is not None and (i1 + j) % span == 0:
            cols_ = slice(j, min(j + span, w1.shape[1]))
            m1[:, cols_] = keep_mask(w1[:, cols_] ** 2 / d[None, cols_] ** 2, 0.0, pattern)
        col = w1[:, j]
        q = col * m1[:, j]
        if bits is not None:
            if (i1 + j) % group == 0:
                scale, lo = group_params(w1[:, j : j + group], bits, m1[:, j : j + group])
            q = fake_quantize(q[:, None], scale, lo, bits)[:, 0] * m1[:, j]
        q1[:, j] = q
        e = (col - q) / d[j]
        # Spread this column's error over the block's remaining columns.
        w1[:, j:].addr_(e, u1[j, j:], alpha=-1.0)
        err1[:, j] = e
    return q1, err1


def _select_unstructured(w1: torch.Tensor, d: torch.Tensor, sparsity: float, rows: int, i1: int, i2: int) -> torch.Tensor:
    """SparseGPT's block mask: drop the weights of least OBS saliency ``w^2 / d^2``."""
    saliency = w1**2 / (d[None, :] ** 2)
    # Cumulative rounding: the whole matrix loses exactly round(sparsity * numel) weights.
    # (rows * i): the same product as prune.pruned_count, so the total matches it exactly.
    k = int(round(sparsity * (rows * i2))) - int(round(sparsity * (rows * i1)))
    mask = torch.ones(saliency.numel(), dtype=torch.bool)
    if k > 0:
        # argsort: much faster than topk when k is a large share of the elements.
        mask[saliency.reshape(-1).argsort()[:k]] = False
    return mask.reshape(saliency.shape)
