"""Tune a model with LoRA: vanilla (all layers, loss at the output) or adaptive layer tuning
(a window of layers trained through an early exit), then evaluate every exit and their vote
against the untuned model.

    python -m workloads.tune --model smollm2-135m --method adaptive --steps 32 --window 12 --json

The defaults are the configuration the results pages found best on SmolLM2-135M
(docs/results/headline_w12.md, window.md, tuning.md): one window of the top 12 layers trained
through the model's own output (one exit, so no vote: the earlier exits are too poor to vote
with), learning rate 0.005, 32 steps of 4 x 256 tokens.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from common.files import output_mode
from workloads.errors import UserError, cli_main
from workloads.evaluate import add_model_args, evaluate, positive_int
from workloads.models import LoadedModel, load_model
from workloads.tuning.compression import DEFAULT_CALIB_WINDOWS, compress, load_policy
from workloads.tuning.evaluation import evaluate_exits
from workloads.tuning.schedule import SCHEDULES
from workloads.tuning.step import METHODS
from workloads.tuning.train import TuneConfig, TuneResult, tune
from workloads.tuning.voting import DEFAULT_RULE, RULES

__all__ = ["DEFAULTS", "EXAMPLE", "build_parser", "exit_list", "main", "save_adapters",
           "worse_than_untuned"]


def exit_list(text: str) -> list[int]:
    """``argparse`` type: comma-separated layer indices, returned sorted and without repeats.

    Raises:
        argparse.ArgumentTypeError: an item that is not an integer.
    """
    try:
        return sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer indices (got {text!r})") from None


# The best configuration of the results pages (module docstring); TuneConfig's own defaults are
# the library's and stay as they are.
DEFAULTS = {"steps": 32, "lr": 0.005, "window": 12, "num_exits": 1}
EXAMPLE = "python -m workloads.tune --method adaptive --policy policy.json"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m workloads.tune``: model options, the tuning's own options (defaults:
    the best configuration of docs/results) and those around it (vote, policy, translators,
    output, evaluation).
    """
    d = TuneConfig(**DEFAULTS)
    p = argparse.ArgumentParser(
        prog="python -m workloads.tune",
        description="LoRA tuning on the tuning split: vanilla (adapters on every linear layer of every "
        "decoder layer, loss at the final output, full backprop) or adaptive layer tuning (adapters in "
        "windows of consecutive layers, each trained through an early exit = final norm + tied LM head "
        "at the window's end; layers above the exit do not run, layers below it run without autograd). "
        "Then held-out perplexity and accuracy of the untuned model, of every exit and of their vote; a "
        "warning names any that is worse than the untuned model. The defaults are the best configuration "
        "of docs/results (one 12-layer window at the top, one exit, lr 0.005). Example: " + EXAMPLE,
    )
    add_model_args(p)
    _add_tuning_args(p, d)
    _add_run_args(p)
    return p


def _add_tuning_args(p: argparse.ArgumentParser, d: TuneConfig) -> None:
    """The options of the tuning itself (``TuneConfig``'s fields; defaults from ``d``)."""
    p.add_argument("--method", choices=METHODS, default=d.method, help="tuning method (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=d.steps, help="optimizer steps (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help="sequences per step (default: %(default)s)")
    p.add_argument("--seq-len", type=positive_int, default=d.seq_len,
                   help="tokens per sequence, for tuning and evaluation (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--rank", type=positive_int, default=d.rank, help="LoRA rank (default: %(default)s)")
    p.add_argument("--alpha", type=float, default=d.alpha,
                   help="LoRA alpha; the update is scaled by alpha/rank (default: %(default)s)")
    p.add_argument("--lora-dropout", type=float, default=d.dropout,
                   help="dropout probability on the LoRA input (default: %(default)s)")
    p.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm,
                   help="clip the adapters' gradient L2 norm to this; 0 disables (default: %(default)s)")
    p.add_argument("--window", type=positive_int, default=None,
                   help=f"adaptive: decoder layers per window (default: {d.window}, or every layer of a model "
                   "with fewer)")
    p.add_argument("--exits", type=exit_list, default=None,
                   help="adaptive: comma-separated exit layers, 0-based, each the last layer of its window "
                   "(default: the top --num-exits windows, ending at the last layer; on SmolLM2-135M only the "
                   "last layer makes a usable exit, see docs/results/tuning.md)")
    p.add_argument("--num-exits", type=positive_int, default=d.num_exits,
                   help="adaptive: number of exits when --exits is not given; more than 1 trains lower windows "
                   "through their own exits and votes, which on SmolLM2-135M is worse than one (default: %(default)s)")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="adaptive: order of windows over the steps; sequential = shallow to deep in equal "
                   "blocks of steps (the paper's), round_robin = one step each in turn, random = seeded "
                   "uniform draw (default: %(default)s)")
    p.add_argument("--act-bits", type=int, default=d.act_bits,
                   help="bits of the activations kept for backward: 16 as computed, 2..8 packed with a bfloat16 "
                   "scale per 64 values (forward and evaluation stay exact; default: %(default)s)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """The options around the tuning: vote rule, compression before it, translators, output and
    the held-out evaluation."""
    p.add_argument("--vote", choices=RULES, default=DEFAULT_RULE,
                   help="adaptive: voting rule of the headline perplexity/accuracy (all rules are reported; "
                   "default: %(default)s)")
    p.add_argument("--policy", default=None,
                   help="LUC policy JSON: compress (prune + fake-quantize) the model before tuning; adapters "
                   "stay full precision (default: no compression)")
    p.add_argument("--calib-windows", type=positive_int, default=DEFAULT_CALIB_WINDOWS,
                   help="with --policy: calibration-split windows (of --seq-len tokens) for data-driven "
                   "pruning/quantization (default: %(default)s)")
    p.add_argument("--translators", default=None,
                   help="adaptive: exit translator file (python -m workloads.exits names it in its JSON): each "
                   "exit below the last reads through its translator, in tuning and evaluation (default: plain exits)")
    p.add_argument("--out", default=None,
                   help="folder to save the adapters in peft's format, plus tuning.json (default: not saved)")
    p.add_argument("--eval-max-windows", type=positive_int, default=None,
                   help="evaluate perplexity on at most this many windows (default: the whole eval split)")
    p.add_argument("--mc-items", type=int, default=200,
                   help="multiple-choice items for accuracy; 0 skips accuracy (default: %(default)s)")
    p.add_argument("--eval-batch-size", type=positive_int, default=8,
                   help="windows per evaluation forward pass (default: %(default)s)")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation")


def save_adapters(result: TuneResult, out: Path, extra: dict[str, Any]) -> None:
    """Write peft's adapter files and ``tuning.json`` into ``out`` (temp folder + rename, so a
    killed run leaves nothing half-written)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        os.chmod(tmp, output_mode(directory=True))  # mkdtemp leaves 0700
        result.model.save_pretrained(tmp)
        meta = {
            "config": result.config.to_dict(),
            "exits": result.exits,
            "windows": [w.to_list() for w in result.windows],
            **extra,
        }
        (tmp / "tuning.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``python -m workloads.tune``: compress (optionally), tune and evaluate; prints a summary
    (or, with ``--json``, one JSON object) and returns the exit status 0.

    Raises:
        UserError: a bad option, model, policy or data (``cli_main`` prints it as one line).
    """
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out {args.out} exists and is not a folder")
    started = time.perf_counter()
    loaded = load_model(args.model, seed=args.seed)
    config = _tune_config(args, loaded.num_layers)
    policy_info = _prepare_model(args, loaded)
    untuned = None
    if not args.no_eval:  # the reference every exit and vote must beat, on the same windows and items
        untuned = evaluate(loaded, data=args.data, seq_len=args.seq_len, batch_size=args.eval_batch_size,
                           max_windows=args.eval_max_windows, mc_items=args.mc_items, seed=args.seed,
                           progress=not args.json)
    load_before = os.getloadavg()
    result = tune(loaded, config, data=args.data, progress=True)
    load_after = os.getloadavg()
    out = _summary(loaded, config, result, policy=policy_info, load_avg_1min=(load_before[0], load_after[0]))
    if args.out:
        save_adapters(result, Path(args.out), {"model": loaded.name, "policy": policy_info})
        out["adapters"] = args.out
    if untuned is not None:
        out["eval"] = _evaluate_tuned(args, loaded, result, untuned)
    out["seconds"] = round(time.perf_counter() - started, 2)
    _print_summary(out, as_json=args.json)
    return 0


def _tune_config(args: argparse.Namespace, num_layers: int) -> TuneConfig:
    """The tuning configuration the options ask for (window: at most the model's layers)."""
    return TuneConfig(
        method=args.method, steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
        rank=args.rank, alpha=args.alpha, dropout=args.lora_dropout,
        max_grad_norm=args.max_grad_norm or None,
        window=args.window or min(DEFAULTS["window"], num_layers), exits=args.exits,
        num_exits=args.num_exits, schedule=args.schedule, act_bits=args.act_bits, seed=args.seed,
    )


def _prepare_model(args: argparse.Namespace, loaded: LoadedModel) -> str | None:
    """Install the ``--translators`` and compress the model with the ``--policy`` (LUC: prune and
    fake-quantize, calibrated on the calibration split); returns the policy's path or None."""
    if args.translators:
        from workloads.exits import translator

        translator.install(loaded.model, translator.load(args.translators)[0])
    if not args.policy:
        return None
    policy = load_policy(args.policy, loaded)
    compress(loaded, policy, data=args.data, seq_len=args.seq_len, calib_windows=args.calib_windows,
             seed=args.seed, progress=not args.json)
    return str(args.policy)


def _summary(loaded: LoadedModel, config: TuneConfig, result: TuneResult, *, policy: str | None,
             load_avg_1min: tuple[float, float]) -> dict[str, Any]:
    """The run's JSON record: configuration, step times (s), memory (bytes), losses, exits."""
    return {
        "model": loaded.name,
        "method": config.method,
        "steps": config.steps,
        "batch_size": config.batch_size,
        "seq_len": config.seq_len,
        "policy": policy,
        "step_seconds": result.median_step_seconds(),
        "step_seconds_all": [round(s, 4) for s in result.step_seconds],
        "step_exits": [w.exit_layer for w in result.step_windows],
        "peak_memory_bytes": result.peak_rss_bytes,
        "baseline_rss_bytes": result.baseline_rss_bytes,
        "peak_rss_excludes_loading": result.peak_rss_reset,
        "setup_peak_rss_bytes": result.setup_peak_rss_bytes,
        "torch_bytes": {
            "saved_for_backward": result.saved_tensor_bytes,
            "parameters": result.parameter_bytes,
            "gradients": result.gradient_bytes,
            "optimizer": result.optimizer_bytes,
        },
        "trainable_params": result.trainable_params,
        "trainable_params_per_step": result.trainable_params_per_step,
        "exits": result.exits,
        "windows": [w.to_list() for w in result.windows],
        "losses": [round(x, 5) for x in result.losses],
        "load_avg_1min": [round(load_avg_1min[0], 2), round(load_avg_1min[1], 2)],
        "threads": torch.get_num_threads(),
        "config": config.to_dict(),
    }


def _evaluate_tuned(args: argparse.Namespace, loaded: LoadedModel, result: TuneResult,
                    untuned: dict[str, Any]) -> dict[str, Any]:
    """Held-out perplexity and accuracy of every exit and vote (``evaluate_exits``) beside the
    untuned model's, with the names of those worse than it."""
    ev = evaluate_exits(
        loaded, result.model, result.exits, answer_rule=args.vote, data=args.data, seq_len=args.seq_len,
        batch_size=args.eval_batch_size, max_windows=args.eval_max_windows, mc_items=args.mc_items,
        seed=args.seed, progress=not args.json,
    )
    ev["untuned"] = {k: untuned[k] for k in ("perplexity", "nll", "accuracy")}
    ev["worse_than_untuned"] = worse_than_untuned(ev)
    return ev


def _print_summary(out: dict[str, Any], *, as_json: bool) -> None:
    """Print the run's record (one JSON line, or a few readable lines) and, on stderr, a warning
    for every exit or vote worse than the untuned model."""
    if as_json:
        print(json.dumps(out))
    else:
        print(
            f"{out['model']} {out['method']}: {out['steps']} steps, median {out['step_seconds']:.2f} s/step, "
            f"peak RSS {out['peak_memory_bytes'] / 2**20:.0f} MiB (baseline {out['baseline_rss_bytes'] / 2**20:.0f} MiB), "
            f"{out['trainable_params']} trainable parameters, final loss {out['losses'][-1]:.3f}"
        )
        if "eval" in out:
            _print_eval(out["eval"])
        print(f"total time {out['seconds']:.1f} s")
    if "eval" in out:
        for name in out["eval"]["worse_than_untuned"]:
            print(f"warning: {name} has a higher held-out perplexity than the untuned model "
                  f"({out['eval']['untuned']['perplexity']:.3f}): do not use it; one exit (--num-exits 1), a deeper "
                  "--window or another --lr help (docs/results/tuning.md, tuning_lr.md)", file=sys.stderr)


def worse_than_untuned(ev: dict[str, Any]) -> list[str]:
    """Names ("exit 17", "vote mean") of the exits and votes of ``evaluate_exits``' result
    ``ev`` whose perplexity is above ``ev["untuned"]``'s."""
    base = ev["untuned"]["perplexity"]
    named = [(f"exit {layer}", r) for layer, r in ev["per_exit"].items()]
    named += [(f"vote {rule}", r) for rule, r in ev["vote"].items()]
    return [name for name, r in named if not r["perplexity"] <= base]


def _print_eval(ev: dict[str, Any]) -> None:
    def acc(r: dict[str, Any]) -> str:
        return "n/a" if r["accuracy"] is None else f"{r['accuracy']:.3f}"

    base = ev["untuned"]
    print(f"held-out ({ev['windows']} windows of {ev['seq_len']} tokens, {ev['mc_items']} multiple-choice items):")
    print(f"  untuned: perplexity {base['perplexity']:.3f}, accuracy {acc(base)}")
    print(f"  tuned ({ev['answer']}): perplexity {ev['perplexity']:.3f} "
          f"({ev['perplexity'] / base['perplexity']:.2f}x untuned), accuracy {acc(ev)}")
    if len(ev["per_exit"]) > 1:
        for layer, r in ev["per_exit"].items():
            print(f"  exit {layer}: perplexity {r['perplexity']:.3f}, accuracy {acc(r)}")
        for rule, r in ev["vote"].items():
            print(f"  vote {rule}: perplexity {r['perplexity']:.3f}, accuracy {acc(r)}")


if __name__ == "__main__":
    sys.exit(main())
