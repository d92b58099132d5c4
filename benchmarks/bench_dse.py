"""Benchmark of the design-space exploration on the real model; writes docs/results/dse.md.

    python benchmarks/bench_dse.py                      # compare, predictor
    python benchmarks/bench_dse.py --sections predictor # one section

Sections:
- compare: NSGA-II, TPE and random search, 3 seeds each, 200 trials (python -m dse.compare),
  hypervolume at 50/100/200 trials, and the joint front against the sequential flow;
- variants: the default samplers without the accuracy budget (its ablation) and other sampler
  settings (NSGA-II population and mutation, NSGA-III, TPE, GP) at 100 trials, 3 seeds each,
  against random search's 200-trial hypervolume;
- predictor: the cheap accuracy predictor against real measurement (compress, tune briefly,
  evaluate on held-out text) for 24 designs drawn at random, Spearman rank correlation;
- hardware: the joint search (TPE, 200 trials) against the sequential flow on every config
  in hwconfigs/, to see where hardware-aware compression pays;

The README's main command from a cold start is timed by benchmarks/bench_cold_start.py
(docs/results/cold_start.md).

Results of each section are kept in runs/bench_dse/ so the page can be re-rendered.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import pandas as pd
from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
from scipy.stats import spearmanr  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402
from dse.hypervolume import PERPLEXITY_BUDGET, REFERENCE_POINT  # noqa: E402
from dse.measure import Fidelity, measure  # noqa: E402
from dse.pipeline import SearchSettings, set_up  # noqa: E402
from dse.space import ALLOCATION_RULES, MAX_EXITS, PATTERNS, WINDOWS, Compression, Design, Tuning  # noqa: E402
from workloads.errors import UserError  # noqa: E402
from workloads.luc.policy import Policy  # noqa: E402

RUNS = ROOT / "runs" / "bench_dse"
DOC = ROOT / "docs" / "results" / "dse.md"
COMPARE_ARGS = ["--trials", "200", "--samplers", "nsga2,tpe,random", "--seeds", "0,1,2", "--out", str(RUNS / "compare")]


def section_compare() -> dict:
    from dse import compare

    compare.main(COMPARE_ARGS + ["--json"])
    return json.loads((RUNS / "compare" / "compare.json").read_text())


def hardware_args(hw: Path) -> list[str]:
    return ["--hw", str(hw), "--samplers", "tpe", "--seeds", "0", "--trials", "200",
            "--out", str(RUNS / f"joint-{hw.stem}")]


def section_hardware() -> dict:
    """Joint vs sequential on every hardware config (one TPE study each, the default sampler)."""
    from dse import compare

    out = {}
    for hw in sorted((ROOT / "hwconfigs").glob("*.yaml")):
        compare.main(hardware_args(hw) + ["--json"])
        folder = RUNS / f"joint-{hw.stem}"
        jvs = json.loads((folder / "compare.json").read_text())["joint_vs_sequential"]
        out[hw.stem] = {"max_gain": jvs.get("max_gain"), "at": jvs.get("at"), "max_perplexity": jvs.get("max_perplexity"),
                        "sequential_designs": len(pd.read_csv(folder / "sequential.csv"))}
    return out


def best_hardware(results: dict) -> tuple[dict, str, dict] | None:
    """The configs with a measured joint-vs-sequential gain, and the one with the largest."""
    hw = {k: v for k, v in (results.get("hardware") or {}).items() if v.get("max_gain") is not None}
    if not hw:
        return None
    name, best = max(hw.items(), key=lambda kv: kv[1]["max_gain"])
    return hw, name, best


NO_BUDGET = float("inf")  # a variant without the accuracy-budget constraint


def sampler_variants() -> dict[str, tuple[Callable[[int], object], float | None]]:
    """Name -> (sampler factory, accuracy budget; None keeps the search's default)."""
    import optuna.samplers as S

    from dse.study import make_sampler

    return {
        "TPE, multivariate (the default), no accuracy budget": (lambda seed: make_sampler("tpe", seed=seed), NO_BUDGET),
        "NSGA-II, population 20, no accuracy budget": (lambda seed: make_sampler("nsga2", seed=seed), NO_BUDGET),
        "NSGA-II, population 10": (lambda seed: S.NSGAIISampler(population_size=10, seed=seed), None),
        "NSGA-II, population 30": (lambda seed: S.NSGAIISampler(population_size=30, seed=seed), None),
        "NSGA-II, population 20, mutation 0.3": (lambda seed: S.NSGAIISampler(population_size=20, seed=seed,
                                                                              mutation_prob=0.3), None),
        "NSGA-III, population 20": (lambda seed: S.NSGAIIISampler(population_size=20, seed=seed), None),
        "TPE, independent, 20 random first": (lambda seed: S.TPESampler(seed=seed, n_startup_trials=20), None),
        "TPE, multivariate, 50 random first": (lambda seed: S.TPESampler(seed=seed, n_startup_trials=50,
                                                                         multivariate=True), None),
        "GP (log EHVI), 20 random first": (lambda seed: S.GPSampler(seed=seed, n_startup_trials=20), None),
    }


def section_variants(trials: int = 100, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """Hypervolume after ``trials`` trials of other sampler settings (in-memory studies on the
    same evaluator and scale as the compare section), and of the default samplers without the
    accuracy budget (the ablation of that constraint)."""
    import warnings

    import optuna

    from dse import report
    from dse.pipeline import Search
    from dse.study import run_trials

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    search = set_up(SearchSettings(out=str(RUNS / "variants")), progress=False)
    ref = search.reference()
    out = {}
    for name, (make, budget) in sampler_variants().items():
        this = search if budget is None else Search(  # same model, hardware and evaluator; another budget
            replace(search.settings, max_perplexity_ratio=budget), search.loaded, search.hw, search.evaluator)
        hv = []
        for seed in seeds:
            study = optuna.create_study(directions=["minimize"] * 3, sampler=make(seed))
            study.set_user_attr(report.REFERENCE_KEY, ref)
            run_trials(study, this.objective, trials, progress=False)
            hv.append(float(report.hv_history(study)[-1]))
        out[name] = {"trials": trials, "seeds": list(seeds), "hv": hv}
        print(f"{name}: hv@{trials} {[round(h, 3) for h in hv]}", flush=True)
    return out


def random_designs(n: int, num_layers: int, seed: int = 0) -> list[Design]:
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        pattern = rng.choice(PATTERNS)
        sparsity = rng.choice([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) if pattern == "unstructured" else 0.5
        comp = Compression(sparsity, rng.choice([3.0, 3.5, 4.0, 5.0, 6.0, 8.0]), pattern, rng.choice(ALLOCATION_RULES))
        window = rng.choice([w for w in WINDOWS if w <= num_layers])
        exits = rng.randint(1, max(1, min(MAX_EXITS, num_layers // window)))
        out.append(Design(comp, Tuning("adaptive", window=window, exits=exits, vote=rng.choice(["max_conf", "mean"]))))
    return out


def section_predictor(n: int = 24) -> dict:
    search = set_up(SearchSettings(), progress=True)
    fid = Fidelity(**{**asdict(search.settings.fidelity), "split": "eval"})
    path = RUNS / "predictor.json"
    done = json.loads(path.read_text()) if path.is_file() else []
    designs = random_designs(n, search.num_layers)
    for i, design in enumerate(designs[len(done):], start=len(done)):
        try:
            outcome, policy = search.evaluator.evaluate(design)
        except UserError as exc:
            done.append({"design": design.to_dict(), "skipped": str(exc)})
            continue
        start = time.perf_counter()
        real = measure(search.loaded, design.tuning, fid, policy=policy, progress=False)
        done.append({"design": design.to_dict(), "predicted": outcome.perplexity, "real": real["perplexity"],
                     "seconds": time.perf_counter() - start})
        io.write_json(path, done)
        print(f"[{i + 1}/{n}] predicted {outcome.perplexity:.2f} real {real['perplexity']:.2f}", flush=True)
    pairs = [d for d in done if "real" in d]
    rho = spearmanr([d["predicted"] for d in pairs], [d["real"] for d in pairs]).statistic
    fig = Figure(figsize=(4.5, 4))
    ax = fig.subplots()
    ax.scatter([d["predicted"] for d in pairs], [d["real"] for d in pairs])
    ax.set_xlabel("predicted perplexity (calibration split)")
    ax.set_ylabel("measured perplexity (eval split)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"predictor vs real: Spearman {rho:.3f} (n={len(pairs)})")
    io.save_figure(DOC.parent / "dse_predictor.png", fig)
    return {"spearman": float(rho), "n": len(pairs), "pairs": pairs}


def targets(results: dict) -> list[str]:
    """The issue's targets against what was measured (a row only for sections that ran)."""
    rows = []
    cmp = results.get("compare")
    if cmp:
        s = cmp["samplers"]
        for name in ("nsga2", "tpe"):
            if f"{name}_hv_at_half" in s:
                ok = s[f"{name}_beats_random"]
                full, seeds = cmp["trials"], pd.read_csv(RUNS / "compare" / "compare.csv")["seed"].nunique()
                rows.append(f"| {name} hypervolume after {full // 2} trials >= random's after {full} (mean of {seeds} seeds) | "
                            f"{s[f'{name}_hv_at_half']:.3f} vs {s['random_hv_at_full']:.3f} | {'met' if ok else 'not met'} |")
        gain = cmp.get("joint_vs_sequential", {}).get("max_gain")
        if gain is not None:
            rows.append(f"| joint front >= 10% lower latency than the sequential flow somewhere, at equal accuracy | "
                        f"{gain:.1%} | {'met' if gain >= 0.10 else 'not met'} |")
    found = best_hardware(results)
    if found:
        _, name, best = found
        rows.append(f"| the same, on every config in hwconfigs/ (TPE, 200 trials, seed 0) | best {best['max_gain']:.1%} "
                    f"({name}) | {'met' if best['max_gain'] >= 0.10 else 'not met'} |")
    pred = results.get("predictor")
    if pred:
        rows.append(f"| predictor vs real measurement, Spearman >= 0.9 (>= 20 policies) | {pred['spearman']:.3f} "
                    f"(n={pred['n']}) | {'met' if pred['spearman'] >= 0.9 and pred['n'] >= 20 else 'not met'} |")
    if not rows:
        return []
    return ["## Targets", "", "| target | measured | |", "|---|---|---|", *rows, ""]


def reading(cmp: dict, results: dict) -> list[str]:
    """What the compare numbers say, worded from them (equal budgets, the baseline's size)."""
    table = pd.read_csv(RUNS / "compare" / "compare.csv")
    means = table.groupby("sampler")[[f"hv@{c}" for c in cmp["checkpoints"]]].mean()
    searchers = [n for n in means.index if n != "random"]
    if "random" not in means.index or not searchers:
        return []
    half = f"hv@{cmp['trials'] // 2}"
    best = max(searchers, key=lambda n: means.loc[n, half])
    equal = ", ".join(f"{c} trials: {best} {means.loc[best, f'hv@{c}']:.3f} vs random {means.loc['random', f'hv@{c}']:.3f}"
                      for c in cmp["checkpoints"])
    reaches = "reaches" if cmp["samplers"].get(f"{best}_beats_random") else "does not reach"
    lines = ["## Reading", "",
             f"At equal budgets the better searcher, {best}, has a mean hypervolume of ({equal}); it {reaches} random "
             f"search's {cmp['trials']}-trial value in half the trials. Both searchers are told the accuracy budget "
             f"(predicted perplexity at most {PERPLEXITY_BUDGET:g}x vanilla tuning's, a constraint like the DRAM one), the corner the "
             "hypervolume counts from; random search ignores constraints by construction. Without the budget "
             "they spend trials on the fast but useless end of the front (predicted perplexity far past the budget) and "
             "fall behind random search (the ablation rows under Other sampler settings).", ""]
    seq_path = RUNS / "compare" / "sequential.csv"
    n_seq = len(pd.read_csv(seq_path)) if seq_path.is_file() else 0
    if n_seq:
        size = "more than" if n_seq > cmp["trials"] else "no more than"
        lines += [f"The sequential flow is a strong baseline: it keeps, for each storage budget, the most accurate "
                  f"compression, then evaluates every tuning depth with the per-op scheduler ({n_seq} simulated "
                  f"designs, {size} the joint study's {cmp['trials']} trials). Where an accelerator's step time "
                  "follows the stored bits per weight (bit-scalable PEs that skip unstructured zeros, or arrays "
                  "bound by DRAM traffic), that storage budget is already the latency budget, and a hardware-aware "
                  "compression has little left to win.", ""]
    found = best_hardware(results)
    if found:
        hw, name, best = found
        others = ", ".join(f"{k} {v['max_gain']:.1%}" for k, v in hw.items() if k != name)
        at = best["at"]
        dense = best["max_perplexity"] / REFERENCE_POINT[0]
        lines += [f"Across the configs the joint search's largest gain is on {name}: {best['max_gain']:.1%} "
                  f"({at['joint_latency_s'] * 1e3:.1f} ms vs {at['sequential_latency_s'] * 1e3:.1f} ms at predicted "
                  f"perplexity {at['perplexity']:.1f}, {at['perplexity'] / dense:.1f}x vanilla tuning's); elsewhere "
                  f"{others}.", ""]
        if name == "orin_nano":
            lines[-2] += (" On orin_nano the tensor cores skip only 2:4 zeros and compute at 16 bits whatever the "
                          "weight width, so what the sequential flow optimizes (accuracy per stored bit: unstructured "
                          "sparsity, low bits) buys no math; the joint search instead puts 2:4 on the layers that "
                          "suffer least. The gains show only at the degraded end of the front (2:4 costs this 135M "
                          "model much accuracy); at lower perplexity the sequential flow, with more designs "
                          "simulated, is as fast or faster, so the joint front does not dominate it.")
    return lines


def render(results: dict) -> str:
    lines = ["# Design-space exploration on SmolLM2-135M", "",
             "Made by `python benchmarks/bench_dse.py` (sections re-render from runs/bench_dse/).", ""]
    lines += targets(results)
    lines += ["The README's main command from a cold start is timed in [cold_start.md](cold_start.md) "
              "(`python benchmarks/bench_cold_start.py`).", ""]
    cmp = results.get("compare")
    if cmp:
        lines += ["## Search vs random search", "", f"Command: `python -m dse.compare {' '.join(COMPARE_ARGS).replace(str(ROOT) + '/', '')}`", "",
                  (RUNS / "compare" / "compare.md").read_text().split("\n", 4)[-1].split("```json")[0].rstrip(), "",
                  "![hypervolume](dse_compare.png)", ""]
        gain = cmp.get("joint_vs_sequential", {})
        if gain.get("max_gain") is not None:
            at = gain["at"]
            lines += ["## Joint vs sequential", "",
                      f"Largest latency gain of the joint front over the sequential flow at equal or better predicted "
                      f"perplexity: **{gain['max_gain']:.1%}** (joint trial {at['trial']}: perplexity "
                      f"{at['perplexity']:.2f}, {at['joint_latency_s'] * 1e3:.1f} ms vs {at['sequential_latency_s'] * 1e3:.1f} ms).",
                      ""]
    variants = results.get("variants")
    if variants and cmp:
        target = cmp["samplers"]["random_hv_at_full"]
        lines += ["### Other sampler settings", "",
                  f"`python benchmarks/bench_dse.py --sections variants`: the same evaluator and hypervolume scale, "
                  f"in-memory studies; random search reaches {target:.3f} after {cmp['trials']} trials (mean of 3 seeds).",
                  "", "| sampler | hv per seed | mean | >= random's |", "|---|---|---|---|"]
        for name, v in variants.items():
            if "hv" not in v:
                continue
            mean = sum(v["hv"]) / len(v["hv"])
            lines.append(f"| {name}, {v['trials']} trials | {', '.join(f'{h:.3f}' for h in v['hv'])} | {mean:.3f} | "
                         f"{'yes' if mean >= target else 'no'} |")
        lines.append("")
    hw = results.get("hardware")
    if hw:
        lines += ["### On every hardware config", "",
                  "One TPE study of 200 trials (seed 0) per config against that config's sequential flow; only "
                  "joint members with predicted perplexity under the hypervolume's reference corner "
                  f"({REFERENCE_POINT[0]:g}x vanilla tuning's) count. Commands: "
                  + "; ".join(f"`python -m dse.compare {' '.join(hardware_args(ROOT / 'hwconfigs' / (n + '.yaml')))}`"
                              .replace(str(ROOT) + "/", "") for n in hw), "",
                  "| hw | sequential designs | largest gain | at perplexity | joint ms | sequential ms |",
                  "|---|---|---|---|---|---|"]
        for name, r in hw.items():
            at = r.get("at") or {}
            lines.append(f"| {name} | {r['sequential_designs']} | "
                         + (f"{r['max_gain']:.1%} | {at['perplexity']:.2f} | {at['joint_latency_s'] * 1e3:.2f} | "
                            f"{at['sequential_latency_s'] * 1e3:.2f} |" if r["max_gain"] is not None else "none | | | |"))
        lines.append("")
    if cmp:
        lines += reading(cmp, results)
    pred = results.get("predictor")
    if pred:
        lines += ["## Predictor vs real measurement", "",
                  f"Spearman rank correlation over {pred['n']} random designs: **{pred['spearman']:.3f}** (target 0.9).",
                  "", "![predictor](dse_predictor.png)", ""]
    return "\n".join(lines)


def main() -> None:
    sections = {"compare": section_compare, "hardware": section_hardware, "variants": section_variants,
                "predictor": section_predictor}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sections", nargs="+", choices=[*sections, "render"],
                        default=["compare", "predictor"],
                        help="what to run; render only rewrites the page from stored results (default: compare predictor)")
    args = parser.parse_args()
    RUNS.mkdir(parents=True, exist_ok=True)
    store = RUNS / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    for name, run in sections.items():
        if name in args.sections:
            results[name] = run()
            io.write_json(store, results)  # saved per section: a later failure keeps this one
    png = RUNS / "compare" / "compare.png"
    if "compare" in args.sections and png.is_file():
        (DOC.parent / "dse_compare.png").write_bytes(png.read_bytes())
    io.write_text(DOC, render(results))
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
