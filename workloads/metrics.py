"""Perplexity, next-token top-1 accuracy and multiple-choice accuracy, for any scorer.

A *scorer* maps token ids ``[B, T]`` and a start position ``s`` to ``TokenScores`` of each next
token from ``s`` on, ``[B, T-1-s]``: ``logprob[:, i] = log p(ids[:, s+i+1] | ids[:, :s+i+1])``
and ``top1[:, i]``, whether that token is the most probable one (greedy next-token accuracy).
A scorer may return a bare log-probability tensor when it has no top-1 (then top-1 accuracy is
not reported). The plain model is one scorer; the voted early exits of adaptive tuning are
another, so both are measured by the same code. The start lets multiple-choice scoring skip the
vocabulary-sized head on context positions, which is a fifth of the model's work.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from workloads.architecture import architecture
from workloads.data import ChoiceItem

__all__ = ["AccuracyResult", "PerplexityResult", "Scorer", "TokenScores", "as_scores",
           "choice_accuracy", "head_logprobs", "model_scorer", "perplexity", "pick",
           "target_logprobs"]


class TokenScores(NamedTuple):
    """Per predicted position ``[B, N]``: log-probability of the true next token (nats) and
    whether it is the arg-max of the distribution (``None``: the scorer cannot tell)."""

    logprob: torch.Tensor
    top1: torch.Tensor | None = None


Scorer = Callable[[torch.Tensor, int], "TokenScores | torch.Tensor"]


def as_scores(out: TokenScores | torch.Tensor) -> TokenScores:
    """A scorer's output as ``TokenScores`` (a bare tensor is the log-probability alone)."""
    return out if isinstance(out, TokenScores) else TokenScores(out, None)


def pick(logprobs: torch.Tensor, targets: torch.Tensor) -> TokenScores:
    """``TokenScores`` of ``targets [...]`` under normalized log-probabilities ``[..., V]``."""
    picked = logprobs.gather(-1, targets[..., None]).squeeze(-1)
    return TokenScores(picked, logprobs.argmax(dim=-1) == targets)


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> TokenScores:
    """``TokenScores`` of ``targets [B, T]`` under ``logits [B, T, V]``."""
    return pick(torch.log_softmax(logits.float(), dim=-1), targets)


def head_logprobs(
    hidden: torch.Tensor, head: torch.nn.Module, ids: torch.Tensor, start: int = 0, chunk: int = 1024
) -> TokenScores:
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
    return TokenScores(
        torch.cat([p.logprob for p in parts]).view(targets.shape),
        torch.cat([p.top1 for p in parts]).view(targets.shape),
    )


def model_scorer(model: torch.nn.Module) -> Scorer:
    """The scorer of a Hugging Face causal LM (its final output); a peft-wrapped model works
    too, since LoRA layers live inside the base model."""
    arch = architecture(model)  # any decoder it accepts: LLaMA's model.model, GPT-2's transformer, ...

    def score(ids: torch.Tensor, start: int = 0) -> TokenScores:
        hidden = arch.decoder(input_ids=ids, use_cache=False).last_hidden_state
        return head_logprobs(hidden, arch.head, ids, start)

    return score


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity = exp(mean NLL in nats per predicted token) over ``windows`` non-overlapping
    windows of ``seq_len`` tokens, with the token count and, when scored, top-1 accuracy.
    """
    perplexity: float
    nll: float  # mean negative log-likelihood per predicted token, nats
    tokens: int  # predicted tokens (seq_len - 1 per window)
    windows: int
    seq_len: int
    top1: float | None = None  # share of predicted tokens that are the arg-max (None: not scored)

    def to_dict(self) -> dict[str, float | int]:
        """The result as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class AccuracyResult:
    """Multiple-choice accuracy: ``correct`` of ``items`` items with ``choices`` continuations each
    (the true one against distractors, picked by log-likelihood).
    """
    accuracy: float
    correct: int
    items: int
    choices: int

    def to_dict(self) -> dict[str, float | int]:
        """The result as a JSON-ready dict."""
        return asdict(self)


@torch.inference_mode()
def perplexity(
    scorer: Scorer, windows: torch.Tensor, *, batch_size: int = 8, progress: bool = True, desc: str = "perplexity"
) -> PerplexityResult:
    """Perplexity (and next-token top-1 accuracy, when the scorer gives it) over non-overlapping
    windows ``[n, seq_len]``: each window is scored on its own, with no context carried over, so
    the numbers depend on the stated ``seq_len``."""
    total_nll = 0.0
    total_tokens = 0
    correct: int | None = 0
    for start in tqdm(range(0, len(windows), batch_size), desc=desc, disable=not progress or None, leave=False):
        batch = windows[start : start + batch_size]
        scores = as_scores(scorer(batch, 0))
        total_nll -= float(scores.logprob.double().sum())
        total_tokens += scores.logprob.numel()
        correct = None if correct is None or scores.top1 is None else correct + int(scores.top1.sum())
    nll = total_nll / total_tokens
    top1 = None if correct is None else correct / total_tokens
    return PerplexityResult(math.exp(nll), nll, total_tokens, len(windows), windows.shape[1], top1)


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
        logp = as_scores(scorer(seqs, ctx_len - 1)).logprob  # only the continuation tokens count
        scores = logp.sum(dim=1).view(len(group), n_choices)
        labels = torch.tensor([it.label for it in group])
        correct += int((scores.argmax(dim=1) == labels).sum())
    return AccuracyResult(correct / len(items), correct, len(items), n_choices)
