"""The decoder run layer by layer, so that early exits and cuts are real.

The model's own decoder forward runs (embedding, positions, masks, one call per layer), so any
architecture ``workloads.architecture`` accepts runs as its authors wrote it (GPT-2's learned
positions, Gemma's embedding scale, Mistral's sliding-window mask). Hooks on the layers cut it
after a chosen layer (the layers above it and the final norm never run) and turn autograd on
only from a chosen layer, so the activations of the layers below are freed at once instead of
being kept for a backward pass that will not reach them.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar

import torch
from torch import nn

from workloads.architecture import architecture

__all__ = ["decoder", "in_decoder", "num_layers", "run_layers"]

_IN_DECODER: ContextVar[bool] = ContextVar("edgellm_in_decoder", default=False)


def in_decoder() -> bool:
    """Whether the decoder's own code (not one of its modules) may be running now: the trace
    recorder attributes that work (GPT-2's position add, Gemma's embedding scale) to it."""
    return _IN_DECODER.get()


def decoder(model: nn.Module) -> nn.Module:
    """The bare decoder (``LlamaModel``, ``GPT2Model``, ``OPTDecoder``: embedding, layers, final norm)."""
    return architecture(model).decoder


def num_layers(model: nn.Module) -> int:
    """Decoder layers of ``model`` (a bare or peft-wrapped model), from its architecture."""
    return len(architecture(model).layers)


class _Cut(Exception):  # noqa: N818 - control flow (the decoder stops), not an error
    """Raised by the hook of the last wanted layer: the decoder stops there."""


def run_layers(
    model: nn.Module,
    ids: torch.Tensor,
    *,
    last_layer: int | None = None,
    grad_from: int | None = None,
    capture: Iterable[int] = (),
) -> dict[int, torch.Tensor]:
    """Run the embedding and decoder layers ``0..last_layer`` on token ids ``[B, T]``.

    Layers with index ``>= grad_from`` run with autograd (if it is enabled at all); those below
    run under ``torch.no_grad``. ``grad_from=None`` means no layer is recorded for backward.
    Returns ``{layer: hidden state [B, T, H] after that layer}`` for every layer in
    ``capture`` and for ``last_layer`` (default: the top layer). Hidden states are before the
    final norm: an exit head applies it (``Architecture.final``).
    """
    arch = architecture(model)
    layers = arch.layers
    top = len(layers) - 1
    last = top if last_layer is None else last_layer
    if not 0 <= last <= top:
        raise ValueError(f"last_layer {last} is outside 0..{top}")
    wanted = set(capture) | {last}
    if any(not 0 <= i <= last for i in wanted):
        raise ValueError(f"capture layers {sorted(wanted)} must lie in 0..{last}")
    grad_on = torch.is_grad_enabled()
    first_grad = last + 1 if grad_from is None else grad_from
    out: dict[int, torch.Tensor] = {}

    def start_grad(_m: nn.Module, _a: object) -> None:
        torch.set_grad_enabled(grad_on)  # undone when the no_grad block below exits

    def keep(_m: nn.Module, _a: object, output: object, i: int) -> None:
        out[i] = output[0] if isinstance(output, tuple) else output  # type: ignore[assignment]
        if i == last:
            raise _Cut

    handles = [layers[i].register_forward_hook(lambda m, a, o, i=i: keep(m, a, o, i)) for i in sorted(wanted)]
    if first_grad <= last:
        handles.append(layers[first_grad].register_forward_pre_hook(start_grad))
    token = _IN_DECODER.set(True)
    try:
        # The embedding is frozen in both tuning methods, so it never needs autograd. The
        # decoder's forward, not its __call__: its own module hooks would see a cut, not an end.
        with torch.no_grad():
            arch.decoder.forward(input_ids=ids, use_cache=False)
    except _Cut:
        pass
    finally:
        _IN_DECODER.reset(token)
        for h in handles:
            h.remove()
    return out
