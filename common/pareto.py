"""The Pareto mask: which points no other point dominates, every objective minimized."""
from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["pareto_mask"]


def pareto_mask(*objectives: npt.ArrayLike) -> np.ndarray:
    """Points that no other point dominates when every objective is minimized.

    Args:
        *objectives: one array ``[n, d]`` (a row per point, a column per objective), or ``d``
            arrays of ``n`` values each (one per objective).

    Returns:
        Boolean array ``[n]``. A point is dominated when another is no worse in every objective
        and better in one; equal points do not dominate each other, so duplicates of a member
        are members. A point with a NaN or infinite objective is never a member and dominates
        nothing.

    Example:
        >>> pareto_mask([1.0, 2.0, 3.0, 1.0], [3.0, 2.0, 3.0, 3.0]).tolist()
        [True, True, False, True]
    """
    values = (np.asarray(objectives[0], dtype=float) if len(objectives) == 1
              else np.column_stack([np.asarray(o, dtype=float) for o in objectives]))
    if values.ndim != 2:
        raise ValueError(f"pareto_mask: expected one [n, d] array or d arrays of n values "
                         f"(got an array of shape {values.shape})")
    finite = np.isfinite(values).all(axis=1)
    points = values[finite]
    keep = np.ones(len(points), dtype=bool)
    for i, point in enumerate(points):
        dominated = (points <= point).all(axis=1) & (points < point).any(axis=1)
        keep[i] = not dominated.any()
    mask = np.zeros(len(values), dtype=bool)
    mask[np.flatnonzero(finite)[keep]] = True
    return mask
