"""Adaptive layer tuning vs vanilla LoRA on the real model: host step time and peak memory, and
held-out quality after the same number of steps; writes docs/results/tuning.md and its figures.

    python benchmarks/bench_tuning.py --work /tmp/bench_tuning

Every number comes from a command run in a fresh process (listed in the report):

1. ``python -m workloads.evaluate`` on the untuned model (same eval windows and items);
2. ``python -m workloads.tune --method vanilla|adaptive`` for quality (tuning + evaluation);
3. ``python -m workloads.tune --no-eval`` again per method, one at a time, for step time and
   peak resident memory (the quality runs may overlap each other; these never do).

With ``--reuse``, a step whose JSON already exists in ``--work`` is not run again.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "results" / "tuning.md"
MIB = 2**20


def run(cmd: list[str], out: Path, *, reuse: bool) -> dict[str, Any]:
    """Run one CLI (JSON on stdout) in a fresh process, keep its JSON in ``out``."""
    if reuse and out.is_file() and out.stat().st_size > 0:
        return json.loads(out.read_text())
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    out.write_text(proc.stdout)
    return json.loads(proc.stdout)


def commands(args: argparse.Namespace) -> dict[str, list[str]]:
    py = [sys.executable, "-m"]
    model = ["--model", args.model, "--threads", str(args.threads)]
    ev = ["--eval-max-windows", str(args.eval_windows), "--mc-items", str(args.mc_items)]
    tune = py + ["workloads.tune"] + model + ["--json"]
    cmds = {
        "untuned": py + ["workloads.evaluate"] + model + ["--seq-len", "256", "--max-windows", str(args.eval_windows),
                                                          "--mc-items", str(args.mc_items), "--json"],
        "timing-vanilla": tune + ["--method", "vanilla", "--steps", str(args.timing_steps), "--no-eval"],
        # Round robin, so every window of the schedule is timed.
        "timing-adaptive": tune + ["--method", "adaptive", "--window", str(args.window), "--schedule", "round_robin",
                                   "--steps", str(2 * args.timing_steps + 1), "--no-eval"],
        "timing-adaptive-top": tune + ["--method", "adaptive", "--window", str(args.top_window), "--exits",
                                       str(args.top_exit), "--steps", str(args.timing_steps), "--no-eval"],
    }
    for name, extra in (("vanilla", ["--method", "vanilla"]),
                        ("adaptive", ["--method", "adaptive", "--window", str(args.window)]),
                        ("adaptive-top", ["--method", "adaptive", "--window", str(args.top_window), "--exits",
                                          str(args.top_exit)])):
        cmds[f"quality-{name}"] = tune + extra + ["--steps", str(args.steps), "--out",
                                                  str(args.work / f"adapters-{name}")] + ev
    return cmds


def per_exit_seconds(res: dict[str, Any]) -> dict[int, float]:
    """Median step time per exit layer, the first step (warm-up) left out."""
    by_exit: dict[int, list[float]] = {}
    for e, s in list(zip(res["step_exits"], res["step_seconds_all"]))[1:]:
        by_exit.setdefault(e, []).append(s)
    return {e: statistics.median(v) for e, v in sorted(by_exit.items())}


def figures(results: dict[str, dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for method in ("vanilla", "adaptive"):
        res = results[f"quality-{method}"]
        ax.plot(range(1, len(res["losses"]) + 1), res["losses"], marker="o", ms=3, label=method)
    ax.set_xlabel("tuning step")
    ax.set_ylabel("training loss at the trained exit (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(DOC.parent / "tuning_loss.png", dpi=120)
    names.append("tuning_loss.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    van, ada = results["timing-vanilla"], results["timing-adaptive"]
    labels = ["vanilla"] + [f"adaptive\nexit {e}" for e in per_exit_seconds(ada)]
    times = [van["step_seconds"]] + list(per_exit_seconds(ada).values())
    axes[0].bar(labels, times, color=["C0"] + ["C1"] * (len(labels) - 1))
    axes[0].set_ylabel("seconds per step (median)")
    mem = [van["peak_memory_bytes"] / MIB, ada["peak_memory_bytes"] / MIB]
    base = [van["baseline_rss_bytes"] / MIB, ada["baseline_rss_bytes"] / MIB]
    axes[1].bar(["vanilla", "adaptive"], mem, color=["C0", "C1"], label="peak RSS")
    axes[1].bar(["vanilla", "adaptive"], base, color="grey", alpha=0.6, label="RSS after set-up")
    axes[1].set_ylabel("MiB")
    axes[1].legend()
    for ax in axes:
        ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(DOC.parent / "tuning_step.png", dpi=120)
    names.append("tuning_step.png")
    plt.close(fig)
    return names


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def report(args: argparse.Namespace, cmds: dict[str, list[str]], results: dict[str, dict[str, Any]]) -> str:
    van_t, ada_t = results["timing-vanilla"], results["timing-adaptive"]
    van_q, ada_q, untuned = results["quality-vanilla"], results["quality-adaptive"], results["untuned"]
    exit_secs = per_exit_seconds(ada_t)
    ada_mean = statistics.mean(exit_secs.values())
    lines = [
        "# Adaptive layer tuning vs vanilla LoRA (SmolLM2-135M, this CPU)",
        "",
        f"Produced by `python benchmarks/bench_tuning.py` ({time.strftime('%Y-%m-%d')}); every number below "
        "comes from one of these commands, each run in a fresh process:",
        "",
        "```sh",
    ]
    lines += [" ".join(c[1:]).replace(str(args.work), "$WORK") for c in cmds.values()]
    lines += ["```", ""]
    lines += [
        "## One tuning step on the host (batch 4 x 256 tokens)",
        "",
        "Step time is the median over the timed steps after one warm-up step. Peak memory is the "
        "process's peak resident set (`VmHWM`), reset after the model and adapters are set up (so model "
        "loading is not in it) but not reduced by anything: it includes the Python/torch runtime and the "
        "whole float32 model. Torch's own accounting sums the distinct storages autograd saved for the "
        "backward pass (`saved_tensors_hooks`), the parameters, one step's gradients and the AdamW state.",
        "",
        "| | vanilla | adaptive |",
        "|---|---|---|",
        f"| seconds per step (median) | {van_t['step_seconds']:.2f} | {statistics.median(list(exit_secs.values())):.2f} "
        f"(per exit: {', '.join(f'{e}: {s:.2f}' for e, s in exit_secs.items())}) |",
        f"| peak RSS during the steps (MiB) | {van_t['peak_memory_bytes'] / MIB:.0f} | {ada_t['peak_memory_bytes'] / MIB:.0f} |",
        f"| RSS after set-up, before the first step (MiB) | {van_t['baseline_rss_bytes'] / MIB:.0f} | "
        f"{ada_t['baseline_rss_bytes'] / MIB:.0f} |",
        f"| peak minus set-up (MiB) | {(van_t['peak_memory_bytes'] - van_t['baseline_rss_bytes']) / MIB:.0f} | "
        f"{(ada_t['peak_memory_bytes'] - ada_t['baseline_rss_bytes']) / MIB:.0f} |",
    ]
    for key, label in (("saved_for_backward", "saved for backward"), ("parameters", "parameters"),
                       ("gradients", "gradients (one step)"), ("optimizer", "AdamW state")):
        lines.append(f"| torch: {label} (MiB) | {van_t['torch_bytes'][key] / MIB:.1f} | "
                     f"{ada_t['torch_bytes'][key] / MIB:.1f} |")
    lines += [
        f"| trainable parameters (per step) | {van_t['trainable_params_per_step']:,} | "
        f"{ada_t['trainable_params_per_step']:,} |",
        f"| 1-minute load average (start, end) | {van_t['load_avg_1min']} | {ada_t['load_avg_1min']} |",
        "",
    ]
    mem_ratio = van_t["peak_memory_bytes"] / ada_t["peak_memory_bytes"]
    inc_ratio = (van_t["peak_memory_bytes"] - van_t["baseline_rss_bytes"]) / max(
        1, ada_t["peak_memory_bytes"] - ada_t["baseline_rss_bytes"])
    saved_ratio = van_t["torch_bytes"]["saved_for_backward"] / ada_t["torch_bytes"]["saved_for_backward"]
    time_ratio = van_t["step_seconds"] / ada_mean
    lines += [
        f"- Peak RSS: vanilla / adaptive = **{mem_ratio:.2f}x** (target >= 3x); above the set-up RSS "
        f"{inc_ratio:.2f}x; tensors saved for backward {saved_ratio:.1f}x.",
        f"- Step time: vanilla / adaptive (mean over the schedule's exits) = **{time_ratio:.2f}x** "
        "(target >= 2x); per exit from "
        f"{van_t['step_seconds'] / max(exit_secs.values()):.2f}x (deepest) to "
        f"{van_t['step_seconds'] / min(exit_secs.values()):.2f}x (shallowest).",
        "",
    ]
    lines += [
        f"## Held-out quality after {args.steps} tuning steps",
        "",
        f"Tuning split windows of 256 tokens, batch 4, AdamW lr {van_q['config']['lr']}, LoRA rank "
        f"{van_q['config']['rank']} alpha {van_q['config']['alpha']}, seed 0. Evaluation: the first "
        f"{untuned['windows']} non-overlapping 256-token windows of the eval split ({untuned['tokens']} predicted "
        f"tokens) and the first {untuned['mc_items']} 4-way continuation items (seed 0), the same for every row.",
        "",
        "| model | perplexity | accuracy |",
        "|---|---|---|",
        f"| untuned | {fmt(untuned['perplexity'])} | {fmt(untuned['accuracy'])} |",
        f"| vanilla LoRA (all 30 layers) | {fmt(van_q['eval']['perplexity'])} | {fmt(van_q['eval']['accuracy'])} |",
    ]
    ev = ada_q["eval"]
    for layer, r in ev["per_exit"].items():
        lines.append(f"| adaptive, exit {layer} alone | {fmt(r['perplexity'])} | {fmt(r['accuracy'])} |")
    for rule, r in ev["vote"].items():
        mark = " (headline)" if ev["answer"] == f"vote:{rule}" else ""
        lines.append(f"| adaptive + vote `{rule}`{mark} | {fmt(r['perplexity'])} | {fmt(r['accuracy'])} |")
    ppl_gap = ev["perplexity"] / van_q["eval"]["perplexity"] - 1
    acc_gap = (ev["accuracy"] - van_q["eval"]["accuracy"]) * 100
    lines += [
        "",
        f"- Adaptive + voting (`{ev['answer']}`) vs vanilla: perplexity {ppl_gap * 100:+.1f}% (target within 5%), "
        f"accuracy {acc_gap:+.1f} points (target within 2).",
        f"- Against the untuned model: vanilla perplexity {van_q['eval']['perplexity'] / untuned['perplexity'] * 100 - 100:+.1f}%, "
        f"adaptive {ev['perplexity'] / untuned['perplexity'] * 100 - 100:+.1f}%.",
        f"- Adaptive windows {ada_q['windows']} (exits {ada_q['exits']}), schedule "
        f"`{ada_q['config']['schedule']}`; training losses per step are in the figure.",
        "",
    ]
    lines += [f"![{n}]({n})" for n in figures(results)]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--work", type=Path, default=Path("/tmp/bench_tuning"), help="folder for the runs' JSON")
    p.add_argument("--steps", type=int, default=16, help="tuning steps of the quality runs")
    p.add_argument("--timing-steps", type=int, default=4, help="vanilla steps timed (adaptive: 2x + 1)")
    p.add_argument("--window", type=int, default=4, help="adaptive (paper-style): layers per window")
    p.add_argument("--top-window", type=int, default=8, help="adaptive-top: layers in its one window")
    p.add_argument("--top-exit", type=int, default=29, help="adaptive-top: its exit layer")
    p.add_argument("--notes", type=Path, default=None, help="markdown appended to the report")
    p.add_argument("--eval-windows", type=int, default=24)
    p.add_argument("--mc-items", type=int, default=80)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="keep the JSON of runs already in --work")
    p.add_argument("--report-only", action="store_true", help="only rebuild the report from --work")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cmds = commands(args)
    results = {}
    for name, cmd in cmds.items():
        path = args.work / f"{name}.json"
        results[name] = json.loads(path.read_text()) if args.report_only else run(cmd, path, reuse=args.reuse)
    text = report(args, cmds, results)
    if args.notes:
        text += "\n" + args.notes.read_text()
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
