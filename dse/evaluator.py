"""Score one design: predicted perplexity (cheap fidelity), simulated latency and memory.

Predicted loss = measured loss of the dense model after brief tuning with the design's tuning
configuration (``TuningTable``, real runs cached per configuration) + the loss increase that the
design's compression policy causes, predicted from the measured per-layer sensitivity table
(``workloads.luc``). Perplexity = exp(loss). The Pareto front's members are later measured for
real (``dse.measure.measure``) and both numbers are kept.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any

import sim
from dse.hardware import StepCost, TraceBank, simulate_design
from dse.measure import Fidelity, TuningTable
from dse.space import Design
from workloads.luc import allocate as luc_allocate
from workloads.luc.policy import Policy
from workloads.luc.predict import predict_loss_increase
from workloads.luc.table import SensitivityTable
from workloads.models import LoadedModel

__all__ = ["Evaluator", "Outcome"]


@dataclass(frozen=True)
class Outcome:
    """What one design costs and how good it is predicted to be: the three objectives (perplexity,
    ``latency_s`` per tuning step, ``memory_bytes`` peak) and what the trial records beside them.
    Perplexity = exp(tuning NLL + predicted compression loss increase), after Edge-LLM's
    accuracy proxy; cost from the simulator.
    """
    perplexity: float  # predicted, on the search's split
    latency_s: float  # simulated seconds per tuning step (mean over the schedule's windows)
    memory_bytes: int  # simulated peak memory of a tuning step
    energy_j: float
    fits: bool  # peak memory fits the device DRAM
    tuning_nll: float  # measured loss after brief dense tuning (nats/token)
    compression_nll: float  # predicted loss increase from compression (nats/token)
    avg_sparsity: float  # achieved by the policy, parameter-weighted
    avg_bits: float
    utilization: float
    area_mm2: float | None

    def values(self) -> tuple[float, float, float]:
        """The objectives in the study's order (``dse.study.OBJECTIVES``): perplexity, seconds per
        tuning step, peak bytes.
        """
        return (self.perplexity, self.latency_s, float(self.memory_bytes))

    def attrs(self) -> dict[str, Any]:
        """Every field that is set, for the trial's user attributes (``None`` fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None}


class Evaluator:
    """Everything measured once per study (sensitivities, traces, tuning table) and the
    per-design scoring that combines them."""

    def __init__(
        self,
        loaded: LoadedModel,
        hw: sim.HwConfig,
        *,
        sensitivity: dict[str, SensitivityTable],
        fidelity: Fidelity,
        bank: TraceBank,
        data: str | None = None,
    ) -> None:
        """``sensitivity`` maps each pruning pattern to its measured table (the pattern, pruning
        and quantization methods are part of what a table measured)."""
        self.loaded = loaded
        self.hw = hw
        self.sensitivity = sensitivity
        self.fidelity = fidelity
        self.bank = bank
        self.tuning = TuningTable(loaded, fidelity, data=data)
        self.num_layers = int(loaded.model.config.num_hidden_layers)

    def policy(self, design: Design) -> Policy | None:
        """The per-layer policy of a design's compression budget (None: dense, unquantized)."""
        c = design.compression
        if c.avg_sparsity <= 0 and c.avg_bits >= 16:
            return dataclasses.replace(Policy.dense(self.num_layers), head_bits=c.head_bits) if c.head_bits < 16 else None
        table = self.table(c.pattern if c.avg_sparsity > 0 else "unstructured")
        policy = luc_allocate.allocate(table, c.avg_sparsity, c.avg_bits, rule=c.rule, sharpness=c.sharpness)
        # The head's bits are a choice of their own (the allocation covers the decoder layers).
        return dataclasses.replace(policy, head_bits=c.head_bits) if c.head_bits != policy.head_bits else policy

    def table(self, pattern: str) -> SensitivityTable:
        """The sensitivity table the policies of sparsity ``pattern`` are allocated from.

        Raises:
            KeyError: no table was measured for ``pattern``.
        """
        if pattern not in self.sensitivity:
            raise KeyError(f"no sensitivity table for pattern {pattern!r}")
        return self.sensitivity[pattern]

    def evaluate(self, design: Design) -> tuple[Outcome, Policy | None]:
        """Predict ``design``'s quality and simulate its cost: the LUC policy for its compression
        (``None`` for an uncompressed design), the measured tuning loss of its tuning depth, the
        predicted loss increase of the policy, and the simulated tuning step on the (overridden)
        hardware. Returns the ``Outcome`` and the policy.

        Raises:
            UserError: an impossible budget (from the allocation).
            sim.SimError: an op no tiling can map on the hardware.
        """
        policy = self.policy(design)
        tuning_nll = self.tuning.nll(design.tuning)
        comp = predict_loss_increase(self.table(policy.pattern), policy) if policy is not None else 0.0
        cost: StepCost = simulate_design(design, policy, self.bank, self.hw)
        hw = sim.apply_overrides(self.hw, design.hw) if design.hw else self.hw
        area_mm2 = hw.area_proxy()["area_mm2"]
        avg_s, avg_b = luc_allocate.average(policy, self.table(policy.pattern)) if policy is not None else (0.0, 16.0)
        outcome = Outcome(
            perplexity=math.exp(tuning_nll + comp),
            latency_s=cost.latency_s,
            memory_bytes=cost.peak_memory_bytes,
            energy_j=cost.energy_j,
            fits=cost.fits,
            tuning_nll=tuning_nll,
            compression_nll=comp,
            avg_sparsity=avg_s,
            avg_bits=avg_b,
            utilization=cost.utilization,
            area_mm2=area_mm2,
        )
        return outcome, policy

