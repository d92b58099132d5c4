"""One tuning step of either method: forward to the exit, loss, backward.

- vanilla: all layers run with autograd, loss at the final output;
- adaptive: layers below the window run without autograd, the window's layers with it, the
  loss is taken at the window's exit, and the layers above the exit do not run.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workloads.tuning.forward import num_layers, run_layers
from workloads.tuning.head import DEFAULT_CHUNK, exit_loss
from workloads.tuning.schedule import Window

__all__ = ["METHODS", "StepPlan", "step_loss", "train_step"]

METHODS = ("vanilla", "adaptive")


@dataclass(frozen=True)
class StepPlan:
    """What one step runs: all layers (vanilla) or one window and its exit (adaptive)."""

    method: str
    window: Window

    @classmethod
    def vanilla(cls, model: nn.Module) -> StepPlan:
        """A vanilla step: every layer of ``model`` trained, loss at the output."""
        return cls("vanilla", Window(0, num_layers(model) - 1))

    @classmethod
    def adaptive(cls, window: Window) -> StepPlan:
        """An adaptive step: ``window`` trained through its exit, no layer above it run."""
        return cls("adaptive", window)

    @property
    def exit_layer(self) -> int:
        """The layer whose output the step's loss is computed from."""
        return self.window.end

    @property
    def grad_from(self) -> int:
        """The first layer autograd runs through (0 for vanilla; the window's start for adaptive)."""
        # Vanilla backpropagates through every layer: autograd from layer 0 on.
        return 0 if self.method == "vanilla" else self.window.start


def step_loss(model: nn.Module, ids: torch.Tensor, plan: StepPlan, *, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The training loss (mean next-token cross-entropy, nats) of one batch ``[B, T]``."""
    hidden = run_layers(model, ids, last_layer=plan.exit_layer, grad_from=plan.grad_from)[plan.exit_layer]
    return exit_loss(model, hidden, ids, exit_layer=plan.exit_layer, chunk=chunk)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ids: torch.Tensor,
    plan: StepPlan,
    *,
    max_grad_norm: float | None = 1.0,
) -> float:
    """Forward, backward and optimizer update of the currently trainable adapters (the caller
    sets which are trainable); returns the loss."""
    loss = step_loss(model, ids, plan)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if max_grad_norm is not None and params:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach().item()
