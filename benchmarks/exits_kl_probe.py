"""KL distillation of one exit translator (the tuned lens's objective) from the tuned lens's
identity start and from the least-squares start, on the cached calibration states of the exits
study; each run's held-out perplexity after training, on the study's evaluation windows.

    python benchmarks/exits_kl_probe.py --exit 20 --train-windows 56 --positions 8192 --epochs 2 \\
        --settings lstsq:1e-6 lstsq:1e-5 identity:1e-3 --out docs/results/exits_kl.json

What it answers: whether KL training gets an exit closer to the final layer than the
least-squares fit the study uses, in the steps this machine can afford. The KL curve is the mean
KL(final || exit) per token on each training batch (nats); the verdict is the held-out perplexity.
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402
from workloads import data as data_mod  # noqa: E402
from workloads.exits.distill import distill, fit_lstsq  # noqa: E402
from workloads.exits.scoring import score_exit  # noqa: E402
from workloads.exits.states import collect  # noqa: E402
from workloads.exits.study import StudyConfig  # noqa: E402
from workloads.exits.translator import Translator  # noqa: E402
from workloads.models import load_model  # noqa: E402


def setting(text: str) -> tuple[str, float]:
    """argparse type: ``INIT:LR`` with INIT ``lstsq`` or ``identity``."""
    init, _, lr = text.partition(":")
    if init not in ("lstsq", "identity") or not lr:
        raise argparse.ArgumentTypeError(f"expected INIT:LR with INIT lstsq or identity, got {text!r}")
    return init, float(lr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exit", type=int, default=20, help="exit layer, 0-based (default: %(default)s)")
    p.add_argument("--train-windows", type=int, default=StudyConfig.train_windows,
                   help="calibration windows of the least-squares fit (default: %(default)s)")
    p.add_argument("--eval-windows", type=int, default=StudyConfig.eval_windows,
                   help="evaluation windows of the held-out perplexity (default: %(default)s)")
    p.add_argument("--positions", type=int, default=4096,
                   help="training positions of the KL steps, from the fit's (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=1, help="KL passes over those positions (default: %(default)s)")
    p.add_argument("--batch-tokens", type=int, default=256, help="positions per step (default: %(default)s)")
    p.add_argument("--settings", type=setting, nargs="+", default=[("lstsq", 1e-6), ("identity", 1e-3)],
                   help="runs as INIT:LR (Adam learning rate) (default: lstsq:1e-6 identity:1e-3)")
    p.add_argument("--out", default="docs/results/exits_kl.json", help="JSON written (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = StudyConfig()
    loaded = load_model("smollm2-135m")
    for prm in loaded.model.parameters():
        prm.requires_grad_(False)
    tok = loaded.tokenizer
    calib = data_mod.split_windows(tok, "calibration", config.seq_len)
    ev = data_mod.split_windows(tok, "eval", config.seq_len, max_windows=args.eval_windows)
    top = loaded.num_layers - 1
    layers = [args.exit, top]
    train = collect(loaded.model, calib[: args.train_windows], layers, progress=False)
    evs = collect(loaded.model, ev, layers, progress=False)
    x, final = train.flat(args.exit), train.flat(top)
    final_ppl = score_exit(loaded.model, evs.flat(top), evs.targets()).perplexity
    lstsq = fit_lstsq(x, final, ridge=config.ridge)
    start_ppl = {"lstsq": score_exit(loaded.model, evs.flat(args.exit), evs.targets(), translator=lstsq).perplexity,
                 "identity": score_exit(loaded.model, evs.flat(args.exit), evs.targets(),
                                        translator=Translator(x.shape[1])).perplexity}
    rows = []
    for init, lr in args.settings:
        t = copy.deepcopy(lstsq) if init == "lstsq" else Translator(x.shape[1])  # distil trains in place
        started = time.perf_counter()
        res = distill(loaded.model, t, x[: args.positions], final[: args.positions], exit_layer=args.exit,
                      epochs=args.epochs, batch_tokens=args.batch_tokens, lr=lr, seed=config.seed, progress=False)
        after = score_exit(loaded.model, evs.flat(args.exit), evs.targets(), translator=t).perplexity
        rows.append({"init": init, "optimizer": "adam", "lr": lr, "kl": [round(v, 4) for v in res.losses],
                     "steps": len(res.losses), "perplexity_before": start_ppl[init], "perplexity_after": after,
                     "seconds": round(time.perf_counter() - started, 1)})
        print({k: v for k, v in rows[-1].items() if k != "kl"}, flush=True)
    command = "python benchmarks/exits_kl_probe.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    io.write_json(args.out, {"exit": args.exit, "positions": args.positions, "batch_tokens": args.batch_tokens,
                             "epochs": args.epochs, "train_tokens": int(x.shape[0]),
                             "eval_tokens": int(evs.targets().numel()), "final_perplexity": final_ppl,
                             "command": command, "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
