"""Synthetic SmolLM2-135M tuning-step traces for the sweep benchmark (clearly not measured).

Until ``python -m workloads.trace`` writes traces from real torch runs, the sweep benchmark
needs workloads of the real model's shape. This script writes three traces in the format of
docs/trace.md from the architecture alone (no torch, no model file):

* ``vanilla``: LoRA (rank 8 on q_proj and v_proj, as in the LoRA paper) on all 30 layers,
  forward and backward through every layer, 16-bit weights (the de-quantized model).
* ``adaptive``: the same LoRA, but backward only through a window of the top 4 layers
  (26..29), as in Edge-LLM's adaptive layer tuning with the exit at the last layer.
* ``full``: ``adaptive`` plus LUC compression of every decoder linear: 50% unstructured
  sparsity and 4-bit weights.

Shapes: 30 layers, hidden 576, MLP 1536, 9 query / 3 KV heads of 64, vocabulary 49152 (tied
LM head), batch 4 x seq 256 (T = 1024 tokens). Activations are 16-bit.

Tensor table (all bytes): weights at their bits (sparse weights: kept values plus a 1-bit
occupancy bitmap; 4-bit weights: plus a 16-bit scale and zero per group of 128); LoRA weights,
their gradients and two Adam moments at 32 bits; activations saved for backward in the tuned
layers only (normed inputs, q/k/v, attention probabilities, attention output, MLP input,
gate/up outputs, the down_proj input, LoRA intermediates) and the logits, at 16 bits.

Usage::

    python benchmarks/bench_sweep_traces.py --out runs/bench_sweep/traces
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

LAYERS = 30
HIDDEN = 576
MLP = 1536
Q_HEADS = 9
KV_HEADS = 3
HEAD_DIM = 64
VOCAB = 49152
BATCH = 4
SEQ = 256
LORA_RANK = 8
LORA_MODULES = ("q_proj", "v_proj")
A_BITS = 16
GROUP = 128  # quantization group size (elements per scale/zero pair)

LINEARS: dict[str, tuple[int, int]] = {  # module: (in_features, out_features)
    "q_proj": (HIDDEN, Q_HEADS * HEAD_DIM),
    "k_proj": (HIDDEN, KV_HEADS * HEAD_DIM),
    "v_proj": (HIDDEN, KV_HEADS * HEAD_DIM),
    "o_proj": (Q_HEADS * HEAD_DIM, HIDDEN),
    "gate_proj": (HIDDEN, MLP),
    "up_proj": (HIDDEN, MLP),
    "down_proj": (MLP, HIDDEN),
}


@dataclass(frozen=True)
class Method:
    """What one trace does: which layers run backward, and how weights are stored."""

    name: str
    header_method: str  # docs/trace.md `method`
    tuned: tuple[int, ...]  # layers with LoRA and backward
    w_bits: int
    sparsity: float


METHODS = (
    Method("vanilla", "vanilla", tuple(range(LAYERS)), 16, 0.0),
    Method("adaptive", "adaptive", tuple(range(LAYERS - 4, LAYERS)), 16, 0.0),
    Method("full", "adaptive", tuple(range(LAYERS - 4, LAYERS)), 4, 0.5),
)


def _op(layer: int, module: str, phase: str, m: int, n: int, k: int, *, sparsity: float = 0.0,
        w_bits: int = A_BITS, trainable: bool = False, count: int = 1) -> dict[str, object]:
    return {"layer": layer, "module": module, "phase": phase, "M": m, "N": n, "K": k,
            "weight_sparsity": sparsity,
            "sparsity_pattern": "unstructured" if sparsity > 0 else "dense",
            "w_bits": w_bits, "a_bits": A_BITS, "trainable": trainable, "count": count}


def ops_table(method: Method) -> pd.DataFrame:
    """One row per matrix product of one tuning step (docs/trace.md mapping)."""
    t = BATCH * SEQ
    heads = BATCH * Q_HEADS
    rows: list[dict[str, object]] = []
    bottom = min(method.tuned)
    for layer in range(LAYERS):
        tuned = layer in method.tuned
        for module, (fan_in, fan_out) in LINEARS.items():
            rows.append(_op(layer, module, "fwd", t, fan_out, fan_in, sparsity=method.sparsity,
                            w_bits=method.w_bits))
            if tuned and module in LORA_MODULES:
                rows.append(_op(layer, "lora_A", "fwd", t, LORA_RANK, fan_in, trainable=True))
                rows.append(_op(layer, "lora_B", "fwd", t, fan_out, LORA_RANK, trainable=True))
            if module == "v_proj":
                rows.append(_op(layer, "attn_qk", "fwd", SEQ, SEQ, HEAD_DIM, count=heads))
                rows.append(_op(layer, "attn_pv", "fwd", SEQ, HEAD_DIM, SEQ, count=heads))
    rows.append(_op(-1, "lm_head", "fwd", t, VOCAB, HIDDEN))
    # Backward, top down: the LM head's input gradient, then each tuned layer.
    rows.append(_op(-1, "lm_head", "bwd_input", t, HIDDEN, VOCAB))
    for layer in sorted(method.tuned, reverse=True):
        for module, (fan_in, fan_out) in reversed(LINEARS.items()):
            # The bottom tuned layer's q/k/v input gradient would only feed frozen layers.
            needs_dx = layer > bottom or module not in ("q_proj", "k_proj", "v_proj")
            if needs_dx:
                rows.append(_op(layer, module, "bwd_input", t, fan_in, fan_out,
                                sparsity=method.sparsity, w_bits=method.w_bits))
            if module in LORA_MODULES:
                rows.append(_op(layer, "lora_B", "bwd_input", t, LORA_RANK, fan_out,
                                trainable=True))
                rows.append(_op(layer, "lora_B", "bwd_weight", fan_out, LORA_RANK, t,
                                trainable=True))
                if needs_dx:
                    rows.append(_op(layer, "lora_A", "bwd_input", t, fan_in, LORA_RANK,
                                    trainable=True))
                rows.append(_op(layer, "lora_A", "bwd_weight", LORA_RANK, fan_in, t,
                                trainable=True))
            if module == "o_proj":
                # O = P V: dP = dO V^T, dV = P^T dO; S = Q K^T: dQ = dS K, dK = dS^T Q.
                rows.append(_op(layer, "attn_pv", "bwd_input", SEQ, SEQ, HEAD_DIM, count=heads))
                rows.append(_op(layer, "attn_pv", "bwd_input", SEQ, HEAD_DIM, SEQ, count=heads))
                rows.append(_op(layer, "attn_qk", "bwd_input", SEQ, HEAD_DIM, SEQ, count=heads))
                rows.append(_op(layer, "attn_qk", "bwd_input", SEQ, HEAD_DIM, SEQ, count=heads))
    return pd.DataFrame(rows)


def _weight_bytes(numel: int, bits: int, sparsity: float) -> int:
    kept = numel * (1.0 - sparsity)
    data = kept * bits / 8
    bitmap = numel / 8 if sparsity > 0 else 0.0
    scales = numel / GROUP * 4 if bits < 16 else 0.0  # 16-bit scale + 16-bit zero per group
    return int(round(data + bitmap + scales))


def tensors_table(method: Method) -> pd.DataFrame:
    """Tensors live between forward and backward (where a training step peaks)."""
    t = BATCH * SEQ
    rows: list[dict[str, object]] = []

    def add(name: str, kind: str, layer: int, numel: int, bits: int, nbytes: int | None = None
            ) -> None:
        rows.append({"name": name, "kind": kind, "layer": layer, "numel": numel, "bits": bits,
                     "bytes": int(numel * bits // 8) if nbytes is None else nbytes})

    add("embed_tokens.weight", "weight", -1, VOCAB * HIDDEN, 16)
    add("norm.weight", "weight", -1, HIDDEN, 16)
    for layer in range(LAYERS):
        for norm in ("input_layernorm", "post_attention_layernorm"):
            add(f"layers.{layer}.{norm}.weight", "weight", layer, HIDDEN, 16)
        for module, (fan_in, fan_out) in LINEARS.items():
            numel = fan_in * fan_out
            add(f"layers.{layer}.{module}.weight", "weight", layer, numel, method.w_bits,
                _weight_bytes(numel, method.w_bits, method.sparsity))
    for layer in method.tuned:
        for module in LORA_MODULES:
            fan_in, fan_out = LINEARS[module]
            for part, numel in (("lora_A", LORA_RANK * fan_in), ("lora_B", fan_out * LORA_RANK)):
                base = f"layers.{layer}.{module}.{part}"
                add(f"{base}.weight", "lora_weight", layer, numel, 32)
                add(f"{base}.grad", "gradient", layer, numel, 32)
                add(f"{base}.adam_m", "optimizer", layer, numel, 32)
                add(f"{base}.adam_v", "optimizer", layer, numel, 32)
        acts = {
            "attn_in": t * HIDDEN, "q": t * Q_HEADS * HEAD_DIM, "k": t * KV_HEADS * HEAD_DIM,
            "v": t * KV_HEADS * HEAD_DIM, "attn_probs": BATCH * Q_HEADS * SEQ * SEQ,
            "attn_out": t * Q_HEADS * HEAD_DIM, "mlp_in": t * HIDDEN, "gate": t * MLP,
            "up": t * MLP, "down_in": t * MLP, "lora_mid": t * LORA_RANK * len(LORA_MODULES),
        }
        for name, numel in acts.items():
            add(f"layers.{layer}.act.{name}", "activation", layer, numel, A_BITS)
    add("logits", "activation", -1, t * VOCAB, A_BITS)
    return pd.DataFrame(rows)


def write_trace(method: Method, folder: Path) -> Path:
    """Write ``folder/NAME.csv`` (header + ops) and ``folder/NAME.tensors.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    header = {"format": "edgellm-trace/1", "model": "smollm2-135m", "method": method.header_method,
              "policy": ("synthetic: 50% unstructured, 4-bit, all decoder linears"
                         if method.sparsity else "none (16-bit dense)"),
              "window": [min(method.tuned), max(method.tuned)], "seq_len": SEQ,
              "batch": BATCH, "a_bits": A_BITS, "lora_rank": LORA_RANK,
              "synthetic": True, "trace": method.name,
              "note": "synthetic SmolLM2-135M-shaped trace from benchmarks/bench_sweep_traces.py"}
    path = folder / f"{method.name}.csv"
    with path.open("w") as fh:
        fh.write("# " + json.dumps(header) + "\n")
        ops_table(method).to_csv(fh, index=False)
    tensors_table(method).to_csv(folder / f"{method.name}.tensors.csv", index=False)
    return path


def write_all(folder: Path) -> list[Path]:
    """Write the vanilla, adaptive and full traces; returns their ops-table paths."""
    return [write_trace(m, folder) for m in METHODS]


def main() -> None:
    """CLI: write the three synthetic traces into --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_sweep/traces"),
                        help="folder for NAME.csv and NAME.tensors.csv "
                             "(default: runs/bench_sweep/traces)")
    for path in write_all(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
