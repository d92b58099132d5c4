"""KL distillation of one exit translator from the tuned lens's identity start and from the
least-squares start, a few Adam steps each, on the cached calibration states of the exits study.
Writes the KL curves (nats per token, on the training batches) to a JSON file.

    python benchmarks/exits_kl_probe.py --exit 25 --out docs/results/exits_kl.json

What it answers: how far KL distillation gets in the steps this machine can afford, and whether
it improves the least-squares start.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402
from workloads import data as data_mod  # noqa: E402
from workloads.exits.distill import distill, fit_lstsq  # noqa: E402
from workloads.exits.states import collect  # noqa: E402
from workloads.exits.study import StudyConfig  # noqa: E402
from workloads.exits.translator import Translator  # noqa: E402
from workloads.models import load_model  # noqa: E402

SETTINGS = (("lstsq", 1e-5), ("lstsq", 1e-4), ("identity", 1e-3), ("identity", 1e-4))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exit", type=int, default=25, help="exit layer (default: %(default)s)")
    p.add_argument("--positions", type=int, default=1024, help="training positions (default: %(default)s)")
    p.add_argument("--batch-tokens", type=int, default=128, help="positions per step (default: %(default)s)")
    p.add_argument("--out", default="docs/results/exits_kl.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = StudyConfig()
    loaded = load_model("smollm2-135m")
    for prm in loaded.model.parameters():
        prm.requires_grad_(False)
    calib = data_mod.split_windows(loaded.tokenizer, "calibration", config.seq_len)
    layers = sorted(set(config.exits) | {e for g in config.votes for e in g})
    states = collect(loaded.model, calib[: config.train_windows], layers, progress=False)  # the study's cache
    top = loaded.num_layers - 1
    x, final = states.flat(args.exit), states.flat(top)
    rows = []
    for init, lr in SETTINGS:
        # The least-squares start is fitted on all training positions, as in the study.
        t = fit_lstsq(x, final, ridge=config.ridge) if init == "lstsq" else Translator(x.shape[1])
        started = time.perf_counter()
        res = distill(loaded.model, t, x[: args.positions], final[: args.positions], exit_layer=args.exit,
                      epochs=1, batch_tokens=args.batch_tokens, lr=lr, seed=config.seed, progress=False)
        rows.append({"init": init, "optimizer": "adam", "lr": lr, "kl": [round(v, 4) for v in res.losses],
                     "seconds": round(time.perf_counter() - started, 1)})
        print(rows[-1], flush=True)
    io.write_json(args.out, {"exit": args.exit, "positions": args.positions, "batch_tokens": args.batch_tokens,
                             "command": f"python benchmarks/exits_kl_probe.py --exit {args.exit} --out {args.out}",
                             "runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
