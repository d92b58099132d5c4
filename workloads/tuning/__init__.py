"""Adaptive layer tuning and voting (Edge-LLM component 2), and the vanilla LoRA baseline.

- ``lora``: peft LoRA on all linear layers of chosen decoder layers;
- ``forward``: the decoder run layer by layer, cut at an exit, autograd only from a window on;
- ``head``: exit heads (final norm + tied LM head), chunked loss and statistics;
- ``schedule``: windows, exits, and the sequential / round-robin / random schedules;
- ``step`` and ``train``: one tuning step, and the tuning loop;
- ``voting`` and ``evaluation``: voted exits as a metrics ``Scorer``, and their evaluation;
- ``memory``: host RSS (peak reset after set-up) and torch's accounting of saved tensors;
- ``compression``: a LUC policy applied before tuning (adapters stay full precision).
"""
from workloads.tuning.schedule import SCHEDULES, Window, default_exits, make_windows, schedule
from workloads.tuning.step import METHODS, StepPlan, step_loss, train_step
from workloads.tuning.train import TuneConfig, TuneResult, prepare, tune
from workloads.tuning.voting import RULES, ExitVoter, vote_logprobs, voting_scorer

__all__ = [
    "METHODS",
    "RULES",
    "SCHEDULES",
    "ExitVoter",
    "StepPlan",
    "TuneConfig",
    "TuneResult",
    "Window",
    "default_exits",
    "make_windows",
    "prepare",
    "schedule",
    "step_loss",
    "train_step",
    "tune",
    "vote_logprobs",
    "voting_scorer",
]
