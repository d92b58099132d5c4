"""Train exit translators and measure every exit, plain and translated, their votes and the
early-exit decisions on held-out text.

    python -m workloads.exits --model smollm2-135m --threads 1 --json > exits.json
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from workloads.errors import cli_main
from workloads.evaluate import add_model_args, non_negative_int, positive_int
from workloads.exits.study import StudyConfig, run_study
from workloads.jsonfile import write_json_atomic
from workloads.models import load_model
from workloads.tune import exit_list


def vote_groups(text: str) -> list[tuple[int, ...]]:
    """``17,21,25,29;28,29`` -> ``[(17, 21, 25, 29), (28, 29)]``."""
    try:
        return [tuple(sorted({int(x) for x in g.split(",") if x.strip()})) for g in text.split(";") if g.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected groups of layers like '17,21,25,29;28,29' (got {text!r})") from None


def early_sets(text: str) -> list[tuple[int, ...]]:
    """``24;20,24;all`` -> ``[(24,), (20, 24), ()]`` (``all``: every exit with a translator)."""
    return [() if g.strip() == "all" else vote_groups(g)[0] for g in text.split(";") if g.strip()]


def build_parser() -> argparse.ArgumentParser:
    d = StudyConfig()
    p = argparse.ArgumentParser(
        prog="python -m workloads.exits",
        description="Tuned-lens exit translators (an affine map before the final norm and tied head at each "
        "exit, trained by KL distillation to the final layer's next-token distribution on the calibration "
        "split, the model frozen) and what they change: per-exit perplexity and expected calibration error, "
        "plain head vs translated; every voting rule over groups of translated exits vs the group's best "
        "single exit; early exit by confidence threshold.",
    )
    add_model_args(p)
    p.add_argument("--exits", type=exit_list, default=None,
                   help=f"exit layers that get a translator, 0-based, below the last (default: "
                   f"{','.join(map(str, d.exits))} on a 30-layer model, the same relative depths on others)")
    p.add_argument("--votes", type=vote_groups, default=None,
                   help="groups of exit layers to vote over, ';'-separated (default: 17,21,25,29;21,29;25,27,29;28,29 "
                   "on a 30-layer model, the same relative depths on others)")
    p.add_argument("--seq-len", type=positive_int, default=d.seq_len, help="tokens per window (default: %(default)s)")
    p.add_argument("--train-windows", type=positive_int, default=d.train_windows,
                   help="calibration windows that train the translators (default: %(default)s)")
    p.add_argument("--fit-windows", type=positive_int, default=d.fit_windows,
                   help="further calibration windows that fit the calibrated votes (default: %(default)s)")
    p.add_argument("--eval-windows", type=positive_int, default=d.eval_windows,
                   help="evaluation windows for perplexity and ECE (default: %(default)s)")
    p.add_argument("--mc-items", type=non_negative_int, default=d.mc_items,
                   help="multiple-choice items for the votes' accuracy; 0 skips (default: %(default)s)")
    p.add_argument("--init", choices=("identity", "lstsq"), default=d.init,
                   help="translator start: identity (the tuned lens) or a least-squares fit of the final layer's "
                   "state (default: %(default)s)")
    p.add_argument("--rank", type=positive_int, default=None, help="low-rank translators of this rank (default: full)")
    p.add_argument("--epochs", type=non_negative_int, default=d.epochs,
                   help="KL distillation passes over the training positions; 0 keeps the start (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate of the distillation (default: %(default)s)")
    p.add_argument("--batch-tokens", type=positive_int, default=d.batch_tokens,
                   help="positions per distillation step (default: %(default)s)")
    p.add_argument("--early-sets", type=early_sets, default=None,
                   help="exit sets of early-exit inference, ';'-separated, 'all' for every --exits layer "
                   "(default: 24;20,24;17,21,25;all on a 30-layer model, the same relative depths on others)")
    p.add_argument("--out", default=None, help="also write the JSON to this file")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, seed=args.seed)
    defaults = StudyConfig().for_depth(loaded.num_layers)
    config = StudyConfig(
        exits=tuple(args.exits) if args.exits is not None else defaults.exits,
        votes=tuple(args.votes) if args.votes is not None else defaults.votes,
        early_sets=tuple(args.early_sets) if args.early_sets is not None else defaults.early_sets,
        seq_len=args.seq_len, train_windows=args.train_windows,
        fit_windows=args.fit_windows, eval_windows=args.eval_windows, mc_items=args.mc_items, init=args.init,
        rank=args.rank, epochs=args.epochs, lr=args.lr, batch_tokens=args.batch_tokens, seed=args.seed,
    )
    config.validate(loaded.num_layers)
    partial = (lambda res: write_json_atomic(args.out, {**res, "partial": True}, indent=1)) if args.out else None
    out = run_study(loaded, config, data=args.data, progress=not args.json, partial=partial)
    if args.out:
        write_json_atomic(args.out, out, indent=1)
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{out['model']}: final layer perplexity {out['final_perplexity']:.3f} ({out['eval_tokens']} tokens)")
        for r in out["per_exit"]:
            print(f"  exit {r['layer']}: head {r['head_perplexity']:.4g} (ECE {r['head_ece']:.3f}) -> translated "
                  f"{r['translated_perplexity']:.4g} (ECE {r['translated_ece']:.3f})")
        for v in out["votes"]:
            print(f"  vote {v['rule']} {v['exits']}: {v['perplexity']:.4g} vs best single "
                  f"{v['best_single_exit_perplexity']:.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
