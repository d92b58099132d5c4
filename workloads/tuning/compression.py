"""Applying a LUC policy before tuning, through ``workloads.luc.compress``."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from workloads import data as data_mod
from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.models import LoadedModel
from workloads.tuning.forward import num_layers

__all__ = ["DEFAULT_CALIB_WINDOWS", "compress", "load_policy"]

DEFAULT_CALIB_WINDOWS = 16


def load_policy(path: str | Path, loaded: LoadedModel) -> Policy:
    """Read and validate a policy file against the model's layer count (one-line errors)."""
    return Policy.load(path).validate(num_layers(loaded.model), where=str(path))


def compress(
    loaded: LoadedModel,
    policy: Policy,
    *,
    data: str | None = None,
    seq_len: int = 256,
    calib_windows: int = DEFAULT_CALIB_WINDOWS,
    seed: int = 0,
    progress: bool = True,
) -> Any:
    """Prune and fake-quantize ``loaded.model`` in place with ``workloads.luc.compress`` (with
    ``calib_windows`` windows of the calibration split when the policy's methods need data);
    returns its report. LoRA adapters attached afterwards stay full precision (float32)."""
    try:
        module = importlib.import_module("workloads.luc.compress")
    except ModuleNotFoundError:
        raise UserError(
            "--policy needs workloads.luc.compress, which this checkout does not have "
            "(tune without --policy, or update the checkout)"
        ) from None
    calib = None
    if module.needs_calibration(policy):
        calib = data_mod.split_windows(
            loaded.tokenizer, "calibration", seq_len, source=data, max_windows=calib_windows, shuffle=True, seed=seed
        )
    return module.compress_model(loaded.model, policy, calib, progress=progress)
