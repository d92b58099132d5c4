"""The headline experiment: the method's pieces switched on one at a time, on the real model.

    python -m dse.reproduce --hw hwconfigs/edge_llm.yaml --json

Five configurations share one tuning budget (same steps, batch, sequence length, data):

============  ===========  =================  ========  =====================
name          compression  tuning             voting    dataflow
============  ===========  =================  ========  =====================
vanilla       dense 16-bit LoRA, all layers   --        fixed (--baseline-df)
luc           LUC policy   LoRA, all layers   --        fixed
adaptive      dense 16-bit adaptive windows   --        fixed
luc+adaptive  LUC policy   adaptive windows   --        fixed
full          LUC policy   adaptive windows   --vote    per-op scheduler
============  ===========  =================  ========  =====================

Each is compressed (if it has a policy), tuned and evaluated for real (held-out perplexity and
multiple-choice accuracy), and its tuning step is simulated from real traces on every hardware
config given. Writes ``--md`` (default docs/results/headline.md) with the tables, a figure and
the command, plus ``headline.json`` beside it.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
import pandas as pd  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

import sim  # noqa: E402
from dse import io  # noqa: E402
from dse.hardware import TraceBank, simulate_design  # noqa: E402
from dse.measure import Fidelity, measure  # noqa: E402
from dse.space import Compression, Design, Tuning  # noqa: E402
from workloads.errors import UserError, cli_main  # noqa: E402
from workloads.evaluate import positive_float, positive_int  # noqa: E402
from workloads.luc import allocate as luc_allocate  # noqa: E402
from workloads.luc.policy import Policy  # noqa: E402
from workloads.luc.sensitivity import profile_sensitivity  # noqa: E402
from workloads.models import LoadedModel, load_model  # noqa: E402
from workloads.tuning.actcomp import check_bits  # noqa: E402

CONFIGS = ("vanilla", "luc", "adaptive", "luc+adaptive", "full")
EQUAL_TIME = "full, equal time"  # the full method tuned for vanilla's simulated tuning time


@dataclass(frozen=True)
class Plan:
    """The knobs of the experiment (units in the comments)."""

    sparsity: float = 0.3  # LUC average sparsity
    bits: float = 4.0  # LUC average weight bits
    rule: str = "optimal"
    prune: str = "wanda"
    quant: str = "gptq"
    group_size: int = 32
    window: int = 15  # layers per adaptive window
    exits: int = 1  # adaptive exits (the top ones)
    vote: str = "max_conf"  # voting rule of the full method (with exits > 1)
    baseline_df: str = "ws"  # dataflow of every configuration but the full method
    head_bits: int = 8  # LUC: tied embedding / LM head (8 = the checkpoint's own Q8_0 grid, lossless)
    act_bits: int = 16  # full method: bits of the activations kept for backward (16: as computed)

    def design(self, name: str, num_layers: int) -> Design:
        luc = "luc" in name or name == "full"
        adaptive = "adaptive" in name or name == "full"
        comp = Compression(self.sparsity, self.bits, "unstructured", self.rule) if luc else Compression(0.0, 16.0)
        full = name == "full"
        tuning = (Tuning("adaptive", window=self.window, exits=self.exits, vote=self.vote if full else "max_conf",
                         act_bits=self.act_bits if full else 16)
                  if adaptive else Tuning("vanilla", window=num_layers, exits=1))
        return Design(comp, tuning, "auto" if name == "full" else self.baseline_df)


def make_policy(loaded: LoadedModel, plan: Plan, *, data: str | None, progress: bool) -> Policy:
    """The LUC policy of the plan, quantizing in the plan's groups and its head bits (the
    allocator sets neither)."""
    table = profile_sensitivity(loaded, data=data, prune=plan.prune, quant=plan.quant, group_size=plan.group_size,
                                progress=progress)
    return replace(luc_allocate.allocate(table, plan.sparsity, plan.bits, rule=plan.rule), group_size=plan.group_size,
                   head_bits=plan.head_bits)


def equal_time_steps(steps: int, vanilla_s: float, method_s: float) -> int:
    """Steps of a method whose step takes ``method_s`` that fit in ``steps`` vanilla steps of
    ``vanilla_s`` (its simulated speed-up spent on tuning longer)."""
    return max(1, int(steps * vanilla_s / method_s))


def simulate_all(designs: dict[str, Design], policy: Policy, bank: TraceBank, hw_paths: list[str]) -> pd.DataFrame:
    rows = []
    for path in hw_paths:
        hw = sim.load_hw(path)
        for name, design in designs.items():
            cost = simulate_design(design, policy if design.compression.avg_bits < 16 else None, bank, hw)
            rows.append({"hw": hw.name, "config": name, "latency_ms": cost.latency_s * 1e3,
                         "memory_mib": cost.peak_memory_bytes / 2**20, "energy_mj": cost.energy_j * 1e3,
                         "fits": cost.fits, "utilization": cost.utilization})
    table = pd.DataFrame(rows)
    base = table[table["config"] == "vanilla"].set_index("hw")
    table["speedup"] = table.apply(lambda r: base.loc[r["hw"], "latency_ms"] / r["latency_ms"], axis=1)
    table["memory_saving"] = table.apply(lambda r: base.loc[r["hw"], "memory_mib"] / r["memory_mib"], axis=1)
    return table


def figure(table: pd.DataFrame, quality: pd.DataFrame, hw_name: str, path: Path) -> None:
    t = table[table["hw"] == hw_name].set_index("config")
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    t["speedup"].plot.bar(ax=axes[0], color="tab:blue")
    axes[0].axhline(2.92, ls="--", c="k", lw=1, label="paper: 2.92x")
    axes[0].set_ylabel("speed-up vs vanilla (simulated)")
    t["memory_saving"].plot.bar(ax=axes[1], color="tab:green")
    axes[1].axhline(4.0, ls="--", c="k", lw=1, label="paper: 4x")
    axes[1].set_ylabel("memory saving vs vanilla")
    quality.set_index("config")["perplexity"].plot.bar(ax=axes[2], color="tab:orange")
    axes[2].set_ylabel("held-out perplexity (measured)")
    for ax in axes[:2]:
        ax.legend()
    for ax in axes:
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"SmolLM2-135M tuning step on {hw_name}")
    io.save_figure(path, fig)


def markdown(command: str, plan: Plan, fid: Fidelity, quality: pd.DataFrame, table: pd.DataFrame, hw_name: str,
             fig_name: str, untuned: dict[str, Any]) -> str:
    main = table[table["hw"] == hw_name].merge(quality, on="config")
    lrs = " / ".join(f"{lr} ({', '.join(g['config'])})" for lr, g in quality[quality["config"] != EQUAL_TIME].groupby("lr"))
    cols = ["config", "latency_ms", "speedup", "memory_mib", "memory_saving", "energy_mj", "perplexity", "accuracy"]
    lines = [
        "# Headline: the method against vanilla LoRA tuning",
        "",
        f"Command (all numbers on this page): `{command}`",
        "",
        f"Model SmolLM2-135M; tuning budget for every configuration: {fid.steps} steps of {fid.batch_size} x "
        f"{fid.seq_len} tokens from the tuning split, LoRA lr {lrs}; evaluation on the held-out `eval` split "
        f"({int(quality['tokens'].iloc[0])} predicted tokens in windows of {fid.seq_len}, {fid.mc_items} "
        "multiple-choice items). Latency, memory and energy are of one simulated tuning step "
        f"(traced from real torch steps at batch 4 x 256; the adaptive configurations tune {plan.window}-layer "
        "windows, the others all layers).",
        "",
        f"LUC policy: average sparsity {plan.sparsity}, average {plan.bits} bits, rule `{plan.rule}`, "
        f"{plan.prune} + {plan.quant}, group {plan.group_size}; tied embedding / LM head at {plan.head_bits} bits"
        + (" (the checkpoint's own Q8_0 grid: unchanged)" if plan.head_bits == 8 else "")
        + f". Adaptive: window {plan.window}, {plan.exits} exit(s)"
        + (f"; the full method votes by `{plan.vote}`" if plan.exits > 1 else "")
        + "; the full method uses the per-op dataflow scheduler"
        + (f" and keeps the activations for backward at {plan.act_bits} bits (packing is elementwise work the "
           "simulator, which models matrix products, does not charge: it buys memory, not time)"
           if plan.act_bits < 16 else "")
        + f"; the others use `{plan.baseline_df}`.",
        "",
        f"Untuned model on the same evaluation: perplexity {untuned['perplexity']:.3f}"
        + (f", accuracy {untuned['accuracy']:.3f}." if untuned.get("accuracy") is not None else "."),
        "",
        *same_as_vanilla(quality, plan),
        f"## On {hw_name}",
        "",
        io.markdown_table(main[cols]),
        "",
        f"![headline]({fig_name})",
        "",
        *equal_time_section(quality, table, hw_name),
        "## On every hardware config",
        "",
        io.markdown_table(table[["hw", "config", "latency_ms", "speedup", "memory_mib", "memory_saving", "energy_mj",
                                 "fits"]]),
        "",
    ]
    return "\n".join(lines)


def same_as_vanilla(quality: pd.DataFrame, plan: Plan) -> list[str]:
    """Say why LUC alone measures exactly vanilla's quality, when it does (a reader would suspect
    a bug): the checkpoint is de-quantized Q4_1, so 4-bit groups of 32 reproduce its weights."""
    q = quality.set_index("config")
    if "luc" not in q.index or plan.sparsity > 0 or q.loc["luc", "perplexity"] != q.loc["vanilla", "perplexity"]:
        return []
    return [f"LUC alone measures exactly vanilla's quality: at sparsity 0 its {plan.bits:g}-bit weights in groups of "
            f"{plan.group_size} land on the checkpoint's own grid (the packaged model is Q4_1: 4 bits, groups of 32), "
            "so compression changes no weight; its gains are the device's.", ""]


def equal_time_section(quality: pd.DataFrame, table: pd.DataFrame, hw_name: str) -> list[str]:
    """Vanilla against the full method given the same simulated tuning time (its speed-up spent
    on more steps), the other honest reading of "faster at comparable accuracy"."""
    if EQUAL_TIME not in set(quality["config"]):
        return []
    lat = table[table["hw"] == hw_name].set_index("config")["latency_ms"]
    rows = quality[quality["config"].isin(["vanilla", "full", EQUAL_TIME])].copy()
    rows["step_ms"] = [lat["vanilla" if c == "vanilla" else "full"] for c in rows["config"]]
    rows["tuning_s"] = rows["steps"] * rows["step_ms"] / 1e3
    van = rows.set_index("config").loc["vanilla"]
    eq = rows.set_index("config").loc[EQUAL_TIME]
    acc = ("" if pd.isna(eq["accuracy"]) or pd.isna(van["accuracy"]) else
           f", accuracy {(eq['accuracy'] - van['accuracy']) * 100:+.1f} points (target within 2)")
    return [f"## At equal simulated tuning time on {hw_name}", "",
            f"The full method's step is {van['step_ms'] / eq['step_ms']:.2f}x shorter, so in vanilla's "
            f"{van['tuning_s']:.1f} s of simulated tuning it takes {int(eq['steps'])} steps instead of "
            f"{int(van['steps'])} (the same data stream, further along):", "",
            io.markdown_table(rows[["config", "steps", "lr", "step_ms", "tuning_s", "perplexity", "accuracy"]]), "",
            f"Perplexity {eq['perplexity'] / van['perplexity'] - 1:+.1%} vs vanilla (target within 5%){acc}.", ""]


def build_parser() -> argparse.ArgumentParser:
    d, f = Plan(), Fidelity(steps=32, batch_size=4, seq_len=256, eval_windows=10_000, mc_items=200, split="eval")
    p = argparse.ArgumentParser(prog="python -m dse.reproduce", description=__doc__.split("\n\n")[0] + " " +
                                "Vanilla, LUC only, adaptive only, LUC + adaptive and the full method, each tuned "
                                "and evaluated for real and simulated on every hardware config.")
    p.add_argument("--hw", default="hwconfigs/edge_llm.yaml", help="main hardware config (default: %(default)s)")
    p.add_argument("--all-hw", default="hwconfigs/*.yaml", help="glob of configs for the second table (default: %(default)s)")
    p.add_argument("--model", default="smollm2-135m", help="model (default: %(default)s)")
    p.add_argument("--data", default=None, help="text corpus (default: the built-in Python documentation)")
    p.add_argument("--sparsity", type=float, default=d.sparsity, help="LUC average sparsity (default: %(default)s)")
    p.add_argument("--bits", type=float, default=d.bits, help="LUC average weight bits (default: %(default)s)")
    p.add_argument("--rule", default=d.rule, choices=luc_allocate.RULES, help="LUC allocation rule (default: %(default)s)")
    p.add_argument("--prune", default=d.prune, help="pruning method (default: %(default)s)")
    p.add_argument("--quant", default=d.quant, help="quantization method (default: %(default)s)")
    p.add_argument("--group-size", type=positive_int, default=d.group_size, help="quantization group (default: %(default)s)")
    p.add_argument("--head-bits", type=int, default=d.head_bits,
                   help="LUC bits of the tied embedding / LM head, 2..8 or 16 (default: %(default)s)")
    p.add_argument("--act-bits", type=int, default=d.act_bits,
                   help="full method: bits of the activations kept for backward, 2..8 or 16 = as computed "
                   "(default: %(default)s)")
    p.add_argument("--window", type=positive_int, default=d.window, help="adaptive window, layers (default: %(default)s)")
    p.add_argument("--exits", type=positive_int, default=d.exits, help="adaptive exits (default: %(default)s)")
    p.add_argument("--vote", default=d.vote, help="full method's voting rule (default: %(default)s)")
    p.add_argument("--baseline-df", default=d.baseline_df, choices=("ws", "os", "is"),
                   help="fixed dataflow of the non-full configurations (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=f.steps, help="tuning steps (default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=f.batch_size, help="sequences per step (default: %(default)s)")
    p.add_argument("--seq-len", type=positive_int, default=f.seq_len, help="tokens per sequence (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=2e-3, help="LoRA learning rate (default: %(default)s)")
    p.add_argument("--adaptive-lr", type=positive_float, default=None,
                   help="learning rate of the adaptive configurations (default: --lr)")
    p.add_argument("--equal-time", action=argparse.BooleanOptionalAction, default=True,
                   help="also tune the full method for as many steps as fit in vanilla's simulated tuning time on "
                        "--hw (default: on)")
    p.add_argument("--equal-time-lr", type=positive_float, default=None,
                   help="AdamW learning rate of the LoRA adapters in that longer run, which may want a lower rate "
                        "than the one picked for --steps (default: the full method's)")
    p.add_argument("--eval-windows", type=positive_int, default=None, help="held-out windows (default: all)")
    p.add_argument("--mc-items", type=int, default=f.mc_items, help="multiple-choice items (default: %(default)s)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="which configurations (default: all five)")
    p.add_argument("--md", default="docs/results/headline.md", help="markdown to write (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or "vanilla" not in names:
        what = f"unknown configuration(s) {', '.join(unknown)}" if unknown else "vanilla is missing"
        raise UserError(f"--configs: {what}; list names from {', '.join(CONFIGS)}, vanilla included")
    if args.equal_time_lr is not None and not (args.equal_time and "full" in names):
        raise UserError("--equal-time-lr needs the equal-time run: --equal-time and 'full' in --configs")
    hw_paths = sorted(glob.glob(args.all_hw)) or [args.hw]
    check_bits(args.act_bits)
    Policy({}, head_bits=args.head_bits).validate(where="--head-bits")  # now, not after minutes of profiling
    plan = Plan(args.sparsity, args.bits, args.rule, args.prune, args.quant, args.group_size, args.window, args.exits,
                args.vote, args.baseline_df, args.head_bits, args.act_bits)
    fid = Fidelity(steps=args.steps, batch_size=args.batch, seq_len=args.seq_len, lr=args.lr,
                   eval_windows=args.eval_windows or 10_000, mc_items=args.mc_items, split="eval", calib_windows=32,
                   seed=args.seed)
    start = time.perf_counter()
    loaded = load_model(args.model, seed=args.seed)
    n_layers = int(loaded.model.config.num_hidden_layers)
    policy = make_policy(loaded, plan, data=args.data, progress=True)
    designs = {name: plan.design(name, n_layers) for name in names}
    bank = TraceBank(loaded, seq_len=256, batch=4)
    # One entry per file, however it is spelled (the glob and --hw may differ).
    paths = {str(Path(p).resolve()): p for p in [*hw_paths, args.hw]}
    table = simulate_all(designs, policy, bank, [paths[k] for k in sorted(paths)])
    main_hw = sim.load_hw(args.hw).name
    fids = {name: replace(fid, lr=args.adaptive_lr) if designs[name].tuning.method == "adaptive" and args.adaptive_lr is not None
            else fid for name in names}
    if args.equal_time and "full" in names:
        # The speed-up spent on tuning: as many full-method steps as fit in vanilla's simulated time.
        lat = table[table["hw"] == main_hw].set_index("config")["latency_ms"]
        designs[EQUAL_TIME] = designs["full"]
        fids[EQUAL_TIME] = replace(fids["full"], steps=equal_time_steps(fid.steps, lat["vanilla"], lat["full"]),
                                   lr=fids["full"].lr if args.equal_time_lr is None else args.equal_time_lr)
    quality_rows = []
    for name in tqdm(list(fids), desc="tune + evaluate"):
        design = designs[name]
        result = measure(loaded, design.tuning, fids[name], policy=policy if design.compression.avg_bits < 16 else None,
                         data=args.data, progress=False)
        quality_rows.append({"config": name, "steps": fids[name].steps, "lr": fids[name].lr,
                             "perplexity": result["perplexity"], "accuracy": result["accuracy"],
                             "tokens": result["tokens"], "answer": result["answer"], "variants": result["variants"]})
    from workloads.evaluate import evaluate

    untuned = evaluate(loaded, data=args.data, seq_len=fid.seq_len, max_windows=fid.eval_windows,
                       mc_items=fid.mc_items, seed=fid.seed, progress=False)
    quality = pd.DataFrame(quality_rows)
    md_path = Path(args.md)
    fig_name = md_path.stem + ".png"
    figure(table, quality, main_hw, md_path.parent / fig_name)
    command = "python -m dse.reproduce " + " ".join(sys.argv[1:] if argv is None else argv)
    io.write_text(md_path, markdown(command, plan, fid, quality, table, main_hw, fig_name, untuned))
    result = {"command": command, "plan": plan.__dict__, "untuned": {k: untuned[k] for k in ("perplexity", "accuracy")},
              "quality": quality.drop(columns=["variants"]).to_dict("records"),
              "variants": {r["config"]: r["variants"] for r in quality_rows},
              "hardware": table.to_dict("records"), "policy": policy.to_dict(),
              "seconds": time.perf_counter() - start}
    io.write_json(md_path.with_suffix(".json"), result)
    print(json.dumps(result, default=str) if args.json else md_path.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
