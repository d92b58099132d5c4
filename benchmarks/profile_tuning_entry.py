"""Where one entry of the search's tuning table spends its time (cProfile, one torch thread).

    python benchmarks/profile_tuning_entry.py [--rank 3] [--lines 35]

Measures the ``rank``-th base tuning configuration of the search space (16-bit activations, no
translators) at the search's default fidelity, as phase 3 of ``python -m dse.search`` does, and
prints the cumulative profile. Used by docs/results/cold_start.md to say where a cold start goes.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dse.measure import Fidelity, measure  # noqa: E402
from dse.space import tunings  # noqa: E402
from workloads.models import load_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rank", type=int, default=3, help="which base configuration, 0-based (default: 3)")
    parser.add_argument("--lines", type=int, default=35, help="profile lines printed (default: 35)")
    parser.add_argument("--seed", type=int, default=7, help="measurement seed, not the cached one (default: 7)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model("smollm2-135m", seed=0)
    n = int(loaded.model.config.num_hidden_layers)
    base = [t for t in tunings(num_layers=n) if t.act_bits == 16 and not t.translators]
    tuning = base[args.rank]
    print(tuning)
    profile, start = cProfile.Profile(), time.perf_counter()
    profile.enable()
    measure(loaded, tuning, Fidelity(seed=args.seed))
    profile.disable()
    print(f"wall {time.perf_counter() - start:.1f} s")
    pstats.Stats(profile).sort_stats("cumulative").print_stats(args.lines)


if __name__ == "__main__":
    main()
