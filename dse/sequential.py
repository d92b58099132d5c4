"""The sequential flow the joint search is measured against: compress first, for accuracy
alone, then choose tuning depth and schedule for speed.

Step 1 (hardware-blind compression): for each weight-storage budget (bits per weight after
pruning, ``(1 - sparsity) * bits``), keep the compression (sparsity/bits split, pattern,
allocation rule) with the lowest predicted loss. Step 2: for each kept compression, every
tuning depth with the per-op dataflow scheduler, simulated. Its Pareto front is what a team
gets when the ML side hands a compressed model to the hardware side.
"""
from __future__ import annotations

import itertools
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial
from tqdm.auto import tqdm

from common.pareto import pareto_mask
from dse.pipeline import Search
from dse.space import (
    ALLOCATION_RULES,
    MAX_EXITS,
    NM_SPARSITY,
    PATTERNS,
    VOTES,
    WINDOWS,
    Compression,
    Design,
    Tuning,
)
from dse.study import OBJECTIVES
from workloads.errors import UserError
from workloads.luc.predict import predict_loss_increase

__all__ = ["BITS", "SPARSITIES", "accuracy_first", "compressions", "latency_gain",
           "sequential_front", "storage_bits", "tunings"]

SPARSITIES = tuple(round(0.1 * i, 2) for i in range(8))  # 0 .. 0.7
BITS = tuple(2.5 + 0.5 * i for i in range(12))  # 2.5 .. 8


def storage_bits(c: Compression) -> float:
    """Bits stored per original weight after pruning (the size a compression budget buys)."""
    return (1.0 - c.avg_sparsity) * c.avg_bits


def compressions(max_sparsity: float) -> list[Compression]:
    """The compression grid of the sequential flow's first stage: every pattern, allocation rule and
    bit-width with each sparsity of the grid up to ``max_sparsity`` (N:M patterns: up to their
    fixed sparsity, and never dense).
    """
    out = []
    for pattern, rule, bits in itertools.product(PATTERNS, ALLOCATION_RULES, BITS):
        cap = max_sparsity if pattern == "unstructured" else min(max_sparsity, NM_SPARSITY)
        sparsities = [s for s in SPARSITIES if s <= cap and (s > 0 or pattern == "unstructured")]
        out.extend(Compression(s, bits, pattern, rule) for s in sparsities)
    return out


def accuracy_first(search: Search) -> list[Compression]:
    """Step 1: per storage budget (rounded to 0.25 bit), the most accurate compression."""
    best: dict[float, tuple[float, Compression]] = {}
    for c in compressions(search.settings.max_sparsity):
        design = Design(c, Tuning())
        try:
            policy = search.evaluator.policy(design)
        except UserError:
            continue  # a budget the integer per-layer widths cannot meet
        loss = predict_loss_increase(search.evaluator.table(policy.pattern), policy) if policy else 0.0
        key = round(storage_bits(c) * 4) / 4
        if key not in best or loss < best[key][0]:
            best[key] = (loss, c)
    return [c for _, c in sorted(best.values(), key=lambda lc: storage_bits(lc[1]))]


def tunings(num_layers: int) -> list[Tuning]:
    """The tuning grid of the sequential flow's second stage: adaptive tuning with every window that
    fits ``num_layers``, 1..``MAX_EXITS`` exits and, with several exits, every vote rule.
    """
    out = []
    for window in (w for w in WINDOWS if w <= num_layers):
        for exits in range(1, max(1, min(MAX_EXITS, num_layers // window)) + 1):
            for vote in VOTES if exits > 1 else ("max_conf",):
                out.append(Tuning("adaptive", window=window, exits=exits, vote=vote))
    return out


def sequential_front(search: Search, *, progress: bool = True) -> pd.DataFrame:
    """Step 1 then step 2; returns every evaluated point with an ``on_front`` column."""
    rows: list[dict[str, Any]] = []
    chosen = accuracy_first(search)
    plans = list(itertools.product(chosen, tunings(search.num_layers)))
    for comp, tuning in tqdm(plans, desc="sequential flow", disable=not progress or None):
        design = Design(comp, tuning, "auto")
        outcome, _ = search.evaluator.evaluate(design)
        if not outcome.fits:
            continue
        rows.append({"perplexity": outcome.perplexity, "latency_s": outcome.latency_s,
                     "memory_bytes": float(outcome.memory_bytes), "storage_bits": storage_bits(comp),
                     **{f"compression_{k}": v for k, v in comp.__dict__.items()},
                     **{f"tuning_{k}": v for k, v in tuning.__dict__.items()}})
    table = pd.DataFrame(rows)
    if len(table):
        table["on_front"] = pareto_mask(table[list(OBJECTIVES)].to_numpy())
    return table


def latency_gain(joint: list[FrozenTrial], sequential: pd.DataFrame,
                 max_perplexity: float = float("inf")) -> dict[str, Any]:
    """Where on the joint front is latency lowest relative to the sequential flow at equal or
    better accuracy? For each joint member with perplexity at most ``max_perplexity`` (a model
    worse than that is of no use, however fast), the fastest sequential point whose perplexity
    is no higher; the gain is ``1 - joint / sequential`` latency."""
    best: dict[str, Any] = {"max_gain": None, "max_perplexity": max_perplexity}
    if sequential.empty:
        return best
    seq = sequential.sort_values("perplexity")
    gains = []
    for t in joint:
        ppl, lat = t.values[0], t.values[1]
        if ppl > max_perplexity:
            continue
        ok = seq[seq["perplexity"] <= ppl]
        if ok.empty:
            continue
        seq_lat = float(ok["latency_s"].min())
        gains.append({"trial": t.number, "perplexity": ppl, "joint_latency_s": lat,
                      "sequential_latency_s": seq_lat, "gain": 1.0 - lat / seq_lat})
    if gains:
        top = max(gains, key=lambda g: g["gain"])
        best = {"max_gain": top["gain"], "max_perplexity": max_perplexity, "at": top, "points": gains}
    return best
