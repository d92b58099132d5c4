"""Where the compressible weights live: the decoder layers of a causal LM and their linear
modules, and the order in which those modules consume their inputs.

Only ``nn.Linear`` modules *inside* decoder layers are compressed; the embedding and the LM
head stay dense (they are outside the layers, and the LM head is tied to the embedding).
"""
from __future__ import annotations

import torch
from torch import nn

from workloads.errors import UserError

__all__ = ["decoder_layers", "final_head", "input_groups", "layer_param_count", "linear_modules"]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder layers of a Hugging Face causal LM (``model.model.layers`` for LLaMA-like
    models; peft wrappers are looked through)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise UserError(f"{type(model).__name__}: no decoder layers at model.model.layers (need a LLaMA-like model)")
    return layers


def linear_modules(layer: nn.Module) -> dict[str, nn.Linear]:
    """The layer's linear modules by short name (``q_proj``, ..., ``down_proj``), in module order.

    Short names are the last component of the module path; a layer with two linears of the same
    short name keeps their full relative paths instead, so names are always unique.
    """
    found = [(name, mod) for name, mod in layer.named_modules() if isinstance(mod, nn.Linear)]
    short = [name.rsplit(".", 1)[-1] for name, _ in found]
    unique = len(set(short)) == len(short)
    return {(s if unique else name): mod for s, (name, mod) in zip(short, found, strict=True)}


def layer_param_count(layer: nn.Module) -> int:
    """Weights of the layer's linear modules (the compressible parameters), in elements."""
    return sum(mod.weight.numel() for mod in linear_modules(layer).values())


def input_groups(layer: nn.Module, hidden: torch.Tensor, layer_kwargs: dict) -> list[list[str]]:
    """Linear modules grouped by the tensor they read, in execution order.

    Modules in one group see the same input (q/k/v, gate/up), so they share calibration
    statistics; a later group reads what earlier groups produced. Compressing group by group
    and re-running the layer in between ("true sequential") lets ``o_proj`` and ``down_proj``
    see the outputs of their already-compressed predecessors. Found by one traced forward pass
    on a slice of ``hidden``, so any LLaMA-like layer works without a hard-coded list.
    """
    modules = linear_modules(layer)
    # (input tensor, module name) in call order. Holding the tensors keeps their memory alive,
    # so a freed input's address cannot be reused by a later, different input (which would
    # merge o_proj with gate/up).
    seen: list[tuple[torch.Tensor, str]] = []

    def make_hook(name: str):
        def hook(_mod: nn.Module, args: tuple) -> None:
            seen.append((args[0], name))

        return hook

    handles = [mod.register_forward_pre_hook(make_hook(name)) for name, mod in modules.items()]
    try:
        with torch.inference_mode():
            layer(hidden[:1, : min(8, hidden.shape[1])], **_sliced_kwargs(layer_kwargs, min(8, hidden.shape[1])))
    finally:
        for h in handles:
            h.remove()
    groups: list[list[str]] = []
    previous: torch.Tensor | None = None
    for x, name in seen:
        if any(name in g for g in groups):
            continue
        if previous is not None and _same_tensor(previous, x):
            groups[-1].append(name)
        else:
            groups.append([name])
        previous = x
    missing = [n for n in modules if not any(n in g for g in groups)]
    return groups + ([missing] if missing else [])


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (
        a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
        and a.storage_offset() == b.storage_offset()
        and a.shape == b.shape
        and a.stride() == b.stride()
    )


def _sliced_kwargs(layer_kwargs: dict, length: int) -> dict:
    """Layer keyword arguments cut to the first ``length`` positions (for a short trace)."""
    out = {}
    for key, value in layer_kwargs.items():
        if key == "position_embeddings" and value is not None:
            out[key] = tuple(v[..., :length, :] for v in value)
        elif key == "position_ids" and value is not None:
            out[key] = value[..., :length]
        elif key == "attention_mask" and isinstance(value, torch.Tensor):
            out[key] = value[..., :length, :length]
        else:
            out[key] = value
    return out


def final_head(model: nn.Module) -> nn.Module:
    """Final norm followed by the LM head: maps last hidden states to next-token logits."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return nn.Sequential(model.model.norm, model.lm_head)
