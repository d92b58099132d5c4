"""Policy generation: per-layer sparsity and bit-width that meet an average budget.

Budgets are parameter-weighted averages over the decoder layers' linear weights (the ones
compression touches). Three rules:

``paper``   Edge-LLM's rule: less sensitive layers are compressed more. With ``sigma_i`` the
            measured degradation of layer ``i`` alone at the budget, sparsity goes as
            ``s_i ~ sigma_i^(-tau/2)`` and bits as ``b_i = B + tau/2 * log2(sigma_i / gmean)``
            (the rate-distortion rule: each extra bit quarters a rounding loss). ``tau`` is
            the sharpness: 0 is uniform, 1 balances square-law losses.
``owl``     OWL (Yin et al. 2024): sparsity falls linearly with the layer's outlier ratio
            (share of Wanda scores above 5x their mean) within ``[S - lambda, S + lambda]``;
            when bits must mix two widths, layers with more outliers get the wider one.
``optimal`` Minimize the predicted loss increase (sum of per-layer measured degradations)
            under both budgets: a Lagrange price on sparsity, an exact dynamic program over
            integer bit-widths for each price, and an exact water-filling of sparsity over
            the convexified per-layer curves for the chosen bits.

Sparsity is continuous, so its budget is met exactly (within clamping to ``sparsity_range``);
bits are integers per layer, so the bit budget is met as closely as the layer sizes allow
(any multiple of 1/30 bit on SmolLM2's 30 equal layers) and, by default, refused when that
misses by more than ``tolerance`` (0.5%).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from workloads.errors import UserError
from workloads.luc.policy import DENSE_BITS, MAX_BITS, MIN_BITS, LayerPolicy, Policy
from workloads.luc.prune import pattern_sparsity
from workloads.luc.table import JOINT_EXPONENT, SensitivityTable

__all__ = ["ALLOCATION_RULES", "BIT_RANGE", "OWL_LAMBDA", "SPARSITY_RANGE", "SPARSITY_STEP",
           "TOLERANCE", "allocate", "average", "check_budget"]

ALLOCATION_RULES = ("paper", "owl", "optimal")
SPARSITY_RANGE = (0.0, 0.9)
BIT_RANGE = (MIN_BITS, MAX_BITS)
TOLERANCE = 0.005  # relative budget error allowed
OWL_LAMBDA = 0.08  # OWL's sparsity spread for LLaMA models
SPARSITY_STEP = 0.005  # grid of the optimal allocation


def allocate(
    table: SensitivityTable,
    sparsity: float,
    bits: float,
    *,
    rule: str = "optimal",
    sharpness: float = 1.0,
    owl_lambda: float = OWL_LAMBDA,
    sparsity_range: tuple[float, float] = SPARSITY_RANGE,
    bit_range: tuple[int, int] = BIT_RANGE,
    tolerance: float = TOLERANCE,
    strict: bool = True,
) -> Policy:
    """A policy with parameter-weighted average ``sparsity`` and ``bits`` (16: unquantized)
    for the model and method the table was measured on.

    Raises one-line ``UserError`` for an impossible budget (outside the ranges, or a bit
    average the integer per-layer widths cannot reach within ``tolerance`` when ``strict``).

    Example::

        policy = allocate(table, 0.5, 4, rule="optimal")
        policy.save("policy.json")
    """
    if rule not in ALLOCATION_RULES:
        raise UserError(f"rule must be one of {', '.join(ALLOCATION_RULES)} (got {rule!r})")
    weights = _weights(table.layer_params)
    pattern = str(table.key.get("pattern", "unstructured"))
    check_budget(
        table.layer_params, sparsity, bits, pattern=pattern, sparsity_range=sparsity_range, bit_range=bit_range,
        tolerance=tolerance if strict else None,
    )
    lo_s, hi_s = _check_sparsity(sparsity, sparsity_range, pattern)
    bit_choices = _check_bits(bits, bit_range)
    if rule == "paper":
        s_alloc, b_target = _paper(table, weights, sparsity, bits, sharpness, lo_s, hi_s, pattern)
        b_alloc = _round_bits(b_target, weights, bits, bit_choices)
    elif rule == "owl":
        s_alloc = _owl_sparsity(table, weights, sparsity, owl_lambda, lo_s, hi_s, pattern)
        b_alloc = _round_bits(_owl_bits_target(table, bits), weights, bits, bit_choices)
    else:
        s_alloc, b_alloc = _optimal(table, weights, sparsity, bits, bit_choices, lo_s, hi_s, pattern)
    achieved_bits = float(weights @ b_alloc)
    if strict and abs(achieved_bits - bits) > tolerance * bits + 1e-9:
        raise UserError(
            f"average of {bits:g} bits cannot be met within {tolerance:.1%} with whole bits per layer "
            f"(nearest: {achieved_bits:.4g}); pick a multiple of {float(weights.min()):.4g} bits"
        )
    meta = {
        "rule": rule,
        "budget": {"sparsity": sparsity, "bits": bits},
        "achieved": {"sparsity": float(weights @ np.asarray(s_alloc)), "bits": achieved_bits},
        "sharpness": sharpness if rule == "paper" else None,
        "owl_lambda": owl_lambda if rule == "owl" else None,
        "table": {k: table.key.get(k) for k in ("model", "data", "seq_len", "windows", "metric")},
    }
    return _policy(table, s_alloc, b_alloc, pattern=pattern, meta=meta)


def _policy(table: SensitivityTable, s_alloc: Any, b_alloc: Any, *, pattern: str,
            meta: dict[str, Any]) -> Policy:
    """The validated policy of per-layer sparsities ``s_alloc`` and bit-widths ``b_alloc`` (one
    per decoder layer), with the table's compression methods and ``meta``.

    Raises:
        UserError: the allocation does not fit the table's model (``Policy.validate``).
    """
    policy = Policy(
        {i: LayerPolicy(float(round(s, 6)), int(b)) for i, (s, b) in enumerate(zip(s_alloc, b_alloc, strict=True))},
        pattern=pattern,
        prune=str(table.key.get("prune", "wanda")),
        quant=str(table.key.get("quant", "rtn")),
        group_size=int(table.key.get("group_size", 128)),
        meta=meta,
    )
    return policy.validate(table.num_layers)


def check_budget(
    layer_params: list[int],
    sparsity: float,
    bits: float,
    *,
    pattern: str = "unstructured",
    sparsity_range: tuple[float, float] = SPARSITY_RANGE,
    bit_range: tuple[int, int] = BIT_RANGE,
    tolerance: float | None = TOLERANCE,
) -> None:
    """Raise a one-line ``UserError`` if no policy over layers of ``layer_params`` weights can
    meet the budget (cheap: lets a CLI refuse before minutes of profiling). With equal layers
    the reachable bit averages are the multiples of ``1 / layers``; with unequal ones this
    checks the range only and ``allocate`` checks the rest."""
    _check_sparsity(sparsity, sparsity_range, pattern)
    choices = _check_bits(bits, bit_range)
    weights = _weights(layer_params)
    if tolerance is None or choices == [DENSE_BITS] or not np.allclose(weights, weights[0]):
        return
    n = len(weights)
    nearest = round(bits * n) / n
    if abs(nearest - bits) > tolerance * bits + 1e-9:
        raise UserError(
            f"average of {bits:g} bits cannot be met within {tolerance:.1%} with whole bits per layer "
            f"(nearest: {nearest:.4g}); pick a multiple of {1 / n:.4g} bits"
        )


def average(policy: Policy, table: SensitivityTable) -> tuple[float, float]:
    """Parameter-weighted ``(sparsity, bits)`` of a policy."""
    w = _weights(table.layer_params)
    s = np.array([policy.layers[i].sparsity for i in range(table.num_layers)])
    b = np.array([policy.layers[i].w_bits for i in range(table.num_layers)], dtype=float)
    return float(w @ s), float(w @ b)


# -- budget checks ---------------------------------------------------------------------------
def _weights(layer_params: list[int]) -> np.ndarray:
    p = np.asarray(layer_params, dtype=float)
    return p / p.sum()


def _check_sparsity(sparsity: float, rng: tuple[float, float], pattern: str) -> tuple[float, float]:
    implied = pattern_sparsity(pattern)
    if implied is not None:
        # Each layer is either N:M sparse (1 - N/M zeros) or dense: the average lies in between.
        if not -1e-12 <= sparsity <= implied + 1e-9:
            raise UserError(f"average sparsity {sparsity:g} is impossible with pattern {pattern}: a layer is either "
                            f"{implied:g} sparse or dense, so the average must lie in 0..{implied:g}")
        return 0.0, implied
    lo, hi = rng
    if not 0.0 <= lo <= hi < 1.0:
        raise UserError(f"sparsity range must satisfy 0 <= min <= max < 1 (got {lo:g}..{hi:g})")
    if not lo - 1e-12 <= sparsity <= hi + 1e-12:
        raise UserError(f"average sparsity {sparsity:g} is impossible: it must lie in the per-layer range {lo:g}..{hi:g}")
    return lo, hi


def _check_bits(bits: float, rng: tuple[int, int]) -> list[int]:
    if bits == DENSE_BITS:
        return [DENSE_BITS]
    lo, hi = int(rng[0]), int(rng[1])
    if not MIN_BITS <= lo <= hi <= MAX_BITS:
        raise UserError(f"bit range must lie within {MIN_BITS}..{MAX_BITS} (got {lo}..{hi})")
    if not lo <= bits <= hi:
        raise UserError(f"average of {bits:g} bits is impossible: it must lie in {lo}..{hi} (or be {DENSE_BITS}, unquantized)")
    return list(range(lo, hi + 1))


# -- sparsity helpers ------------------------------------------------------------------------
def _fit_offset(base: np.ndarray, weights: np.ndarray, target: float, lo: float, hi: float) -> np.ndarray:
    """``clip(base + t, lo, hi)`` with the offset ``t`` that makes the weighted mean exactly
    ``target`` (bisection; the mean is monotone in ``t``)."""
    a, b = lo - base.max() - 1.0, hi - base.min() + 1.0
    for _ in range(100):
        t = 0.5 * (a + b)
        if weights @ np.clip(base + t, lo, hi) < target:
            a = t
        else:
            b = t
    return np.clip(base + 0.5 * (a + b), lo, hi)


def _fit_scale(base: np.ndarray, weights: np.ndarray, target: float, lo: float, hi: float) -> np.ndarray:
    """``clip(c * base, lo, hi)`` with the scale ``c`` that hits ``target`` exactly."""
    if target <= lo or not np.any(base > 0):
        return _fit_offset(np.zeros_like(base), weights, target, lo, hi)
    a, b = 0.0, hi / max(base[base > 0].min(), 1e-12) + 1.0
    for _ in range(100):
        c = 0.5 * (a + b)
        if weights @ np.clip(c * base, lo, hi) < target:
            a = c
        else:
            b = c
    return np.clip(0.5 * (a + b) * base, lo, hi)


def _gmean_ratio(x: np.ndarray) -> np.ndarray:
    """``x / geometric mean(x)``, with non-positive readings lifted to a small floor."""
    floor = max(float(np.max(x)) * 1e-6, 1e-12)
    x = np.maximum(x, floor)
    return x / math.exp(float(np.mean(np.log(x))))


# -- rules -----------------------------------------------------------------------------------
def _paper(
    table: SensitivityTable,
    weights: np.ndarray,
    sparsity: float,
    bits: float,
    sharpness: float,
    lo: float,
    hi: float,
    pattern: str,
) -> tuple[np.ndarray, np.ndarray]:
    n = table.num_layers
    nm = pattern_sparsity(pattern)
    if nm is not None and 0 < sparsity < nm:  # the least sensitive layers go N:M
        sigma = np.array([float(table.prune_curve(i, nm)) for i in range(n)])
        s_alloc = _nm_fill(sigma, weights, sparsity, nm)
    elif nm is not None or sparsity == 0:
        s_alloc = np.full(n, sparsity)
    else:
        sigma = np.array([float(table.prune_curve(i, sparsity)) for i in range(n)])
        s_alloc = _fit_scale(_gmean_ratio(sigma) ** (-sharpness / 2), weights, sparsity, lo, hi)
    if bits == DENSE_BITS:
        return s_alloc, np.full(n, float(DENSE_BITS))
    sigma_b = np.array([float(table.quant_curve(i, bits)) for i in range(n)])
    b_target = bits + sharpness / 2 * np.log2(_gmean_ratio(sigma_b))
    return s_alloc, b_target


def _owl_sparsity(
    table: SensitivityTable, weights: np.ndarray, sparsity: float, lam: float, lo: float, hi: float, pattern: str
) -> np.ndarray:
    n = table.num_layers
    ratio = np.asarray(table.outlier_ratio, dtype=float)
    nm = pattern_sparsity(pattern)
    if nm is not None and 0 < sparsity < nm:  # the layers with the fewest outliers go N:M
        return _nm_fill(ratio, weights, sparsity, nm)
    if nm is not None or sparsity == 0:
        return np.full(n, sparsity)
    spread = ratio.max() - ratio.min()
    scaled = (ratio - ratio.min()) / spread * (2 * lam) if spread > 0 else np.zeros(n)
    # Density follows the outlier ratio: more outliers, lower sparsity.
    return _fit_offset(-(scaled - weights @ scaled), weights, sparsity, lo, hi)


def _owl_bits_target(table: SensitivityTable, bits: float) -> np.ndarray:
    n = table.num_layers
    if bits == DENSE_BITS:
        return np.full(n, float(DENSE_BITS))
    ratio = np.asarray(table.outlier_ratio, dtype=float)
    rank = np.argsort(np.argsort(ratio)) / max(n - 1, 1) - 0.5  # -0.5 (fewest) .. 0.5 (most)
    return bits + rank * 1e-3  # only breaks ties of the rounding: the width mix follows outliers


def _round_bits(target: np.ndarray, weights: np.ndarray, budget: float, choices: list[int]) -> np.ndarray:
    """Integer widths from ``choices`` near ``target`` whose weighted mean is as close as
    possible to ``budget``: floor everything, then raise the layers with the largest
    remainders (ties: larger target first) while that brings the mean closer."""
    if choices == [DENSE_BITS]:
        return np.full(len(target), DENSE_BITS, dtype=int)
    lo, hi = choices[0], choices[-1]
    t = np.clip(target, lo, hi)
    b = np.floor(t).astype(int)
    # Shift the whole target so that flooring cannot overshoot the budget from above.
    while weights @ b > budget + 1e-12 and np.any(b > lo):
        b[np.argmax(np.where(b > lo, b - t, -np.inf))] -= 1
    order = np.argsort(-(t - b), kind="stable")
    gap = budget - weights @ b
    while gap > 1e-12:
        raised = False
        for i in order:
            if b[i] < hi and abs(gap - weights[i]) < gap:
                b[i] += 1
                gap -= weights[i]
                raised = True
                break
        if not raised:
            break
        order = np.argsort(-(t - b), kind="stable")
    return b


def _optimal(
    table: SensitivityTable,
    weights: np.ndarray,
    sparsity: float,
    bits: float,
    choices: list[int],
    lo: float,
    hi: float,
    pattern: str,
) -> tuple[np.ndarray, np.ndarray]:
    n = table.num_layers
    nm = pattern_sparsity(pattern)
    if nm is not None:  # per layer: dense or N:M
        fixed_s = not 0 < sparsity < nm
        grid = np.array([sparsity]) if fixed_s else np.array([0.0, nm])
    else:
        fixed_s = lo == hi
        grid = np.array([sparsity]) if fixed_s else np.round(np.arange(lo, hi + 1e-9, SPARSITY_STEP), 6)
    cost = _cost_cube(table, grid, choices)  # [layers, grid, choices]
    units, target = _bit_units(weights, choices, bits)

    def solve(price: float) -> tuple[np.ndarray, np.ndarray]:
        # Per layer and width: the sparsity minimizing cost - price * weight * s.
        reduced = cost - price * weights[:, None, None] * grid[None, :, None]
        best_k = reduced.argmin(axis=1)  # [layers, choices]
        best = np.take_along_axis(reduced, best_k[:, None, :], axis=1)[:, 0, :]
        pick = _dp_bits(best, units, choices, target)
        return grid[best_k[np.arange(n), pick]], np.asarray(choices)[pick]

    if fixed_s:
        s_alloc, b_alloc = solve(0.0)
        return np.full(n, sparsity), b_alloc
    lo_p, hi_p = 0.0, 1.0
    while weights @ solve(hi_p)[0] < sparsity and hi_p < 1e9:
        hi_p *= 4
    for _ in range(50):
        mid = 0.5 * (lo_p + hi_p)
        if weights @ solve(mid)[0] < sparsity:
            lo_p = mid
        else:
            hi_p = mid
    _, b_alloc = solve(hi_p)
    # Widths fixed: spread sparsity exactly over the convexified per-layer curves.
    pick = np.searchsorted(np.asarray(choices), b_alloc)
    curves = cost[np.arange(n), :, pick]  # [layers, grid]
    if nm is not None:
        return _nm_fill(curves[:, 1] - curves[:, 0], weights, sparsity, nm), b_alloc
    return _water_fill(curves, grid, weights, sparsity), b_alloc


def _cost_cube(table: SensitivityTable, grid: np.ndarray, choices: list[int]) -> np.ndarray:
    n = table.num_layers
    prune = np.stack([table.prune_curve(i, grid) for i in range(n)])
    quant = np.stack([table.quant_curve(i, np.asarray(choices, dtype=float)) for i in range(n)])
    cube = prune[:, :, None] + quant[:, None, :] * ((1.0 - grid) ** JOINT_EXPONENT)[None, :, None]
    if table.joint is not None:
        for i in range(n):
            for k, s in enumerate(grid):
                for j, b in enumerate(choices):
                    cube[i, k, j] = table.degradation(i, float(s), float(b))
    return cube


def _bit_units(weights: np.ndarray, choices: list[int], bits: float) -> tuple[np.ndarray, int]:
    """Integer size of each layer for the bit DP (exact for equal layers, 1/8 of the smallest
    layer's resolution otherwise) and the budget in those units."""
    units = np.maximum(np.round(weights / weights.min() * 8).astype(int), 1)
    return units, int(round(bits * units.sum()))


def _dp_bits(cost: np.ndarray, units: np.ndarray, choices: list[int], target: int) -> np.ndarray:
    """Pick a width index per layer minimizing the summed cost with ``sum(units * width)``
    as close to ``target`` as reachable (exact when reachable)."""
    n, m = cost.shape
    widths = np.asarray(choices)
    offset = int(units.sum() * widths[0])
    size = int(units.sum() * (widths[-1] - widths[0])) + 1
    best = np.full(size, np.inf)
    best[0] = 0.0
    choice = np.zeros((n, size), dtype=np.int16)
    for i in range(n):
        nxt = np.full(size, np.inf)
        for j in range(m):
            shift = int(units[i] * (widths[j] - widths[0]))
            cand = np.full(size, np.inf)
            cand[shift:] = best[: size - shift] + cost[i, j]
            better = cand < nxt
            nxt[better] = cand[better]
            choice[i, better] = j
        best = nxt
    reachable = np.flatnonzero(np.isfinite(best))
    goal = reachable[np.argmin(np.abs(reachable + offset - target))]
    pick = np.zeros(n, dtype=int)
    for i in range(n - 1, -1, -1):
        j = int(choice[i, goal])
        pick[i] = j
        goal -= int(units[i] * (widths[j] - widths[0]))
    return pick


def _water_fill(curves: np.ndarray, grid: np.ndarray, weights: np.ndarray, target: float) -> np.ndarray:
    """Minimize ``sum_i hull_i(s_i)`` subject to ``weights @ s == target``, where ``hull_i``
    is the lower convex hull of layer ``i``'s cost over ``grid``: fill the cheapest marginal
    segments first (cost per unit of budget), the last one partially."""
    n = len(curves)
    segments: list[tuple[float, int, float, float]] = []  # (cost per budget unit, layer, ds)
    for i in range(n):
        hull = _lower_hull(grid, curves[i])
        for a, b in zip(hull[:-1], hull[1:], strict=True):
            ds = grid[b] - grid[a]
            slope = (curves[i, b] - curves[i, a]) / ds
            segments.append((slope / weights[i], i, ds, 0.0))
    s = np.full(n, grid[0])
    need = target - weights @ s
    for _slope, i, ds, _ in sorted(segments, key=lambda seg: seg[0]):
        if need <= 1e-15:
            break
        take = min(ds, need / weights[i])
        s[i] += take
        need -= take * weights[i]
    return s


def _nm_fill(cost: np.ndarray, weights: np.ndarray, target: float, nm: float) -> np.ndarray:
    """Per layer 0 (dense) or ``nm`` (N:M): the layers cheapest per unit of budget
    (``cost / weight``) go N:M while that brings the weighted mean closer to ``target``."""
    s = np.zeros(len(cost))
    for i in np.argsort(cost / weights, kind="stable"):
        now = weights @ s
        if abs(now + weights[i] * nm - target) < abs(now - target) - 1e-12:
            s[i] = nm
    return s


def _lower_hull(x: np.ndarray, y: np.ndarray) -> list[int]:
    """Indices of the lower convex hull of points ``(x, y)`` (x ascending)."""
    hull: list[int] = []
    for k in range(len(x)):
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # Drop b if it lies on or above the segment from a to k.
            if (y[b] - y[a]) * (x[k] - x[a]) >= (y[k] - y[a]) * (x[b] - x[a]):
                hull.pop()
            else:
                break
        hull.append(k)
    return hull
