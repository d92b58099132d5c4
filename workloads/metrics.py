"""Perplexity and multiple-choice accuracy, for any scorer of next-token log-probabilities.

A *scorer* maps token ids ``[B, T]`` and a start position ``s`` to the log-probability of each
next token from ``s`` on, ``[B, T-1-s]`` (``out[:, i] = log p(ids[:, s+i+1] | ids[:, :s+i+1])``).
The plain model is one scorer; the voted early exits of adaptive tuning are another, so both
are measured by the same code. The start lets multiple-choice scoring skip the vocabulary-sized
head on context positions, which is a fifth of the model's work.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from workloads.data import ChoiceItem

Scorer = Callable[[torch.Tensor, int], torch.Tensor]


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Log-probability of ``targets [B, T]`` under ``logits [B, T, V]``."""
    logits = logits.float()
    picked = logits.gather(-1, targets[..., None]).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def head_logprobs(
    hidden: torch.Tensor, head: torch.nn.Module, ids: torch.Tensor, start: int = 0, chunk: int = 1024
) -> torch.Tensor:
    """Next-token log-probabilities from final hidden states ``[B, T, H]`` through ``head``
    (norm + LM head), from position ``start`` on, a chunk of positions at a time so the
    ``[B, T, V]`` logits never exist at once."""
    hidden = hidden[:, start:-1]
    targets = ids[:, start + 1 :]
    flat_h = hidden.reshape(-1, hidden.shape[-1])
    flat_t = targets.reshape(-1)
    parts = [
        target_logprobs(head(flat_h[i : i + chunk]), flat_t[i : i + chunk]) for i in range(0, len(flat_t), chunk)
    ]
    return torch.cat(parts).view(targets.shape)


def model_scorer(model: torch.nn.Module) -> Scorer:
    """The scorer of a Hugging Face causal LM (its final output); a peft-wrapped model works
    too, since LoRA layers live inside the base model."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()

    def score(ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        hidden = model.model(input_ids=ids, use_cache=False).last_hidden_state
        return head_logprobs(hidden, model.lm_head, ids, start)

    return score


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    nll: float  # mean negative log-likelihood per predicted token, nats
    tokens: int  # predicted tokens (seq_len - 1 per window)
    windows: int
    seq_len: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class AccuracyResult:
    accuracy: float
    correct: int
    items: int
    choices: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@torch.inference_mode()
def perplexity(
    scorer: Scorer, windows: torch.Tensor, *, batch_size: int = 8, progress: bool = True, desc: str = "perplexity"
) -> PerplexityResult:
    """Perplexity over non-overlapping windows ``[n, seq_len]``: each window is scored on its
    own, with no context carried over, so the number depends on the stated ``seq_len``."""
    total_nll = 0.0
    total_tokens = 0
    for start in tqdm(range(0, len(windows), batch_size), desc=desc, disable=not progress or None, leave=False):
        batch = windows[start : start + batch_size]
        logp = scorer(batch, 0)
        total_nll -= float(logp.double().sum())
        total_tokens += logp.numel()
    nll = total_nll / total_tokens
    return PerplexityResult(math.exp(nll), nll, total_tokens, len(windows), windows.shape[1])


@torch.inference_mode()
def choice_accuracy(
    scorer: Scorer, items: list[ChoiceItem], *, batch_items: int = 8, progress: bool = True, desc: str = "accuracy"
) -> AccuracyResult:
    """Share of items whose true continuation gets the highest total log-likelihood."""
    correct = 0
    n_choices = items[0].choices.shape[0]
    for start in tqdm(range(0, len(items), batch_items), desc=desc, disable=not progress or None, leave=False):
        group = items[start : start + batch_items]
        ctx_len = group[0].context.numel()
        seqs = torch.cat([torch.cat([it.context.expand(n_choices, -1), it.choices], dim=1) for it in group])
        logp = scorer(seqs, ctx_len - 1)  # only the continuation tokens count
        scores = logp.sum(dim=1).view(len(group), n_choices)
        labels = torch.tensor([it.label for it in group])
        correct += int((scores.argmax(dim=1) == labels).sum())
    return AccuracyResult(correct / len(items), correct, len(items), n_choices)
