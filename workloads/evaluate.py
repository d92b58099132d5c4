"""Evaluate a model on held-out text: perplexity and multiple-choice continuation accuracy.

    python -m workloads.evaluate --model smollm2-135m --seq-len 256 --json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch

from workloads import data as data_mod
from workloads.errors import cli_main
from workloads.luc.compress import compress_model, needs_calibration
from workloads.luc.policy import Policy
from workloads.metrics import Scorer, choice_accuracy, model_scorer, perplexity
from workloads.models import BUILTIN_MODELS, LoadedModel, load_model

__all__ = ["add_model_args", "build_parser", "evaluate", "main", "non_negative_int",
           "positive_float", "positive_int", "seed_int"]


def evaluate(
    loaded: LoadedModel,
    *,
    data: str | None = None,
    split: str = "eval",
    seq_len: int = 256,
    batch_size: int = 8,
    max_windows: int | None = None,
    mc_items: int = 200,
    mc_distractors: str = data_mod.DISTRACTORS[0],
    seed: int = 0,
    scorer: Scorer | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Perplexity and next-token top-1 accuracy over the split's non-overlapping ``seq_len``
    windows, and accuracy over ``mc_items`` multiple-choice items drawn (with ``seed``) from the
    same split, with ``mc_distractors`` (``workloads.data.choice_items``).

    Returns a dict: ``perplexity``, ``nll`` (nats/token), ``top1`` (share of predicted tokens that
    are the arg-max; None if the scorer gives no top-1), ``accuracy`` (multiple choice; None
    without items), ``tokens``, ``windows``, ``seq_len``, ``split``, ``data``, ``mc_items``,
    ``mc_choices``, ``mc_distractors``."""
    scorer = scorer or model_scorer(loaded.model)
    texts = data_mod.load_split(split, data)
    windows = data_mod.windows(data_mod.tokenize(loaded.tokenizer, texts), seq_len, max_windows=max_windows)
    ppl = perplexity(scorer, windows, batch_size=batch_size, progress=progress)
    items = (data_mod.choice_items(loaded.tokenizer, texts, n_items=mc_items, distractors=mc_distractors, seed=seed)
             if mc_items > 0 else [])
    acc = choice_accuracy(scorer, items, batch_items=max(1, batch_size // 2), progress=progress) if items else None
    return {
        "split": split,
        "data": data or data_mod.BUILTIN,
        "seq_len": seq_len,
        "windows": ppl.windows,
        "tokens": ppl.tokens,
        "perplexity": ppl.perplexity,
        "nll": ppl.nll,
        "top1": ppl.top1,
        "accuracy": acc.accuracy if acc else None,
        "mc_items": acc.items if acc else 0,
        "mc_choices": acc.choices if acc else 0,
        "mc_distractors": mc_distractors,
    }


def positive_int(text: str) -> int:
    """``argparse`` type: an integer > 0.

    Raises:
        argparse.ArgumentTypeError: not an integer, or not positive.
    """
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer (got {text})")
    return value


def positive_float(text: str) -> float:
    """``argparse`` type: a finite number > 0 (NaN refused).

    Raises:
        argparse.ArgumentTypeError: not a number, or not a finite positive one.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number (got {text!r})") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number (got {text!r})")
    return value


def non_negative_int(text: str) -> int:
    """``argparse`` type: an integer >= 0.

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative.
    """
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer (got {text})")
    return value


def seed_int(text: str) -> int:
    """A seed torch accepts: 0 <= seed < 2**64 (larger ones crash ``torch.manual_seed``)."""
    value = int(text)
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be an integer in 0..2**64-1 (got {text})")
    return value


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Flags shared by every workloads CLI that loads a model and text."""
    parser.add_argument(
        "--model",
        default="smollm2-135m",
        help=f"model: {' or '.join(BUILTIN_MODELS)} (built in, no download), a local Hugging Face "
        "folder or a .gguf file (default: %(default)s)",
    )
    parser.add_argument(
        "--data",
        default=None,
        help="text corpus: a .txt file, a .jsonl file with a 'text' field, or a folder of them; UTF-8, "
        f"or UTF-16/UTF-32 with a byte-order mark (default: the built-in '{data_mod.BUILTIN}' corpus, the Python documentation)",
    )
    parser.add_argument("--seed", type=seed_int, default=0, help="random seed, 0..2**64-1 (default: %(default)s)")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a text summary")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m workloads.evaluate``: model options, split, window length (tokens),
    windows, multiple-choice items and an optional policy to compress with first.
    """
    parser = argparse.ArgumentParser(
        prog="python -m workloads.evaluate",
        description="Perplexity and next-token top-1 accuracy (non-overlapping windows) and multiple-choice "
        "continuation accuracy (true next chunk vs 3 distractors, by log-likelihood) on held-out text.",
    )
    add_model_args(parser)
    parser.add_argument(
        "--split", default="eval", choices=data_mod.SPLITS, help="which split of the corpus (default: %(default)s)"
    )
    parser.add_argument(
        "--seq-len", type=positive_int, default=256, help="window length in tokens (default: %(default)s)"
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, help="windows per forward pass (default: %(default)s)"
    )
    parser.add_argument(
        "--max-windows", type=positive_int, default=None, help="evaluate at most this many windows (default: all)"
    )
    parser.add_argument(
        "--policy",
        default=None,
        help="compress the model with this LUC policy (JSON from python -m workloads.luc --out) before "
        "evaluating (default: evaluate the model as loaded)",
    )
    parser.add_argument(
        "--calib-windows",
        type=positive_int,
        default=32,
        help="with --policy: calibration windows of --seq-len tokens for data-aware methods (Wanda, "
        "SparseGPT, GPTQ) (default: %(default)s)",
    )
    parser.add_argument(
        "--mc-items",
        type=non_negative_int,
        default=200,
        help="multiple-choice items (32-token context, 16-token continuations, 4 choices); 0 skips "
        "accuracy (default: %(default)s)",
    )
    parser.add_argument(
        "--mc-distractors",
        default=data_mod.DISTRACTORS[0],
        choices=data_mod.DISTRACTORS,
        help="where the wrong continuations come from: other chunks of the same passage (same topic: "
        "only the local continuation tells them apart) or other passages (the topic alone often "
        "gives the answer away) (default: %(default)s)",
    )
    return parser


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``python -m workloads.evaluate``: (optionally compress, then) measure perplexity, top-1 and
    multiple-choice accuracy on the split; prints them (or, with ``--json``, one JSON object) and
    returns the exit status 0.

    Raises:
        UserError: a bad option, model, policy or data (one line via ``cli_main``).
    """
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    policy = Policy.load(args.policy) if args.policy else None  # a bad file fails before the model loads
    loaded = load_model(args.model, seed=args.seed)
    result: dict[str, Any] = {"model": loaded.name}
    if policy is not None:
        calib = None
        if needs_calibration(policy):
            calib = data_mod.split_windows(
                loaded.tokenizer, "calibration", args.seq_len, source=args.data, max_windows=args.calib_windows,
                shuffle=True, seed=args.seed,
            )
        report = compress_model(loaded.model, policy, calib, progress=not args.json)
        result["policy"] = {"path": args.policy, "avg_sparsity": report.avg_sparsity, "avg_bits": report.avg_bits}
    result.update(
        evaluate(
            loaded,
            data=args.data,
            split=args.split,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            max_windows=args.max_windows,
            mc_items=args.mc_items,
            mc_distractors=args.mc_distractors,
            seed=args.seed,
        )
    )
    result["seconds"] = round(time.perf_counter() - start, 3)
    if args.json:
        print(json.dumps(result))
    else:
        acc = "n/a" if result["accuracy"] is None else f"{result['accuracy']:.3f} ({result['mc_items']} items)"
        print(
            f"{result['model']} on {result['data']}/{result['split']}: perplexity {result['perplexity']:.3f} "
            f"and next-token top-1 {result['top1']:.3f} over {result['tokens']} tokens ({result['windows']} "
            f"windows of {result['seq_len']}), multiple-choice accuracy {acc}, {result['seconds']:.1f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
