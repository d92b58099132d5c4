"""A cheap accuracy model for design-space search: the loss increase a policy will cause,
predicted from the sensitivity table in microseconds instead of minutes of compression and
evaluation.

The prediction assumes layers degrade the model independently (their single-layer
degradations add up) and, inside a layer, that pruning and quantization add up too unless
the table measured that combination. Compounding makes the real increase of aggressive
policies larger than the sum, but the prediction is monotone in every layer's compression,
which is what ranking candidate policies needs; docs/results/luc.md reports its rank
correlation with measured perplexity.
"""
from __future__ import annotations

import math

from workloads.luc.policy import Policy
from workloads.luc.table import SensitivityTable

__all__ = ["predict_loss_increase", "predict_perplexity"]


def predict_loss_increase(table: SensitivityTable, policy: Policy) -> float:
    """Predicted increase of the mean next-token loss, nats/token: the sum over layers of the
    table's interpolated degradation at the layer's ``(sparsity, w_bits)``."""
    if len(policy.layers) != table.num_layers:
        raise ValueError(f"policy has {len(policy.layers)} layers, the table {table.num_layers}")
    return float(sum(table.degradation(i, lp.sparsity, lp.w_bits) for i, lp in policy.layers.items()))


def predict_perplexity(table: SensitivityTable, policy: Policy, dense_perplexity: float) -> float:
    """``dense_perplexity * exp(predicted loss increase)``."""
    return dense_perplexity * math.exp(predict_loss_increase(table, policy))
