"""Applying a LUC policy before tuning, through the compression package when it is present."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.models import LoadedModel
from workloads.tuning.forward import num_layers


def load_policy(path: str | Path, loaded: LoadedModel) -> Policy:
    """Read and validate a policy file against the model's layer count (one-line errors)."""
    return Policy.load(path).validate(num_layers(loaded.model), where=str(path))


def compress(loaded: LoadedModel, policy: Policy, *, progress: bool = True) -> Any:
    """Prune and fake-quantize ``loaded.model`` in place with ``workloads.luc.compress``;
    returns its report. LoRA adapters attached afterwards stay full precision."""
    try:
        module = importlib.import_module("workloads.luc.compress")
    except ModuleNotFoundError:
        raise UserError(
            "--policy needs workloads.luc.compress, which this checkout does not have yet "
            "(tune without --policy, or update the checkout)"
        ) from None
    return module.compress_model(loaded.model, policy, None, progress=progress)
