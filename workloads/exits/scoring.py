"""Scoring exits and their votes on cached hidden states: per-token log-likelihood, confidence
and correctness, perplexity, expected calibration error, and the calibrated voting rules.

Every distribution is computed over the full vocabulary, a chunk of positions at a time (the
``[E, chunk, V]`` log-probabilities of the exits of one vote at most).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from workloads.exits.translator import Translator
from workloads.architecture import architecture
from workloads.tuning.head import head_weight
from workloads.tuning.voting import vote_logprobs

DEFAULT_CHUNK = 128  # positions per chunk: 128 x 49,152 float32 = 25 MB per exit
ECE_BINS = 15  # Guo et al. (2017), "On Calibration of Modern Neural Networks"
TEMPERATURES = tuple(round(0.5 + 0.1 * i, 2) for i in range(46))  # 0.5 .. 5.0, the grid fit_temperature searches


@dataclass(frozen=True)
class TokenStats:
    """Per predicted position ``[N]``: log-probability of the true next token (nats), the top
    probability (the confidence), whether the top token is the true one, and the entropy (nats)."""

    logprob: torch.Tensor
    confidence: torch.Tensor
    correct: torch.Tensor
    entropy: torch.Tensor

    @property
    def nll(self) -> float:
        return float(-self.logprob.double().mean())

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    @property
    def top1(self) -> float:
        return float(self.correct.double().mean())

    @property
    def ece(self) -> float:
        return expected_calibration_error(self.confidence, self.correct)

    @staticmethod
    def of(logp: torch.Tensor, targets: torch.Tensor) -> "TokenStats":
        """Stats of normalized log-probabilities ``logp [N, V]`` for ``targets [N]``."""
        top, arg = logp.max(dim=-1)
        return TokenStats(
            logp.gather(1, targets[:, None])[:, 0],
            top.exp(),
            arg == targets,
            -(logp.exp() * logp).sum(dim=-1),
        )

    @staticmethod
    def cat(parts: list["TokenStats"]) -> "TokenStats":
        return TokenStats(*(torch.cat(col) for col in zip(*((p.logprob, p.confidence, p.correct, p.entropy) for p in parts))))


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = ECE_BINS) -> float:
    """Top-label expected calibration error (Naeini et al., 2015; Guo et al., 2017): positions
    are put in ``bins`` equal-width bins of confidence over ``[0, 1]``; the error is
    ``sum_b (n_b / N) |accuracy_b - mean confidence_b|``. 0 is perfectly calibrated.

    Raises:
        ValueError: empty input, or shapes that differ.
    """
    conf = confidence.detach().double().reshape(-1).numpy()
    acc = correct.detach().double().reshape(-1).numpy()
    if conf.size == 0 or conf.shape != acc.shape:
        raise ValueError(f"ECE needs non-empty confidence and correctness of one shape (got {conf.shape}, {acc.shape})")
    # Bin b holds (b/B, (b+1)/B]; confidence 0 goes to the first bin.
    index = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    gap = np.abs(np.bincount(index, weights=acc, minlength=bins) - np.bincount(index, weights=conf, minlength=bins))
    return float(gap.sum() / count.sum())


def exit_logits(model: nn.Module, h: torch.Tensor, translator: Translator | None = None) -> torch.Tensor:
    """``head(norm(T(h)))``: the exit's logits ``[N, V]`` from hidden states ``h [N, d]``."""
    if translator is not None:
        h = translator(h)
    return (architecture(model).final(h) @ head_weight(model).T).float()


@torch.no_grad()
def score_exit(
    model: nn.Module,
    h: torch.Tensor,
    targets: torch.Tensor,
    *,
    translator: Translator | None = None,
    temperature: float = 1.0,
    chunk: int = DEFAULT_CHUNK,
) -> TokenStats:
    """Per-position stats of one exit (plain, or through ``translator``) on ``h [N, d]``."""
    parts = []
    for s in range(0, len(targets), chunk):
        logits = exit_logits(model, h[s : s + chunk], translator)
        parts.append(TokenStats.of(torch.log_softmax(logits / temperature, dim=-1), targets[s : s + chunk]))
    return TokenStats.cat(parts)


@torch.no_grad()
def fit_temperature(
    model: nn.Module, h: torch.Tensor, targets: torch.Tensor, *, translator: Translator | None = None,
    grid: tuple[float, ...] = TEMPERATURES, chunk: int = DEFAULT_CHUNK,
) -> float:
    """Temperature scaling (Guo et al., 2017): the ``T`` of ``grid`` minimizing the mean NLL of
    ``softmax(logits / T)`` on held-out positions ``h [N, d]``, ``targets [N]``."""
    temps = torch.tensor(grid, dtype=torch.float32)
    nll = torch.zeros(len(grid), dtype=torch.float64)
    for s in range(0, len(targets), chunk):
        logits = exit_logits(model, h[s : s + chunk], translator)
        tgt = logits.gather(1, targets[s : s + chunk, None])  # [c, 1]
        for i, t in enumerate(temps):
            nll[i] += float((torch.logsumexp(logits / t, dim=-1) - tgt[:, 0] / t).double().sum())
    return float(grid[int(nll.argmin())])


def fit_mixture_weights(target_logprobs: torch.Tensor, *, steps: int = 300, lr: float = 0.05) -> torch.Tensor:
    """Mixture weights ``w [E]`` (on the simplex) maximizing the held-out likelihood
    ``sum_n log sum_e w_e p_e(y_n)`` of the exits' log-probabilities of the true tokens
    ``target_logprobs [E, N]`` (Adam on softmax-parametrized weights, from uniform)."""
    logits = torch.zeros(target_logprobs.shape[0], dtype=torch.float64, requires_grad=True)
    lp = target_logprobs.double()
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        loss = -torch.logsumexp(lp + torch.log_softmax(logits, 0)[:, None], dim=0).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.softmax(logits.detach(), 0).float()


@dataclass(frozen=True)
class VoteCalibration:
    """What the calibrated rules were fitted to (held-out calibration positions): one
    temperature per exit, and the mixture weights of the temperature-scaled exits."""

    exits: tuple[int, ...]
    temperatures: tuple[float, ...]
    weights: tuple[float, ...]


BASE_RULES = ("max_conf", "mean", "entropy")
CALIBRATED_RULES = ("max_conf_calibrated", "weighted")  # after temperature scaling; fitted mixture weights
ALL_RULES = BASE_RULES + CALIBRATED_RULES


@torch.no_grad()
def score_votes(
    model: nn.Module,
    hs: dict[int, torch.Tensor],
    targets: torch.Tensor,
    *,
    translators: dict[int, Translator],
    calibration: VoteCalibration | None = None,
    rules: tuple[str, ...] = ALL_RULES,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, TokenStats]:
    """Stats of every rule over the exits ``hs = {exit: h [N, d]}`` (each through its
    translator, when it has one), keyed by rule, and of each exit alone, keyed ``exit:<layer>``. The calibrated rules need ``calibration`` for these exits.

    Raises:
        ValueError: a calibrated rule without a calibration of these exits, or an unknown rule.
    """
    exits = sorted(hs)
    bad = [r for r in rules if r not in ALL_RULES]
    if bad:
        raise ValueError(f"unknown voting rule(s) {bad}: use {', '.join(ALL_RULES)}")
    if any(r in CALIBRATED_RULES for r in rules) and (calibration is None or list(calibration.exits) != exits):
        raise ValueError(f"the calibrated rules need a VoteCalibration fitted on exits {exits}")
    parts: dict[str, list[TokenStats]] = {r: [] for r in rules}
    parts.update({f"exit:{e}": [] for e in exits})
    for s in range(0, len(targets), chunk):
        tgt = targets[s : s + chunk]
        logits = torch.stack([exit_logits(model, hs[e][s : s + chunk], translators.get(e)) for e in exits])
        logp = torch.log_softmax(logits, dim=-1)
        scaled = None
        if calibration is not None:
            temps = torch.tensor(calibration.temperatures)[:, None, None]
            scaled = torch.log_softmax(logits / temps, dim=-1)
        del logits
        for e, lp in zip(exits, logp):
            parts[f"exit:{e}"].append(TokenStats.of(lp, tgt))
        for rule in rules:
            if rule == "max_conf_calibrated":
                voted = vote_logprobs(scaled, "max_conf")
            elif rule == "weighted":
                log_w = torch.tensor(calibration.weights).clamp_min(1e-12).log()[:, None, None]
                voted = torch.logsumexp(scaled + log_w, dim=0)
            else:
                voted = vote_logprobs(logp, rule)
            parts[rule].append(TokenStats.of(voted, tgt))
    return {r: TokenStats.cat(p) for r, p in parts.items()}


def calibrate_votes(
    model: nn.Module, hs: dict[int, torch.Tensor], targets: torch.Tensor, *, translators: dict[int, Translator],
    chunk: int = DEFAULT_CHUNK,
) -> VoteCalibration:
    """Fit the calibrated rules on held-out positions: a temperature per exit, then the mixture
    weights of the temperature-scaled exits."""
    exits = sorted(hs)
    temps = [fit_temperature(model, hs[e], targets, translator=translators.get(e), chunk=chunk) for e in exits]
    tlp = torch.stack([
        score_exit(model, hs[e], targets, translator=translators.get(e), temperature=t, chunk=chunk).logprob
        for e, t in zip(exits, temps)
    ])
    weights = fit_mixture_weights(tlp)
    return VoteCalibration(tuple(exits), tuple(temps), tuple(float(w) for w in weights))
