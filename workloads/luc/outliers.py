"""OWL's layer outlier ratio (Yin et al. 2024): the share of a layer's Wanda scores
``|W| * ||X||`` that exceed ``m`` times the layer's mean score. Layers with more outlier
features carry more of the model's function in few weights, so OWL prunes them less."""
from __future__ import annotations

import torch
from torch import nn

from workloads.luc.calibration import InputStats
from workloads.luc.prune import wanda_scores

__all__ = ["OUTLIER_M", "outlier_ratio"]

OUTLIER_M = 5.0  # OWL's threshold multiplier for LLaMA models


def outlier_ratio(modules: dict[str, nn.Linear], stats: dict[str, InputStats], *, m: float = OUTLIER_M) -> float:
    """Fraction (0..1) of the layer's Wanda scores above ``m`` times their mean, all the
    layer's linear modules pooled (as in OWL's reference code)."""
    scores = torch.cat([wanda_scores(mod.weight, stats[name].sq_norm).reshape(-1) for name, mod in modules.items()])
    return float((scores > m * scores.mean()).float().mean())
