"""LoRA adapters through peft: on every linear layer of chosen decoder layers (every
``nn.Linear`` / ``Conv1D`` a decoder layer holds, found by ``workloads.architecture``: the
seven projections of LLaMA, Qwen2, Mistral and Gemma, Phi-3's fused ``qkv_proj`` and
``gate_up_proj``, GPT-2's ``c_attn`` / ``c_proj`` / ``c_fc``, OPT's ``out_proj`` / ``fc1`` / ``fc2``).

Vanilla tuning puts them on all layers; adaptive tuning on the layers that its windows cover,
and makes only the current window's adapters trainable at each step. Adapters are float32
whatever the base weights hold (a compressed model's weights are pruned and fake-quantized in
place; the adapters beside them stay full precision).
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from workloads.architecture import LAYER_CONTAINERS, architecture

__all__ = ["DEFAULT_ALPHA", "DEFAULT_RANK", "LAYER_PATH", "LINEAR_MODULES", "attach_lora",
           "detach_lora", "layer_of", "lora_parameters", "set_trainable_layers", "tensor_bytes",
           "trainable_parameters"]

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # LLaMA's
DEFAULT_RANK = 8
DEFAULT_ALPHA = 16.0
LAYER_PATH = re.compile(r"(?:^|\.)(?:" + "|".join(LAYER_CONTAINERS) + r")\.(\d+)(?:\.|$)")


def layer_of(name: str) -> int:
    """Decoder layer index in a parameter or module name (``model.layers.3.mlp``,
    ``transformer.h.3.attn``, ``layers.3`` itself), ``-1`` if it has none."""
    match = LAYER_PATH.search(name)
    return int(match.group(1)) if match else -1


def attach_lora(
    model: nn.Module,
    layers: Sequence[int],
    *,
    rank: int = DEFAULT_RANK,
    alpha: float = DEFAULT_ALPHA,
    dropout: float = 0.0,
) -> nn.Module:
    """Wrap a Hugging Face causal LM with LoRA adapters (peft) on the linear modules of each
    decoder layer in ``layers`` (``Architecture.target_modules``); everything else is frozen. Returns the ``PeftModel``
    (the base model is modified in place, as peft does). The adapters start as a no-op
    (``B = 0``), drawn from torch's global generator: seed it first for repeatable runs."""
    from peft import LoraConfig, get_peft_model

    if rank <= 0:
        raise ValueError(f"LoRA rank must be positive (got {rank})")
    arch = architecture(model)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=arch.target_modules,
        layers_to_transform=sorted(set(layers)),
        layers_pattern=arch.container,
        bias="none",
        fan_in_fan_out=arch.conv1d,  # GPT-2's Conv1D stores its weight [in, out]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's deprecation chatter about checkpointing names
        peft_model = get_peft_model(model, config)
    for p in lora_parameters(peft_model).values():
        p.data = p.data.float()
    return peft_model


def lora_parameters(model: nn.Module, layers: Iterable[int] | None = None) -> dict[str, nn.Parameter]:
    """LoRA parameters by name, optionally only those of some decoder layers."""
    wanted = None if layers is None else set(layers)
    return {
        name: p
        for name, p in model.named_parameters()
        if ".lora_" in name and (wanted is None or layer_of(name) in wanted)
    }


def set_trainable_layers(model: nn.Module, layers: Iterable[int] | None) -> int:
    """Make the LoRA parameters of ``layers`` trainable and freeze all others (``None``: all
    adapters trainable). Returns the number of trainable parameters."""
    wanted = None if layers is None else set(layers)
    count = 0
    for name, p in lora_parameters(model).items():
        p.requires_grad_(wanted is None or layer_of(name) in wanted)
        count += p.numel() if p.requires_grad else 0
    return count


def detach_lora(peft_model: nn.Module) -> nn.Module:
    """Remove the adapters again (without merging them) and return the plain base model."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft_model.unload()


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The parameters of ``model`` that take gradients now."""
    return [p for p in model.parameters() if p.requires_grad]


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Host bytes of ``tensors`` (elements x element size)."""
    return sum(t.numel() * t.element_size() for t in tensors)
