"""Ridge of the least-squares translator start against held-out perplexity, on the exits
study's cached states (no model forward): is the translated exit limited by over-fitting the
few calibration positions? Writes the perplexities to a JSON file.

    python benchmarks/exits_ridge.py --exits 22 25 --ridges 0.01 0.1 --out docs/results/exits_ridge.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402
from workloads import data as data_mod  # noqa: E402
from workloads.exits.distill import fit_lstsq  # noqa: E402
from workloads.exits.scoring import score_exit  # noqa: E402
from workloads.exits.states import collect  # noqa: E402
from workloads.exits.study import StudyConfig  # noqa: E402
from workloads.models import load_model  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--exits", type=int, nargs="+", default=[22, 25])
    p.add_argument("--ridges", type=float, nargs="+", default=[0.01, 0.1])
    p.add_argument("--out", default="docs/results/exits_ridge.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = StudyConfig()
    loaded = load_model("smollm2-135m")
    tok = loaded.tokenizer
    layers = sorted(set(config.exits) | {e for g in config.votes for e in g})
    calib = data_mod.split_windows(tok, "calibration", config.seq_len)
    ev = data_mod.split_windows(tok, "eval", config.seq_len, max_windows=config.eval_windows)
    train = collect(loaded.model, calib[: config.train_windows], layers, progress=False)  # the study's cache
    evs = collect(loaded.model, ev, layers, progress=False)
    top = loaded.num_layers - 1
    rows = []
    for e in args.exits:
        for ridge in args.ridges:
            t = fit_lstsq(train.flat(e), train.flat(top), ridge=ridge)
            ppl = score_exit(loaded.model, evs.flat(e), evs.targets(), translator=t).perplexity
            rows.append({"layer": e, "ridge": ridge, "translated_perplexity": ppl})
            print(rows[-1], flush=True)
    io.write_json(args.out, {"command": "python benchmarks/exits_ridge.py --exits " + " ".join(map(str, args.exits))
                             + " --ridges " + " ".join(map(str, args.ridges)) + f" --out {args.out}",
                             "train_windows": config.train_windows, "eval_windows": config.eval_windows, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
