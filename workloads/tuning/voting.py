"""Voting over early exits at inference: combine the exits' next-token distributions.

Rules (per predicted position, over the exits ``e`` with distributions ``p_e``):

- ``max_conf`` (the paper's): take the distribution of the exit whose top probability
  ``max_v p_e(v)`` is highest;
- ``mean``: the average distribution ``(1/E) sum_e p_e``;
- ``entropy``: a mixture weighted by confidence, ``w_e = softmax_e(-H(p_e))`` (entropy in nats),
  so sharper exits count more.

Each rule yields a proper distribution, so its perplexity is comparable to a single model's.
The voted model is a metrics ``Scorer`` (``fn(ids, start) -> log-probs``), measured by the same
``workloads.evaluate.evaluate`` code as the plain model.
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from workloads.architecture import architecture
from workloads.exits.translator import translate
from workloads.metrics import Scorer, TokenScores, pick
from workloads.tuning.forward import run_layers
from workloads.tuning.head import DEFAULT_CHUNK, head_weight

RULES = ("max_conf", "mean", "entropy")
DEFAULT_RULE = "max_conf"


def vote_logprobs(logprobs: torch.Tensor, rule: str) -> torch.Tensor:
    """The voted next-token log-distribution ``[N, V]`` from the exits' ``logprobs [E, N, V]``
    (each normalized over the vocabulary ``V``)."""
    if rule == "max_conf":
        best = logprobs.amax(dim=-1).argmax(dim=0)  # [N]: the exit with the highest top probability
        return logprobs[best, torch.arange(logprobs.shape[1])]
    if rule == "mean":
        return torch.logsumexp(logprobs, dim=0) - math.log(logprobs.shape[0])
    if rule == "entropy":
        entropy = -(logprobs.exp() * logprobs).sum(dim=-1)  # [E, N], nats
        log_w = torch.log_softmax(-entropy, dim=0)
        return torch.logsumexp(logprobs + log_w[..., None], dim=0)
    raise ValueError(f"unknown voting rule '{rule}': use one of {', '.join(RULES)}")


def variant_name(*, exit_layer: int | None = None, rule: str | None = None) -> str:
    """``exit:<layer>`` for one exit alone, ``vote:<rule>`` for a voting rule."""
    return f"exit:{exit_layer}" if rule is None else f"vote:{rule}"


class ExitVoter:
    """Scores token windows at several exits in one forward pass and hands out a ``Scorer``
    per exit and per voting rule.

    The first scorer called on a batch computes every exit and rule for it; the others read
    the result from a cache keyed by the batch's content, so evaluating all variants with
    ``evaluate(loaded, scorer=voter.scorer(name))`` one after another runs the model once.
    """

    def __init__(
        self, model: nn.Module, exits: list[int], *, rules: tuple[str, ...] = RULES, chunk: int = DEFAULT_CHUNK
    ) -> None:
        if not exits:
            raise ValueError("ExitVoter needs at least one exit")
        bad = [r for r in rules if r not in RULES]
        if bad:
            raise ValueError(f"unknown voting rule(s) {bad}: use {', '.join(RULES)}")
        self.model = model
        self.exits = sorted(set(exits))
        self.rules = tuple(rules) if len(self.exits) > 1 else ()
        self.chunk = chunk
        self._cache: dict[tuple[tuple[int, ...], int, str], dict[str, TokenScores]] = {}

    @property
    def variants(self) -> list[str]:
        return [variant_name(exit_layer=e) for e in self.exits] + [variant_name(rule=r) for r in self.rules]

    def compute(self, ids: torch.Tensor, start: int = 0) -> dict[str, TokenScores]:
        """``{variant: TokenScores [B, T-1-start]}`` for every exit and rule."""
        key = (tuple(ids.shape), start, hashlib.sha1(ids.cpu().numpy().tobytes()).hexdigest())
        if key not in self._cache:
            with torch.no_grad():
                hidden = run_layers(self.model, ids, last_layer=self.exits[-1], capture=self.exits)
                self._cache[key] = self._score(hidden, ids, start)
        return self._cache[key]

    def _score(self, hidden: dict[int, torch.Tensor], ids: torch.Tensor, start: int) -> dict[str, TokenScores]:
        """Every exit's distribution, a chunk of positions at a time (``[E, chunk, V]`` at most),
        so each rule's vote, its target log-probability and its arg-max come from the full
        distributions."""
        weight, norm = head_weight(self.model), architecture(self.model).final
        normed = [norm(translate(self.model, hidden[e][:, start:-1], e)) for e in self.exits]
        shape = normed[0].shape[:2]
        flat = [n.reshape(-1, n.shape[-1]) for n in normed]
        targets = ids[:, start + 1 :].reshape(-1)
        parts: dict[str, list[TokenScores]] = {v: [] for v in self.variants}
        for s in range(0, len(targets), self.chunk):
            tgt = targets[s : s + self.chunk]
            logp = torch.stack([torch.log_softmax((f[s : s + self.chunk] @ weight.T).float(), dim=-1) for f in flat])
            for e, lp in zip(self.exits, logp):
                parts[variant_name(exit_layer=e)].append(pick(lp, tgt))
            for rule in self.rules:
                parts[variant_name(rule=rule)].append(pick(vote_logprobs(logp, rule), tgt))
            del logp
        return {
            v: TokenScores(torch.cat([p.logprob for p in ps]).view(shape), torch.cat([p.top1 for p in ps]).view(shape))
            for v, ps in parts.items()
        }

    def scorer(self, variant: str) -> Scorer:
        """The ``Scorer`` of one variant (``exit:<layer>`` or ``vote:<rule>``)."""
        if variant not in self.variants:
            raise ValueError(f"unknown variant '{variant}': this voter has {', '.join(self.variants)}")

        def score(ids: torch.Tensor, start: int = 0) -> TokenScores:
            return self.compute(ids, start)[variant]

        return score

    def clear(self) -> None:
        self._cache.clear()


def voting_scorer(model: nn.Module, exits: list[int], rule: str = DEFAULT_RULE) -> Scorer:
    """The ``Scorer`` of the exits ``exits`` voted by ``rule`` (no cache kept between calls)."""
    voter = ExitVoter(model, exits, rules=(rule,))
    name = variant_name(rule=rule) if len(voter.exits) > 1 else variant_name(exit_layer=voter.exits[0])

    def score(ids: torch.Tensor, start: int = 0) -> TokenScores:
        voter.clear()
        return voter.compute(ids, start)[name]

    return score
