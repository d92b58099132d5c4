"""Policy annotation of a trace: which operand is a weight, its sparsity, pattern and bits, and
how many bytes a weight takes in device memory at its stored precision.

Shapes never depend on the policy, so a trace recorded once can be re-annotated for any
policy (``Trace.with_policy``) with these functions alone.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from workloads.luc.policy import DENSE_BITS, HEAD_GROUP, Policy
from workloads.tuning.lora import LINEAR_MODULES

LORA_MODULES = ("lora_A", "lora_B")
HEAD_MODULES = ("lm_head", "exit_head")
TRANSLATOR_MODULES = ("exit_translator",)  # workloads.exits.translator: dense weights at dense_bits
# A quantized weight group stores a float16 scale and a float16 zero point beside its values;
# a group of the (symmetric) embedding / head a float16 scale only.
GROUP_OVERHEAD_BITS = 32
HEAD_GROUP_OVERHEAD_BITS = 16
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
) -> pd.DataFrame:
    """Set ``weight_sparsity``, ``sparsity_pattern``, ``w_bits`` and ``a_bits`` of every op.

    Operand B is a compressed weight for the seven linear modules of a decoder layer in the
    ``fwd`` and ``bwd_input`` phases (policy sparsity and bits); a LoRA weight (dense,
    ``lora_bits``) for LoRA modules in those phases; the tied head at the policy's
    ``head_bits`` (``dense_bits`` without a policy) for head ops; an exit translator's weight
    (dense, ``dense_bits``: LUC does not compress it) for translator ops; and an activation (dense, ``a_bits``) otherwise: every
    ``bwd_weight`` product and all attention products. Vector rows (``kind = vector``) keep
    their recorded bits: none of their operands is a compressed weight."""
    out = ops.copy()
    if "kind" in out.columns and (out["kind"] != "matmul").any():
        products = out["kind"] == "matmul"
        out.loc[products] = annotate_ops(out[products], policy, a_bits=a_bits, dense_bits=dense_bits,
                                         lora_bits=lora_bits)
        return out
    sparsity_of, bits_of = _layer_maps(policy)
    layer = out["layer"].to_numpy()
    module = out["module"].to_numpy()
    phase = out["phase"].to_numpy()
    weight_b = phase != "bwd_weight"
    is_linear = np.isin(module, LINEAR_MODULES) & weight_b & (layer >= 0)
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
    return out


def weight_storage_bits(numel: int, w_bits: int, sparsity: float, pattern: str, group_size: int) -> int:
    """Bits one weight matrix takes in device memory.

    - quantized (``w_bits < 16``): values at ``w_bits`` plus a float16 scale and zero point per
      group of ``group_size`` weights;
    - N:M sparse: only the kept values, each with ``ceil(log2 M)`` bits of position metadata;
    - unstructured sparse: the kept values plus a one-bit-per-weight bitmap, or the dense
      layout when that is smaller (at low sparsity the bitmap costs more than it saves).
    """
    overhead = math.ceil(numel / group_size) * GROUP_OVERHEAD_BITS if w_bits < DENSE_BITS else 0
    if sparsity <= 0:
        return numel * w_bits + overhead
    kept = round(numel * (1.0 - sparsity))
    match = re.fullmatch(r"(\d+):(\d+)", pattern)
    if match:
        return kept * (w_bits + math.ceil(math.log2(int(match.group(2))))) + overhead
    return min(numel * w_bits, kept * w_bits + numel) + overhead


def annotate_tensors(
    tensors: pd.DataFrame, policy: Policy | None, *, dense_bits: int = DENSE_BITS
) -> pd.DataFrame:
    """Set ``bits`` and ``bytes`` of the weight rows from the policy: a decoder layer's linear
    weights at their policy bits (sparse format and group overhead folded into ``bytes``), the
    embedding / tied head at the policy's ``head_bits`` (a float16 scale per ``HEAD_GROUP``),
    every other weight (norms) at ``dense_bits``."""
    out = tensors.copy()
    sparsity_of, bits_of = _layer_maps(policy)
    group = policy.group_size if policy else 128
    pattern = policy.pattern if policy else "dense"
    for idx in np.flatnonzero((out["kind"] == "weight").to_numpy()):
        row = out.iloc[idx]
        parts = str(row["name"]).split(".")
        linear = len(parts) >= 2 and parts[-2] in LINEAR_MODULES and int(row["layer"]) >= 0
        layer = int(row["layer"])
        numel = int(row["numel"])
        if policy is not None and layer < 0 and parts[0] in HEAD_WEIGHTS and policy.head_bits < DENSE_BITS:
            bits = policy.head_bits
            total = numel * bits + math.ceil(numel / HEAD_GROUP) * HEAD_GROUP_OVERHEAD_BITS
        else:
            bits = bits_of.get(layer, dense_bits) if linear else dense_bits
            sparsity = sparsity_of.get(layer, 0.0) if linear else 0.0
            total = weight_storage_bits(numel, bits, sparsity, pattern, group)
        out.iat[idx, out.columns.get_loc("bits")] = bits
        out.iat[idx, out.columns.get_loc("bytes")] = math.ceil(total / 8)
    return out
