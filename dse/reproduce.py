"""The headline experiment on one footing: the method against vanilla and the baselines an edge
user picks today, all under the same scheduler, cost model, data and evaluation.

    python -m dse.reproduce --hw hwconfigs/edge_llm.yaml --json

Configurations (``dse.headline.configs``): vanilla, QLoRA, top-W LoRA, LUC, adaptive,
LUC + adaptive and the full method, each simulated from real traces on every hardware config
(every operation of the step charged) and tuned and evaluated for real over several seeds, with
learning curves along vanilla's and the full method's runs. Two ablation rows run one fixed
dataflow: the full method (the scheduler's own gain) and vanilla (the paper-style reading).
Writes ``--md`` (default docs/results/headline.md), its two figures and ``headline.json``.
"""
from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

import sim
from dse import io
from dse.hardware import TraceBank, design_windows, simulate_design
from dse.headline import page
from dse.headline.point import Chosen, from_study
from dse.headline.configs import ABLATIONS, CONFIGS, Plan, ablation_name, make_policy, qlora_policy
from dse.headline.quality import (METRICS, QualityRuns, RunRequest, at_steps, compare, mean_curve, seed_stats,
                                  separation, time_to_quality)
from dse.measure import EVAL_SEED, Fidelity
from dse.space import Design
from workloads.errors import UserError, cli_main
from workloads.evaluate import evaluate, positive_float, positive_int
from workloads.luc import allocate as luc_allocate
from workloads.luc.policy import Policy
from workloads.models import load_model
from workloads.tuning.actcomp import check_bits

__all__ = ["CONFIGS", "Plan", "build_parser", "equal_time_steps", "fused_variant", "main", "simulate_all"]

CURVE_CONFIGS = ("vanilla", "qlora", "full")  # evaluated along their runs (learning curves)
# Flags that set the operating point (None: not given); --from-study sets them all.
POINT_FLAGS = ("sparsity", "bits", "rule", "prune", "quant", "group_size", "head_bits", "act_bits", "window", "exits",
               "vote", "dataflow")
DATAFLOWS = ("auto", "ws", "os", "is")


def equal_time_steps(steps: int, vanilla_s: float, method_s: float) -> int:
    """Steps of a method whose step takes ``method_s`` that fit in ``steps`` vanilla steps of
    ``vanilla_s`` (its simulated speed-up spent on tuning longer)."""
    return max(1, int(steps * vanilla_s / method_s))


def fused_variant(hw: sim.HwConfig) -> sim.HwConfig:
    """``hw`` with elementwise fusion (``vector.fusion: elementwise``): the sensitivity of the
    result to fusing elementwise work into the product that feeds it, named ``<name>_fused``."""
    return sim.apply_overrides(hw, {"vector.fusion": "elementwise", "name": f"{hw.name}_fused"})


def simulate_all(designs: dict[str, Design], policies: dict[str, Policy | None], bank: TraceBank,
                 hws: list[sim.HwConfig], *, ablations: dict[str, str]) -> pd.DataFrame:
    """One row per (hardware config, configuration): latency, vector time, memory, energy of one
    step. ``ablations`` maps an ablation row's name to the configuration it re-runs under its
    own design's dataflow."""
    rows = []
    for hw in hws:
        for name, design in designs.items():
            base = ablations.get(name, name)
            cost = simulate_design(design, policies[base], bank, hw)
            rows.append({"hw": hw.name, "config": name, "dataflow": design.dataflow, "ablation": name in ablations,
                         "latency_ms": cost.latency_s * 1e3, "vector_ms": cost.vector_s * 1e3,
                         "memory_mib": cost.peak_memory_bytes / 2**20, "energy_mj": cost.energy_j * 1e3,
                         "dram_mb": cost.dram_bytes / 1e6,
                         "fits": cost.fits, "utilization": cost.utilization})
    table = pd.DataFrame(rows)
    base = table[table["config"] == "vanilla"].set_index("hw")
    table["speedup"] = [base.loc[h, "latency_ms"] / v for h, v in zip(table["hw"], table["latency_ms"])]
    table["memory_saving"] = [base.loc[h, "memory_mib"] / v for h, v in zip(table["hw"], table["memory_mib"])]
    return table


def trained_lora_params(design: Design, bank: TraceBank) -> int:
    """LoRA parameters a run of ``design`` trains: the ``lora_weight`` rows of its windows'
    traces (the real step's tensor table, for any architecture), each tensor once."""
    n_layers = int(bank.loaded.model.config.num_hidden_layers)
    numel: dict[str, int] = {}
    for window in design_windows(design, n_layers):
        tensors = bank.get(design.tuning.method, window, design.tuning.act_bits,
                           translators=design.tuning.translators).tensors
        lora = tensors[tensors["kind"] == "lora_weight"]
        numel.update(zip(lora["name"], lora["numel"].astype(int)))
    return sum(numel.values())


def uncharged(bank: TraceBank, designs: dict[str, Design], vanilla_step: pd.Series, *, steps: int) -> dict[str, Any]:
    """Size of the device work the simulator leaves out, for the page: the optimizer's first,
    state-creating step zero-fills AdamW's two float32 moments (8 bytes) for every trained LoRA
    weight, once per run. ``vanilla_step`` is vanilla's simulated step on the main config
    (``dram_mb``: its DRAM traffic, MB); ``steps``: the run's length, over which the one-off
    fill is spread (``optimizer_init_share_of_step``: its per-step part over that traffic)."""
    trained = {n: trained_lora_params(d, bank) for n, d in designs.items()}
    zero_fill_mb = 2 * 4 * max(trained.values()) / 1e6
    per_step_mb = zero_fill_mb / max(steps, 1)
    return {"lora_params": trained, "optimizer_init_mb": zero_fill_mb, "optimizer_init_mb_per_step": per_step_mb,
            "optimizer_init_share_of_step": per_step_mb / vanilla_step["dram_mb"] if vanilla_step["dram_mb"] else None}


def _luc_policy(loaded: Any, chosen: Chosen, names: list[str], *, data: str | None, n_layers: int) -> Policy | None:
    """The LUC policy of the configurations that compress: the trial's own (a study's point) or
    one allocated from the sensitivity table (a point set by hand)."""
    if not {"luc", "luc+adaptive", "full"} & set(names):
        return None
    if chosen.source.get("how") == "study":
        return chosen.policy.validate(n_layers, where="the trial's policy") if chosen.policy is not None else None
    return make_policy(loaded, chosen.plan, data=data, progress=True)


def build_parser() -> argparse.ArgumentParser:
    d = Plan()
    p = argparse.ArgumentParser(
        prog="python -m dse.reproduce", description=__doc__.split("\n\n")[0],
        epilog="Example: python -m dse.reproduce --hw hwconfigs/edge_llm.yaml --seeds 0 1 2 --json "
               "(real model; about 2 hours on 2 cores, resumable: finished runs are cached)")
    p.add_argument("--hw", default="hwconfigs/edge_llm.yaml", help="main hardware config (default: %(default)s)")
    p.add_argument("--all-hw", default="hwconfigs/*.yaml", help="glob of configs for the last table (default: %(default)s)")
    p.add_argument("--model", default="smollm2-135m", help="model (default: %(default)s)")
    p.add_argument("--data", default=None, help="text corpus (default: the built-in Python documentation)")
    p.add_argument("--sparsity", type=float, default=None, help=f"LUC average sparsity, 0..1 (default: {d.sparsity})")
    p.add_argument("--bits", type=float, default=None, help=f"LUC average weight bits (default: {d.bits})")
    p.add_argument("--rule", default=None, choices=luc_allocate.ALLOCATION_RULES, help=f"LUC allocation rule (default: {d.rule})")
    p.add_argument("--prune", default=None, help=f"pruning method (default: {d.prune})")
    p.add_argument("--quant", default=None, help=f"quantization method (default: {d.quant})")
    p.add_argument("--group-size", type=positive_int, default=None,
                   help=f"quantization group, weights (default: {d.group_size})")
    p.add_argument("--head-bits", type=int, default=None,
                   help=f"LUC bits of the tied embedding / LM head, 2..8 or 16 (default: {d.head_bits})")
    p.add_argument("--act-bits", type=int, default=None,
                   help="full method: bits of the activations kept for backward, 2..8 or 16 = as computed "
                   f"(default: {d.act_bits})")
    p.add_argument("--window", type=positive_int, default=None,
                   help=f"adaptive window and top-W LoRA depth, layers (default: {d.window})")
    p.add_argument("--exits", type=positive_int, default=None, help=f"adaptive exits (default: {d.exits})")
    p.add_argument("--vote", default=None, help=f"full method's voting rule (default: {d.vote})")
    p.add_argument("--dataflow", default=None, choices=DATAFLOWS,
                   help="the one scheduler of every configuration: auto = per-op mapping search, or one fixed "
                   f"dataflow for all (default: {d.dataflow})")
    p.add_argument("--from-study", metavar="URL", default=None,
                   help="take the operating point (compression and its per-layer policy, window, exits, schedule, "
                   "vote, activation and head bits, translators, dataflow) from a trial of a dse.search study in "
                   "this storage (its --storage, e.g. sqlite:///runs/study.db); needs --trial, excludes the point "
                   "flags above (default: the point set by hand)")
    p.add_argument("--trial", type=int, default=None, help="with --from-study: the trial's number (trials.csv, "
                   "front.csv of the search)")
    p.add_argument("--study-name", default=None,
                   help="with --from-study: the study (default: the only study in the storage)")
    p.add_argument("--ablation-df", default=d.ablation_df, choices=DATAFLOWS[1:],
                   help="fixed dataflow of the ablation rows (default: %(default)s)")
    p.add_argument("--steps", type=positive_int, default=32,
                   help="tuning steps of the equal-steps comparison (default: %(default)s)")
    p.add_argument("--curve-steps", type=positive_int, nargs="+", default=[8, 16, 32, 64],
                   help="step counts at which vanilla, QLoRA and the full method are evaluated along one run "
                   "(default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds (data order and LoRA init), at least 3 for a mean ± std (default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=4, help="sequences per step (default: %(default)s)")
    p.add_argument("--seq-len", type=positive_int, default=256, help="tokens per sequence (default: %(default)s)")
    p.add_argument("--lr", type=positive_float, default=0.005,
                   help="LoRA learning rate of every configuration (default: %(default)s, tuning_lr.md)")
    p.add_argument("--eval-windows", type=positive_int, default=None, help="held-out windows (default: all)")
    p.add_argument("--mc-items", type=int, default=200, help="multiple-choice items (default: %(default)s)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="which configurations (default: all)")
    p.add_argument("--md", default="docs/results/headline.md", help="markdown to write (default: %(default)s)")
    p.add_argument("--runs", type=Path, default=None,
                   help="folder of finished tuning runs (one JSON per run, named by what determines it: weights "
                   "digest, tuning, fidelity, seed); runs found there are not repeated, new ones are added "
                   "(default: the user cache folder's headline/)")
    p.add_argument("--skip-equal-time", action="store_true",
                   help="do not tune the full method for the steps that fit in vanilla's simulated time (the page "
                   "gives the count and says it was not measured; time to quality still bounds it)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    return p


def _check(args: argparse.Namespace) -> tuple[list[str], Chosen]:
    """Every refusal before any work (one line each); the configurations and the operating point."""
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    missing = [n for n in ("vanilla", "full") if n not in names]
    if unknown or missing:
        what = f"unknown configuration(s) {', '.join(unknown)}" if unknown else f"{' and '.join(missing)} missing"
        raise UserError(f"--configs: {what}; list names from {', '.join(CONFIGS)}, vanilla and full included")
    if len(set(args.seeds)) != len(args.seeds) or any(s < 0 for s in args.seeds):
        raise UserError(f"--seeds must be distinct non-negative integers (got {args.seeds})")
    if args.mc_items < 0:
        raise UserError(f"--mc-items must be >= 0 (got {args.mc_items})")
    chosen = choose_point(args)
    check_bits(chosen.plan.act_bits)
    Policy({}, head_bits=chosen.plan.head_bits).validate(where="--head-bits")  # now, not after minutes of profiling
    return names, chosen


def choose_point(args: argparse.Namespace) -> Chosen:
    """The operating point: the plan's defaults with the point flags given, or a study's trial
    (``--from-study URL --trial N``), never both."""
    given = {f: getattr(args, f) for f in POINT_FLAGS if getattr(args, f) is not None}
    if args.from_study is None:
        if args.trial is not None or args.study_name is not None:
            raise UserError("--trial and --study-name read a study: add --from-study URL (the search's --storage)")
        plan = replace(Plan(), ablation_df=args.ablation_df, **given)
        return Chosen(plan, None, {"how": "by hand", "flags": given})
    if given:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise UserError(f"{flag} conflicts with --from-study: the trial sets the operating point; drop {flag}")
    if args.trial is None:
        raise UserError("--from-study needs --trial N, the number of the trial to reproduce (the search's front.csv)")
    return from_study(args.from_study, args.trial, study_name=args.study_name, model=args.model,
                      base=Plan(ablation_df=args.ablation_df))


def _requests(names: list[str], designs: dict[str, Design], policies: dict[str, Policy | None], seeds: list[int],
              steps: int, curve: list[int], eq_steps: int | None) -> list[RunRequest]:
    reqs = []
    for seed in seeds:
        for name in names:
            points = {steps} | (set(curve) if name in CURVE_CONFIGS else set())
            mc = {steps}
            if name == "full" and eq_steps is not None:
                points.add(eq_steps)
                mc.add(eq_steps)
            reqs.append(RunRequest(name, designs[name].tuning, policies[name], seed, tuple(sorted(points)),
                                   tuple(sorted(mc))))
    return reqs


def _quality(runs: dict[tuple[str, int], dict[str, Any]], names: list[str], seeds: list[int], steps: int,
             eq_steps: int | None, eq_fit: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        def point(n: int, name: str = name) -> dict[str, Any]:
            pts = [at_steps(runs[name, s]["curve"], n) for s in seeds]
            return {m: seed_stats([p[m] for p in pts]) for m in METRICS}

        entry: dict[str, Any] = {"steps": steps, "at_steps": point(steps), "runs": sorted({runs[name, s]["key"] for s in seeds})}
        if name == "full":
            entry["equal_time_fit_steps"] = eq_fit
            if eq_steps is not None:
                entry["equal_time_steps"], entry["equal_time"] = eq_steps, point(eq_steps)
        out[name] = entry
    van = out["vanilla"]["at_steps"]
    for name in names:
        cur = out[name]["at_steps"]
        out[name]["vs_vanilla"] = {m: compare(cur[m]["per_seed"], van[m]["per_seed"]) for m in METRICS
                                   if None not in cur[m]["per_seed"] and None not in van[m]["per_seed"]}
    return out


def _notes(shared: dict[str, list[str]]) -> list[str]:
    same = list(dict.fromkeys(tuple(cfgs) for cfgs in shared.values() if len(cfgs) > 1))  # once, not per seed
    if not same:
        return []
    groups = "; ".join(" = ".join(c) for c in same)
    return [f"Runs shared by configurations that are the same computation (bit-identical starting weights, "
            f"checked by a digest of every parameter, and the same tuning): {groups}. Their quality is "
            "one measurement; their simulated steps differ (stored bits, trained depth).", ""]


@cli_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names, chosen = _check(args)
    start = time.perf_counter()
    plan = chosen.plan
    fid = Fidelity(steps=args.steps, batch_size=args.batch, seq_len=args.seq_len, lr=args.lr,
                   eval_windows=args.eval_windows or 10_000, mc_items=args.mc_items, split="eval", calib_windows=32)
    loaded = load_model(args.model, seed=0)
    n_layers = int(loaded.model.config.num_hidden_layers)
    luc = _luc_policy(loaded, chosen, names, data=args.data, n_layers=n_layers)
    policies: dict[str, Policy | None] = {n: luc if n in ("luc", "luc+adaptive", "full") else None for n in names}
    policies["qlora"] = qlora_policy(n_layers)
    designs = {name: plan.design(name, n_layers) for name in names}
    ablations = {ablation_name(n, plan.ablation_df): n for n in ABLATIONS if n in names and plan.dataflow != plan.ablation_df}
    for row, base in ablations.items():
        designs[row] = Design(designs[base].compression, designs[base].tuning, plan.ablation_df)
    bank = TraceBank(loaded, seq_len=256, batch=4)
    paths = {str(Path(p).resolve()): p for p in [*(sorted(glob.glob(args.all_hw)) or [args.hw]), args.hw]}
    main_config = sim.load_hw(args.hw)
    hws = [sim.load_hw(paths[k]) for k in sorted(paths)] + [fused_variant(main_config)]
    table = simulate_all(designs, {**policies, **{r: policies[b] for r, b in ablations.items()}}, bank, hws,
                         ablations=ablations)
    main_hw = main_config.name
    lat = table[table["hw"] == main_hw].set_index("config")["latency_ms"]
    eq_fit = equal_time_steps(args.steps, lat["vanilla"], lat["full"])

    quality_runs = QualityRuns(loaded, fid, data=args.data, root=args.runs)
    # Equal time is read where it was measured, if a run already has a checkpoint a step or two
    # short of what fits now (never more steps than fit: the reading can only favour vanilla).
    plain = _requests(["full"], designs, policies, args.seeds, args.steps, args.curve_steps, None)
    eq_steps = None if args.skip_equal_time else quality_runs.measured_near(plain, eq_fit) or eq_fit
    reqs = _requests(names, designs, policies, args.seeds, args.steps, args.curve_steps, eq_steps)
    runs = {(r.config, r.seed): quality_runs.run(r) for r in tqdm(reqs, desc="tune + evaluate (config x seed)")}
    untuned = evaluate(loaded, data=args.data, seq_len=fid.seq_len, max_windows=fid.eval_windows,
                       mc_items=fid.mc_items, seed=EVAL_SEED, progress=False)
    quality = _quality(runs, names, args.seeds, args.steps, eq_steps, eq_fit)
    step_s = {n: lat[n] / 1e3 for n in names}
    curves = {n: mean_curve([runs[n, s]["curve"] for s in args.seeds]).assign(
        time_s=lambda f, n=n: f["steps"] * step_s[n]).to_dict("records") for n in names if n in CURVE_CONFIGS}
    ttq = (time_to_quality([runs["vanilla", s]["curve"] for s in args.seeds],
                           [runs["full", s]["curve"] for s in args.seeds], steps=args.steps,
                           vanilla_step_s=step_s["vanilla"], method_step_s=step_s["full"]) if "full" in names else None)
    tuned = {m: [at_steps(runs["vanilla", s]["curve"], args.steps)[m] for s in args.seeds] for m in METRICS}
    md_path = Path(args.md)
    command = "python -m dse.reproduce " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {"command": command, "plan": plan.__dict__, "point": chosen.source, "fidelity": fid.__dict__, "seeds": args.seeds,
              "steps": args.steps, "main_hw": main_hw, "configs": names,
              "untuned": {k: untuned[k] for k in ("perplexity", "top1", "accuracy", "tokens")},
              "quality": quality, "time_to_quality": ttq, "curves": curves,
              "separation": separation(untuned, tuned, fid.mc_items),
              "hardware": table.to_dict("records"), "policy": luc.to_dict() if luc is not None else None,
              "uncharged": uncharged(bank, {n: designs[n] for n in names},
                                     table[(table["hw"] == main_hw) & (table["config"] == "vanilla")].iloc[0],
                                     steps=args.steps),
              "notes": _notes(quality_runs.shared), "runs": {f"{c}/{s}": r for (c, s), r in runs.items()}}
    figs = (md_path.stem + ".png", md_path.stem + "_curves.png")
    page.bars_figure(result, md_path.parent / figs[0])
    if ttq is not None:
        page.curve_figure(result, md_path.parent / figs[1])
    result["seconds"] = time.perf_counter() - start
    io.write_text(md_path, page.markdown(result, fig_bars=figs[0], fig_curve=figs[1]))
    io.write_json(md_path.with_suffix(".json"), result)
    print(json.dumps(result, default=_jsonable) if args.json else md_path.read_text())
    return 0


def _jsonable(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else str(value)


if __name__ == "__main__":
    sys.exit(main())
