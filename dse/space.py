"""The joint search space: compression, tuning depth, dataflow schedule, and hardware knobs.

A ``Design`` is one point of it, sampled from an Optuna trial (or built by hand for the fixed
reference designs such as vanilla tuning). Everything a trial decides is here, nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

__all__ = ["ACT_BITS", "ALLOCATION_RULES", "Compression", "DATAFLOWS", "Design", "HEAD_BITS",
           "HW_ARRAYS", "HW_BANDWIDTH_SCALE", "HW_WEIGHT_SHARE", "MAX_EXITS", "NM_SPARSITY",
           "PATTERNS", "SCHEDULES", "SPACE_VERSION", "Tuning", "VOTES", "WINDOWS", "exit_choices",
           "suggest", "tunings", "vanilla", "window_choices"]

PATTERNS = ("unstructured", "2:4", "4:8")
ALLOCATION_RULES = ("paper", "owl", "optimal")  # workloads.luc.allocate rules the search samples
SCHEDULES = ("sequential", "round_robin", "random")
VOTES = ("max_conf", "mean", "entropy")
DATAFLOWS = ("auto", "ws", "os", "is")
WINDOWS = (2, 4, 8, 12, 15, 20)  # plus "all layers" (the model's depth), added per study in window_choices
ACT_BITS = (16, 8, 6)  # bits of the activations kept for backward (workloads.tuning.actcomp)
# Tied embedding / head bits. 8 is the checkpoint's own Q8_0 grid (lossless); lower is left out because
# the sensitivity table has no head entry, so the cheap predictor could not charge its loss.
HEAD_BITS = (16, 8)
NM_SPARSITY = 0.5  # 2:4 and 4:8: a layer is this sparse or dense, so the average is at most this
# Studies remember it: trials of another space do not mix (2: N:M mixed with dense layers; 3: windows up
# to all layers, act_bits, head_bits, exit translators).
SPACE_VERSION = 3
MAX_EXITS = 2  # each (window, exits) pair costs one real tuning run to score; 2 keeps the first study short

# Hardware knobs searched with --search-hw, as dotted overrides of the config (sim's --set keys).
HW_ARRAYS = ("8x8", "16x16", "32x32", "64x64", "16x64", "64x16")
HW_BANDWIDTH_SCALE = (0.5, 1.0, 2.0)
HW_WEIGHT_SHARE = (0.25, 0.5, 0.75)  # share of the on-chip SRAM given to the weight buffer


@dataclass(frozen=True)
class Compression:
    """The compression half of a design: LUC budget (parameter-weighted average sparsity and bits
    over the decoder layers' linear weights), sparsity pattern, allocation rule and head bits
    (Edge-LLM's layer-wise unified compression; ``workloads.luc``).
    """
    avg_sparsity: float  # parameter-weighted mean pruning ratio of the decoder layers, [0, 1)
    avg_bits: float  # parameter-weighted mean weight bits, 2..8 (16 = unquantized)
    pattern: str = "unstructured"
    rule: str = "optimal"  # per-layer allocation rule (workloads.luc)
    sharpness: float = 1.0  # how strongly the paper's rule follows sensitivity
    head_bits: int = 16  # tied embedding / LM head bits (16 = not quantized; workloads.luc.policy)


@dataclass(frozen=True)
class Tuning:
    """The tuning half of a design: vanilla or adaptive layer tuning (window of layers, number of
    exits, schedule of windows, vote rule), bits of the saved activations and exit translators
    (Edge-LLM's adaptive layer tuning and voting; ``workloads.tuning``).
    """
    method: str = "adaptive"  # or "vanilla": LoRA everywhere, loss at the output
    window: int = 4  # layers per window (adaptive)
    exits: int = 2  # number of exits, the top ones every `window` layers
    schedule: str = "sequential"
    vote: str = "max_conf"
    act_bits: int = 16  # bits of the activations kept for backward (16: as computed; workloads.tuning.actcomp)
    translators: bool = False  # exits below the top read through tuned-lens translators (workloads.exits)


@dataclass(frozen=True)
class Design:
    """One point of the joint search space: compression, tuning, dataflow (``auto``: the per-op
    scheduler) and hardware overrides (dotted config keys, as ``sim``'s ``--set``).
    """
    compression: Compression
    tuning: Tuning
    dataflow: str = "auto"  # per-op scheduler, or one fixed dataflow for every op
    hw: dict[str, Any] = field(default_factory=dict)  # dotted overrides of the hardware config

    def to_dict(self) -> dict[str, Any]:
        """The design as nested plain dicts (JSON-ready; ``pipeline.design_from_dict`` reads it back)."""
        return asdict(self)


def vanilla(num_layers: int) -> Design:
    """The reference: dense model, LoRA on every layer, loss at the output, full backprop."""
    return Design(Compression(0.0, 16.0), Tuning("vanilla", window=num_layers, exits=1), "auto")


def window_choices(num_layers: int) -> list[int]:
    """The window sizes a study searches: ``WINDOWS`` below the depth, and all layers."""
    return [w for w in WINDOWS if w < num_layers] + [num_layers]


def exit_choices(num_layers: int, window: int) -> range:
    """The exit counts a study searches for ``window``: 1 up to ``MAX_EXITS`` windows that fit."""
    return range(1, max(1, min(MAX_EXITS, num_layers // window)) + 1)


def tunings(*, num_layers: int, search_schedule: bool = False) -> list[Tuning]:
    """Every tuning configuration ``suggest`` can return, up to its vote (chosen at inference,
    so one real tuning run scores every rule): the search's real tuning runs and traces."""
    schedules = SCHEDULES if search_schedule else ("sequential",)
    return [
        Tuning("adaptive", window=w, exits=e, schedule=s, act_bits=a, translators=tr)
        for w in window_choices(num_layers)
        for e in exit_choices(num_layers, w)
        for s in schedules
        for a in ACT_BITS
        for tr in ((False, True) if e > 1 else (False,))
    ]


def suggest(
    trial: optuna.Trial,
    *,
    num_layers: int,
    max_sparsity: float = 0.7,
    search_hw: bool = False,
    search_schedule: bool = False,
    sram_kib: float | None = None,
    bandwidth_gbps: float | None = None,
) -> Design:
    """Sample one design. Categorical choices keep the space small enough for 100-200 trials.

    The compression budget reaches below the checkpoint's own 4-bit grid (``avg_bits`` from 2.5,
    mixed per layer by the allocation rule) and adds sparsity; the tuning side covers windows up
    to all layers, the bits of the activations kept for backward, the head's bits, and whether
    the exits below the top read through translators (only asked when there is such an exit)."""
    pattern = trial.suggest_categorical("pattern", PATTERNS)
    # Suggested for every pattern (a genetic sampler only inherits parameters all trials have);
    # N:M caps it: the least sensitive layers go N:M, the others stay dense.
    sparsity = trial.suggest_float("avg_sparsity", 0.0, max_sparsity, step=0.05)
    if pattern != "unstructured":
        sparsity = min(sparsity, NM_SPARSITY)
    bits = trial.suggest_float("avg_bits", 2.5, 8.0, step=0.5)
    rule = trial.suggest_categorical("rule", ALLOCATION_RULES)
    sharpness = trial.suggest_float("sharpness", 0.0, 2.0, step=0.25) if rule == "paper" else 1.0
    head_bits = trial.suggest_categorical("head_bits", HEAD_BITS)
    window = trial.suggest_categorical("window", window_choices(num_layers))
    choices = exit_choices(num_layers, window)
    exits = trial.suggest_int("exits", choices.start, choices.stop - 1)
    act_bits = trial.suggest_categorical("act_bits", ACT_BITS)
    translators = trial.suggest_categorical("translators", (False, True)) if exits > 1 else False
    tuning = Tuning(
        "adaptive",
        window=window,
        exits=exits,
        # The schedule only changes which window a step trains, not a step's cost, and each one
        # costs a real tuning run to score: searched on request, else the paper's sequential.
        schedule=trial.suggest_categorical("schedule", SCHEDULES) if search_schedule else "sequential",
        vote=trial.suggest_categorical("vote", VOTES) if exits > 1 else "max_conf",
        act_bits=act_bits,
        translators=translators,
    )
    dataflow = trial.suggest_categorical("dataflow", DATAFLOWS)
    hw: dict[str, Any] = {}
    if search_hw:
        rows, cols = map(int, trial.suggest_categorical("array", HW_ARRAYS).split("x"))
        hw["pe.rows"], hw["pe.cols"] = rows, cols
        if bandwidth_gbps:
            hw["dram.bandwidth_gbps"] = bandwidth_gbps * trial.suggest_categorical("bw_scale", HW_BANDWIDTH_SCALE)
        if sram_kib:
            share = trial.suggest_categorical("weight_share", HW_WEIGHT_SHARE)
            hw["sram.weight_kib"] = round(sram_kib * share)
            hw["sram.input_kib"] = round(sram_kib * (1 - share) / 2)
            hw["sram.output_kib"] = round(sram_kib * (1 - share) / 2)
    return Design(Compression(sparsity, bits, pattern, rule, sharpness, head_bits), tuning, dataflow, hw)
