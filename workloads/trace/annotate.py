"""Policy annotation of a trace: which operand is a weight, its sparsity, pattern and bits, and
how many bytes a weight takes in device memory at its stored precision.

Shapes never depend on the policy, so a trace recorded once can be re-annotated for any
policy (``Trace.with_policy``) with these functions alone.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from workloads.errors import UserError
from workloads.luc.pack import packed_bytes
from workloads.luc.policy import DENSE_BITS, HEAD_GROUP, Policy
from workloads.luc.prune import pruned_count
from workloads.tuning.lora import LINEAR_MODULES

__all__ = ["HEAD_MODULES", "HEAD_WEIGHTS", "LORA_MODULES", "TRANSLATOR_MODULES", "annotate_ops",
           "annotate_tensors", "weight_bytes", "weight_in_features"]

LORA_MODULES = ("lora_A", "lora_B")
HEAD_MODULES = ("lm_head", "exit_head")
TRANSLATOR_MODULES = ("exit_translator",)  # workloads.exits.translator: dense weights at dense_bits
HEAD_WEIGHTS = ("embed_tokens", "lm_head")


def _layer_maps(policy: Policy | None) -> tuple[dict[int, float], dict[int, int]]:
    if policy is None:
        return {}, {}
    return (
        {i: lp.sparsity for i, lp in policy.layers.items()},
        {i: lp.w_bits for i, lp in policy.layers.items()},
    )


def annotate_ops(
    ops: pd.DataFrame,
    policy: Policy | None,
    *,
    a_bits: int = 16,
    dense_bits: int = DENSE_BITS,
    lora_bits: int = 16,
    linear_modules: Sequence[str] = LINEAR_MODULES,
) -> pd.DataFrame:
    """Set ``weight_sparsity``, ``sparsity_pattern``, ``w_bits`` and ``a_bits`` of every op.

    Operand B is a compressed weight for the linear modules of a decoder layer
    (``linear_modules``: the trace header's, LLaMA's seven for a trace without one) in the
    ``fwd`` and ``bwd_input`` phases (policy sparsity and bits); a LoRA weight (dense,
    ``lora_bits``) for LoRA modules in those phases; the tied head at the policy's
    ``head_bits`` (``dense_bits`` without a policy) for head ops; an exit translator's weight
    (dense, ``dense_bits``: LUC does not compress it) for translator ops; and an activation (dense, ``a_bits``) otherwise: every
    ``bwd_weight`` product and all attention products. Vector rows (``kind = vector``) keep
    their recorded bits: none of their operands is a compressed weight.

    Also sets ``weight_bytes``: the bytes of the weight a product reads as operand B, equal to
    that weight's tensor-table ``bytes`` (``product_weight_bytes``); 0 when B is an activation
    and in vector rows."""
    out = ops.copy()
    if "kind" in out.columns and (out["kind"] != "matmul").any():
        products = out["kind"] == "matmul"
        out["weight_bytes"] = 0  # vector rows read no weight as operand B
        out.loc[products] = annotate_ops(out[products], policy, a_bits=a_bits, dense_bits=dense_bits,
                                         lora_bits=lora_bits, linear_modules=linear_modules)
        return out.astype({"weight_bytes": np.int64})
    sparsity_of, bits_of = _layer_maps(policy)
    layer = out["layer"].to_numpy()
    module = out["module"].to_numpy()
    phase = out["phase"].to_numpy()
    weight_b = phase != "bwd_weight"
    is_linear = np.isin(module, list(linear_modules)) & weight_b & (layer >= 0)
    is_lora = np.isin(module, LORA_MODULES) & weight_b
    is_head = np.isin(module, HEAD_MODULES) & weight_b
    is_translator = np.isin(module, TRANSLATOR_MODULES) & weight_b

    sparsity = np.zeros(len(out))
    w_bits = np.full(len(out), a_bits, dtype=np.int64)
    w_bits[is_lora] = lora_bits
    w_bits[is_head] = policy.head_bits if policy is not None else dense_bits
    w_bits[is_translator] = dense_bits
    if is_linear.any():
        lin_layers = layer[is_linear]
        sparsity[is_linear] = [sparsity_of.get(int(i), 0.0) for i in lin_layers]
        w_bits[is_linear] = [bits_of.get(int(i), dense_bits) for i in lin_layers]
    pattern = np.where(sparsity > 0, policy.pattern if policy else "dense", "dense")
    out["weight_sparsity"] = sparsity
    out["sparsity_pattern"] = pattern
    out["w_bits"] = w_bits
    out["a_bits"] = a_bits
    stored = np.zeros(len(out), dtype=np.int64)
    ks, ns = out["K"].to_numpy(dtype=np.int64), out["N"].to_numpy(dtype=np.int64)
    known: dict[tuple[int, int, int, float, str, bool, bool], int] = {}  # equal weights, one count
    for i in np.flatnonzero(is_linear | is_lora | is_head | is_translator):
        # Operand B is W^T [in, out] in fwd and W [out, in] in bwd_input: W is [rows, cols].
        rows, cols = (int(ns[i]), int(ks[i])) if phase[i] == "fwd" else (int(ks[i]), int(ns[i]))
        key = (rows, cols, int(w_bits[i]), float(sparsity[i]), str(pattern[i]), bool(is_linear[i]), bool(is_head[i]))
        if key not in known:
            known[key] = product_weight_bytes(rows, cols, w_bits=key[2], sparsity=key[3], pattern=key[4],
                                              policy=policy if key[5] else None, head=key[6])
        stored[i] = known[key]
    out["weight_bytes"] = stored
    return out


def product_weight_bytes(rows: int, cols: int, *, w_bits: int, sparsity: float = 0.0, pattern: str = "dense",
                         policy: Policy | None = None, head: bool = False) -> int:
    """Bytes of the ``[rows, cols]`` weight (``cols`` = input features) a product reads as
    operand B, as the tensor table charges it (``annotate_tensors``): a decoder layer's linear
    weight (``policy`` given) packed at its policy (``weight_bytes``); the head below 16 bits
    packed symmetric with a float16 scale per ``HEAD_GROUP`` values of a row; any other weight
    (LoRA, translator, an unquantized head) ``rows x cols x w_bits / 8``, rounded up.

    Example:
        >>> product_weight_bytes(64, 64, w_bits=4, policy=Policy({}, group_size=128))
        2304
    """
    if policy is not None:
        return weight_bytes(rows, cols, w_bits=w_bits, sparsity=sparsity, pattern=pattern,
                            group_size=policy.group_size, prune=policy.prune)
    if head and w_bits < DENSE_BITS:
        return packed_bytes(rows, cols, bits=w_bits, group_size=HEAD_GROUP, symmetric=True)
    return math.ceil(rows * cols * w_bits / 8)


def _ends_with_any(path: str, names: Sequence[str]) -> bool:
    """``layers.3.attn.c_proj`` ends with ``c_proj`` and with ``attn.c_proj``, not with ``proj``."""
    return any(path == n or path.endswith("." + n) for n in names)


def weight_bytes(rows: int, cols: int, *, w_bits: int, sparsity: float, pattern: str, group_size: int,
                 prune: str = "magnitude") -> int:
    """Bytes one ``[rows, cols]`` weight matrix (``cols`` = input features) takes in device
    memory: ``workloads.luc.pack.packed_bytes`` of what the compressor makes of it, with the
    pruned count of ``prune`` (``workloads.luc.prune.pruned_count``). Quantization groups are cut
    per row (``ceil(cols / min(group_size, cols))`` each), as the quantizers cut them."""
    pattern = pattern if sparsity > 0 else "dense"
    kept = rows * cols - pruned_count(rows, cols, sparsity, pattern, prune=prune)
    return packed_bytes(rows, cols, bits=w_bits, group_size=group_size, kept=kept, pattern=pattern)


def weight_in_features(ops: pd.DataFrame, linear_modules: Sequence[str] = LINEAR_MODULES
                       ) -> dict[tuple[int, str], int]:
    """Input features of each weight matrix, from the trace's own forward products (operand B
    of ``fwd`` is the weight ``[K, N]``): keys ``(layer, module)`` (``module`` one of
    ``linear_modules``, the trace header's labels), and ``(-1, module)`` for a module of any
    layer (decoder layers share shapes); ``(-1, "lm_head")`` for the head and embedding."""
    fwd = ops[(ops["phase"] == "fwd") & (ops.get("kind", "matmul") == "matmul")]
    out: dict[tuple[int, str], int] = {}
    for layer, module, k in zip(fwd["layer"], fwd["module"], fwd["K"], strict=True):
        if module in linear_modules:
            out[(int(layer), str(module))] = int(k)
            out.setdefault((-1, str(module)), int(k))
        elif module in HEAD_MODULES:
            out.setdefault((-1, "lm_head"), int(k))
    return out


def _shape(name: str, layer: int, numel: int, in_features: dict[tuple[int, str], int], *,
           label: str) -> tuple[int, int]:
    """``[rows, cols]`` of weight ``name`` whose product label is ``label`` (``"lm_head"`` for the
    head / embedding), ``cols`` read from ``in_features``."""
    key = (-1, "lm_head") if label == "lm_head" else (layer, label)
    cols = in_features.get(key) or in_features.get((-1, key[1]))
    if not cols or numel % cols:
        raise UserError(f"trace: cannot tell the input width of weight '{name}' ({numel} values) from the "
                        f"trace's forward products; re-record the trace")
    return numel // cols, cols


def annotate_tensors(
    tensors: pd.DataFrame,
    policy: Policy | None,
    *,
    dense_bits: int = DENSE_BITS,
    linear_modules: Sequence[str] = LINEAR_MODULES,
    head_weights: Sequence[str] = HEAD_WEIGHTS,
    in_features: dict[tuple[int, str], int] | None = None,
) -> pd.DataFrame:
    """Set ``bits`` and ``bytes`` of the weight rows from the policy: a decoder layer's linear
    weights (``NAME.weight`` with ``NAME`` ending in one of ``linear_modules``) at their policy
    bits (sparse format and per-row group overhead folded into ``bytes``, ``weight_bytes``), the
    embedding / tied head (``head_weights``: tensor names, or their first component) at the
    policy's ``head_bits`` (symmetric, a float16 scale per ``HEAD_GROUP`` values of a row), every
    other weight (norms, biases) at ``dense_bits``. Both lists come from the trace header; the
    defaults are LLaMA's, for traces without them. ``in_features`` (``weight_in_features`` of
    the trace's ops) gives each matrix's shape; it is needed only for quantized or sparse weights.

    Raises:
        UserError: a compressed weight whose input width the ops do not tell."""
    out = tensors.copy()
    sparsity_of, bits_of = _layer_maps(policy)
    group = policy.group_size if policy else 128
    pattern = policy.pattern if policy else "dense"
    prune = policy.prune if policy else "magnitude"
    shapes = in_features or {}
    for idx in np.flatnonzero((out["kind"] == "weight").to_numpy()):
        row = out.iloc[idx]
        name = str(row["name"])
        layer = int(row["layer"])
        stem = name[: -len(".weight")] if name.endswith(".weight") else ""
        labels = [m for m in linear_modules if _ends_with_any(stem, [m])] if layer >= 0 else []
        linear = bool(labels)
        label = max(labels, key=len) if labels else "lm_head"  # GPT-2's attn.c_proj over c_proj
        numel = int(row["numel"])
        is_head = name in head_weights or name.split(".")[0] in head_weights
        if policy is not None and layer < 0 and is_head and policy.head_bits < DENSE_BITS:
            bits = policy.head_bits
            rows, cols = _shape(name, layer, numel, shapes, label=label)
            total = packed_bytes(rows, cols, bits=bits, group_size=HEAD_GROUP, symmetric=True)
        else:
            bits = bits_of.get(layer, dense_bits) if linear else dense_bits
            sparsity = sparsity_of.get(layer, 0.0) if linear else 0.0
            if bits >= DENSE_BITS and sparsity <= 0:
                rows, cols = 1, numel  # a float16 matrix: its shape does not matter
            else:
                rows, cols = _shape(name, layer, numel, shapes, label=label)
            total = weight_bytes(rows, cols, w_bits=bits, sparsity=sparsity, pattern=pattern, group_size=group,
                                 prune=prune)
        out.iat[idx, out.columns.get_loc("bits")] = bits
        out.iat[idx, out.columns.get_loc("bytes")] = total
    return out
