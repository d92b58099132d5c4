"""How deep must adaptive tuning reach to match vanilla LoRA, and what does that depth cost on
the device? Writes docs/results/window.md and window.png.

    python benchmarks/bench_window.py [--windows 2 4 8 15] [--jobs 2]

For each window size W, the full method of the headline (one window of the top W layers with
its exit at the last layer, LUC 4-bit weights in groups of 32 at sparsity 0, per-op dataflow
scheduling) is compared with vanilla LoRA:

- simulated: speed-up and memory saving of one tuning step on the main hardware config;
- measured (real model, held-out eval split): perplexity and accuracy after vanilla's budget of
  32 steps, and after as many steps as fit in vanilla's simulated tuning time (equal time).

Sparsity 0 at 4 bits lands on the packaged checkpoint's own Q4_1 grid, so compression costs no
quality here and every quality gap is the window's. One learning rate for every run (vanilla's
pick in docs/results/tuning_lr.md). Each measurement runs in its own process and is kept in
runs/bench_window/, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402
from dse.measure import Fidelity  # noqa: E402
from dse.reproduce import Plan  # noqa: E402

RUNS = ROOT / "runs" / "bench_window"
DOC = ROOT / "docs" / "results" / "window.md"
STEPS = 32  # vanilla's tuning budget (the headline's)
LR = 0.005  # vanilla's pick by tuning loss (docs/results/tuning_lr.md), used by every run
TARGETS = {"speedup": 2.92, "memory_saving": 4.0, "perplexity_gap": 0.05, "accuracy_drop": 0.02}


def fidelity(steps: int) -> Fidelity:
    """The headline's evaluation: all eval windows of 256 tokens and 200 multiple-choice items."""
    return Fidelity(steps=steps, batch_size=4, seq_len=256, lr=LR, eval_windows=10_000, mc_items=200, split="eval",
                    calib_windows=32, seed=0)


def plan(window: int) -> Plan:
    return Plan(sparsity=0.0, bits=4.0, window=window)


# --- one measurement, in its own process -------------------------------------------------------

def measure_case(kind: str, window: int, steps: int) -> dict[str, Any]:
    """Tune and evaluate one case: ``untuned``, ``vanilla`` or ``full`` (window, steps)."""
    from dse.measure import measure
    from dse.reproduce import make_policy
    from workloads.evaluate import evaluate
    from workloads.models import load_model

    loaded = load_model("smollm2-135m", seed=0)
    fid = fidelity(steps)
    if kind == "untuned":
        r = evaluate(loaded, seq_len=fid.seq_len, max_windows=fid.eval_windows, mc_items=fid.mc_items, seed=fid.seed,
                     progress=False)
        return {"perplexity": r["perplexity"], "accuracy": r["accuracy"]}
    p = plan(window)
    design = p.design(kind, int(loaded.model.config.num_hidden_layers))
    policy = replace(make_policy(loaded, p, data=None, progress=False), group_size=p.group_size) if kind == "full" else None
    r = measure(loaded, design.tuning, fid, policy=policy)
    return {"perplexity": r["perplexity"], "accuracy": r["accuracy"], "answer": r["answer"], "seconds": r["seconds"]}


def case_path(kind: str, window: int, steps: int) -> Path:
    return RUNS / f"{kind}-w{window}-s{steps}.json"


def run_case(kind: str, window: int, steps: int, threads: int) -> dict[str, Any]:
    """The case's result, from runs/ if it was measured before, else from a fresh process."""
    path = case_path(kind, window, steps)
    if not path.is_file():
        cmd = [sys.executable, str(Path(__file__).resolve()), "--case", kind, str(window), str(steps)]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{path.stem} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(path.read_text())


# --- the page ----------------------------------------------------------------------------------

def simulate(windows: list[int], hw_path: str) -> pd.DataFrame:
    """Speed-up and memory saving of the full method's step for each window (vanilla = 1)."""
    from dse.hardware import TraceBank
    from dse.reproduce import make_policy, simulate_all
    from workloads.models import load_model

    loaded = load_model("smollm2-135m", seed=0)
    bank = TraceBank(loaded, seq_len=256, batch=4)
    n_layers = int(loaded.model.config.num_hidden_layers)
    rows = []
    for w in windows:
        p = plan(w)
        policy = replace(make_policy(loaded, p, data=None, progress=False), group_size=p.group_size)
        table = simulate_all({n: p.design(n, n_layers) for n in ("vanilla", "full")}, policy, bank, [hw_path])
        full = table[table["config"] == "full"].iloc[0]
        rows.append({"window": w, "layers": f"{n_layers - w}-{n_layers - 1}", "latency_ms": full["latency_ms"],
                     "speedup": full["speedup"], "memory_mib": full["memory_mib"],
                     "memory_saving": full["memory_saving"], "hw": full["hw"],
                     "vanilla_ms": table[table["config"] == "vanilla"].iloc[0]["latency_ms"]})
    return pd.DataFrame(rows)


def meets(row: pd.Series) -> bool:
    return bool(row["speedup"] >= TARGETS["speedup"] and row["memory_saving"] >= TARGETS["memory_saving"]
                and row["ppl_gap_equal_time"] <= TARGETS["perplexity_gap"]
                and row["acc_change_equal_time"] >= -TARGETS["accuracy_drop"])


def figure(table: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(11, 4))
    ax_speed, ax_mem = fig.subplots(1, 2)
    for ax, col, target, label in ((ax_speed, "speedup", TARGETS["speedup"], "speed-up vs vanilla (simulated)"),
                                   (ax_mem, "memory_saving", TARGETS["memory_saving"], "memory saving vs vanilla (simulated)")):
        for when, marker in (("same_steps", "o"), ("equal_time", "s")):
            ax.plot(table[col], table[f"ppl_gap_{when}"] * 100, marker=marker, label=when.replace("_", " "))
        for _, r in table.iterrows():
            ax.annotate(f"w{r['window']}", (r[col], r["ppl_gap_equal_time"] * 100), textcoords="offset points",
                        xytext=(4, 4))
        ax.axvline(target, ls="--", c="k", lw=1)
        ax.axhline(TARGETS["perplexity_gap"] * 100, ls=":", c="k", lw=1)
        ax.set_xlabel(f"{label}; target {target}x (dashed)")
        ax.set_ylabel("perplexity vs vanilla (%); target +5% (dotted)")
        ax.legend()
    fig.suptitle("Adaptive window size: device cost against quality (SmolLM2-135M, full method, 4-bit)")
    io.save_figure(path, fig)


def page(table: pd.DataFrame, vanilla: dict[str, Any], untuned: dict[str, Any], command: str) -> str:
    cols = ["window", "layers", "speedup", "memory_saving", "memory_mib", "ppl_same_steps", "ppl_gap_same_steps",
            "acc_same_steps", "equal_steps", "ppl_equal_time", "ppl_gap_equal_time", "acc_equal_time",
            "acc_change_equal_time", "meets_all"]
    best = table.loc[table["ppl_gap_equal_time"].idxmin()]
    fast = table[(table["speedup"] >= TARGETS["speedup"]) & (table["memory_saving"] >= TARGETS["memory_saving"])]
    hw = table["hw"].iloc[0]
    lines = [
        "# Adaptive window size: how deep tuning must reach, and what that costs", "",
        f"Made by `{command}` (every number on this page).", "",
        f"Full method (top window of W layers, exit at the last layer, LUC 4-bit groups of 32 at sparsity 0, per-op "
        f"scheduling) against vanilla LoRA (all 30 layers, dense 16-bit). Speed-up and memory: one simulated tuning step "
        f"(batch 4 x 256) on {hw}. Quality: real tuning (LoRA rank 8, AdamW lr {LR} for every run, batch 4 x 256, seed 0) "
        f"and held-out evaluation (all eval windows, 200 multiple-choice items). *Same steps*: {STEPS} steps, "
        f"vanilla's budget. *Equal time*: as many steps as fit in vanilla's simulated {STEPS}-step tuning time "
        "(32 x speed-up). At sparsity 0, 4-bit weights reproduce the packaged Q4_1 checkpoint, so the gaps are the "
        "window's.", "",
        f"Vanilla: perplexity {vanilla['perplexity']:.3f}, accuracy {vanilla['accuracy']:.3f} ({STEPS} steps). "
        f"Untuned: perplexity {untuned['perplexity']:.3f}, accuracy {untuned['accuracy']:.3f}.", "",
        io.markdown_table(table[cols]), "",
        "![window](window.png)", "",
        f"- Closest in quality: window {best['window']} at equal time, perplexity {best['ppl_gap_equal_time']:+.1%} "
        f"vs vanilla at {best['speedup']:.2f}x speed-up and {best['memory_saving']:.2f}x memory saving.",
        ("- Windows meeting both device targets (>= 2.92x, >= 4x): "
         + ", ".join(f"w{w} (equal-time perplexity {g:+.1%})" for w, g in zip(fast["window"], fast["ppl_gap_equal_time"]))
         if len(fast) else "- No window meets both device targets (>= 2.92x, >= 4x)."),
        f"- Windows meeting every target (speed-up, memory, perplexity within 5%, accuracy within 2 points at equal "
        f"time): {', '.join(f'w{w}' for w in table[table['meets_all']]['window']) or 'none'}.", "",
        "## Commands of the measurements", "",
        "Each row's tuning and evaluation ran as `python benchmarks/bench_window.py --case KIND WINDOW STEPS` "
        "(results in runs/bench_window/).", "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, nargs="+", default=[2, 4, 8, 15],
                   help="window sizes, layers (default: %(default)s)")
    p.add_argument("--hw", default="hwconfigs/edge_llm.yaml", help="hardware config (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1, help="measurements at once, each on cores/jobs threads (default: 1)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--case", nargs=3, metavar=("KIND", "WINDOW", "STEPS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:  # one measurement (a worker process)
        kind, window, steps = args.case[0], int(args.case[1]), int(args.case[2])
        io.write_json(case_path(kind, window, steps), measure_case(kind, window, steps))
        return 0
    if any(w < 1 for w in args.windows) or args.jobs < 1:
        p.error("--windows and --jobs must be positive")
    RUNS.mkdir(parents=True, exist_ok=True)
    sim_table = simulate(args.windows, args.hw)
    equal = {int(r["window"]): max(1, int(STEPS * r["speedup"])) for _, r in sim_table.iterrows()}
    cases = [("untuned", 0, 0), ("vanilla", 0, STEPS)] + [
        (kind, w, s) for w in args.windows for kind, s in (("full", STEPS), ("full", equal[w]))]
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {c: pool.submit(run_case, *c, threads) for c in cases}
        results = {c: f.result() for c, f in tqdm(futures.items(), desc="tune + evaluate")}
    untuned, vanilla = results[cases[0]], results[cases[1]]
    rows = []
    for _, r in sim_table.iterrows():
        w = int(r["window"])
        same, eq = results[("full", w, STEPS)], results[("full", w, equal[w])]
        rows.append({**r.to_dict(), "ppl_same_steps": same["perplexity"],
                     "ppl_gap_same_steps": same["perplexity"] / vanilla["perplexity"] - 1,
                     "acc_same_steps": same["accuracy"], "equal_steps": equal[w], "ppl_equal_time": eq["perplexity"],
                     "ppl_gap_equal_time": eq["perplexity"] / vanilla["perplexity"] - 1,
                     "acc_equal_time": eq["accuracy"], "acc_change_equal_time": eq["accuracy"] - vanilla["accuracy"]})
    table = pd.DataFrame(rows)
    table["meets_all"] = table.apply(meets, axis=1)
    command = "python benchmarks/bench_window.py " + " ".join(sys.argv[1:] if argv is None else argv)
    figure(table, DOC.with_suffix(".png"))
    io.write_text(DOC, page(table, vanilla, untuned, command.strip()))
    io.write_json(DOC.with_suffix(".json"), {"command": command.strip(), "vanilla": vanilla, "untuned": untuned,
                                            "rows": table.to_dict("records")})
    print(table.to_json(orient="records") if args.json else DOC.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
