"""Where a Hugging Face decoder-only causal LM keeps its parts, found on the model itself.

Tuning, tracing and compression need four things of a model: its list of decoder layers, the
modules that turn the last layer's output into the hidden state the LM head reads (the final
norm, and OPT's ``project_out``), the LM head, and the matrix-product modules inside a layer
(``nn.Linear``, and GPT-2's ``Conv1D``). They are found, not listed per architecture:

- the layers are the ``nn.ModuleList`` with ``config.num_hidden_layers`` entries under the
  decoder, in one of the containers peft knows (``layers``, ``h``, ``block``, ``blocks``,
  ``layer``); the decoder is the module that owns it;
- one probe pass of the decoder's own forward on three tokens tells which of the decoder's
  direct children run after the last layer (the final modules), and checks what an exit head
  will assume: each layer runs once, in order, and returns the hidden state; the final modules
  applied to the last layer's output give the decoder's output; the LM head applied to that
  gives the model's logits (a logit soft-cap or scale, as in Gemma 2, fails here);
- the LM head is ``get_output_embeddings()``: a ``Linear`` without bias.

What does not fit fails with a one-line ``UserError`` naming the missing part; nothing falls
back to a guess. Tested on LLaMA, Qwen2, Mistral, Gemma, Phi-3, GPT-2 and OPT, and refused for
Gemma 2 (logit soft-cap), Bloom (products in its own attention code) and Mamba (convolutions)
(tests/test_workloads_archs.py; the last two are caught by the trace recorder's product check).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from workloads.errors import UserError

__all__ = ["Architecture", "LAYER_CONTAINERS", "PRODUCT_MODULES", "architecture", "causal_lm",
           "product_shape"]

LAYER_CONTAINERS = ("layers", "h", "block", "blocks", "layer")  # peft's COMMON_LAYERS_PATTERN
PRODUCT_MODULES = (nn.Linear, Conv1D)  # weight modules whose forward is one matrix product
_PROBE_TOKENS = 3


@dataclass(frozen=True)
class _Layout:
    """Paths (relative to the causal LM) found once per model; modules are looked up on use, so
    the cache holds no reference to the model."""

    decoder: str  # "model", "transformer", "model.decoder"
    container: str  # attribute of the decoder holding the layers: "layers", "h", ...
    final: tuple[str, ...]  # modules applied after the last layer, in call order
    head: str  # "lm_head"
    products: tuple[tuple[str, str], ...]  # (path inside a layer, trace label), module order
    conv1d: bool  # the products are transformers' Conv1D (weight [in, out]), not nn.Linear


_LAYOUTS: weakref.WeakKeyDictionary[nn.Module, _Layout] = weakref.WeakKeyDictionary()


def causal_lm(model: nn.Module) -> nn.Module:
    """The Hugging Face ``...ForCausalLM`` inside a model that may be wrapped by peft."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass(frozen=True)
class Architecture:
    """The parts of one causal LM (see the module docstring). Build with :func:`architecture`."""

    model: nn.Module  # the causal LM (peft wrappers looked through)
    layout: _Layout

    @property
    def decoder(self) -> nn.Module:
        """The bare decoder (``LlamaModel``, ``GPT2Model``, ``OPTDecoder``, ...)."""
        return self.model.get_submodule(self.layout.decoder)

    @property
    def decoder_path(self) -> str:
        """The decoder's module path inside the model (``model``, ``transformer``, ``model.decoder``)."""
        return self.layout.decoder

    @property
    def layers(self) -> nn.ModuleList:
        """The decoder layers, in order (the model's own ``nn.ModuleList``)."""
        return getattr(self.decoder, self.layout.container)

    @property
    def container(self) -> str:
        """The name of the layer list (peft's ``layers_pattern``)."""
        return self.layout.container

    @property
    def head(self) -> nn.Linear:
        """The LM head, ``[V, H]`` weight, no bias (tied to the embedding in most models)."""
        return self.model.get_submodule(self.layout.head)

    @property
    def final_modules(self) -> list[nn.Module]:
        """The modules between the last decoder layer and the head (found by probing: the final
        norm, and OPT's output projection where it has one), in the order they run."""
        return [self.model.get_submodule(p) for p in self.layout.final]

    def final(self, hidden: torch.Tensor) -> torch.Tensor:
        """What the decoder does to its last layer's output ``[..., H]`` before the LM head."""
        for module in self.final_modules:
            hidden = module(hidden)
        return hidden

    @property
    def product_labels(self) -> dict[str, str]:
        """Trace label of each product module of a layer, by its path inside the layer: the
        short name (``q_proj``), or the path where two short names collide (GPT-2's
        ``attn.c_proj`` and ``mlp.c_proj``)."""
        return dict(self.layout.products)

    @property
    def product_names(self) -> list[str]:
        """The trace labels of a layer's product modules, in module order."""
        return [label for _, label in self.layout.products]

    @property
    def conv1d(self) -> bool:
        """Whether the layer's products are ``Conv1D`` (GPT-2), peft's ``fan_in_fan_out``."""
        return self.layout.conv1d

    @property
    def target_modules(self) -> list[str]:
        """Short names of a layer's product modules (peft's ``target_modules``)."""
        return sorted({path.rsplit(".", 1)[-1] for path, _ in self.layout.products})


def architecture(model: nn.Module) -> Architecture:
    """The parts of a Hugging Face causal LM (peft wrappers looked through), found once per
    model and cached. Raises ``UserError`` (one line) naming what a model lacks."""
    lm = causal_lm(model)
    layout = _LAYOUTS.get(lm)
    if layout is None:
        layout = _discover(lm)
        _LAYOUTS[lm] = layout
    return Architecture(lm, layout)


def product_shape(module: nn.Module) -> tuple[int, int]:
    """``(in_features, out_features)`` of a product module (``Conv1D`` stores ``[in, out]``)."""
    if isinstance(module, Conv1D):
        return int(module.weight.shape[0]), int(module.weight.shape[1])
    return int(module.in_features), int(module.out_features)


def _discover(lm: nn.Module) -> _Layout:
    name = type(lm).__name__
    config = getattr(lm, "config", None)
    n_layers = getattr(config, "num_hidden_layers", None)
    if not isinstance(n_layers, int) or n_layers < 1:
        raise UserError(f"{name}: no config.num_hidden_layers: not a Hugging Face decoder model")
    decoder, container = _find_layers(lm, n_layers)
    head = _find_head(lm)
    layers = getattr(lm.get_submodule(decoder), container)
    products = _products(layers[0], name)
    conv1d = all(isinstance(m, Conv1D) for path, m in layers[0].named_modules()
                 if isinstance(m, PRODUCT_MODULES) and ".lora_" not in f".{path}")
    final = _probe(lm, decoder, container, head)
    return _Layout(decoder, container, final, head, products, conv1d)


def _find_layers(lm: nn.Module, n_layers: int) -> tuple[str, str]:
    for path, module in lm.named_modules():
        for container in LAYER_CONTAINERS:
            child = module._modules.get(container)
            if isinstance(child, nn.ModuleList) and len(child) == n_layers:
                return path, container
    raise UserError(
        f"{type(lm).__name__}: no list of {n_layers} decoder layers named {' / '.join(LAYER_CONTAINERS)}: "
        "architecture not supported")


def _find_head(lm: nn.Module) -> str:
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    if not isinstance(head, nn.Linear):
        raise UserError(f"{type(lm).__name__}: no linear LM head (get_output_embeddings): architecture not supported")
    if head.bias is not None:
        raise UserError(f"{type(lm).__name__}: its LM head has a bias, which the exit heads do not apply: "
                        "architecture not supported")
    return next(path for path, module in lm.named_modules() if module is head)


def _products(layer: nn.Module, name: str) -> tuple[tuple[str, str], ...]:
    # A layer peft already wraps: its products are the base layers, not the adapters.
    found = [path.replace(".base_layer", "") for path, module in layer.named_modules()
             if isinstance(module, PRODUCT_MODULES) and ".lora_" not in f".{path}"]
    if not found:
        raise UserError(f"{name}: its decoder layers hold no nn.Linear or Conv1D: architecture not supported")
    short = [p.rsplit(".", 1)[-1] for p in found]
    return tuple((p, s if short.count(s) == 1 else p) for p, s in zip(found, short, strict=True))


def _probe(lm: nn.Module, decoder_path: str, container: str, head_path: str) -> tuple[str, ...]:
    """Run the decoder once (three tokens, no autograd) with hooks on its direct children;
    return the paths of those that ran after the last layer, after checking that they and the
    head reproduce the model's own output (module docstring)."""
    name = type(lm).__name__
    decoder = lm.get_submodule(decoder_path)
    layers = getattr(decoder, container)
    calls: list[tuple[str, torch.Tensor | None]] = []
    handles = []
    for child_name, child in decoder.named_children():
        targets = list(enumerate(child)) if child is layers else [(None, child)]
        for index, module in targets:
            tag = f"{container}.{index}" if index is not None else child_name

            def hook(_m: nn.Module, _a: object, out: object, tag: str = tag) -> None:
                first = out[0] if isinstance(out, tuple) else out
                calls.append((tag, first if isinstance(first, torch.Tensor) else None))

            handles.append(module.register_forward_hook(hook))
    vocab = int(lm.get_input_embeddings().weight.shape[0])
    ids = torch.arange(1, _PROBE_TOKENS + 1).unsqueeze(0) % vocab
    was_training = lm.training
    lm.eval()
    try:
        with torch.no_grad():
            logits = lm(input_ids=ids, use_cache=False).logits
            calls.clear()  # keep the decoder's own pass below
            hidden_out = decoder(input_ids=ids, use_cache=False).last_hidden_state
    except Exception as exc:  # noqa: BLE001 - any failure of the model's own forward means "cannot probe"
        raise UserError(f"{name}: its forward pass fails on token ids alone ({type(exc).__name__}): "
                        "architecture not supported") from None
    finally:
        lm.train(was_training)
        for h in handles:
            h.remove()
    return _check_probe(lm, calls, decoder_path, layers, container, head_path, logits, hidden_out)


def _check_probe(lm: nn.Module, calls: list[tuple[str, torch.Tensor | None]], decoder_path: str,
                 layers: nn.ModuleList, container: str, head_path: str, logits: torch.Tensor,
                 hidden_out: torch.Tensor) -> tuple[str, ...]:
    name = type(lm).__name__
    order = [tag for tag, _ in calls if tag.startswith(container + ".")]
    if order != [f"{container}.{i}" for i in range(len(layers))]:
        raise UserError(f"{name}: its decoder does not run each of its {len(layers)} layers once, in order: "
                        "architecture not supported")
    last = max(i for i, (tag, _) in enumerate(calls) if tag.startswith(container + "."))
    hidden = calls[last][1]
    if hidden is None:
        raise UserError(f"{name}: its decoder layers do not return the hidden state: architecture not supported")
    final = tuple(f"{decoder_path}.{tag}" if decoder_path else tag for tag, _ in calls[last + 1:])
    with torch.no_grad():
        for path in final:
            hidden = lm.get_submodule(path)(hidden)
        if hidden.shape != hidden_out.shape or not torch.allclose(hidden, hidden_out, rtol=1e-4, atol=1e-5):
            raise UserError(f"{name}: its decoder does more after the last layer than its modules "
                            f"{', '.join(final) or '(none)'}: architecture not supported")
        head = lm.get_submodule(head_path)(hidden)
        if head.shape != logits.shape or not torch.allclose(head, logits, rtol=1e-4, atol=1e-5):
            raise UserError(f"{name}: its logits are not {head_path}(final hidden state) (a logit soft-cap or "
                            "scale?), which the exit heads assume: architecture not supported")
    return final
