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

from workloads.metrics import Scorer
from workloads.tuning.forward import run_layers
from workloads.tuning.head import DEFAULT_CHUNK, ExitStats, exit_stats

RULES = ("max_conf", "mean", "entropy")
DEFAULT_RULE = "max_conf"


def combine(stats: list[ExitStats], rule: str) -> torch.Tensor:
    """Log-probability of each target token ``[B, N]`` under the voted distribution."""
    target = torch.stack([s.target_logprob for s in stats])  # [E, B, N]
    if rule == "max_conf":
        best = torch.stack([s.max_logprob for s in stats]).argmax(dim=0, keepdim=True)
        return target.gather(0, best)[0]
    if rule == "mean":
        return torch.logsumexp(target, dim=0) - math.log(len(stats))
    if rule == "entropy":
        log_w = torch.log_softmax(-torch.stack([s.entropy for s in stats]), dim=0)
        return torch.logsumexp(target + log_w, dim=0)
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
        self._cache: dict[tuple[tuple[int, ...], int, str], dict[str, torch.Tensor]] = {}

    @property
    def variants(self) -> list[str]:
        return [variant_name(exit_layer=e) for e in self.exits] + [variant_name(rule=r) for r in self.rules]

    def compute(self, ids: torch.Tensor, start: int = 0) -> dict[str, torch.Tensor]:
        """``{variant: log p(target) [B, T-1-start]}`` for every exit and rule."""
        key = (tuple(ids.shape), start, hashlib.sha1(ids.cpu().numpy().tobytes()).hexdigest())
        if key not in self._cache:
            with torch.no_grad():
                hidden = run_layers(self.model, ids, last_layer=self.exits[-1], capture=self.exits)
                stats = {
                    e: exit_stats(self.model, hidden[e], ids, exit_layer=e, start=start, chunk=self.chunk)
                    for e in self.exits
                }
            out = {variant_name(exit_layer=e): s.target_logprob for e, s in stats.items()}
            for rule in self.rules:
                out[variant_name(rule=rule)] = combine(list(stats.values()), rule)
            self._cache[key] = out
        return self._cache[key]

    def scorer(self, variant: str) -> Scorer:
        """The ``Scorer`` of one variant (``exit:<layer>`` or ``vote:<rule>``)."""
        if variant not in self.variants:
            raise ValueError(f"unknown variant '{variant}': this voter has {', '.join(self.variants)}")

        def score(ids: torch.Tensor, start: int = 0) -> torch.Tensor:
            return self.compute(ids, start)[variant]

        return score

    def clear(self) -> None:
        self._cache.clear()


def voting_scorer(model: nn.Module, exits: list[int], rule: str = DEFAULT_RULE) -> Scorer:
    """The ``Scorer`` of the exits ``exits`` voted by ``rule`` (no cache kept between calls)."""
    voter = ExitVoter(model, exits, rules=(rule,))
    name = variant_name(rule=rule) if len(voter.exits) > 1 else variant_name(exit_layer=voter.exits[0])

    def score(ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        voter.clear()
        return voter.compute(ids, start)[name]

    return score
