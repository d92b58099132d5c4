"""Calibration activations: the hidden states entering the first decoder layer for a batch of
token windows, the keyword arguments every layer needs (rotary embeddings, mask), and running
one layer at a time on them.

Layer-wise compression (Wanda, SparseGPT, GPTQ) walks the layers in order: layer ``i`` is
compressed from the inputs that the already-compressed layers ``0..i-1`` produce, so errors of
earlier layers are seen (and partly compensated) by later ones. Only one layer's inputs are
held at a time: ``windows x seq_len x hidden`` float32 values (8 x 256 x 576 is 4.7 MB).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from workloads.luc.layers import decoder_layers

__all__ = ["InputStats", "LayerInputs", "StatsCollector", "capture_layer_inputs", "collect_stats",
           "run_layer"]


class _Captured(Exception):  # noqa: N818 - control flow, not an error
    """Raised by the capture hook to stop the forward pass once layer 0's inputs are known."""


@dataclass
class LayerInputs:
    """Hidden states ``[windows, seq_len, hidden]`` entering a decoder layer and the keyword
    arguments (position embeddings, position ids, attention mask) that every layer receives.
    The keyword arguments do not depend on the batch size, so any slice of windows can run."""

    hidden: torch.Tensor
    kwargs: dict[str, Any]

    @property
    def tokens(self) -> int:
        """Tokens in the batch: windows x sequence length of ``hidden`` (``[windows, T, H]``)."""
        return self.hidden.shape[0] * self.hidden.shape[1]


@torch.inference_mode()
def capture_layer_inputs(model: nn.Module, windows: torch.Tensor) -> LayerInputs:
    """Run the model up to its first decoder layer on token windows ``[n, seq_len]``."""
    layers = decoder_layers(model)
    captured: dict[str, Any] = {}

    def hook(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        captured["hidden"] = args[0] if args else kwargs["hidden_states"]
        captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
        raise _Captured

    handle = layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(input_ids=windows, use_cache=False)
    except _Captured:
        pass
    finally:
        handle.remove()
    kwargs = captured["kwargs"]
    # No key/value cache: every window is scored on its own, and a cache would grow per call.
    kwargs.update(use_cache=False)
    for key in ("cache", "past_key_values", "past_key_value"):
        kwargs.pop(key, None)
    return LayerInputs(captured["hidden"].detach().clone(), kwargs)


@torch.inference_mode()
def run_layer(layer: nn.Module, inputs: LayerInputs, *, batch_size: int = 8) -> torch.Tensor:
    """The layer's output hidden states for all windows, ``batch_size`` windows per call."""
    outs = []
    for start in range(0, inputs.hidden.shape[0], batch_size):
        out = layer(inputs.hidden[start : start + batch_size], **inputs.kwargs)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return torch.cat(outs)


@dataclass
class InputStats:
    """Second-moment statistics of one linear module's inputs over the calibration tokens.

    ``sq_norm[k]`` is the sum over tokens of ``x_k^2`` (Wanda's squared column norm, so the
    Wanda score is ``|W| * sqrt(sq_norm)``); ``hessian`` is ``2/n * X^T X`` (the Hessian of the
    layer-wise reconstruction loss ``||W X - W' X||^2 / n``, as in SparseGPT and GPTQ), present
    only when asked for because it costs ``in_features^2`` per token.
    """

    sq_norm: torch.Tensor
    hessian: torch.Tensor | None
    tokens: int


class StatsCollector:
    """Forward hooks that accumulate ``InputStats`` while a layer runs.

    ``groups`` lists modules that read the same input tensor (see ``layers.input_groups``):
    only the first of each group is hooked and its statistics are shared by the group, so
    q/k/v pay for one ``X^T X`` instead of three.
    """

    def __init__(self, modules: dict[str, nn.Linear], groups: list[list[str]], *, hessian: bool) -> None:
        self.groups = [g for g in groups if g]
        self.modules = modules
        self.want_hessian = hessian
        self._sq: dict[str, torch.Tensor] = {}
        self._xtx: dict[str, torch.Tensor] = {}
        self._n: dict[str, int] = {}
        for group in self.groups:
            width = modules[group[0]].in_features
            self._sq[group[0]] = torch.zeros(width, dtype=torch.float64)
            if hessian:
                self._xtx[group[0]] = torch.zeros(width, width)
            self._n[group[0]] = 0
        self._handles: list[Any] = []

    def _hook(self, name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(_mod: nn.Module, args: tuple) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).float()
            self._sq[name] += (x.double() ** 2).sum(0)
            if self.want_hessian:
                self._xtx[name].addmm_(x.T, x)
            self._n[name] += x.shape[0]

        return hook

    def __enter__(self) -> StatsCollector:
        self._handles = [self.modules[g[0]].register_forward_pre_hook(self._hook(g[0])) for g in self.groups]
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def stats(self) -> dict[str, InputStats]:
        """Statistics per module name (members of a group share one object)."""
        out = {}
        for group in self.groups:
            lead = group[0]
            n = max(self._n[lead], 1)
            hess = self._xtx[lead] * (2.0 / n) if self.want_hessian else None
            shared = InputStats(self._sq[lead].float(), hess, self._n[lead])
            out.update({name: shared for name in group})
        return out


class _GroupReached(Exception):  # noqa: N818 - control flow, not an error
    """Raised by a statistics hook to stop the layer once the wanted inputs are recorded."""


@torch.inference_mode()
def collect_stats(
    layer: nn.Module,
    inputs: LayerInputs,
    modules: dict[str, nn.Linear],
    groups: list[list[str]],
    *,
    hessian: bool,
    batch_size: int = 8,
) -> dict[str, InputStats]:
    """Input statistics of ``groups`` while ``layer`` runs on ``inputs``.

    The forward pass stops at the last wanted group's input: the rest of the layer is not
    needed, which halves the cost of compressing a layer group by group.
    """
    last = groups[-1][0]  # groups come in execution order (``layers.input_groups``)
    collector = StatsCollector(modules, groups, hessian=hessian)

    def stop(_mod: nn.Module, _args: tuple) -> None:
        raise _GroupReached

    with collector:
        # Registered after the collector's hook, so the statistics are taken first.
        handle = modules[last].register_forward_pre_hook(stop)
        try:
            for start in range(0, inputs.hidden.shape[0], batch_size):
                with contextlib.suppress(_GroupReached):
                    layer(inputs.hidden[start : start + batch_size], **inputs.kwargs)
        finally:
            handle.remove()
    return collector.stats()
