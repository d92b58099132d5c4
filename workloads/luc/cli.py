"""``python -m workloads.luc``: measure sensitivities (cached), allocate a per-layer policy for
a budget, and compare its perplexity with the dense model and the uniform policy.

    python -m workloads.luc --model smollm2-135m --sparsity 0.5 --bits 4 --compare uniform \\
        --out policy.json --json

The defaults are the best setting measured in docs/results/luc.md: the allocation is read from
a cheap Wanda + RTN sensitivity profile (group 128), the paper's rule allocates, and the model
is compressed with SparseGPT + GPTQ at group 32 (the checkpoint's own Q4_1 grid).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from typing import Any

import torch

from workloads import data as data_mod
from workloads.errors import UserError, cli_main
from workloads.evaluate import add_model_args, positive_int
from workloads.luc.allocate import (
    ALLOCATION_RULES,
    BIT_RANGE,
    OWL_LAMBDA,
    SPARSITY_RANGE,
    allocate,
    average,
    check_budget,
)
from workloads.luc.compress import compress_model, needs_calibration
from workloads.luc.layers import decoder_layers, layer_param_count
from workloads.luc.policy import DENSE_BITS, PATTERNS, Policy
from workloads.luc.predict import predict_loss_increase
from workloads.luc.prune import PRUNE_METHODS
from workloads.luc.quantize import QUANT_METHODS
from workloads.luc.sensitivity import DEFAULT_WINDOWS, profile_sensitivity
from workloads.luc.table import SensitivityTable
from workloads.luc.uniform import uniform_policy
from workloads.metrics import model_scorer, perplexity
from workloads.models import LoadedModel, load_model

__all__ = ["CALIB_WINDOWS", "COMPARE", "DEFAULT_RULE", "EXAMPLE", "build_parser", "fraction",
           "main"]

COMPARE = ("uniform",) + ALLOCATION_RULES
CALIB_WINDOWS = 32
# The best measured setting (docs/results/luc.md, "50% + 4 bit at the checkpoint's own group
# size"): profile cheaply, allocate by the paper's rule, compress with the strong methods.
DEFAULT_RULE = "paper"
DEFAULT_PRUNE, DEFAULT_QUANT, DEFAULT_GROUP = "sparsegpt", "gptq", 32
PROFILE_PRUNE, PROFILE_QUANT, PROFILE_GROUP = "wanda", "rtn", 128
EXAMPLE = "python -m workloads.luc --sparsity 0.5 --bits 4 --compare uniform --out policy.json"


def fraction(text: str) -> float:
    """``argparse`` type: a number in [0, 1).

    Raises:
        argparse.ArgumentTypeError: outside [0, 1).
        ValueError: not a number (argparse reports it as an invalid value).
    """
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (got {text})")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m workloads.luc``: model options, the budget, the allocation rule and
    its ranges, the compression method, the sensitivity profile's methods, data and evaluation.
    """
    parser = argparse.ArgumentParser(
        prog="python -m workloads.luc",
        description="Layer-wise unified compression: profile each decoder layer's sensitivity to pruning and "
        "quantization (cached), allocate per-layer sparsity and bit-width for an average budget, and report "
        "held-out perplexity of the dense model, the LUC policy and the compared policies. The defaults are "
        "the best setting of docs/results/luc.md. Example: " + EXAMPLE,
    )
    add_model_args(parser)
    _add_budget_args(parser)
    _add_allocation_args(parser)
    _add_method_args(parser)
    _add_profile_args(parser)
    _add_run_args(parser)
    return parser


def _add_budget_args(parser: argparse.ArgumentParser) -> None:
    """The average budget: sparsity (fraction) and bits."""
    budget = parser.add_argument_group("budget (parameter-weighted averages over the decoder layers' linear weights)")
    budget.add_argument("--sparsity", type=fraction, default=0.5, help="average pruned fraction, 0..1 (default: %(default)s)")
    budget.add_argument(
        "--bits",
        type=float,
        default=4.0,
        help=f"average weight bits, {BIT_RANGE[0]}..{BIT_RANGE[1]} (fractions mix two widths across layers), "
        f"or {DENSE_BITS} for no quantization (default: %(default)s)",
    )


def _add_allocation_args(parser: argparse.ArgumentParser) -> None:
    """How the budget is allocated to layers: the rule and the per-layer ranges."""
    rules = parser.add_argument_group("allocation")
    rules.add_argument(
        "--rule",
        choices=ALLOCATION_RULES,
        default=DEFAULT_RULE,
        help="paper: less sensitive layers get more compression (see --sharpness); owl: sparsity follows the "
        "layer's outlier ratio (see --owl-lambda); optimal: minimize the predicted loss under the budget "
        "(its prediction is lower, its measured perplexity higher: docs/results/luc.md) (default: %(default)s)",
    )
    rules.add_argument(
        "--sharpness",
        type=float,
        default=1.0,
        help="paper rule: how strongly compression follows sensitivity, 0 = uniform, 1 = balanced (default: %(default)s)",
    )
    rules.add_argument(
        "--owl-lambda", type=float, default=OWL_LAMBDA, help="owl rule: max sparsity deviation from the average, 0..1 (default: %(default)s)"
    )
    rules.add_argument("--min-sparsity", type=fraction, default=SPARSITY_RANGE[0], help="lowest per-layer sparsity (default: %(default)s)")
    rules.add_argument("--max-sparsity", type=fraction, default=SPARSITY_RANGE[1], help="highest per-layer sparsity (default: %(default)s)")
    rules.add_argument("--min-bits", type=int, default=BIT_RANGE[0], help="narrowest per-layer width, bits (default: %(default)s)")
    rules.add_argument("--max-bits", type=int, default=BIT_RANGE[1], help="widest per-layer width, bits (default: %(default)s)")


def _add_method_args(parser: argparse.ArgumentParser) -> None:
    """The compression method of the policies evaluated and written."""
    method = parser.add_argument_group("compression method (of the policies evaluated and written)")
    method.add_argument(
        "--prune", choices=PRUNE_METHODS, default=DEFAULT_PRUNE, help="pruning: magnitude, wanda (|W| x input norm), sparsegpt (OBS with reconstruction) (default: %(default)s)"
    )
    method.add_argument(
        "--quant", choices=QUANT_METHODS, default=DEFAULT_QUANT, help="quantization: rtn (round to nearest) or gptq (error-compensating) (default: %(default)s)"
    )
    method.add_argument(
        "--pattern", choices=PATTERNS, default="unstructured", help="sparsity pattern; with N:M each layer is N:M sparse (1-N/M) or dense, the least sensitive going N:M first (default: %(default)s)"
    )
    method.add_argument(
        "--group-size", type=positive_int, default=DEFAULT_GROUP,
        help="quantization group, consecutive input weights per scale; 32 is SmolLM2's own Q4_1 grid (default: %(default)s)"
    )


def _add_profile_args(parser: argparse.ArgumentParser) -> None:
    """The sensitivity profile the allocation reads (its own, cheaper, methods)."""
    profile = parser.add_argument_group(
        "sensitivity profile (what the allocation reads; cheap methods rank layers like the strong ones)")
    profile.add_argument("--profile-prune", choices=PRUNE_METHODS, default=PROFILE_PRUNE,
                         help="pruning method of the profile (default: %(default)s)")
    profile.add_argument("--profile-quant", choices=QUANT_METHODS, default=PROFILE_QUANT,
                         help="quantization method of the profile (default: %(default)s)")
    profile.add_argument("--profile-group-size", type=positive_int, default=PROFILE_GROUP,
                         help="quantization group of the profile (default: %(default)s)")


def _add_run_args(parser: argparse.ArgumentParser) -> None:
    """Data, evaluation, compared policies and outputs."""
    runs = parser.add_argument_group("data and evaluation")
    runs.add_argument("--seq-len", type=positive_int, default=256, help="window length in tokens for calibration and evaluation (default: %(default)s)")
    runs.add_argument(
        "--calib-windows",
        type=positive_int,
        default=CALIB_WINDOWS,
        help="calibration windows (of --seq-len tokens, calibration split) for Wanda/SparseGPT/GPTQ (default: %(default)s)",
    )
    runs.add_argument(
        "--profile-windows",
        type=positive_int,
        default=DEFAULT_WINDOWS,
        help="calibration windows for sensitivity profiling (default: %(default)s)",
    )
    runs.add_argument(
        "--eval-max-windows", type=positive_int, default=None, help="evaluate perplexity on at most this many eval-split windows (default: all)"
    )
    runs.add_argument("--batch-size", type=positive_int, default=8, help="windows per forward pass (default: %(default)s)")
    runs.add_argument(
        "--compare",
        nargs="*",
        choices=COMPARE,
        default=[],
        help="also compress with these policies at the same budget and report their perplexity (uniform: the "
        "same sparsity and width in every layer; a fractional --bits gives the first layers the wider width)",
    )
    runs.add_argument("--no-eval", action="store_true", help="only profile and allocate: no perplexity")
    runs.add_argument("--no-cache", action="store_true", help="measure sensitivities again instead of reading the cache")
    runs.add_argument("--table", default=None, help="also write the sensitivity table (JSON) to this path")
    runs.add_argument("--out", default=None, help="write the LUC policy (JSON keyed by layer) to this path")


def _check(args: argparse.Namespace) -> None:
    if args.min_sparsity > args.max_sparsity:
        raise UserError(f"--min-sparsity {args.min_sparsity} is above --max-sparsity {args.max_sparsity}")
    if args.bits != DENSE_BITS and not BIT_RANGE[0] <= args.bits <= BIT_RANGE[1]:
        raise UserError(f"--bits must be {BIT_RANGE[0]}..{BIT_RANGE[1]} or {DENSE_BITS} (got {args.bits:g})")


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``python -m workloads.luc``: profile, allocate, (optionally) evaluate; prints a summary (or,
    with ``--json``, one JSON object), writes the outputs only when all succeeded, returns 0.

    Raises:
        UserError: a bad option, an impossible budget, a bad model or data (one line via ``cli_main``).
    """
    args = build_parser().parse_args(argv)
    _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    progress = not args.json
    loaded = load_model(args.model, seed=args.seed)
    # Refuse an impossible budget before minutes of profiling.
    layer_params = [layer_param_count(layer) for layer in decoder_layers(loaded.model)]
    check_budget(
        layer_params,
        args.sparsity,
        args.bits,
        pattern=args.pattern,
        sparsity_range=(args.min_sparsity, args.max_sparsity),
        bit_range=(args.min_bits, args.max_bits),
    )
    profile_start = time.perf_counter()
    table = _profile(loaded, args, progress)
    profile_seconds = time.perf_counter() - profile_start
    policies = _policies(table, args)
    result = _result(loaded.name, args, table, policies, profile_seconds=profile_seconds)
    if not args.no_eval:
        result.update(_evaluate(args, policies, progress))
    result["seconds"] = round(time.perf_counter() - start, 3)
    # Outputs are written only once everything succeeded, each atomically.
    if args.table:
        table.save(args.table)
    if args.out:
        policies["luc"].save(args.out)
    if args.json:
        print(json.dumps(result))
    else:
        _print_summary(result, table)
        if args.out:
            print(f"policy written to {args.out}; next: python -m workloads.tune --method adaptive "
                  f"--policy {args.out} (tunes the compressed model)")
    return 0


def _profile(loaded: LoadedModel, args: argparse.Namespace, progress: bool) -> SensitivityTable:
    """The sensitivity table of the profile's methods (``profile_sensitivity``, cached)."""
    return profile_sensitivity(
        loaded,
        data=args.data,
        prune=args.profile_prune,
        quant=args.profile_quant,
        pattern=args.pattern,
        group_size=args.profile_group_size,
        seq_len=args.seq_len,
        windows=args.profile_windows,
        batch_size=args.batch_size,
        seed=args.seed,
        use_cache=not args.no_cache,
        progress=progress,
    )


def _policies(table: SensitivityTable, args: argparse.Namespace) -> dict[str, Policy]:
    """The LUC policy (``"luc"``) and the ``--compare`` ones, at the same budget, each set to
    compress with the chosen method (the profile's may be cheaper)."""
    policies = {"luc": _allocate(table, args, args.rule)}
    for name in args.compare:
        policies[name] = uniform_policy(table, args.sparsity, args.bits) if name == "uniform" else _allocate(table, args, name)
    return {name: replace(p, prune=args.prune, quant=args.quant, group_size=args.group_size)
            for name, p in policies.items()}


def _result(model: str, args: argparse.Namespace, table: SensitivityTable, policies: dict[str, Policy], *,
            profile_seconds: float) -> dict[str, Any]:
    """The run's JSON record before evaluation: budget, policy, achieved averages, predicted
    loss increases (nats/token) and the profile's provenance (times in s)."""
    s_avg, b_avg = average(policies["luc"], table)
    return {
        "model": model,
        "rule": args.rule,
        "method": {"prune": args.prune, "quant": args.quant, "pattern": args.pattern, "group_size": args.group_size},
        "budget": {"sparsity": args.sparsity, "bits": args.bits},
        "policy": policies["luc"].as_list(),
        "avg_sparsity": s_avg,
        "avg_bits": b_avg,
        "predicted_loss_increase": {name: predict_loss_increase(table, p) for name, p in policies.items()},
        "sensitivity": {
            "method": {"prune": table.key["prune"], "quant": table.key["quant"], "group_size": table.key["group_size"]},
            "seconds": round(table.seconds, 1),  # of the measurement (earlier, if read from the cache)
            "this_run_seconds": round(profile_seconds, 1),
            "cache_file": table.cache_file,
            "windows": table.key["windows"],
            "metric": table.key["metric"],
        },
    }


def _allocate(table: SensitivityTable, args: argparse.Namespace, rule: str) -> Policy:
    return allocate(
        table,
        args.sparsity,
        args.bits,
        rule=rule,
        sharpness=args.sharpness,
        owl_lambda=args.owl_lambda,
        sparsity_range=(args.min_sparsity, args.max_sparsity),
        bit_range=(args.min_bits, args.max_bits),
    )


def _evaluate(args: argparse.Namespace, policies: dict[str, Policy], progress: bool) -> dict[str, Any]:
    """Perplexity of the dense model and of each policy applied to a fresh copy of it."""
    loaded = load_model(args.model, seed=args.seed)
    windows = data_mod.split_windows(loaded.tokenizer, "eval", args.seq_len, source=args.data, max_windows=args.eval_max_windows)
    calib = data_mod.split_windows(
        loaded.tokenizer, "calibration", args.seq_len, source=args.data, max_windows=args.calib_windows,
        shuffle=True, seed=args.seed,
    )
    ppl = {"dense": perplexity(model_scorer(loaded.model), windows, batch_size=args.batch_size, progress=progress, desc="dense")}
    for name, policy in policies.items():
        model = load_model(args.model, seed=args.seed).model
        compress_model(model, policy, calib if needs_calibration(policy) else None, progress=progress, batch_size=args.batch_size)
        ppl[name] = perplexity(model_scorer(model), windows, batch_size=args.batch_size, progress=progress, desc=name)
        del model
    first = ppl["dense"]
    return {
        "perplexity": {name: r.perplexity for name, r in ppl.items()},
        "eval": {"split": "eval", "seq_len": first.seq_len, "windows": first.windows, "tokens": first.tokens},
        "calib_windows": int(calib.shape[0]),
    }


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _print_summary(result: dict[str, Any], table: SensitivityTable) -> None:
    m, sens = result["method"], result["sensitivity"]
    print(
        f"{result['model']}: {result['rule']} policy, {m['prune']}/{m['quant']} group {m['group_size']} "
        f"{m['pattern']}, avg sparsity {result['avg_sparsity']:.3f}, avg bits {result['avg_bits']:.3f}"
    )
    sm = sens["method"]
    if sens["cache_file"]:
        origin = f"read from the cache {sens['cache_file']} (measured once in {sens['seconds'] / 60:.1f} min)"
    else:
        origin = f"measured in {sens['seconds'] / 60:.1f} min, cached for the next run"
    print(f"sensitivity profile ({sm['prune']}/{sm['quant']} group {sm['group_size']}): {origin}")
    print("layer  sparsity  bits  outlier%")
    for row, ratio in zip(result["policy"], table.outlier_ratio, strict=True):
        print(f"{row['layer']:5d}  {row['sparsity']:8.3f}  {row['w_bits']:4d}  {100 * ratio:7.2f}")
    for name, value in result["predicted_loss_increase"].items():
        print(f"predicted loss increase {name}: {value:.4f} nats/token")
    if "perplexity" in result:
        ev = result["eval"]
        ppl = result["perplexity"]
        parts = ", ".join(f"{k} {v:.3f}" + ("" if k == "dense" else f" ({v / ppl['dense']:.2f}x dense)")
                          for k, v in ppl.items())
        print(f"perplexity ({ev['windows']} eval windows of {ev['seq_len']}, {ev['tokens']} tokens): {parts}")
    print(f"total time {_duration(result['seconds'])}")
    if not all(math.isfinite(v) for v in result.get("perplexity", {}).values()):
        print("warning: a perplexity is not finite", file=sys.stderr)
