"""How deep must adaptive tuning reach to match vanilla LoRA, and what does that depth cost on
the device? Writes docs/results/window.md, window.png and window.json.

    python benchmarks/bench_window.py [--windows 4 8 12 15] [--act-bits 8] [--jobs 2]

For each window size W, the full method of the headline (one window of the top W layers with
its exit at the last layer, LUC 4-bit weights in groups of 32 at sparsity 0 and an 8-bit tied
head, per-op dataflow scheduling, activations kept for backward at ``--act-bits``) is compared
with vanilla LoRA:

- simulated: speed-up and memory saving of one tuning step on the hardware config;
- measured (real model, held-out eval split): perplexity and accuracy after vanilla's budget of
  32 steps, and after as many steps as fit in vanilla's simulated tuning time (equal time).

Sparsity 0 at 4 bits lands on the packaged checkpoint's own Q4_1 grid and the 8-bit head on its
Q8_0 grid, so weight compression costs no quality here; the gaps are the window's and the
packed activations'. One learning rate for every run. Each
measurement runs in its own process (``--case``) and is kept in runs/bench_window/ under a name
that includes its settings, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402
from dse.measure import Fidelity  # noqa: E402
from dse.reproduce import Plan, equal_time_steps  # noqa: E402
from workloads.luc.policy import Policy  # noqa: E402
from workloads.tuning.actcomp import ACT_BITS, cache_tag  # noqa: E402

RUNS = ROOT / "runs" / "bench_window"
DOC = ROOT / "docs" / "results" / "window.md"
MODEL = "smollm2-135m"
STEPS = 32  # vanilla's tuning budget (the headline's)
# Vanilla's pick by tuning loss, and the equal-time adaptive run's (docs/results/tuning_lr.md);
# the 32-step adaptive pick there is 0.01, so the same-steps gaps here are at a rate not its own.
LR = 0.005
TARGETS = {"speedup": 2.92, "memory_saving": 4.0, "perplexity_gap": 0.05, "accuracy_drop": 0.02}
KINDS = ("untuned", "vanilla", "full")
UNTUNED = ("untuned", 0, 0, 16, 16)
VANILLA = ("vanilla", 0, STEPS, 16, 16)  # dense: no compression, activations as computed
Case = tuple[str, int, int, int, int]  # (kind, window, steps, act_bits, head_bits)


def fidelity(steps: int) -> Fidelity:
    """The headline's evaluation: all eval windows of 256 tokens and 200 multiple-choice items."""
    return Fidelity(steps=steps, batch_size=4, seq_len=256, lr=LR, eval_windows=10_000, mc_items=200, split="eval",
                    calib_windows=32, seed=0)


def plan(window: int, act_bits: int = 16, head_bits: int = 16) -> Plan:
    return Plan(sparsity=0.0, bits=4.0, window=window, head_bits=head_bits, act_bits=act_bits)


# --- one measurement, in its own process -------------------------------------------------------

def measure_case(kind: str, window: int, steps: int, act_bits: int, head_bits: int) -> dict[str, Any]:
    """Tune and evaluate one case: ``untuned``, ``vanilla`` or ``full`` (window, steps, act_bits, head_bits)."""
    from dse.measure import measure
    from dse.reproduce import make_policy
    from workloads.evaluate import evaluate
    from workloads.models import load_model

    loaded = load_model(MODEL, seed=0)
    fid = fidelity(steps)
    if kind == "untuned":
        r = evaluate(loaded, seq_len=fid.seq_len, max_windows=fid.eval_windows, mc_items=fid.mc_items, seed=fid.seed,
                     progress=False)
        return {"perplexity": r["perplexity"], "accuracy": r["accuracy"]}
    p = plan(window, act_bits, head_bits)
    design = p.design(kind, int(loaded.model.config.num_hidden_layers))
    policy = make_policy(loaded, p, data=None, progress=False) if kind == "full" else None
    r = measure(loaded, design.tuning, fid, policy=policy)
    return {"perplexity": r["perplexity"], "accuracy": r["accuracy"], "answer": r["answer"], "seconds": r["seconds"]}


def case_command(case: Case) -> str:
    return "python benchmarks/bench_window.py --case " + " ".join(map(str, case))


def case_path(case: Case) -> Path:
    kind, window, steps, act_bits, head_bits = case
    packed = f"-{cache_tag(act_bits)}" if act_bits < 16 else ""
    head = f"-h{head_bits}" if head_bits < 16 else ""  # names of runs with a 16-bit head stay as they were
    return RUNS / f"{kind}-w{window}{packed}{head}-{fidelity(steps).key()}.json"  # key: steps, lr, evaluation


def run_case(case: Case, threads: int) -> dict[str, Any]:
    """The case's result, from runs/ if it was measured with the same settings, else from a fresh process."""
    path = case_path(case)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass  # not measured yet (writes are atomic, so a file is whole or absent)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--case", *map(str, case)], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{case_command(case)} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(path.read_text())


def run_all(cases: list[Case], jobs: int) -> dict[Case, dict[str, Any]]:
    """Every case, ``jobs`` at a time; the first failure cancels what has not started and stops."""
    threads = max(1, len(os.sched_getaffinity(0)) // jobs)
    results: dict[Case, dict[str, Any]] = {}
    with ThreadPoolExecutor(jobs) as pool, tqdm(total=len(cases), desc="tune + evaluate") as bar:
        pending = {pool.submit(run_case, c, threads): c for c in cases}
        while pending:
            done, _ = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                case = pending.pop(future)
                if future.exception() is not None:
                    # Say it now: leaving the pool still waits for the cases already running.
                    tqdm.write(f"error: {future.exception()}", file=sys.stderr)
                    for other in pending:
                        other.cancel()
                    raise SystemExit(1)
                results[case] = future.result()
                bar.update()
    return results


# --- the page ----------------------------------------------------------------------------------

def simulate_full(plans: dict[str, Plan], hw_path: str) -> tuple[pd.DataFrame, Policy, int]:
    """One simulated step of the full method for each named plan against vanilla's: a table
    indexed by name (vanilla_ms, hw, latency_ms, speedup, memory_mib, memory_saving), the LUC
    policy (the first plan's; the window and activation bits do not change it) and the model's
    layer count."""
    from dse.hardware import TraceBank
    from dse.reproduce import make_policy, simulate_all
    from workloads.models import load_model

    loaded = load_model(MODEL, seed=0)
    n_layers = int(loaded.model.config.num_hidden_layers)
    if max(p.window for p in plans.values()) > n_layers:
        raise SystemExit(f"--windows: {max(p.window for p in plans.values())} layers is more than the model's {n_layers}")
    first = next(iter(plans.values()))
    policy = make_policy(loaded, first, data=None, progress=False)
    designs = {"vanilla": first.design("vanilla", n_layers)}
    designs.update({name: p.design("full", n_layers) for name, p in plans.items()})
    table = simulate_all(designs, policy, TraceBank(loaded, seq_len=256, batch=4), [hw_path]).set_index("config")
    table["vanilla_ms"] = float(table.loc["vanilla", "latency_ms"])
    return table.drop(index="vanilla")[["vanilla_ms", "hw", "latency_ms", "speedup", "memory_mib", "memory_saving"]], \
        policy, n_layers


def simulate(windows: list[int], act_bits: int, head_bits: int, hw_path: str) -> tuple[pd.DataFrame, bool]:
    """Speed-up and memory saving of the full method's step for each window (vanilla = 1), and
    whether the policy is the checkpoint's own grid (4 bits, groups of 32, nothing pruned, 8-bit head)."""
    table, policy, n_layers = simulate_full({f"w{w}": plan(w, act_bits, head_bits) for w in windows}, hw_path)
    on_grid = (policy.group_size == 32 and policy.head_bits in (8, 16)
               and all(lp.w_bits == 4 and lp.sparsity == 0 for lp in policy.layers.values()))
    rows = [{"window": w, "layers": f"{n_layers - w}-{n_layers - 1}", **table.loc[f"w{w}"].to_dict()} for w in windows]
    return pd.DataFrame(rows), on_grid


def meets(row: pd.Series) -> bool:
    return bool(row["speedup"] >= TARGETS["speedup"] and row["memory_saving"] >= TARGETS["memory_saving"]
                and row["ppl_gap_equal_time"] <= TARGETS["perplexity_gap"]
                and row["acc_change_equal_time"] >= -TARGETS["accuracy_drop"])


def figure(table: pd.DataFrame, path: Path) -> None:
    gap = TARGETS["perplexity_gap"] * 100
    fig = Figure(figsize=(11, 4))
    for ax, col, label in zip(fig.subplots(1, 2), ("speedup", "memory_saving"),
                              ("speed-up vs vanilla (simulated)", "memory saving vs vanilla (simulated)")):
        for when, marker in (("same_steps", "o"), ("equal_time", "s")):
            ax.plot(table[col], table[f"ppl_gap_{when}"] * 100, marker=marker, label=when.replace("_", " "))
        for _, r in table.iterrows():
            ax.annotate(f"w{r['window']}", (r[col], r["ppl_gap_equal_time"] * 100), textcoords="offset points",
                        xytext=(4, 4))
        ax.axvline(TARGETS[col], ls="--", c="k", lw=1)
        ax.axhline(gap, ls=":", c="k", lw=1)
        ax.set_xlabel(f"{label}; target {TARGETS[col]:g}x (dashed)")
        ax.set_ylabel(f"perplexity vs vanilla (%); target +{gap:g}% (dotted)")
        ax.legend()
    fig.suptitle("Adaptive window size: device cost against quality (SmolLM2-135M, full method, 4-bit)")
    io.save_figure(path, fig)


def page(table: pd.DataFrame, vanilla: dict[str, Any], untuned: dict[str, Any], command: str, cases: list[Case],
         on_grid: bool, act_bits: int, head_bits: int, stem: str) -> str:
    cols = ["window", "layers", "speedup", "memory_saving", "memory_mib", "ppl_same_steps", "ppl_gap_same_steps",
            "acc_same_steps", "equal_steps", "ppl_equal_time", "ppl_gap_equal_time", "acc_equal_time",
            "acc_change_equal_time", "meets_all"]
    best = table.loc[table["ppl_gap_equal_time"].idxmin()]
    device = f">= {TARGETS['speedup']:g}x speed-up, >= {TARGETS['memory_saving']:g}x memory saving"
    fast = table[(table["speedup"] >= TARGETS["speedup"]) & (table["memory_saving"] >= TARGETS["memory_saving"])]
    n_layers = int(table["layers"].iloc[0].split("-")[1]) + 1
    head = " and the 8-bit head" if head_bits == 8 else ""
    grid = (f" At sparsity 0, these 4-bit weights in groups of 32{head} reproduce the packaged checkpoint (Q4_1 "
            "layers, Q8_0 embedding), so weight compression costs no quality." if on_grid else "")
    packed = (f" Activations kept for backward are stored at {act_bits} bits with a bfloat16 scale per 64 values "
              "(workloads/tuning/actcomp.py; forward and evaluation exact)." if act_bits < 16 else "")
    lines = [
        "# Adaptive window size: how deep tuning must reach, and what that costs", "",
        f"Made by `{command}` (every number on this page).", "",
        f"Full method (top window of W layers, exit at the last layer, LUC 4-bit at sparsity 0 with a {head_bits}-bit "
        "tied head, "
        f"per-op scheduling, activations for backward at {act_bits} bits) "
        f"against vanilla LoRA (all {n_layers} layers, dense 16-bit). Speed-up and memory: one simulated tuning step "
        f"(batch 4 x 256) on {table['hw'].iloc[0]}. Quality: real tuning (LoRA rank 8, AdamW lr {LR} for every run, "
        f"batch 4 x 256, seed 0) and held-out evaluation (all eval windows, 200 multiple-choice items). *Same steps*: "
        f"{STEPS} steps, vanilla's budget. *Equal time*: as many steps as fit in vanilla's simulated {STEPS}-step "
        f"tuning time ({STEPS} x speed-up, rounded down).{grid}{packed} The rate is vanilla's pick and the equal-time pick "
        "of docs/results/tuning_lr.md; at 32 steps the adaptive pick there is 0.01 (headline_w4.md has that run).", "",
        f"Vanilla: perplexity {vanilla['perplexity']:.3f}, accuracy {vanilla['accuracy']:.3f} ({STEPS} steps). "
        f"Untuned: perplexity {untuned['perplexity']:.3f}, accuracy {untuned['accuracy']:.3f}.", "",
        io.markdown_table(table[cols]), "",
        f"![window]({stem}.png)", "",
        f"- Smallest perplexity gap: window {best['window']} at equal time, {best['ppl_gap_equal_time']:+.1%} vs "
        f"vanilla, at {best['speedup']:.2f}x speed-up and {best['memory_saving']:.2f}x memory saving.",
        (f"- Windows meeting both device targets ({device}): "
         + ", ".join(f"w{w} (equal-time perplexity {g:+.1%})" for w, g in zip(fast["window"], fast["ppl_gap_equal_time"])) + "."
         if len(fast) else f"- No window meets both device targets ({device})."),
        f"- Windows meeting every target ({device}, perplexity within {TARGETS['perplexity_gap']:.0%} and accuracy "
        f"within {TARGETS['accuracy_drop'] * 100:g} points at equal time): "
        f"{', '.join(f'w{w}' for w in table[table['meets_all']]['window']) or 'none'}.", "",
        "## Commands of the measurements", "",
        "Each ran in a fresh process (results kept in runs/bench_window/):", "",
        "```sh", *[case_command(c) for c in cases], "```", "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--windows", type=int, nargs="+", default=[4, 8, 12, 15],
                   help="window sizes, layers at the top of the model (default: %(default)s)")
    p.add_argument("--act-bits", type=int, default=8,
                   help="bits of the activations the full method keeps for backward, 2..8 or 16 = as computed "
                   "(default: %(default)s)")
    p.add_argument("--head-bits", type=int, default=8, choices=(8, 16),
                   help="bits of the tied embedding / LM head: 8 = the checkpoint's Q8_0 grid, 16 = unquantized "
                   "(default: %(default)s)")
    p.add_argument("--hw", default="hwconfigs/edge_llm.yaml", help="hardware config (default: %(default)s)")
    p.add_argument("--md", default=None,
                   help="page to write; the figure and JSON go beside it (default: docs/results/window.md)")
    p.add_argument("--jobs", type=int, default=1,
                   help="measurements at once, each on cores/jobs torch threads (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the table as JSON instead of the page")
    p.add_argument("--case", nargs=5, metavar=("KIND", "WINDOW", "STEPS", "ACT_BITS", "HEAD_BITS"),
                   help=f"measure one case only (KIND: {', '.join(KINDS)}) and keep it in runs/bench_window/")
    args = p.parse_args(argv)
    if args.case:
        kind, (window, steps, act_bits, head_bits) = args.case[0], map(int, args.case[1:])
        if kind not in KINDS:
            p.error(f"--case: unknown kind '{kind}' (use {', '.join(KINDS)})")
        case = (kind, window, steps, act_bits, head_bits)
        io.write_json(case_path(case), measure_case(*case))
        return 0
    windows = sorted(set(args.windows))
    if windows[0] < 1 or args.jobs < 1:
        p.error("--windows and --jobs must be positive")
    if args.act_bits not in ACT_BITS:
        p.error(f"--act-bits must be 2..8 or 16 (got {args.act_bits})")
    if not Path(args.hw).is_file():
        p.error(f"--hw: no such file {args.hw}")
    RUNS.mkdir(parents=True, exist_ok=True)
    sim_table, on_grid = simulate(windows, args.act_bits, args.head_bits, args.hw)
    equal = {int(r["window"]): equal_time_steps(STEPS, r["vanilla_ms"], r["latency_ms"]) for _, r in sim_table.iterrows()}
    cases: list[Case] = list(dict.fromkeys(
        [UNTUNED, VANILLA] + [("full", w, s, args.act_bits, args.head_bits) for w in windows for s in (STEPS, equal[w])]))
    results = run_all(cases, args.jobs)
    untuned, vanilla = results[UNTUNED], results[VANILLA]
    rows = []
    for _, r in sim_table.iterrows():
        w = int(r["window"])
        same, eq = (results[("full", w, s, args.act_bits, args.head_bits)] for s in (STEPS, equal[w]))
        rows.append({**r.to_dict(), "ppl_same_steps": same["perplexity"],
                     "ppl_gap_same_steps": same["perplexity"] / vanilla["perplexity"] - 1,
                     "acc_same_steps": same["accuracy"], "equal_steps": equal[w], "ppl_equal_time": eq["perplexity"],
                     "ppl_gap_equal_time": eq["perplexity"] / vanilla["perplexity"] - 1,
                     "acc_equal_time": eq["accuracy"], "acc_change_equal_time": eq["accuracy"] - vanilla["accuracy"]})
    table = pd.DataFrame(rows)
    table["meets_all"] = table.apply(meets, axis=1)
    command = " ".join(["python benchmarks/bench_window.py", *(sys.argv[1:] if argv is None else argv)])
    doc = Path(args.md) if args.md else DOC
    figure(table, doc.with_suffix(".png"))
    io.write_text(doc, page(table, vanilla, untuned, command, cases, on_grid, args.act_bits, args.head_bits,
                            doc.stem))
    io.write_json(doc.with_suffix(".json"), {"command": command, "vanilla": vanilla, "untuned": untuned,
                                             "rows": table.to_dict("records")})
    print(table.to_json(orient="records") if args.json else doc.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
