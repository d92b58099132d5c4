"""The configurations of the headline experiment: the method's parts switched on one at a time,
the baselines an edge user picks today, and the ablation rows.

Every configuration runs under the same scheduler (``Plan.dataflow``: the per-op scheduler by
default, or one fixed dataflow for all), the same cost model, the same data and the same
evaluation. Advantages given to one configuration only appear as ablation rows, labelled.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from dse.space import Compression, Design, Tuning
from workloads.luc import allocate as luc_allocate
from workloads.luc.policy import DENSE_BITS, Policy
from workloads.luc.sensitivity import profile_sensitivity
from workloads.models import LoadedModel

__all__ = ["ABLATIONS", "CONFIGS", "DESCRIPTIONS", "Plan", "ablation_name", "make_policy", "qlora_policy"]

CONFIGS = ("vanilla", "qlora", "top-w", "luc", "adaptive", "luc+adaptive", "full")
# Rows whose step is simulated under another dataflow; their quality is the named configuration's.
ABLATIONS = {"full": "the scheduler's own gain", "vanilla": "the paper-style reading of vanilla"}
QLORA_BITS = 4  # QLoRA's base weights; here on the checkpoint's own grid (Q4_1: 4 bits, groups of 32)
QLORA_GROUP = 32


def ablation_name(config: str, dataflow: str) -> str:
    """Name of the row that runs ``config`` under one fixed ``dataflow`` instead of the common one."""
    return f"{config}, {dataflow} only"


@dataclass(frozen=True)
class Plan:
    """The knobs of the experiment (units in the comments)."""

    sparsity: float = 0.0  # LUC average sparsity
    bits: float = 4.0  # LUC average weight bits
    rule: str = "optimal"
    prune: str = "wanda"
    quant: str = "gptq"
    group_size: int = 32  # the checkpoint's own group (Q4_1)
    window: int = 12  # layers per adaptive window (and of the top-W LoRA baseline)
    exits: int = 1  # adaptive exits (the top ones)
    vote: str = "max_conf"  # voting rule of the full method (with exits > 1)
    dataflow: str = "auto"  # every configuration: per-op scheduler (auto) or one fixed dataflow
    ablation_df: str = "ws"  # the fixed dataflow of the ablation rows
    head_bits: int = 8  # LUC: tied embedding / LM head (8 = the checkpoint's own Q8_0 grid, lossless)
    act_bits: int = 6  # full method: bits of the activations kept for backward (16: as computed)
    pattern: str = "unstructured"  # LUC pruning pattern (unstructured, 2:4, 4:8)
    sharpness: float = 1.0  # the paper rule: how strongly the allocation follows sensitivity
    schedule: str = "sequential"  # adaptive: which window a step trains
    translators: bool = False  # adaptive: exits below the top read through tuned-lens translators

    def design(self, name: str, num_layers: int) -> Design:
        """The search-space point of configuration ``name`` (one of ``CONFIGS``)."""
        luc = name in ("luc", "luc+adaptive", "full")
        comp = (Compression(self.sparsity, self.bits, self.pattern, self.rule, self.sharpness, self.head_bits) if luc
                else Compression(0.0, 16.0))
        if name == "qlora":
            comp = Compression(0.0, float(QLORA_BITS))
        if name in ("adaptive", "luc+adaptive", "full"):
            tuning = Tuning("adaptive", window=self.window, exits=self.exits, schedule=self.schedule, vote=self.vote,
                            act_bits=self.act_bits if name == "full" else 16, translators=self.translators)
        elif name == "top-w":  # LoRA on the top W layers, the loss at the output: one exit, the last
            tuning = Tuning("adaptive", window=self.window, exits=1)
        else:
            tuning = Tuning("vanilla", window=num_layers, exits=1)
        return Design(comp, tuning, self.dataflow)


def make_policy(loaded: LoadedModel, plan: Plan, *, data: str | None, progress: bool) -> Policy:
    """The LUC policy of the plan, quantizing in the plan's groups and its head bits (the
    allocator sets neither)."""
    table = profile_sensitivity(loaded, data=data, prune=plan.prune, quant=plan.quant, group_size=plan.group_size,
                                pattern=plan.pattern, progress=progress)
    policy = luc_allocate.allocate(table, plan.sparsity, plan.bits, rule=plan.rule, sharpness=plan.sharpness)
    return replace(policy, group_size=plan.group_size, head_bits=plan.head_bits)


def qlora_policy(num_layers: int) -> Policy:
    """QLoRA's base model (Dettmers et al., 2023): every decoder linear weight at 4 bits, round to
    nearest in groups, the embedding / LM head left at 16 bits. The checkpoint's own grid (Q4_1,
    groups of 32) stands in for NF4."""
    return Policy.uniform(num_layers, 0.0, QLORA_BITS, quant="rtn", group_size=QLORA_GROUP, head_bits=DENSE_BITS,
                          meta={"rule": "qlora"})


DESCRIPTIONS = {
    "vanilla": "dense 16-bit weights, LoRA on every layer, loss at the output, backprop through all layers",
    "qlora": "QLoRA: 4-bit base weights (groups of 32), 16-bit head, LoRA on every layer, full backprop",
    "top-w": "LoRA on the top W layers only, the layers below frozen (no autograd), loss at the output, no exits",
    "luc": "LUC policy (per-layer sparsity and bits, head bits), LoRA on every layer",
    "adaptive": "dense weights, adaptive layer tuning: windows of W layers trained through their exits",
    "luc+adaptive": "LUC policy and adaptive layer tuning",
    "full": "LUC, adaptive layer tuning and activations kept for backward at act_bits",
}
