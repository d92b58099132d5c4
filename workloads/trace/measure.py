"""What the real step holds in memory, measured by torch's CPU allocator: the reference the
simulator's peak memory is checked against (``benchmarks/bench_sim_memory.py``).

The step is the one ``record_trace`` records (same plan, adapters, token ids, activation codec,
clipping and AdamW with the tuning defaults, in steady state after one unmeasured step that
creates the optimizer's moments), run without any recording hook. ``torch.profiler`` with
``profile_memory=True`` reports every allocation and free of the CPU allocator with its size;
their running sum is what the step allocated on top of what was resident before it
(parameters, buffers, optimizer state, the token ids), and its maximum is the step's peak.
This counts what the kernels allocate internally too, which the trace cannot see.
"""
from __future__ import annotations

import gc
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch._C._autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from workloads.errors import UserError
from workloads.models import LoadedModel
from workloads.trace.record import step_ids, step_plan
from workloads.tuning import actcomp, lora
from workloads.tuning.memory import SavedTensorLog
from workloads.tuning.step import StepPlan, step_loss
from workloads.tuning.train import TuneConfig

__all__ = ["MeasuredStep", "measure_step_memory"]


@dataclass(frozen=True)
class MeasuredStep:
    """Host bytes of one real step (the run's own precision: float32 on CPU).

    Attributes:
        resident_bytes: storages alive before the step (parameters, buffers, optimizer state,
            token ids), each counted once.
        step_peak_bytes: most bytes the allocator had handed out at once during the step,
            above ``resident_bytes``.
        end_bytes: bytes still allocated by the step when it ended, above ``resident_bytes``.
        saved_bytes: the distinct storages autograd saved for backward (saved-tensor hooks).
        events: allocator events counted.
        peak_fraction: where in the step the peak fell (its event's index / events).
    """

    resident_bytes: int
    step_peak_bytes: int
    end_bytes: int
    saved_bytes: int
    events: int
    peak_fraction: float

    @property
    def peak_bytes(self) -> int:
        """Resident plus the step's own peak: the most the step held at once."""
        return self.resident_bytes + self.step_peak_bytes


def _storages_bytes(tensors: list[torch.Tensor]) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        s = t.untyped_storage()
        seen[s.data_ptr()] = s.nbytes()
    return sum(seen.values())


def _allocations(prof: profile) -> np.ndarray:
    """Signed bytes of every CPU allocator event of a profile, in time order."""
    events = [(e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == DeviceType.CPU]
    events.sort(key=lambda x: x[0])  # stable: events of one nanosecond keep their order
    return np.array([b for _, b in events], dtype=np.int64)


def _one_step(work: torch.nn.Module, ids: torch.Tensor, plan: StepPlan,
              optimizer: torch.optim.Optimizer, log: SavedTensorLog | None,
              codec: actcomp.ActivationCodec | None) -> None:
    """Forward (activations packed when a codec is given, its packs dropped after forward as
    in ``record_trace``), backward, clipping, AdamW, gradients set to None."""
    config = TuneConfig()
    hooks = log if log is not None else codec if codec is not None else nullcontext()
    with hooks:
        loss = step_loss(work, ids, plan)
    loss.backward()
    del loss
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if config.max_grad_norm is not None and params:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure_step_memory(loaded: LoadedModel, *, method: str, window: int | None = None,
                        exit_layer: int | None = None, seq_len: int, batch: int,
                        lora_rank: int = lora.DEFAULT_RANK, act_bits: int = actcomp.EXACT_BITS,
                        seed: int = 0) -> MeasuredStep:
    """Run the step ``record_trace`` records (same arguments) and measure its memory.

    Raises:
        UserError: ``inference`` (no step to measure), a bad window or exit layer.
    """
    actcomp.check_bits(act_bits)
    model = loaded.model
    if hasattr(model, "peft_config"):
        raise UserError("measure_step_memory needs a model without adapters (it attaches its own)")
    plan, lora_layers = step_plan(model, method=method, window=window, exit_layer=exit_layer)
    if plan is None:
        raise UserError("an inference pass has no tuning step to measure: use --method vanilla or adaptive")
    ids = step_ids(model, seq_len=seq_len, batch=batch, seed=seed)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    work = lora.attach_lora(model, lora_layers, rank=lora_rank)
    try:
        config = TuneConfig()
        params = list(lora.lora_parameters(work).values())
        optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        excluded = list(work.parameters())
        codec = actcomp.ActivationCodec(act_bits, exclude=excluded) if act_bits < actcomp.EXACT_BITS else None
        _one_step(work, ids, plan, optimizer, None, codec)  # creates AdamW's moments
        state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        resident = _storages_bytes(excluded + list(work.buffers()) + state + [ids])
        gc.collect()
        log = SavedTensorLog(exclude=excluded, codec=codec)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            _one_step(work, ids, plan, optimizer, log, codec)
        sizes = _allocations(prof)
    finally:
        lora.detach_lora(work)
        for name, p in model.named_parameters():
            p.requires_grad_(flags.get(name, True))
    running = np.cumsum(sizes) if len(sizes) else np.zeros(1, dtype=np.int64)
    peak_at = int(np.argmax(running))
    return MeasuredStep(resident_bytes=resident, step_peak_bytes=max(0, int(running[peak_at])),
                        end_bytes=int(running[-1]), saved_bytes=log.total_bytes, events=len(sizes),
                        peak_fraction=peak_at / max(1, len(sizes)))
