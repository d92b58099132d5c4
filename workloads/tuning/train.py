"""The tuning loop: LoRA set-up for either method, then ``steps`` optimizer steps on windows of
the corpus's tuning split, timed and with the process's memory watched."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from workloads import data as data_mod
from workloads.errors import UserError
from workloads.models import LoadedModel
from workloads.tuning import actcomp, lora, memory
from workloads.tuning.forward import num_layers
from workloads.tuning.schedule import (
    DEFAULT_NUM_EXITS,
    Window,
    default_exits,
    make_windows,
    schedule,
)
from workloads.tuning.step import METHODS, StepPlan, train_step

__all__ = ["TuneConfig", "TuneResult", "prepare", "tune", "tuning_batches"]


@dataclass
class TuneConfig:
    """Options of one tuning run (units in the comments)."""

    method: str = "adaptive"  # "adaptive" or "vanilla"
    steps: int = 30  # optimizer steps
    batch_size: int = 4  # sequences per step
    seq_len: int = 256  # tokens per sequence
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0  # gradient clipping (L2 norm); None disables
    rank: int = lora.DEFAULT_RANK  # LoRA rank
    alpha: float = lora.DEFAULT_ALPHA  # LoRA alpha (scale = alpha / rank)
    dropout: float = 0.0  # LoRA dropout probability
    window: int = 4  # adaptive: layers per window
    exits: list[int] | None = None  # adaptive: exit layers (0-based); None: default_exits
    num_exits: int = DEFAULT_NUM_EXITS  # adaptive: how many exits when `exits` is None
    schedule: str = "sequential"  # adaptive: sequential | round_robin | random
    act_bits: int = actcomp.EXACT_BITS  # bits of the activations kept for backward (16: as computed)
    seed: int = 0

    def validate(self, n_layers: int) -> None:
        """Check the configuration against a model of ``n_layers`` decoder layers.

        Raises:
            UserError: an unknown method, fewer than 1 step or rank, a learning rate that is not
                a positive finite number, unsupported ``act_bits``, dropout outside [0, 1), or
                (adaptive) a window or exits that do not fit the model (``make_windows``).
        """
        if self.method not in METHODS:
            raise UserError(f"unknown method '{self.method}': use one of {', '.join(METHODS)}")
        if self.steps < 1:
            raise UserError(f"--steps must be at least 1 (got {self.steps})")
        if self.rank < 1:
            raise UserError(f"--rank must be at least 1 (got {self.rank})")
        if not 0 < self.lr < float("inf"):
            raise UserError(f"--lr must be a positive number (got {self.lr})")
        actcomp.check_bits(self.act_bits)
        if not 0.0 <= self.dropout < 1.0:
            raise UserError(f"--lora-dropout must be in [0, 1) (got {self.dropout})")
        if self.method == "adaptive":
            make_windows(n_layers, self.window, self.exit_layers(n_layers))

    def exit_layers(self, n_layers: int) -> list[int]:
        """The exit layers the run trains through: the last layer for vanilla; else ``exits`` (sorted,
        distinct) or the default ``num_exits`` exits every ``window`` layers from the top.
        """
        if self.method == "vanilla":
            return [n_layers - 1]
        return sorted(set(self.exits)) if self.exits else default_exits(n_layers, self.window, self.num_exits)

    def windows(self, n_layers: int) -> list[Window]:
        """The windows the run trains (one per exit; all layers as one window for vanilla)."""
        if self.method == "vanilla":
            return [Window(0, n_layers - 1)]
        return make_windows(n_layers, self.window, self.exit_layers(n_layers))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict."""
        return asdict(self)


@dataclass
class TuneResult:
    """What a tuning run did and measured."""

    model: nn.Module  # the peft-wrapped model, adapters trained
    config: TuneConfig
    windows: list[Window]
    exits: list[int]
    step_windows: list[Window]
    losses: list[float] = field(default_factory=list)  # per step, nats
    step_seconds: list[float] = field(default_factory=list)  # wall-clock per step
    trainable_params: int = 0  # adapter parameters trained over the run (all windows)
    trainable_params_per_step: int = 0  # largest number trained in one step
    baseline_rss_bytes: int = 0  # resident memory after set-up, before the first step
    peak_rss_bytes: int = 0  # peak resident memory over the steps (see peak_rss_reset)
    peak_rss_reset: bool = False  # True: the peak excludes model loading (clear_refs worked)
    setup_peak_rss_bytes: int = 0  # peak resident memory of loading and set-up, before the reset
    saved_tensor_bytes: int = 0  # largest per-step sum of tensors kept for backward (host)
    parameter_bytes: int = 0  # all model parameters, host (float32)
    gradient_bytes: int = 0  # gradients of one step's trainable parameters, host
    optimizer_bytes: int = 0  # AdamW state after the run, host

    def median_step_seconds(self) -> float:
        """Median wall-clock seconds per step, the first (warm-up) step left out when possible."""
        times = self.step_seconds[1:] if len(self.step_seconds) > 1 else self.step_seconds
        return statistics.median(times)


def prepare(loaded: LoadedModel, config: TuneConfig) -> tuple[nn.Module, list[Window]]:
    """Attach LoRA for the method (seeded) and return the peft model and its windows."""
    n_layers = num_layers(loaded.model)
    config.validate(n_layers)
    windows = config.windows(n_layers)
    lora_layers = sorted({i for w in windows for i in w.layers})
    torch.manual_seed(config.seed)
    model = lora.attach_lora(loaded.model, lora_layers, rank=config.rank, alpha=config.alpha, dropout=config.dropout)
    return model, windows


def tuning_batches(loaded: LoadedModel, config: TuneConfig, *, data: str | None = None) -> torch.Tensor:
    """``[steps, batch, seq_len]`` token windows from the tuning split, shuffled by the seed and
    reused in order when the split has fewer windows than the run needs."""
    windows = data_mod.split_windows(
        loaded.tokenizer, "tuning", config.seq_len, source=data, shuffle=True, seed=config.seed
    )
    need = config.steps * config.batch_size
    index = torch.arange(need) % len(windows)
    return windows[index].view(config.steps, config.batch_size, config.seq_len)


def tune(
    loaded: LoadedModel,
    config: TuneConfig,
    *,
    data: str | None = None,
    progress: bool = True,
    account_tensors: bool = True,
    after_step: Callable[[int, TuneResult], None] | None = None,
) -> TuneResult:
    """Tune ``loaded.model`` in place (LoRA via peft) and return what was done and measured.

    Memory: the resident-set peak is reset after set-up (so it covers the steps, not model
    loading) where the kernel allows it; ``account_tensors`` also sums, per step, the bytes of
    the tensors autograd keeps for backward (torch's own accounting). With ``act_bits`` < 16
    those tensors are stored packed (``actcomp``). ``after_step(n, result)`` is called after the
    ``n``-th optimizer step (1-based), e.g. to evaluate along the run for a learning curve; the
    model is in train mode and keeps training afterwards, so the callback must not change it.
    """
    model, windows = prepare(loaded, config)
    batches = tuning_batches(loaded, config, data=data)
    n_layers = num_layers(model)
    plans = _step_plans(model, config, windows)
    params = list(lora.lora_parameters(model).values())
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    result = TuneResult(model, config, windows, config.exit_layers(n_layers), [p.window for p in plans])
    result.trainable_params = sum(p.numel() for p in params)
    excluded = list(model.parameters())
    codec = (actcomp.ActivationCodec(config.act_bits, exclude=excluded)
             if config.act_bits < actcomp.EXACT_BITS else None)

    model.train()  # only LoRA dropout reacts to it; LLaMA has no other dropout
    _start_memory_accounting(model, result)
    bar = tqdm(range(config.steps), desc=f"tune {config.method}", disable=not progress or None)
    for i in bar:
        plan = plans[i]
        trainable = lora.set_trainable_layers(model, None if plan.method == "vanilla" else plan.window.layers)
        result.trainable_params_per_step = max(result.trainable_params_per_step, trainable)
        result.gradient_bytes = max(result.gradient_bytes, lora.tensor_bytes(lora.trainable_parameters(model)))
        log = memory.SavedTensorLog(exclude=excluded, codec=codec) if account_tensors else None
        start = time.perf_counter()
        with log if log is not None else codec if codec is not None else nullcontext():
            loss = train_step(model, optimizer, batches[i], plan, max_grad_norm=config.max_grad_norm)
        if log is not None:
            result.saved_tensor_bytes = max(result.saved_tensor_bytes, log.total_bytes)
        result.step_seconds.append(time.perf_counter() - start)
        result.losses.append(loss)
        bar.set_postfix(loss=f"{loss:.3f}", exit=plan.exit_layer)
        if after_step is not None:
            after_step(i + 1, result)
    # The kernel updates VmHWM lazily: after memory is handed back mid-run it can read below the
    # RSS the steps started from, which is a floor of their peak by definition.
    result.peak_rss_bytes = max(memory.peak_rss_bytes(), result.baseline_rss_bytes)
    result.parameter_bytes = lora.tensor_bytes(model.parameters())
    result.optimizer_bytes = lora.tensor_bytes(
        t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)
    )
    lora.set_trainable_layers(model, None)
    model.eval()
    return result


def _step_plans(model: nn.Module, config: TuneConfig, windows: list[Window]) -> list[StepPlan]:
    """What each of ``config.steps`` steps runs: the whole model (vanilla), or the window the
    schedule picks for that step (adaptive, Edge-LLM's adaptive layer tuning)."""
    if config.method == "vanilla":
        return [StepPlan.vanilla(model)] * config.steps
    return [StepPlan.adaptive(w) for w in schedule(windows, config.steps, config.schedule, seed=config.seed)]


def _start_memory_accounting(model: nn.Module, result: TuneResult) -> None:
    """Record the set-up's resident-set peak and the RSS the steps start from (bytes), and
    reset the kernel's peak where it allows it, so the later peak covers the steps alone."""
    # Weights loaded from safetensors may be file-mapped and not yet resident: touch every page
    # first, so the set-up RSS includes the whole model and the peak measures the steps alone.
    memory.touch(model.parameters())
    result.setup_peak_rss_bytes = memory.peak_rss_bytes()
    result.peak_rss_reset = memory.reset_peak_rss()
    result.baseline_rss_bytes = memory.rss_bytes()
