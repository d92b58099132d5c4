"""The joint search space: compression, tuning depth, dataflow schedule, and hardware knobs.

A ``Design`` is one point of it, sampled from an Optuna trial (or built by hand for the fixed
reference designs such as vanilla tuning). Everything a trial decides is here, nothing else.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna

PATTERNS = ("unstructured", "2:4", "4:8")
RULES = ("paper", "owl", "optimal")
SCHEDULES = ("sequential", "round_robin", "random")
VOTES = ("max_conf", "mean", "entropy")
DATAFLOWS = ("auto", "ws", "os", "is")
WINDOWS = (2, 4, 8, 15)
NM_SPARSITY = 0.5  # 2:4 and 4:8: a layer is this sparse or dense, so the average is at most this
SPACE_VERSION = 2  # studies remember it: trials of another space do not mix (2: N:M mixed with dense layers)
MAX_EXITS = 2  # each (window, exits) pair costs one real tuning run to score; 2 keeps the first study short

# Hardware knobs searched with --search-hw, as dotted overrides of the config (sim's --set keys).
HW_ARRAYS = ("8x8", "16x16", "32x32", "64x64", "16x64", "64x16")
HW_BANDWIDTH_SCALE = (0.5, 1.0, 2.0)
HW_WEIGHT_SHARE = (0.25, 0.5, 0.75)  # share of the on-chip SRAM given to the weight buffer


@dataclass(frozen=True)
class Compression:
    avg_sparsity: float  # parameter-weighted mean pruning ratio of the decoder layers, [0, 1)
    avg_bits: float  # parameter-weighted mean weight bits, 2..8 (16 = unquantized)
    pattern: str = "unstructured"
    rule: str = "optimal"  # per-layer allocation rule (workloads.luc)
    sharpness: float = 1.0  # how strongly the paper's rule follows sensitivity


@dataclass(frozen=True)
class Tuning:
    method: str = "adaptive"  # or "vanilla": LoRA everywhere, loss at the output
    window: int = 4  # layers per window (adaptive)
    exits: int = 2  # number of exits, the top ones every `window` layers
    schedule: str = "sequential"
    vote: str = "max_conf"
    act_bits: int = 16  # bits of the activations kept for backward (16: as computed; workloads.tuning.actcomp)


@dataclass(frozen=True)
class Design:
    compression: Compression
    tuning: Tuning
    dataflow: str = "auto"  # per-op scheduler, or one fixed dataflow for every op
    hw: dict[str, Any] = field(default_factory=dict)  # dotted overrides of the hardware config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vanilla(num_layers: int) -> Design:
    """The reference: dense model, LoRA on every layer, loss at the output, full backprop."""
    return Design(Compression(0.0, 16.0), Tuning("vanilla", window=num_layers, exits=1), "auto")


def tunings(*, num_layers: int, search_schedule: bool = False) -> list[Tuning]:
    """Every tuning configuration ``suggest`` can return, up to its vote (chosen at inference,
    so one real tuning run scores every rule): the search's real tuning runs and traces."""
    schedules = SCHEDULES if search_schedule else ("sequential",)
    return [
        Tuning("adaptive", window=w, exits=e, schedule=s)
        for w in WINDOWS if w <= num_layers
        for e in range(1, max(1, min(MAX_EXITS, num_layers // w)) + 1)
        for s in schedules
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
    """Sample one design. Categorical choices keep the space small enough for 100-200 trials."""
    pattern = trial.suggest_categorical("pattern", PATTERNS)
    # Suggested for every pattern (a genetic sampler only inherits parameters all trials have);
    # N:M caps it: the least sensitive layers go N:M, the others stay dense.
    sparsity = trial.suggest_float("avg_sparsity", 0.0, max_sparsity, step=0.05)
    if pattern != "unstructured":
        sparsity = min(sparsity, NM_SPARSITY)
    bits = trial.suggest_float("avg_bits", 2.5, 8.0, step=0.5)
    rule = trial.suggest_categorical("rule", RULES)
    sharpness = trial.suggest_float("sharpness", 0.0, 2.0, step=0.25) if rule == "paper" else 1.0
    window = trial.suggest_categorical("window", [w for w in WINDOWS if w <= num_layers])
    exits = trial.suggest_int("exits", 1, max(1, min(MAX_EXITS, num_layers // window)))
    tuning = Tuning(
        "adaptive",
        window=window,
        exits=exits,
        # The schedule only changes which window a step trains, not a step's cost, and each one
        # costs a real tuning run to score: searched on request, else the paper's sequential.
        schedule=trial.suggest_categorical("schedule", SCHEDULES) if search_schedule else "sequential",
        vote=trial.suggest_categorical("vote", VOTES) if exits > 1 else "max_conf",
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
    return Design(Compression(sparsity, bits, pattern, rule, sharpness), tuning, dataflow, hw)
