"""Held-out evaluation of a tuned model: every exit alone and every voting rule, each measured
by ``workloads.evaluate.evaluate`` (same windows, same multiple-choice items, same code)."""
from __future__ import annotations

from typing import Any

from torch import nn

from workloads.evaluate import evaluate
from workloads.models import LoadedModel
from workloads.tuning.voting import DEFAULT_RULE, RULES, ExitVoter, variant_name

__all__ = ["evaluate_exits"]


def evaluate_exits(
    loaded: LoadedModel,
    model: nn.Module,
    exits: list[int],
    *,
    rules: tuple[str, ...] = RULES,
    answer_rule: str = DEFAULT_RULE,
    data: str | None = None,
    seq_len: int = 256,
    batch_size: int = 8,
    max_windows: int | None = None,
    mc_items: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """``{"perplexity", "accuracy", "per_exit": {layer: {...}}, "vote": {rule: {...}}, ...}``.

    The headline ``perplexity`` / ``accuracy`` are the vote by ``answer_rule`` when there are
    several exits, else the single exit's. The model runs once per batch (cached across
    variants)."""
    voter = ExitVoter(model, exits, rules=rules)
    results: dict[str, dict[str, Any]] = {}
    for variant in voter.variants:
        res = evaluate(
            loaded,
            data=data,
            seq_len=seq_len,
            batch_size=batch_size,
            max_windows=max_windows,
            mc_items=mc_items,
            seed=seed,
            scorer=voter.scorer(variant),
            progress=progress,
        )
        results[variant] = res
    answer = variant_name(rule=answer_rule) if voter.rules else variant_name(exit_layer=voter.exits[0])
    head = results[answer]

    def brief(res: dict[str, Any]) -> dict[str, Any]:
        return {"perplexity": res["perplexity"], "nll": res["nll"], "accuracy": res["accuracy"]}

    return {
        "split": head["split"],
        "seq_len": seq_len,
        "tokens": head["tokens"],
        "windows": head["windows"],
        "mc_items": head["mc_items"],
        "answer": answer,
        "perplexity": head["perplexity"],
        "accuracy": head["accuracy"],
        "per_exit": {str(e): brief(results[variant_name(exit_layer=e)]) for e in voter.exits},
        "vote": {r: brief(results[variant_name(rule=r)]) for r in voter.rules},
    }
