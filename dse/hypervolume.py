"""Hypervolume of a study's feasible front, in normalized objective space.

Objectives are normalized by fixed references stored with the study (dense model perplexity,
vanilla tuning latency and memory), so studies with different samplers and seeds compare on one
scale. The exact computation is Optuna's own (WFG algorithm).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from optuna._hypervolume import compute_hypervolume  # exact WFG; pinned optuna<6

__all__ = ["PERPLEXITY_BUDGET", "REFERENCE_POINT", "hypervolume", "hypervolume_history"]

# The search's default accuracy budget: perplexity at most this multiple of vanilla tuning's.
PERPLEXITY_BUDGET = 3.0
# A point counts only if it beats this corner: perplexity under the budget, latency and memory
# under 1.5x vanilla tuning's.
REFERENCE_POINT = (PERPLEXITY_BUDGET, 1.5, 1.5)


def hypervolume(points: np.ndarray, reference: Sequence[float] = REFERENCE_POINT) -> float:
    """Hypervolume dominated by ``points [n, d]`` (all minimized) up to ``reference``."""
    ref = np.asarray(reference, dtype=float)
    pts = np.asarray(points, dtype=float).reshape(-1, len(ref))
    pts = pts[np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return float(compute_hypervolume(pts, ref))


def hypervolume_history(points: np.ndarray, reference: Sequence[float] = REFERENCE_POINT) -> np.ndarray:
    """Hypervolume after each of ``points`` in order (non-decreasing)."""
    pts = np.asarray(points, dtype=float)
    out = np.zeros(len(pts))
    for i in range(len(pts)):
        out[i] = hypervolume(pts[: i + 1], reference)
    return out
