"""The decoder run layer by layer, so that early exits and cuts are real.

This follows what ``LlamaModel.forward`` does in transformers 5.x (embedding, rotary position
embeddings, ``create_causal_mask``, then each decoder layer), but stops after a chosen layer
(the layers above it never run) and runs the layers below a chosen one without autograd, so
their activations are freed at once instead of being kept for a backward pass that will not
reach them.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from transformers.masking_utils import create_causal_mask


def causal_lm(model: nn.Module) -> nn.Module:
    """The Hugging Face ``...ForCausalLM`` inside a model that may be wrapped by peft."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder(model: nn.Module) -> nn.Module:
    """The bare decoder (``LlamaModel``: embedding, layers, final norm, rotary embedding)."""
    return causal_lm(model).model


def num_layers(model: nn.Module) -> int:
    return len(decoder(model).layers)


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
    final norm: an exit head applies it.
    """
    dec = decoder(model)
    top = len(dec.layers) - 1
    last = top if last_layer is None else last_layer
    if not 0 <= last <= top:
        raise ValueError(f"last_layer {last} is outside 0..{top}")
    wanted = set(capture) | {last}
    if any(not 0 <= i <= last for i in wanted):
        raise ValueError(f"capture layers {sorted(wanted)} must lie in 0..{last}")
    grad_on = torch.is_grad_enabled()
    first_grad = last + 1 if grad_from is None else grad_from

    with torch.no_grad():
        # The embedding is frozen in both tuning methods, so it never needs autograd.
        hidden = dec.embed_tokens(ids)
        position_ids = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        mask = create_causal_mask(
            config=dec.config, inputs_embeds=hidden, attention_mask=None, cache=None, position_ids=position_ids
        )
        position_embeddings = dec.rotary_emb(hidden, position_ids=position_ids)

    out: dict[int, torch.Tensor] = {}
    for i in range(last + 1):
        with torch.set_grad_enabled(grad_on and i >= first_grad):
            hidden = dec.layers[i](
                hidden,
                attention_mask=mask,
                position_embeddings=position_embeddings,
                position_ids=position_ids,
                use_cache=False,
            )
        if i in wanted:
            out[i] = hidden
    return out
