"""Record the layer-wise trace of one real tuning step (or inference pass).

    python -m workloads.trace --model smollm2-135m --method adaptive --window 12 --seq-len 256 \
        --batch 4 --policy policy.json --out trace.csv
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from workloads.errors import UserError, cli_main
from workloads.evaluate import positive_int
from workloads.luc.policy import Policy
from workloads.models import BUILTIN_MODELS, load_model
from workloads.trace.record import METHODS, record_trace
from workloads.trace.table import tensors_path
from workloads.tuning.lora import DEFAULT_RANK

__all__ = ["DEFAULT_WINDOW", "build_parser", "main"]

DEFAULT_WINDOW = 12  # workloads.tune's default window (the results pages' best)


def _exits(text: str) -> list[int]:
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices (got {text!r})") from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m workloads.trace``: model, method, window and exits, sequence length
    and batch (tokens, sequences), policy, device bits and the output path.
    """
    p = argparse.ArgumentParser(
        prog="python -m workloads.trace",
        description="Run one real torch step and write its trace (docs/trace.md, format 2): one row per matrix "
        "product executed (forward, backward to inputs, backward to weights, attention, heads, LoRA), "
        "recorded by hooks on the modules that ran, annotated with the policy's sparsity and bits; vector "
        "rows for the non-matrix work it executed (norms, RoPE, softmax, SiLU and gating, residuals, the "
        "head's softmax and loss, the embedding gather, gradient clipping and the AdamW update, activation "
        "packing), with elements and bytes at device precision; plus the tensor table (NAME.tensors.csv) "
        "of what device memory holds during the step.",
    )
    p.add_argument("--model", default="smollm2-135m",
                   help=f"model: {' or '.join(BUILTIN_MODELS)}, a local Hugging Face folder or a .gguf file (default: %(default)s)")
    p.add_argument("--method", choices=METHODS, default="adaptive",
                   help="vanilla = LoRA on all layers, full backprop; adaptive = LoRA in one window trained "
                   "through its exit; inference = one scoring forward pass (default: %(default)s)")
    p.add_argument("--window", type=positive_int, default=None,
                   help=f"adaptive: layers in the window, ending at --exit-layer (default: {DEFAULT_WINDOW}, "
                   "as workloads.tune, or every layer of a model with fewer)")
    p.add_argument("--exit-layer", type=int, default=None,
                   help="adaptive: the window's exit layer, 0-based (default: the last layer)")
    p.add_argument("--exits", type=_exits, default=None,
                   help="inference: comma-separated layers with an exit head, for voting (default: the last layer)")
    p.add_argument("--seq-len", type=positive_int, default=256, help="tokens per sequence (default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=4, help="sequences per step (default: %(default)s)")
    p.add_argument("--lora-rank", type=positive_int, default=DEFAULT_RANK, help="LoRA rank (default: %(default)s)")
    p.add_argument("--a-bits", type=int, default=16,
                   help="device bits of activations, gradients flowing back and the output (default: %(default)s)")
    p.add_argument("--act-bits", type=int, default=16,
                   help="bits of the activations kept for backward: 16 as computed, 2..8 packed with a bfloat16 "
                   "scale per 64 values (default: %(default)s)")
    p.add_argument("--policy", default=None,
                   help="LUC policy JSON whose per-layer sparsity/bits annotate the weights (default: dense, "
                   "16-bit)")
    p.add_argument("--translators", default=None,
                   help="exit translator file (python -m workloads.exits caches one): the exits run through "
                   "them, and their products and weights are charged (default: plain exits)")
    p.add_argument("--out", default="trace.csv",
                   help="ops table path; the tensor table goes beside it as NAME.tensors.csv (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random token batch (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead of a text one")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``python -m workloads.trace``: record one real step's trace and write it (``NAME.csv`` and
    ``NAME.tensors.csv``); prints a summary (or, with ``--json``, one JSON object) and returns
    the exit status 0.

    Raises:
        UserError: a bad option, model, policy or output path (one line via ``cli_main``).
    """
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 1 <= args.a_bits <= 32:
        raise UserError(f"--a-bits must be in 1..32 (got {args.a_bits})")
    started = time.perf_counter()
    loaded = load_model(args.model, seed=args.seed)
    policy = Policy.load(args.policy).validate(loaded.num_layers, where=args.policy) if args.policy else None
    if args.translators:
        from workloads.exits import translator

        translator.install(loaded.model, translator.load(args.translators)[0])
    trace = record_trace(
        loaded, method=args.method,
        window=args.window or min(DEFAULT_WINDOW, loaded.num_layers), exit_layer=args.exit_layer,
        seq_len=args.seq_len,
        batch=args.batch, policy=policy, policy_label=args.policy, lora_rank=args.lora_rank, exits=args.exits,
        a_bits=args.a_bits, act_bits=args.act_bits, seed=args.seed,
    )
    path = trace.save(args.out)
    summary = {
        "ops": str(path),
        "tensors": str(tensors_path(path)),
        "rows": len(trace.ops),
        "macs": {phase: trace.macs(phase) for phase in ("fwd", "bwd_input", "bwd_weight")},
        "vector_rows": len(trace.vectors()),
        "vector_bytes": {phase: trace.vector_bytes(phase) for phase in ("fwd", "bwd_input", "update")},
        "memory_bytes": trace.memory_bytes(),
        "memory_by_kind_bytes": {k: int(v) for k, v in trace.tensors.groupby("kind")["bytes"].sum().items()},
        "header": trace.header,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        macs = ", ".join(f"{k} {v / 1e9:.2f} G" for k, v in summary["macs"].items())
        moved = ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in summary["vector_bytes"].items())
        print(f"wrote {path} ({summary['rows']} rows; MACs {macs}; {summary['vector_rows']} vector rows "
              f"reading and writing {moved}) and {summary['tensors']} "
              f"({summary['memory_bytes'] / 2**20:.1f} MiB in device memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
