"""Recording a trace from a real torch step: hooks on the modules that actually run.

- every ``nn.Linear`` that runs (the base weights inside peft's LoRA layers, the LoRA A/B
  projections) gets a ``fwd`` row from a forward hook; when its output takes part in autograd,
  a hook on that output fires during the backward pass and adds ``bwd_input`` (if the input
  needed a gradient) and ``bwd_weight`` (if the weight is trained) rows;
- attention runs as one fused SDPA call, so it is recorded from that call's own inputs: the
  model is pointed (for the duration of the recording) at a registered attention function that
  reads the ``q``/``k``/``v`` shapes, delegates to the original implementation, and hooks its
  output for the backward products (including the recomputation of ``Q K^T`` that a
  flash-attention backward does);
- the exit heads report their products through ``head_product_hooks``;
- everything else the step executes (norms, RoPE, activations, residuals, the head's softmax and
  loss, the optimizer update, activation packing) is recorded as vector rows by
  ``workloads.trace.vector``, from the operators torch dispatches, the fused attention's shapes
  and the activation codec's rule.
Nothing is typed by hand: work that did not run has no row.
"""
from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from workloads.architecture import PRODUCT_MODULES, Architecture, architecture, product_shape
from workloads.errors import UserError
from workloads.exits import translator as exit_translator
from workloads.luc.policy import DENSE_BITS, Policy
from workloads.models import LoadedModel
from workloads.trace.liveness import Lifetime, StorageClock
from workloads.trace.table import FORMAT, OPS_COLUMNS, TEMPORARY_KINDS, TENSOR_COLUMNS, Trace
from workloads.trace.vector import Site, VectorRecorder
from workloads.trace.vector_ops import SOFTMAX, SOFTMAX_BACKWARD, tensor_bytes
from workloads.tuning import actcomp, lora
from workloads.tuning.forward import in_decoder, num_layers, run_layers
from workloads.tuning.head import HeadProduct, exit_stats, head_product_hooks, running_exit
from workloads.tuning.memory import SavedTensorLog
from workloads.tuning.schedule import Window
from workloads.tuning.step import StepPlan, step_loss
from workloads.tuning.train import TuneConfig

__all__ = ["ATTENTION_MODULES", "DEFAULT_WINDOW", "LORA_BITS", "METHODS", "OPTIMIZER_BITS",
           "record_trace", "step_ids", "step_plan"]

METHODS = ("vanilla", "adaptive", "inference")
DEFAULT_WINDOW = TuneConfig.window  # the tuning CLI's default window, in layers
LORA_BITS = 16  # adapters in full (device float16) precision
OPTIMIZER_BITS = 32  # AdamW moments, two per trained parameter
_TRACED = "edgellm_traced_"
ATTENTION_MODULES = ("attn_qk", "attn_pv")  # recorded from the attention function's shapes
_ACTIVE: ContextVar[_Recorder | None] = ContextVar("edgellm_trace_recorder", default=None)


@dataclass
class _Recorder:
    """Collects raw op rows (products: shapes, phase, trainable; vector work) in execution order."""

    num_layers: int
    labels: dict[str, str]  # Architecture.product_labels
    rows: list[dict[str, Any]] = field(default_factory=list)
    module_stack: list[tuple[str, int, str]] = field(default_factory=list)  # (name, layer, vector label)
    vector: VectorRecorder | None = None
    clock: StorageClock | None = None
    grad_lives: dict[str, Lifetime] = field(default_factory=dict)  # trained parameter -> its gradient

    def add(self, layer: int, module: str, phase: str, m: int, n: int, k: int, trainable: bool, count: int = 1) -> None:
        self.rows.append(
            {"layer": layer, "module": module, "phase": phase, "M": m, "N": n, "K": k, "weight_sparsity": 0.0,
             "sparsity_pattern": "dense", "w_bits": 0, "a_bits": 0, "trainable": trainable, "count": count,
             "kind": "matmul", "vector_class": "", "elements": 0, "read_bytes": 0, "write_bytes": 0,
             "fusable": False}
        )

    def where(self) -> tuple[str, int]:
        return self.module_stack[-1][:2] if self.module_stack else ("head", -1)

    def head_module(self, exit_layer: int) -> str:
        return "lm_head" if exit_layer == self.num_layers - 1 else "exit_head"

    def storage_site(self) -> tuple[str, int]:
        """Where a storage is created now: the running module in forward, the module whose
        autograd node runs in backward, the optimizer region in the update."""
        if self.vector is None or self.vector.phase == "fwd":
            head = running_exit()
            if self.module_stack or head is None:
                return self.where()
            return self.head_module(head[0]), -1
        site = self.vector.current_site()
        return (site.module, site.layer) if site is not None else ("autograd", -1)

    def storage_phase(self) -> str:
        """The step's phase for a storage made now; the head's loss gradient, formed inside
        the forward pass, counts as backward (as its rows do)."""
        phase = self.vector.phase if self.vector is not None else "fwd"
        head = running_exit()
        if phase == "fwd" and head is not None and not self.module_stack:
            return head[1]
        return phase

    def site(self) -> Site | None:
        """Where forward vector work runs: the innermost module, else the running exit head,
        else the decoder's own code (its floating-point work: GPT-2's and OPT's position add);
        ``None`` outside all (or for the decoder's integer work: transformers' position-id and
        mask preparation, a host decision)."""
        if self.module_stack:
            _, layer, label = self.module_stack[-1]
            return Site(label, layer)
        head = running_exit()
        if head is not None:
            return Site(self.head_module(head[0]), -1, head[1])
        return Site("decoder", -1, floats_only=True) if in_decoder() else None


def _vector_module(name: str, labels: dict[str, str]) -> str:
    """The trace's ``module`` of vector work done by a module's own code: ``residual`` for a
    decoder layer's adds, ``lora`` for an adapter's scale and sum (the code of peft's wrapper
    around a product module, its base layer and its ``lora_A`` / ``lora_B``; a product module
    runs Python code of its own only when peft wraps it), ``exit_translator`` for an exit's
    translator, else the module's name."""
    parts = name.split(".")
    if exit_translator.ATTRIBUTE in parts:
        return exit_translator.TRACE_MODULE
    if parts[-1].isdigit():
        return "residual"
    inner = _inside_layer(".".join(p for p in parts if p != "base_layer"))
    if "lora_A" in parts or "lora_B" in parts or inner in labels:
        return "lora"
    return parts[-1]


def _inside_layer(name: str) -> str:
    """The path of a module inside its decoder layer (``self_attn.q_proj``), ``""`` outside."""
    match = lora.LAYER_PATH.search(name)
    return name[match.end():] if match else ""


def _label(name: str, labels: dict[str, str]) -> str:
    """``q_proj`` for a (base) product module (``attn.c_proj`` where short names collide, see
    ``Architecture.product_labels``), ``lora_A`` / ``lora_B`` for adapters."""
    parts = name.split(".")
    if exit_translator.ATTRIBUTE in parts:  # an exit's translator (part of the exit head)
        return exit_translator.TRACE_MODULE
    for tag in ("lora_A", "lora_B"):
        if tag in parts:
            return tag
    inner = _inside_layer(".".join(p for p in parts if p != "base_layer"))
    return labels.get(inner, parts[-1])


def _linear_hooks(model: nn.Module, rec: _Recorder, labels: dict[str, str]) -> list[torch.utils.hooks.RemovableHandle]:
    handles = []
    for name, mod in model.named_modules():
        if not isinstance(mod, PRODUCT_MODULES):
            continue
        layer, label = lora.layer_of(name), _label(name, labels)

        def hook(module: nn.Module, args: tuple[Any, ...], output: torch.Tensor,
                 layer: int = layer, label: str = label) -> None:
            x = args[0]
            k, n = product_shape(module)
            m = x.numel() // k
            trains = module.weight.requires_grad
            rec.add(layer, label, "fwd", m, n, k, trains)
            if not output.requires_grad:
                return  # no autograd node: this product has no backward
            input_grad = x.requires_grad

            def on_grad(_grad: torch.Tensor) -> None:
                if input_grad:
                    rec.add(layer, label, "bwd_input", m, k, n, trains)
                if trains:
                    rec.add(layer, label, "bwd_weight", n, k, m, trains)

            output.register_hook(on_grad)

        handles.append(mod.register_forward_hook(hook))
    return handles


def _module_stack_hooks(model: nn.Module, rec: _Recorder, decoder_path: str) -> list[torch.utils.hooks.RemovableHandle]:
    """Keep the name of the running module, so saved activations and vector work can be labelled."""
    handles = []
    for name, mod in model.named_modules():
        clean = _clean_name(name, decoder_path)
        entry = (clean, lora.layer_of(name), _vector_module(name, rec.labels))

        def pre(_m: nn.Module, _a: Any, entry: tuple[str, int, str] = entry) -> None:
            rec.module_stack.append(entry)

        def post(_m: nn.Module, _a: Any, _o: Any) -> None:
            rec.module_stack.pop()

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    return handles


def _clean_name(name: str, decoder_path: str) -> str:
    """Parameter/module names relative to the decoder (``Architecture.decoder_path``: ``model``,
    ``transformer``, ``model.decoder``), without peft's wrappers."""
    for prefix in ("base_model.model.", decoder_path + "."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace(".base_layer", "").replace(".default", "")


def _uses_flash(grad_fn: Any, depth: int = 5) -> bool:
    """Whether an autograd node near the attention output is a flash-attention backward
    (which recomputes the score matrix instead of saving it)."""
    frontier = [grad_fn]
    for _ in range(depth):
        nxt = []
        for node in frontier:
            if node is None:
                continue
            if "FlashAttention" in type(node).__name__:
                return True
            nxt.extend(fn for fn, _ in node.next_functions)
        frontier = nxt
    return False


def _own_eager(module: nn.Module) -> Any:
    """The eager attention of the module's own modeling file (GPT-2's differs from LLaMA's):
    what the model runs when its attention implementation is ``eager``."""
    eager = getattr(sys.modules[type(module).__module__], "eager_attention_forward", None)
    if eager is None:
        raise UserError(f"{type(module).__name__}: no eager_attention_forward in its modeling file; "
                        "use attn_implementation='sdpa'")
    return eager


def _traced_attention(delegate: str):  # type: ignore[no-untyped-def]
    def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
        impl = ALL_ATTENTION_FUNCTIONS.get_interface(delegate, None) or _own_eager(module)  # type: ignore[arg-type]
        rec = _ACTIVE.get()
        paused = rec.vector.paused() if rec is not None and rec.vector is not None else nullcontext()
        with paused:  # a fused kernel: its work is recorded from the shapes below
            out, weights = impl(module, query, key, value, attention_mask, **kwargs)
        if rec is None:
            return out, weights
        b, heads, tq, hd = query.shape
        tk = key.shape[2]
        layer = rec.module_stack[-1][1] if rec.module_stack else int(getattr(module, "layer_idx", -1))
        count = b * heads  # one product per batch element and query head (GQA shares K/V)
        rec.add(layer, "attn_qk", "fwd", tq, tk, hd, False, count)  # S = Q K^T
        _softmax_rows(rec, layer, tq, tk, count, SOFTMAX)  # P = softmax(S)
        rec.add(layer, "attn_pv", "fwd", tq, hd, tk, False, count)  # O = P V
        if out.requires_grad:
            need_q, need_k, need_v = query.requires_grad, key.requires_grad, value.requires_grad
            recompute = _uses_flash(out.grad_fn)

            def on_grad(_grad: torch.Tensor) -> None:
                if recompute:
                    rec.add(layer, "attn_qk", "bwd_input", tq, tk, hd, False, count)  # S again
                    _softmax_rows(rec, layer, tq, tk, count, _RECOMPUTE, extra_read=tq)  # P = exp(S - lse)
                if need_v:
                    rec.add(layer, "attn_pv", "bwd_input", tk, hd, tq, False, count)  # dV = P^T dO
                if need_q or need_k:
                    rec.add(layer, "attn_pv", "bwd_input", tq, tk, hd, False, count)  # dP = dO V^T
                    _softmax_rows(rec, layer, tq, tk, count, SOFTMAX_BACKWARD, extra_read=tq * tk)  # dS
                if need_q:
                    rec.add(layer, "attn_qk", "bwd_input", tq, hd, tk, False, count)  # dQ = dS K
                if need_k:
                    rec.add(layer, "attn_qk", "bwd_input", tk, hd, tq, False, count)  # dK = dS^T Q

            out.register_hook(on_grad)
        return out, weights

    return attention


_RECOMPUTE = (("add", 1), ("exp", 1))  # flash backward: P = exp(S * scale - lse), per element


def _softmax_rows(rec: _Recorder, layer: int, tq: int, tk: int, count: int, passes: Any, *,
                  extra_read: int = 0) -> None:
    """The attention softmax a fused kernel hides, per batch element and head (``count``), as an
    unfused device runs it: it reads the ``tq x tk`` scores the product before it wrote (plus
    ``extra_read`` values: the log-sum-exp rows, or dP beside P in backward) and writes as many
    (P, or dS). The scale and the causal mask are folded into the exp's argument."""
    if rec.vector is None:
        return
    bits = rec.vector.a_bits
    rec.vector.add_derived(
        site=Site("attn_softmax", layer), passes=passes, elements=tq * tk, count=count, fusable=True,
        read_bytes=tensor_bytes(tq * tk + extra_read, bits), write_bytes=tensor_bytes(tq * tk, bits))


@contextmanager
def _attention_recording(model: nn.Module) -> Iterator[None]:
    """Point the model's config at a registered attention function that records and delegates
    to the original one (same mask function), for the duration of the block."""
    config = model.config
    original = config._attn_implementation or "eager"
    if original.startswith(_TRACED):
        yield
        return
    name = _TRACED + original
    if name not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(name, _traced_attention(original))
        mask_key = original if original in ALL_MASK_ATTENTION_FUNCTIONS else "eager"
        ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[mask_key])
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = original


def _merge_repeats(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """Fold runs of identical consecutive rows (e.g. the head's equal chunks) into ``count``,
    except a product a ``fusable`` row reads (that row's ``count`` must stay the product's).
    Returns the rows and, per raw row, the index of the row it went into."""
    merged: list[dict[str, Any]] = []
    index: list[int] = []
    keys = [c for c in OPS_COLUMNS if c != "count"]
    for i, row in enumerate(rows):
        feeds_fusable = i + 1 < len(rows) and rows[i + 1]["fusable"]
        if merged and not feeds_fusable and all(merged[-1][k] == row[k] for k in keys):
            merged[-1]["count"] += row["count"]
        else:
            merged.append(dict(row))
        index.append(len(merged) - 1)
    return merged, index


def _check_products(name: str, rec: _Recorder) -> None:
    """Every product kernel torch ran outside the attention function must be a product row
    (module hooks, exit heads): else the model computes something the trace would miss."""
    assert rec.vector is not None
    if rec.vector.unknown_products:
        raise UserError(f"{name}: ran {', '.join(sorted(rec.vector.unknown_products))} kernels, which have no product "
                        "rows (only nn.Linear, Conv1D and the attention interface are traced): architecture not supported")
    rows = [r for r in rec.rows if r["kind"] == "matmul" and r["module"] not in ATTENTION_MODULES]
    recorded = sum(r["M"] * r["N"] * r["K"] * r["count"] for r in rows)
    if recorded != rec.vector.product_macs:
        raise UserError(f"{name}: ran {abs(rec.vector.product_macs - recorded):,} MACs of matrix products outside "
                        "nn.Linear / Conv1D modules and the attention interface (in the model's own code): "
                        "architecture not supported")


def _weight_rows(model: nn.Module, trained: set[int], decoder_path: str,
                 grad_lives: dict[str, Lifetime]) -> list[dict[str, Any]]:
    """Every parameter of the model (tied weights once), at float16 until annotated; LoRA
    parameters with their gradient and AdamW state when trained in this step. All live for the
    whole step except the gradients (``grad_lives``: from their creation in backward)."""
    rows = []
    for name, p in model.named_parameters():  # named_parameters() lists a tied weight once
        clean = _clean_name(name, decoder_path)
        layer = lora.layer_of(name)
        if ".lora_" in name:
            rows.append(_tensor(clean, "lora_weight", layer, p.numel(), LORA_BITS))
            if id(p) in trained:
                grad = _tensor(clean + ".grad", "gradient", layer, p.numel(), LORA_BITS)
                life = grad_lives.get(name)
                if life is not None:
                    grad["first_op"], grad["last_op"] = life.first, life.last
                rows.append(grad)
                for moment in ("exp_avg", "exp_avg_sq"):
                    rows.append(_tensor(f"{clean}.{moment}", "optimizer", layer, p.numel(), OPTIMIZER_BITS))
        else:
            rows.append(_tensor(clean, "weight", layer, p.numel(), DENSE_BITS))
    return rows


def _head_weights(model: nn.Module, decoder_path: str) -> list[str]:
    """Tensor-table names of the embedding table and the LM head weight (one name when tied)."""
    arch = architecture(model)
    wanted = {id(model.get_input_embeddings().weight), id(arch.head.weight)}
    return [_clean_name(name, decoder_path) for name, p in model.named_parameters() if id(p) in wanted]


def _tensor(name: str, kind: str, layer: int, numel: int, bits: int) -> dict[str, Any]:
    """A tensor-table row, live for the whole step until its lifetime is known (raw row indices:
    ``first_op`` 0, ``last_op`` None for "to the end")."""
    return {"name": name, "kind": kind, "layer": layer, "numel": numel, "bits": bits,
            "bytes": math.ceil(numel * bits / 8), "first_op": 0, "last_op": None}


def _activation_rows(log: SavedTensorLog, a_bits: int) -> list[dict[str, Any]]:
    """Saved tensors on the device: floats at ``a_bits``, packed ones at their codec bits plus
    a bfloat16 scale per group (``actcomp.stored_bits``), integers as they are."""
    rows, seen = [], {}
    for entry in log.entries:
        index = seen.get(entry.where, 0)
        seen[entry.where] = index + 1
        name = f"{entry.where}.saved{index}"
        if entry.packed_bits is not None:
            row = _tensor(name, "activation", entry.layer, entry.numel, entry.packed_bits)
            row["bytes"] = math.ceil(actcomp.stored_bits(entry.numel, entry.packed_bits) / 8)
        else:
            row = _tensor(name, "activation", entry.layer, entry.numel, a_bits if entry.is_float else entry.element_bits)
        lives = [life for life in entry.handle or () if life is not None]
        if lives:
            row["first_op"] = min(life.first for life in lives)
            row["last_op"] = None if any(life.last is None for life in lives) else max(life.last for life in lives)
        rows.append(row)
    return rows


def _op_intervals(tensors: pd.DataFrame, index: list[int]) -> pd.DataFrame:
    """Raw row indices of ``first_op`` / ``last_op`` mapped to the merged table's rows (``None``
    = to the end); a storage freed before any row ran lives during the row it was made in.
    Temporaries equal in every column but size are merged into one row."""
    n = len(index)
    if n == 0:
        return tensors.assign(first_op=0, last_op=0)
    last_row = index[-1]
    to_row = np.asarray(index)
    first = to_row[np.clip(tensors["first_op"].to_numpy(dtype=np.int64), 0, n - 1)]
    raw_last = tensors["last_op"].fillna(n - 1).to_numpy(dtype=np.int64)
    last = np.where(tensors["last_op"].isna(), last_row, to_row[np.clip(raw_last, 0, n - 1)])
    out = tensors.assign(first_op=first, last_op=np.maximum(first, last))
    temp = out["kind"].isin(TEMPORARY_KINDS)
    keys = ["name", "kind", "layer", "bits", "first_op", "last_op"]
    merged = out[temp].groupby(keys, sort=False, as_index=False)[["numel", "bytes"]].sum()
    merged["bytes"] = (merged["numel"] * merged["bits"] + 7) // 8
    return pd.concat([out[~temp], merged], ignore_index=True)


def _parameter_bits(model: nn.Module) -> dict[int, int]:
    """Device bits of every parameter's storage, as the tensor table stores it (before a
    policy): adapters at ``LORA_BITS``, every other weight at ``DENSE_BITS``."""
    return {p.untyped_storage().data_ptr(): LORA_BITS if ".lora_" in name else DENSE_BITS
            for name, p in model.named_parameters()}


@dataclass
class _RecordedCodec(actcomp.ActivationCodec):
    """The activation codec, its host quantization left out of the trace and its device work
    recorded from the codec's rule instead: each storage packed once in forward (values at
    ``a_bits`` in, ``actcomp.stored_bits`` out), unpacked at each use in backward."""

    recorder: VectorRecorder | None = None
    _packs: list[weakref.ref] = field(default_factory=list, repr=False)  # weak: packs die in backward

    def pack(self, tensor: torch.Tensor) -> Any:
        assert self.recorder is not None
        with self.recorder.paused(hide_nodes=False):
            saved = super().pack(tensor)
        if isinstance(saved, actcomp.View) and not any(r() is saved.packed.q for r in self._packs):
            self._packs.append(weakref.ref(saved.packed.q))
            self.recorder.add_packing(saved.packed.numel, _stored_bytes(saved.packed.numel, self.bits), unpack=False)
        return saved

    def unpack(self, saved: Any) -> torch.Tensor:  # type: ignore[override]
        assert self.recorder is not None
        with self.recorder.paused(hide_nodes=False):
            tensor = actcomp.ActivationCodec.unpack(saved)
        if isinstance(saved, actcomp.View):
            self.recorder.add_packing(saved.packed.numel, _stored_bytes(saved.packed.numel, self.bits), unpack=True)
        return tensor


def _stored_bytes(numel: int, bits: int) -> int:
    return math.ceil(actcomp.stored_bits(numel, bits) / 8)


def _train_step(work: nn.Module, ids: torch.Tensor, plan: StepPlan, log: SavedTensorLog,
                rec: _Recorder) -> None:
    """Forward, backward and the optimizer update of one tuning step, as ``train_step`` runs
    them, with the vector recorder's phase following along."""
    vector = rec.vector
    assert vector is not None
    vector.phase = "fwd"
    with log:
        loss = step_loss(work, ids, plan)
    vector.phase = "bwd_input"
    loss.backward()
    del loss  # the step's graph and its loss value go with it
    _update(work, vector, rec.clock, rec.grad_lives)
    work.zero_grad(set_to_none=True)


def _update(work: nn.Module, vector: VectorRecorder, clock: StorageClock | None = None,
            grad_lives: dict[str, Lifetime] | None = None) -> None:
    """Gradient clipping and the AdamW step of the trained adapters (``train.tune`` with its
    default options), in steady state: a first, unrecorded step creates the moments. The
    gradients' storages are claimed on ``clock`` (their lifetimes into ``grad_lives``)."""
    grad_lives = {} if grad_lives is None else grad_lives
    config = TuneConfig()
    named = [(name, p) for name, p in lora.lora_parameters(work).items() if p.grad is not None]
    params = [p for _, p in named]
    if not params:
        return
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    for name, p in named:
        life = clock.claim(p.grad) if clock is not None else None
        if life is not None:
            grad_lives[name] = life
    if clock is not None:
        clock.enabled = False  # the state-creating step is not part of the steady-state step
    with vector.paused():
        optimizer.step()
    if clock is not None:
        clock.enabled = True
    tracked = []
    for name, p in named:
        layer = lora.layer_of(name)
        tracked += [(p, LORA_BITS, layer), (p.grad, LORA_BITS, layer)]
        tracked += [(t, OPTIMIZER_BITS, layer) for t in optimizer.state[p].values() if torch.is_tensor(t)]
    vector.track(tracked)
    vector.phase = "update"
    if config.max_grad_norm is not None:
        with vector.region("grad_clip"):
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    with vector.region("adamw"):
        optimizer.step()


def step_plan(model: nn.Module, *, method: str, window: int | None = None,
              exit_layer: int | None = None) -> tuple[StepPlan | None, list[int]]:
    """What a recorded step of ``method`` runs (``None`` for inference) and the layers that get
    adapters (``record_trace`` documents the arguments).

    Raises:
        UserError: an exit layer or window outside the model.
    """
    n_layers = num_layers(model)
    last = n_layers - 1 if exit_layer is None else exit_layer
    if not 0 <= last < n_layers:
        raise UserError(f"--exit-layer {last} is outside 0..{n_layers - 1}")
    if method == "adaptive":
        size = window if window is not None else min(DEFAULT_WINDOW, last + 1)
        if not 1 <= size <= last + 1:
            raise UserError(f"--window {size} does not fit below exit layer {last}")
        plan = StepPlan.adaptive(Window(last - size + 1, last))
        return plan, list(plan.window.layers)
    if method == "vanilla":
        return StepPlan("vanilla", Window(0, n_layers - 1)), list(range(n_layers))
    return None, []


def step_ids(model: nn.Module, *, seq_len: int, batch: int, seed: int) -> torch.Tensor:
    """The ``[batch, seq_len]`` random token ids a recorded step runs on."""
    return torch.randint(0, model.config.vocab_size, (batch, seq_len),
                         generator=torch.Generator().manual_seed(seed))


def record_trace(loaded: LoadedModel, *, method: str, window: int | None = None,
                 exit_layer: int | None = None, seq_len: int, batch: int,
                 policy: Policy | None = None, policy_label: str | None = None,
                 lora_rank: int = lora.DEFAULT_RANK, exits: Sequence[int] | None = None,
                 a_bits: int = 16, act_bits: int = actcomp.EXACT_BITS, seed: int = 0) -> Trace:
    """Run one real step of ``method`` on ``batch`` random sequences of ``seq_len`` tokens and
    record every matrix product it executed, its non-matrix work (vector rows: forward,
    backward, and the update of a tuning step: gradient clipping and AdamW with ``train.tune``'s
    defaults, in steady state) and every tensor it kept (docs/trace.md, format 2).

    - ``vanilla``: LoRA (rank ``lora_rank``) on all layers, forward through all of them, loss at
      the output, backward through all of them;
    - ``adaptive``: LoRA on the window of ``window`` layers (default 4) ending at ``exit_layer``
      (default: the last layer), forward cut at the exit, autograd only from the window on;
    - ``inference``: no adapters, one scoring forward pass with a head at each of ``exits``
      (default: the last layer) and no autograd.

    ``a_bits`` is the bits of an activation value on the device; ``act_bits`` < 16 runs the step
    with the saved activations packed (``actcomp``) and lists them at their packed size. A tuning
    step runs in train mode, as ``train.tune`` runs it, an inference pass in eval mode. Exit
    translators installed on the model run in front of their exits' heads (rows of module
    ``exit_translator``). The model is left as it was (adapters removed, its mode restored).
    ``policy`` only annotates the rows (``Trace.with_policy``); compress the model beforehand
    for a compressed run. Method: module and autograd hooks on the real torch step (see the
    module docstring); the ops table has one row per product or vector op, in execution order.

    Raises:
        UserError: an unknown method, a window, exit or size outside the model, a model that
            already has adapters, or products the hooks cannot see (unsupported architecture).
    """
    model = loaded.model
    _check_request(model, method=method, seq_len=seq_len, batch=batch, act_bits=act_bits)
    arch = architecture(model)  # probes the model once: before any hook or recorder is in place
    n_layers = num_layers(model)
    plan, lora_layers = step_plan(model, method=method, window=window, exit_layer=exit_layer)
    head_exits = _head_exits(exits, n_layers)
    ids = step_ids(model, seq_len=seq_len, batch=batch, seed=seed)
    rec = _Recorder(n_layers, arch.product_labels)
    with _adapted(model, lora_layers, rank=lora_rank) as work:
        trained = {id(p) for p in lora.lora_parameters(work).values()} if plan is not None else set()
        codec_bits = act_bits if act_bits < min(actcomp.EXACT_BITS, a_bits) and plan is not None else None
        with _instrumented(work, rec, arch, a_bits=a_bits, codec_bits=codec_bits) as log:
            work.train(plan is not None)  # as train.tune runs a step (the model's own dropout)
            _run_step(model, work, ids, rec, log, plan=plan, head_exits=head_exits)
        tensor_rows = _weight_rows(work, trained, arch.decoder_path, rec.grad_lives)
    _check_products(type(model).__name__, rec)
    ops, tensors = _tables(rec, log, tensor_rows, a_bits=a_bits, training=plan is not None)
    header = _header(loaded, arch, rec, method=method, seq_len=seq_len, batch=batch, a_bits=a_bits,
                     act_bits=act_bits, plan=plan, lora_rank=lora_rank if lora_layers else None,
                     head_exits=head_exits)
    raw = Trace(ops[list(OPS_COLUMNS)], tensors[list(TENSOR_COLUMNS)], header)
    return raw.with_policy(policy, label=policy_label)


def _check_request(model: nn.Module, *, method: str, seq_len: int, batch: int, act_bits: int) -> None:
    """Refuse a request ``record_trace`` cannot run, before anything touches the model.

    Raises:
        UserError: an unknown method, ``seq_len`` < 2 or ``batch`` < 1, unsupported
            ``act_bits``, or a model that already carries adapters.
    """
    if method not in METHODS:
        raise UserError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    if seq_len < 2 or batch < 1:
        raise UserError(f"need --seq-len >= 2 and --batch >= 1 (got {seq_len}, {batch})")
    actcomp.check_bits(act_bits)
    if hasattr(model, "peft_config"):
        raise UserError("record_trace needs a model without adapters (it attaches its own)")


def _head_exits(exits: Sequence[int] | None, n_layers: int) -> list[int]:
    """The sorted distinct exit layers of an inference pass (default: the last layer).

    Raises:
        UserError: an exit layer outside ``0..n_layers - 1``.
    """
    head_exits = sorted(set(exits)) if exits else [n_layers - 1]
    if any(not 0 <= e < n_layers for e in head_exits):
        raise UserError(f"exit layers {head_exits} outside 0..{n_layers - 1}")
    return head_exits


@contextmanager
def _adapted(model: nn.Module, lora_layers: list[int], *, rank: int) -> Iterator[nn.Module]:
    """The model with LoRA adapters of ``rank`` on ``lora_layers`` (every weight frozen when
    there are none), for the block; afterwards the adapters are removed and every parameter's
    ``requires_grad`` and the model's train/eval mode are as they were."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    work = lora.attach_lora(model, lora_layers, rank=rank) if lora_layers else model
    if not lora_layers:
        for p in model.parameters():
            p.requires_grad_(False)
    training = model.training
    try:
        yield work
    finally:
        if lora_layers:
            lora.detach_lora(work)
        for name, p in model.named_parameters():
            p.requires_grad_(flags.get(name, True))
        model.train(training)


@contextmanager
def _instrumented(work: nn.Module, rec: _Recorder, arch: Architecture, *, a_bits: int,
                  codec_bits: int | None) -> Iterator[SavedTensorLog]:
    """Recording in place for the block: product and module-stack hooks, the storage clock, the
    vector recorder and the log of saved tensors (packed at ``codec_bits`` when given), with
    ``rec`` the active recorder. Afterwards the hooks are removed and the clock is stopped."""
    handles = _linear_hooks(work, rec, arch.product_labels) + _module_stack_hooks(work, rec, arch.decoder_path)
    clock = StorageClock(rec.rows, site=rec.storage_site, phase=rec.storage_phase,
                         skip={p.untyped_storage().data_ptr() for p in work.parameters()})
    rec.clock = clock
    rec.vector = VectorRecorder(rows=rec.rows, site=rec.site, a_bits=a_bits, update_bits=OPTIMIZER_BITS,
                                fixed_bits=_parameter_bits(work), created=clock.created)
    codec = (_RecordedCodec(codec_bits, exclude=list(work.parameters()), recorder=rec.vector)
             if codec_bits is not None else None)
    log = SavedTensorLog(exclude=list(work.parameters()), where=rec.where, codec=codec,
                         on_save=lambda held: [clock.claim(t) for t in held])
    token = _ACTIVE.set(rec)
    try:
        yield log
    finally:
        _ACTIVE.reset(token)
        for h in handles:
            h.remove()
        clock.enabled = False


def _run_step(model: nn.Module, work: nn.Module, ids: torch.Tensor, rec: _Recorder,
              log: SavedTensorLog, *, plan: StepPlan | None, head_exits: list[int]) -> None:
    """Run the recorded work on ``ids`` (``[batch, seq_len]``): one tuning step of ``plan``, or
    (``plan`` None) one scoring pass without autograd with a head at each of ``head_exits``;
    the exit heads' products become rows of ``rec``."""
    assert rec.vector is not None

    def on_head(op: HeadProduct) -> None:
        rec.add(-1, rec.head_module(op.exit_layer), op.phase, op.M, op.N, op.K, False)

    with _attention_recording(model), head_product_hooks(on_head), rec.vector:
        if plan is not None:
            _train_step(work, ids, plan, log, rec)
        else:
            with torch.no_grad():
                hidden = run_layers(work, ids, last_layer=max(head_exits), capture=head_exits)
                for e in head_exits:
                    exit_stats(work, hidden[e], ids, exit_layer=e)


def _tables(rec: _Recorder, log: SavedTensorLog, tensor_rows: list[dict[str, Any]], *, a_bits: int,
            training: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The trace's ops table (repeats merged) and tensor table (weights, saved activations and,
    in a tuning step, the temporaries; lifetimes as merged-row indices)."""
    assert rec.clock is not None
    tensor_rows = tensor_rows + _activation_rows(log, a_bits)
    if training:
        tensor_rows += rec.clock.temporaries(a_bits=a_bits, update_bits=OPTIMIZER_BITS)
    merged, index = _merge_repeats(rec.rows)
    ops = pd.DataFrame(merged, columns=list(OPS_COLUMNS))
    return ops, _op_intervals(pd.DataFrame(tensor_rows), index)


def _header(loaded: LoadedModel, arch: Architecture, rec: _Recorder, *, method: str, seq_len: int,
            batch: int, a_bits: int, act_bits: int, plan: StepPlan | None, lora_rank: int | None,
            head_exits: list[int]) -> dict[str, Any]:
    """The trace's JSON header (docs/trace.md): provenance of the recorded step."""
    assert rec.vector is not None
    model = loaded.model
    return {
        "format": FORMAT,
        "model": loaded.name,
        "architecture": type(model).__name__,
        "linear_modules": arch.product_names,
        "head_weights": _head_weights(model, arch.decoder_path),
        "method": method,
        "seq_len": seq_len,
        "batch": batch,
        "a_bits": a_bits,
        "act_bits": act_bits if plan is not None else None,
        "lora_bits": LORA_BITS,
        "dense_bits": DENSE_BITS,
        "optimizer_bits": OPTIMIZER_BITS,
        "num_layers": rec.num_layers,
        "lora_rank": lora_rank,
        "window": plan.window.to_list() if plan is not None and method == "adaptive" else None,
        "exit_layer": plan.exit_layer if plan is not None else None,
        "exits": head_exits if plan is None else [plan.exit_layer],
        "translators": sorted(exit_translator.installed(model)),
        "head_positions": batch * (seq_len - 1),
        "attention": model.config._attn_implementation,
        "torch": torch.__version__,
        "vector_unclassified": sorted(rec.vector.unclassified),
    }
