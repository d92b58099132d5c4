"""How few bits can the activations kept for backward take? Writes docs/results/act_bits.md,
act_bits.png and act_bits.json.

    python benchmarks/bench_act_bits.py [--window 12] [--bits 16 8 6 4] [--jobs 1]

For each width, the full method of docs/results/window.md (top window of ``--window`` layers,
4-bit layers and 8-bit head on the checkpoint's own grids, per-op scheduling) keeps its saved
activations at that width (``workloads/tuning/actcomp.py``; 16 = as computed) and is

- simulated: memory saving and speed-up of one tuning step against vanilla LoRA;
- measured: real tuning for vanilla's budget of 32 steps and held-out evaluation, the same
  measurement as ``bench_window.py --case full WINDOW 32 BITS 8`` (results shared in
  runs/bench_window/).

The forward pass is exact at every width, so each quality change comes from the rounded
gradients alone.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_window as bw  # noqa: E402
from dse import io  # noqa: E402
from workloads.tuning.actcomp import ACT_BITS, GROUP  # noqa: E402

DOC = ROOT / "docs" / "results" / "act_bits.md"
HEAD_BITS = 8  # the checkpoint's own Q8_0 grid


def simulate(window: int, widths: list[int], hw_path: str) -> pd.DataFrame:
    table, _, _ = bw.simulate_full({f"a{b}": bw.plan(window, b, HEAD_BITS) for b in widths}, hw_path)
    table["act_bits"] = widths
    return table[["act_bits", "hw", "speedup", "memory_mib", "memory_saving"]].reset_index(drop=True)


def figure(table: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    ax.plot(table["memory_saving"], table["ppl_gap"] * 100, marker="o")
    for _, r in table.iterrows():
        ax.annotate(f"{int(r['act_bits'])} bit", (r["memory_saving"], r["ppl_gap"] * 100), textcoords="offset points",
                    xytext=(4, 4))
    ax.axvline(bw.TARGETS["memory_saving"], ls="--", c="k", lw=1)
    ax.axhline(bw.TARGETS["perplexity_gap"] * 100, ls=":", c="k", lw=1)
    ax.set_xlabel("memory saving vs vanilla (simulated); target 4x (dashed)")
    ax.set_ylabel(f"perplexity vs vanilla after {bw.STEPS} steps (%)")
    ax.set_yscale("log")  # 6 and 8 bits sit within a point of exact; 4 bits is far off
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    fig.suptitle("Activations kept for backward: bits against memory and quality")
    io.save_figure(path, fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=12, help="layers in the tuned window (default: %(default)s)")
    p.add_argument("--bits", type=int, nargs="+", default=[16, 8, 6, 4],
                   help="activation widths, 2..8 or 16 = as computed (default: %(default)s)")
    p.add_argument("--hw", default="hwconfigs/edge_llm.yaml", help="hardware config (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1,
                   help="measurements at once, each on cores/jobs torch threads (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the table as JSON instead of the page")
    args = p.parse_args(argv)
    widths = sorted(set(args.bits), reverse=True)
    if any(b not in ACT_BITS for b in widths):
        p.error(f"--bits must be 2..8 or 16 (got {args.bits})")
    if not 1 <= args.window <= 30 or args.jobs < 1:
        p.error("--window must be 1..30 and --jobs positive")
    if not Path(args.hw).is_file():
        p.error(f"--hw: no such file {args.hw}")
    bw.RUNS.mkdir(parents=True, exist_ok=True)
    sim_table = simulate(args.window, widths, args.hw)
    dense_head = ("full", args.window, bw.STEPS, 16, 16)  # the exact run once more with a 16-bit head
    cases = [bw.VANILLA] + [("full", args.window, bw.STEPS, b, HEAD_BITS) for b in widths] + [dense_head]
    results = bw.run_all(cases, args.jobs)
    vanilla = results[cases[0]]
    rows = []
    for _, r in sim_table.iterrows():
        got = results[("full", args.window, bw.STEPS, int(r["act_bits"]), HEAD_BITS)]
        rows.append({**r.to_dict(), "perplexity": got["perplexity"], "ppl_gap": got["perplexity"] / vanilla["perplexity"] - 1,
                     "accuracy": got["accuracy"]})
    table = pd.DataFrame(rows)
    command = " ".join(["python benchmarks/bench_act_bits.py", *(sys.argv[1:] if argv is None else argv)])
    exact = table[table["act_bits"] == 16]
    lines = [
        "# Activations kept for backward: how few bits", "",
        f"Made by `{command}` (every number on this page).", "",
        f"Full method with a top window of {args.window} layers (4-bit layers and 8-bit head on the checkpoint's own "
        f"grids, per-op scheduling) on {table['hw'].iloc[0]}; the activations autograd keeps for backward are stored "
        f"at `act_bits` (symmetric integers, a bfloat16 scale per {GROUP} values; 16 = as computed). Memory and "
        f"speed-up: one simulated tuning step (batch 4 x 256) against vanilla LoRA. Quality: real tuning for "
        f"{bw.STEPS} steps (lr {bw.LR}, batch 4 x 256, seed 0), held-out evaluation on every eval window and 200 "
        "multiple-choice items. The forward pass is exact at every width: the changes come from rounded gradients. "
        "Packing is elementwise work the simulator does not charge (it models matrix products), so the speed-up "
        "does not move.", "",
        f"Vanilla: perplexity {vanilla['perplexity']:.3f}, accuracy {vanilla['accuracy']:.3f}.", "",
        io.markdown_table(table[["act_bits", "speedup", "memory_mib", "memory_saving", "perplexity", "ppl_gap",
                                 "accuracy"]]), "",
        "![act_bits](act_bits.png)", "",
    ]
    if len(exact):
        ref = float(exact["perplexity"].iloc[0])
        other = results[dense_head]["perplexity"]
        lines += [f"The {HEAD_BITS}-bit head costs nothing: the exact run with a 16-bit head measures perplexity "
                  f"{other:.6f} against {ref:.6f} ({'identical' if other == ref else f'{other / ref - 1:+.3%}'}); "
                  "the checkpoint's embedding is Q8_0, so its values are already on that grid.", ""]
        lines += [f"- {int(r['act_bits'])} bits: perplexity {r['perplexity'] / ref - 1:+.2%} against keeping them "
                  f"as computed, memory saving {r['memory_saving']:.2f}x." for _, r in table.iterrows()
                  if r["act_bits"] < 16] + [""]
    lines += ["## Commands of the measurements", "", "Each ran in a fresh process (results kept in runs/bench_window/):",
              "", "```sh", *[bw.case_command(c) for c in cases], "```", ""]
    figure(table, DOC.with_suffix(".png"))
    io.write_text(DOC, "\n".join(lines))
    io.write_json(DOC.with_suffix(".json"), {"command": command, "vanilla": vanilla, "rows": table.to_dict("records"),
                                            "exact_16_bit_head": results[dense_head]})
    print(table.to_json(orient="records") if args.json else DOC.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
