"""How far a perturbed model's next-token predictions move from the dense model's, measured
from final hidden states: the KL divergence ``KL(p_dense || p_compressed)`` and the increase
of the cross-entropy on the true next tokens, both in nats per predicted token.

The dense distribution is kept as its top ``k`` tokens plus one "all other tokens" bucket, so
a reference for thousands of tokens takes megabytes, not the ``tokens x vocabulary`` gigabytes
of full log-probabilities. The KL between these coarse-grained distributions is a lower bound
of the full KL (coarse-graining never increases a divergence), is never negative, and misses
only what the compressed model does inside the dense model's improbable tail.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Reference", "TOP_K", "divergence", "reference"]

TOP_K = 256


@dataclass(frozen=True)
class Reference:
    """The dense model's predictions on calibration tokens: top-``k`` token ids and log-probs
    per position ``[n_tokens, k]``, the tail log-mass ``[n_tokens]``, and the dense mean
    cross-entropy on the true next tokens (nats/token)."""

    top_ids: torch.Tensor
    top_logp: torch.Tensor
    tail_logp: torch.Tensor
    loss: float


def _flat_logits(head: nn.Module, hidden: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    """Logits of positions 0..T-2 of every window (each predicts the next token), in chunks."""
    flat = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    return [head(flat[i : i + chunk]).float() for i in range(0, flat.shape[0], chunk)]


def _log_tail(logp_top: torch.Tensor) -> torch.Tensor:
    """log(1 - sum(exp(logp_top))) per row, computed stably."""
    top_mass = torch.logsumexp(logp_top, dim=-1)
    return torch.log((-torch.expm1(top_mass)).clamp_min(1e-30))


@torch.inference_mode()
def reference(head: nn.Module, hidden: torch.Tensor, ids: torch.Tensor, *, k: int = TOP_K, chunk: int = 512) -> Reference:
    """The dense reference from final hidden states ``[n, T, H]`` (before the final norm;
    ``head`` applies norm + LM head) and token ids ``[n, T]``."""
    targets = ids[:, 1:].reshape(-1)
    tops, top_lps, losses = [], [], []
    offset = 0
    for logits in _flat_logits(head, hidden, chunk):
        logp = torch.log_softmax(logits, dim=-1)
        top = logp.topk(min(k, logp.shape[-1]), dim=-1)
        tops.append(top.indices)
        top_lps.append(top.values)
        losses.append(-logp.gather(-1, targets[offset : offset + len(logp), None])[:, 0])
        offset += len(logp)
    top_logp = torch.cat(top_lps)
    return Reference(torch.cat(tops), top_logp, _log_tail(top_logp), float(torch.cat(losses).double().mean()))


@torch.inference_mode()
def divergence(head: nn.Module, hidden: torch.Tensor, ids: torch.Tensor, ref: Reference, *, chunk: int = 512) -> tuple[float, float]:
    """``(kl, loss_increase)`` of the model whose final hidden states are ``hidden`` against
    the dense reference, both nats per predicted token."""
    targets = ids[:, 1:].reshape(-1)
    kl_sum = 0.0
    loss_sum = 0.0
    offset = 0
    for logits in _flat_logits(head, hidden, chunk):
        n = len(logits)
        logq = torch.log_softmax(logits, dim=-1)
        sl = slice(offset, offset + n)
        q_top = logq.gather(-1, ref.top_ids[sl])
        p_top = ref.top_logp[sl]
        q_tail = _log_tail(q_top)
        p_tail = ref.tail_logp[sl]
        kl = (p_top.exp() * (p_top - q_top)).sum(-1) + p_tail.exp() * (p_tail - q_tail)
        kl_sum += float(kl.double().sum())
        loss_sum += float(-logq.gather(-1, targets[sl, None]).double().sum())
        offset += n
    return max(kl_sum / offset, 0.0), loss_sum / offset - ref.loss
