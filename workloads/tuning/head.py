"""Exit heads: the final norm plus the tied LM head, applied at any decoder layer.

An exit adds no weights of its own unless it has a translator: it reuses the model's final norm
(``Architecture.final``: RMSNorm in SmolLM2, LayerNorm and ``project_out`` in OPT) and its (tied)
vocabulary projection. When the model carries exit translators (``workloads.exits.translator``),
the exit's hidden state goes through its translator first (the tuned lens:
``head(norm(A h + b))``); the translators are frozen here, trained beforehand on the calibration
split. The vocabulary is large (49,152 for SmolLM2), so ``[tokens, vocab]`` logits are never
built for the whole batch: the loss is computed a chunk of positions at a time, and its
gradient with respect to the hidden state is formed in the same pass (the head is frozen, so
that gradient is all the backward pass needs). This keeps the head's memory at one chunk of
logits for both tuning methods.

The head's matrix products are reported to hooks installed with :func:`head_product_hooks`
(the trace recorder uses them), since they do not go through an ``nn.Linear`` module.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
from torch import nn

from workloads.architecture import architecture
from workloads.exits.translator import translate
from workloads.tuning import actcomp

__all__ = ["DEFAULT_CHUNK", "ExitStats", "HeadHook", "HeadProduct", "exit_loss", "exit_stats",
           "head_product_hooks", "head_weight", "running_exit"]

DEFAULT_CHUNK = 256  # positions per head chunk: 256 x 49,152 float32 logits = 50 MB


@dataclass(frozen=True)
class HeadProduct:
    """One matrix product of an exit head: ``out[M, N] = A[M, K] @ B[K, N]``."""

    exit_layer: int  # decoder layer whose output the head reads
    phase: str  # "fwd" (logits) or "bwd_input" (gradient to the hidden state)
    M: int
    N: int
    K: int


HeadHook = Callable[[HeadProduct], None]
_HOOKS: ContextVar[tuple[HeadHook, ...]] = ContextVar("edgellm_head_hooks", default=())
_RUNNING: ContextVar[tuple[int, str] | None] = ContextVar("edgellm_running_exit", default=None)


def running_exit() -> tuple[int, str] | None:
    """``(exit layer, phase)`` of the head code running now, ``None`` outside a head: the trace
    recorder attributes the head's non-matrix work with it. The phase is ``bwd_input`` while
    the chunked loss forms its gradient inside the forward pass, else ``fwd``."""
    return _RUNNING.get()


@contextmanager
def _running(exit_layer: int, phase: str = "fwd") -> Iterator[None]:
    token = _RUNNING.set((exit_layer, phase))
    try:
        yield
    finally:
        _RUNNING.reset(token)


@contextmanager
def head_product_hooks(hook: HeadHook) -> Iterator[None]:
    """Call ``hook`` for every matrix product an exit head runs inside this block."""
    token = _HOOKS.set(_HOOKS.get() + (hook,))
    try:
        yield
    finally:
        _HOOKS.reset(token)


def _report(exit_layer: int, phase: str, m: int, n: int, k: int) -> None:
    for hook in _HOOKS.get():
        hook(HeadProduct(exit_layer, phase, m, n, k))


def head_weight(model: nn.Module) -> torch.Tensor:
    """The vocabulary projection ``[V, H]`` (tied to the embedding in SmolLM2)."""
    return architecture(model).head.weight


class _ChunkedLMLoss(torch.autograd.Function):
    """Mean next-token cross-entropy of ``hidden [N, H] @ weight[V, H]^T`` against
    ``targets [N]``, chunk by chunk; the gradient to ``hidden`` is built in the same pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk: int,
        exit_layer: int,
    ) -> torch.Tensor:
        n, h = hidden.shape
        vocab = weight.shape[0]
        need_grad = ctx.needs_input_grad[0]
        grad = torch.empty_like(hidden) if need_grad else None
        total = 0.0
        for s in range(0, n, chunk):
            part = hidden[s : s + chunk]
            tgt = targets[s : s + chunk]
            logits = part @ weight.T
            _report(exit_layer, "fwd", part.shape[0], vocab, h)
            lse = torch.logsumexp(logits, dim=-1)
            total += float((lse - logits.gather(1, tgt[:, None])[:, 0]).sum())
            if grad is not None:
                with _running(exit_layer, "bwd_input"):
                    # d(mean CE)/d logits = softmax - onehot, formed in place over the logits.
                    probs = logits.sub_(lse[:, None]).exp_()
                    probs[torch.arange(len(tgt)), tgt] -= 1.0
                    _report(exit_layer, "bwd_input", part.shape[0], h, vocab)
                    grad[s : s + chunk] = probs @ weight
                    # ``probs`` is ``logits`` (in place): drop both names, or the chunk lives
                    # on beside the next chunk's logits.
                    del probs
            del logits
        if grad is not None:
            with _running(exit_layer, "bwd_input"):
                grad.div_(n)
            # The loss gradient itself, not an activation: activation packing must leave it exact.
            ctx.save_for_backward(actcomp.keep_exact(grad))
        return hidden.new_tensor(total / n)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * grad_out, None, None, None, None


def exit_loss(
    model: nn.Module, hidden: torch.Tensor, ids: torch.Tensor, *, exit_layer: int, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """Mean next-token cross-entropy (nats) of the exit at ``exit_layer``, whose output is
    ``hidden [B, T, H]``, on token ids ``[B, T]`` (positions ``0..T-2`` predict ``1..T-1``).
    The head weight must be frozen (it is the tied embedding in both tuning methods)."""
    weight = head_weight(model)
    if weight.requires_grad and torch.is_grad_enabled():
        raise ValueError("exit_loss needs a frozen LM head (freeze it, or wrap the model with LoRA first)")
    with _running(exit_layer):
        normed = architecture(model).final(translate(model, hidden[:, :-1], exit_layer))
        flat = normed.reshape(-1, normed.shape[-1])
        targets = ids[:, 1:].reshape(-1)
        return _ChunkedLMLoss.apply(flat, weight, targets, chunk, exit_layer)


@dataclass(frozen=True)
class ExitStats:
    """Per predicted position (``[B, T-1-start]`` each): what voting needs from one exit."""

    target_logprob: torch.Tensor  # log p(next token), nats
    max_logprob: torch.Tensor  # log of the top probability (the exit's confidence)
    entropy: torch.Tensor  # entropy of the next-token distribution, nats


@torch.no_grad()
def exit_stats(
    model: nn.Module,
    hidden: torch.Tensor,
    ids: torch.Tensor,
    *,
    exit_layer: int,
    start: int = 0,
    chunk: int = DEFAULT_CHUNK,
) -> ExitStats:
    """Target log-probability, confidence and entropy of one exit, a chunk of positions at a
    time (the ``[B, T, V]`` logits never exist at once)."""
    with _running(exit_layer):
        return _exit_stats(model, hidden, ids, exit_layer=exit_layer, start=start, chunk=chunk)


def _exit_stats(
    model: nn.Module, hidden: torch.Tensor, ids: torch.Tensor, *, exit_layer: int, start: int, chunk: int
) -> ExitStats:
    weight = head_weight(model)
    normed = architecture(model).final(translate(model, hidden[:, start:-1], exit_layer))
    shape = normed.shape[:2]
    flat = normed.reshape(-1, normed.shape[-1])
    targets = ids[:, start + 1 :].reshape(-1)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for s in range(0, len(targets), chunk):
        part = flat[s : s + chunk]
        logits = (part @ weight.T).float()
        _report(exit_layer, "fwd", part.shape[0], weight.shape[0], weight.shape[1])
        logp = torch.log_softmax(logits, dim=-1)
        del logits
        tgt = logp.gather(1, targets[s : s + chunk, None])[:, 0]
        top = logp.max(dim=-1).values
        ent = -(logp.exp() * logp).sum(dim=-1)
        parts.append((tgt, top, ent))
    cat = [torch.cat(col).view(shape) for col in zip(*parts, strict=True)]
    return ExitStats(*cat)
