"""Training exit translators on cached hidden states: the base model stays frozen and nothing
back-propagates through the decoder (the states are inputs, computed once).

- :func:`distill`: the tuned lens's objective (Belrose et al., 2023, eq. 3): the mean over tokens
  of ``KL(p_final || p_exit)``, where ``p_final`` is the model's own next-token distribution (final
  layer) and ``p_exit = softmax(head(norm(A h + b)))``, minimized with Adam over the translator's
  parameters only;
- :func:`fit_lstsq`: a closed-form warm start (Din et al., 2023, "Jump to Conclusions", the
  linear map between layers fitted by least squares): the affine map of ``h_l`` that best
  predicts the final layer's hidden state divided by its RMS (the final norm is invariant to the
  scale, so only the direction is a target), with ridge ``lambda`` toward the identity. One
  ``d x d`` solve per exit instead of many passes through the vocabulary-sized head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from workloads.exits.translator import Translator
from workloads.architecture import architecture
from workloads.tuning.head import head_weight

INITS = ("identity", "lstsq")


@dataclass
class DistillResult:
    """Loss curve of one translator (mean KL per token, nats, per optimizer step)."""

    exit_layer: int
    losses: list[float] = field(default_factory=list)
    tokens: int = 0  # training tokens per epoch


def unit_rms(h: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``h [..., d]`` divided by its root mean square over the last dimension."""
    return h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps)


@torch.no_grad()
def fit_lstsq(x: torch.Tensor, y: torch.Tensor, *, ridge: float = 1e-3) -> Translator:
    """The full affine translator ``A h + b`` minimizing
    ``sum_n ||A x_n + b - unit_rms(y_n)||^2 + ridge * N * ||A - I * s||_F^2`` over tokens ``n``,
    with ``x [N, d]`` an exit's hidden states, ``y [N, d]`` the final layer's at the same
    positions, and ``s`` the mean ratio of target to input scale (so the ridge pulls toward a
    rescaled identity, the plain exit). Solved in float64.

    Raises:
        ValueError: ``x`` and ``y`` differ in shape, or there are fewer tokens than dimensions.
    """
    if x.shape != y.shape or x.dim() != 2:
        raise ValueError(f"fit_lstsq needs x and y of one shape [N, d] (got {tuple(x.shape)} and {tuple(y.shape)})")
    n, d = x.shape
    if n <= d:
        raise ValueError(f"fit_lstsq needs more tokens than hidden dimensions (got {n} <= {d}); use more windows")
    x64, t64 = x.double(), unit_rms(y.double())
    mx, mt = x64.mean(0), t64.mean(0)
    xc, tc = x64 - mx, t64 - mt
    scale = float(tc.norm() / xc.norm().clamp_min(1e-12))
    gram = xc.T @ xc
    lam = ridge * float(torch.diagonal(gram).mean())
    # (Xc^T Xc + lam I) A^T = Xc^T Tc + lam * scale * I
    rhs = xc.T @ tc + lam * scale * torch.eye(d, dtype=torch.float64)
    a_t = torch.linalg.solve(gram + lam * torch.eye(d, dtype=torch.float64), rhs)
    out = Translator(d)
    out.linear.weight.copy_(a_t.T.float())
    out.linear.bias.copy_((mt - mx @ a_t).float())
    return out


def _log_probs(model: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``log_softmax(head(norm(h)))``, ``[N, V]`` float32, from hidden states ``h [N, d]``."""
    return torch.log_softmax(architecture(model).final(h) @ head_weight(model).T, dim=-1)


def distill(
    model: nn.Module,
    translator: Translator,
    x: torch.Tensor,
    final: torch.Tensor,
    *,
    exit_layer: int,
    epochs: int = 1,
    batch_tokens: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> DistillResult:
    """Train ``translator`` in place by KL distillation (see the module docstring) on the exit's
    hidden states ``x [N, d]`` and the final layer's at the same positions ``final [N, d]``,
    ``epochs`` passes over shuffled batches of ``batch_tokens`` positions. The model's weights
    are only read (the head is the frozen tied embedding).

    Raises:
        ValueError: ``x`` and ``final`` differ in shape.
    """
    if x.shape != final.shape:
        raise ValueError(f"distill needs exit and final states of one shape (got {tuple(x.shape)} and {tuple(final.shape)})")
    frozen = [p for p in model.parameters() if p.requires_grad]
    params = list(translator.parameters())
    result = DistillResult(exit_layer, tokens=len(x))
    try:
        for p in frozen:  # the head and the norm are read, never trained: no gradient for them
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        translator.train()
        _distill_loop(model, translator, x, final, result, epochs=epochs, batch_tokens=batch_tokens, lr=lr,
                      seed=seed, progress=progress)
    finally:
        for p in params:
            p.requires_grad_(False)
        for p in frozen:
            p.requires_grad_(True)
        translator.eval()
    return result


def _distill_loop(model: nn.Module, translator: Translator, x: torch.Tensor, final: torch.Tensor,
                  result: DistillResult, *, epochs: int, batch_tokens: int, lr: float, seed: int,
                  progress: bool) -> None:
    opt = torch.optim.Adam(list(translator.parameters()), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(x) / batch_tokens)
    with tqdm(total=steps, desc=f"distill exit {result.exit_layer}", disable=not progress or None, leave=False) as bar:
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for s in range(0, len(x), batch_tokens):
                idx = order[s : s + batch_tokens]
                with torch.no_grad():
                    target = _log_probs(model, final[idx])
                logq = _log_probs(model, translator(x[idx]))
                loss = torch.nn.functional.kl_div(logq, target, log_target=True, reduction="batchmean")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                result.losses.append(float(loss.detach()))
                bar.update(1)
                bar.set_postfix(kl=f"{result.losses[-1]:.3f}")
