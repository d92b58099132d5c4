"""How much faster can an adaptive step be than a vanilla one, counting only matrix products?

    python benchmarks/tuning_mac_bound.py

Reads (or records, once) the real traces of one tuning step of SmolLM2-135M at batch 4 x 256
and prints a markdown table: multiply-accumulates per phase and vanilla/adaptive MAC ratio for
each window. LoRA freezes the base weights, so vanilla's backward is one input-gradient pass
(about one forward), not two; an adaptive step still runs the forward up to its exit and the
vocabulary-sized exit head forward and backward. The ratio bounds the host speed-up of
compute-bound steps (docs/results/tuning.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse.hardware import TraceBank  # noqa: E402
from workloads.models import load_model  # noqa: E402
from workloads.tuning.schedule import Window  # noqa: E402

# (label, method, first layer, last layer): the paper's sequential windows of 4 over the top
# 16 layers (the tuning default), and the single top windows of 8 and 15 layers.
WINDOWS = [("vanilla, all 30 layers", "vanilla", 0, 29)] + [
    (f"adaptive, layers {s}-{s + 3} (exit {s + 3})", "adaptive", s, s + 3) for s in (14, 18, 22, 26)
] + [("adaptive, layers 22-29", "adaptive", 22, 29), ("adaptive, layers 15-29", "adaptive", 15, 29)]


def main() -> None:
    bank = TraceBank(load_model("smollm2-135m"), seq_len=256, batch=4)
    rows, base = [], None
    for label, method, start, end in WINDOWS:
        ops = bank.get(method, Window(start, end)).ops
        macs = (ops["M"] * ops["N"] * ops["K"] * ops["count"]).groupby(ops["phase"]).sum()
        total = float(macs.sum())
        base = base or total
        rows.append((label, macs.get("fwd", 0) / 1e9, macs.get("bwd_input", 0) / 1e9, macs.get("bwd_weight", 0) / 1e9,
                     total / 1e9, base / total))
    seq = [r[5] for r in rows[1:5]]
    print("| step | fwd GMAC | bwd input GMAC | bwd weight GMAC | total GMAC | vanilla / this |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.1f} | {r[2]:.1f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.2f}x |")
    # A schedule spends one step per window, so its mean step costs the mean of the windows' MACs.
    mean_macs = sum(r[4] for r in rows[1:5]) / 4
    print(f"\nSequential schedule over the four windows of 4: mean step {mean_macs:.1f} GMAC, "
          f"{rows[0][4] / mean_macs:.2f}x fewer MACs than vanilla (per window {min(seq):.2f}x-{max(seq):.2f}x).")


if __name__ == "__main__":
    main()
