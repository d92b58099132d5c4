"""The architect's sweep benchmark: 4 shipped configs x 27 grid points x 3 traces.

    python benchmarks/bench_sweep.py            # writes docs/results/sweep.md and sweep_*.png

1. gets the three SmolLM2-135M tuning-step traces (vanilla, adaptive, full method): real ones
   from ``python -m workloads.trace`` (one torch step each; reused from an earlier run of the
   same commands unless ``--fresh-traces``), or with ``--traces synthetic`` (or when that
   command does not exist) from benchmarks/bench_sweep_traces.py, built from the architecture;
2. runs ``python -m sim.sweep`` on them from an empty output folder and times it (wall clock,
   with the machine's load average before and after: the 2 cores are shared);
3. reruns the same command to show the resume path (every point skipped);
4. from the sweep table, measures how much each swept knob moves the full method's advantage
   over vanilla (latency of vanilla / latency of full), per config and pooled;
5. copies the plots to docs/results/ and writes docs/results/sweep.md.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_sweep_traces import write_all  # noqa: E402

from sim.config import load_hw  # noqa: E402
from sim.sweep.report import best_points, ratio_by_value, ratio_effects  # noqa: E402

GRID = ("pe.rows=16,32,64", "dram.bandwidth_gbps=2,8,32",
        "precision.model=fixed,bit_serial,scalable")
KNOBS = tuple(g.split("=")[0] for g in GRID)
TRACES = ("vanilla", "adaptive", "full")
TARGET_S = 120.0
LAYERS = 30  # SmolLM2-135M decoder layers
WINDOW = 4  # adaptive tuning: backward through the top 4 layers
FULL_POLICY = {"sparsity": 0.5, "w_bits": 4, "pattern": "unstructured"}


def real_trace_cli() -> bool:
    """Whether ``python -m workloads.trace`` exists in this checkout."""
    try:
        return importlib.util.find_spec("workloads.trace.__main__") is not None
    except ModuleNotFoundError:
        return False


def real_trace_commands(folder: Path) -> dict[str, list[str]]:
    """The ``workloads.trace`` command of each trace (paths relative to the repo root)."""
    policy = _rel(folder / "policy_uniform_s50_w4.json")
    base = ["python", "-m", "workloads.trace", "--model", "smollm2-135m", "--seq-len", "256",
            "--batch", "4", "--lora-rank", "8", "--seed", "0"]
    return {
        "vanilla": [*base, "--method", "vanilla", "--out", _rel(folder / "vanilla.csv")],
        "adaptive": [*base, "--method", "adaptive", "--window", str(WINDOW),
                     "--out", _rel(folder / "adaptive.csv")],
        "full": [*base, "--method", "adaptive", "--window", str(WINDOW), "--policy", policy,
                 "--out", _rel(folder / "full.csv")],
    }


def make_real_traces(folder: Path, fresh: bool) -> tuple[list[Path], dict[str, list[str]],
                                                         dict[str, float | None]]:
    """Record the three traces from real torch steps (or reuse files these commands wrote).

    Returns the trace paths, the commands, and the seconds each recording took (negative:
    the file was reused, and this is how long its recording took then).
    """
    from workloads.luc.policy import Policy

    folder.mkdir(parents=True, exist_ok=True)
    policy = Policy.uniform(LAYERS, FULL_POLICY["sparsity"], FULL_POLICY["w_bits"],
                            pattern=FULL_POLICY["pattern"],
                            meta={"note": "uniform policy of benchmarks/bench_sweep.py"})
    policy.save(folder / "policy_uniform_s50_w4.json")
    commands = real_trace_commands(folder)
    log_path = folder / "recorded.json"  # how long each recording took, for reuse runs
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    seconds: dict[str, float | None] = {}
    paths = []
    for name in TRACES:
        path = folder / f"{name}.csv"
        paths.append(path)
        same = log.get(name, {}).get("command") == commands[name]
        if (path.is_file() and path.with_name(f"{name}.tensors.csv").is_file() and same
                and not fresh):
            seconds[name] = None
            continue
        argv = [sys.executable, *commands[name][1:]]
        start = time.perf_counter()
        res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise SystemExit(f"{shlex.join(commands[name])} failed: {res.stderr.strip()[-500:]}")
        seconds[name] = time.perf_counter() - start
        log[name] = {"command": commands[name], "seconds": round(seconds[name], 1),
                     "at": time.strftime("%Y-%m-%d %H:%M")}
        log_path.write_text(json.dumps(log, indent=1))
    return paths, commands, {k: v if v is not None else -float(log[k]["seconds"])
                             for k, v in seconds.items()}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def run_sweep_cli(traces: list[Path], out: Path, workers: int) -> tuple[list[str], float, dict]:
    """Run the sweep CLI; returns (argv, wall seconds, its --json summary)."""
    argv = [sys.executable, "-m", "sim.sweep", "--hw", "hwconfigs/*.yaml",
            "--trace", *(_rel(t) for t in traces)]
    for g in GRID:
        argv += ["--grid", g]
    argv += ["--out", _rel(out), "--workers", str(workers), "--json"]
    env = dict(os.environ, TQDM_DISABLE="1")
    start = time.perf_counter()
    res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"sweep failed ({res.returncode}): {res.stderr.strip()}")
    return argv, wall, json.loads(res.stdout)


def _md_table(df: pd.DataFrame, floats: str = "{:.3f}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, row in df.iterrows():
        cells = ["-" if v is None or (isinstance(v, float) and v != v)
                 else floats.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def analyse(table: pd.DataFrame) -> dict:
    """Knob effects on the vanilla / full latency ratio, and the parts it is made of."""
    effects = ratio_effects(table, "vanilla", "full", KNOBS)
    by_value = ratio_by_value(table, "vanilla", "full", KNOBS)
    depth = ratio_effects(table, "vanilla", "adaptive", KNOBS)
    compression = ratio_effects(table, "adaptive", "full", KNOBS)
    pooled = effects[effects["config"] == "all"].reset_index(drop=True)
    return {"effects": effects, "by_value": by_value, "depth": depth,
            "compression": compression, "top": pooled.iloc[0].to_dict() if len(pooled) else {}}


def _ratio_range(table: pd.DataFrame) -> pd.DataFrame:
    ok = table[table["status"] == "ok"]
    idx = ["config", *KNOBS]
    van = ok[ok["trace"] == "vanilla"].set_index(idx)["latency_s"]
    full = ok[ok["trace"] == "full"].set_index(idx)["latency_s"]
    ratio = (van / full).dropna().rename("ratio").reset_index()
    rows = []
    for config, sub in ratio.groupby("config"):
        lo, hi = sub.loc[sub["ratio"].idxmin()], sub.loc[sub["ratio"].idxmax()]
        rows.append({"config": config, "grid points": len(sub),
                     "min ratio": float(lo["ratio"]),
                     "at": " ".join(f"{k}={lo[k]}" for k in KNOBS),
                     "max ratio": float(hi["ratio"]),
                     "at ": " ".join(f"{k}={hi[k]}" for k in KNOBS)})
    return pd.DataFrame(rows)


def _trace_section(source: dict) -> list[str]:
    """Where the traces come from (real torch steps, or synthetic), with the commands."""
    if source["mode"] == "real":
        cmds = source["commands"]
        secs = source["seconds"]
        timing = "; ".join(f"{k} {v:.0f} s" if v >= 0 else f"{k} {-v:.0f} s (reused)"
                           for k, v in secs.items())
        return [
            "The traces are **real**: each is recorded from one torch tuning step of "
            "SmolLM2-135M-Instruct by `python -m workloads.trace` (hooks on the modules that "
            "ran; batch 4 x seq 256, LoRA rank 8, seed 0):",
            "",
            "```sh",
            *(shlex.join(c) for c in cmds.values()),
            "```",
            "",
            f"Recording time on this machine (model load included): {timing}. `reused`: the "
            "files the same commands wrote in an earlier run of this benchmark, with the time "
            "that recording took; `--fresh-traces` records them again.",
            "",
            "| trace | what it is |",
            "|---|---|",
            "| vanilla | LoRA on all 30 layers, backward through every layer, 16-bit dense "
            "weights |",
            f"| adaptive | LoRA in a window of the top {WINDOW} layers trained through the exit "
            "at the last layer (Edge-LLM adaptive layer tuning), 16-bit dense weights |",
            f"| full | adaptive + a uniform LUC policy on every decoder layer: "
            f"{FULL_POLICY['sparsity']:.0%} {FULL_POLICY['pattern']} sparsity and "
            f"{FULL_POLICY['w_bits']}-bit weights (`Policy.uniform`, written by this "
            "benchmark; not a sensitivity-driven policy) |",
            "",
        ]
    return [
        "> **The traces are synthetic** (`python -m workloads.trace` was not available): "
        f"`{source['command']}` writes SmolLM2-135M-shaped traces from the architecture "
        "(30 layers, hidden 576, MLP 1536, 9 query / 3 KV heads of 64, vocabulary 49152, "
        "batch 4 x seq 256; LoRA rank 8 on q_proj and v_proj). They are not recorded from a "
        "torch run.",
        "",
        "| trace | what it is |",
        "|---|---|",
        "| vanilla | LoRA on all 30 layers, forward and backward through every layer, 16-bit "
        "dense weights |",
        "| adaptive | LoRA on the top 4 layers (26..29), backward only through them (Edge-LLM "
        "adaptive layer tuning, exit at the last layer), 16-bit dense weights |",
        "| full | adaptive + every decoder linear at 50% unstructured sparsity and 4-bit "
        "weights (LUC-like); LM head and attention products stay 16-bit |",
        "",
    ]


def write_markdown(path: Path, *, argv: list[str], wall: float, stats: dict, rerun_wall: float,
                   rerun: dict, load_before: str, load_after: str, table: pd.DataFrame,
                   result: dict, plots: dict[str, str], traces_dir: Path, source: dict
                   ) -> None:
    """docs/results/sweep.md: every number below comes from this run."""
    shown = ["python", *argv[1:]]
    cmd = " \\\n    ".join([shlex.join(shown[:3]) + " --hw 'hwconfigs/*.yaml'",
                            "--trace " + " ".join(shown[shown.index("--trace") + 1:
                                                        shown.index("--grid")]),
                            *(f"--grid {g}" for g in GRID),
                            " ".join(shown[shown.index("--out"):])])
    status = stats["by_status"]
    first = table[table["config"] == "edge_llm"].drop_duplicates("trace").set_index("trace")
    trace_rows = pd.DataFrame([{
        "trace": t, "method (header)": first.loc[t, "method"], "window": first.loc[t, "window"],
        "ops": int(first.loc[t, "ops"]), "products": int(first.loc[t, "products"]),
        "GMAC": float(first.loc[t, "macs"]) / 1e9,
        "peak memory MiB": float(first.loc[t, "peak_memory_bytes"]) / 2**20}
        for t in TRACES])
    best = best_points(table)
    best_rows = []
    for _, r in best.iterrows():
        best_rows.append({"trace": r["trace"], "config": r["config"],
                          **{k: r[k] for k in KNOBS},
                          "latency ms": r["latency_s"] * 1e3, "energy mJ": r["energy_j"] * 1e3,
                          "utilization": r["utilization"], "area mm2": r["area_mm2"]})
    best_df = pd.DataFrame(best_rows)
    not_ok = table[table["status"] != "ok"]

    effects = result["effects"].copy()
    top = result["top"]
    by_value = result["by_value"]
    value_tables = []
    for knob in KNOBS:
        sub = by_value[by_value["knob"] == knob]
        wide = sub.pivot(index="config", columns="value", values="ratio")
        # Values in grid order (the table's row order is the plan's).
        order = [v for v in dict.fromkeys(table[knob]) if v in set(sub["value"])]
        wide = wide[order]
        wide.columns = [f"{knob}={v}" for v in order]
        wide["max / min"] = wide.max(axis=1) / wide.min(axis=1)
        value_tables.append(wide.reset_index())
    failure_notes = []
    for (status_, config, reason), sub in not_ok.groupby(["status", "config", "reason"]):
        where = "; ".join(f"{k} in {{{', '.join(map(str, sorted(sub[k].unique(), key=str)))}}}"
                          for k in KNOBS if sub[k].nunique() < table[k].nunique())
        traces_ = ", ".join(dict.fromkeys(sub["trace"]))
        failure_notes.append(f"- {config}, {status_}, traces {traces_} ({len(sub)} points"
                             f"{', only at ' + where if where else ', at every grid point'}): "
                             f"{reason}")
    if failure_notes:
        failure_notes.append("")
        failure_notes.append(
            "A mapping error means the simulator's tiling search found no tile of that op that "
            "fits the SRAM (its candidate tiles split a dimension at most 4096 ways, "
            "sim/tiling.py); `infeasible` means the step's tensors exceed the DRAM capacity. "
            "Either way the point is a row with its reason, not a crash.")
    inert_precision = []
    for cfg_path in sorted((ROOT / "hwconfigs").glob("*.yaml")):
        hw = load_hw(cfg_path)
        if hw.precision.min_bits >= hw.precision.base_bits:
            inert_precision.append(hw.name)
    ranges = _ratio_range(table)
    comp = result["compression"]
    depth = result["depth"]

    def swing(frame: pd.DataFrame, config: str, knob: str) -> float:
        row = frame[(frame["config"] == config) & (frame["knob"] == knob)]
        return float(row["swing"].iloc[0]) if len(row) else float("nan")

    parts = pd.DataFrame([{"knob": k,
                           "swing of vanilla/full": swing(effects, "all", k),
                           "swing of vanilla/adaptive (depth)": swing(depth, "all", k),
                           "swing of adaptive/full (compression)": swing(comp, "all", k)}
                          for k in KNOBS])
    per_config_top = (effects[effects["config"] != "all"].sort_values("swing", ascending=False)
                      .groupby("config", sort=True).head(1))

    lines = [
        "# The architect's sweep: 4 configs x 27 grid points x 3 traces",
        "",
        "Reproduce everything on this page (tables, numbers, figures) with:",
        "",
        "```sh",
        "python benchmarks/bench_sweep.py",
        "```",
        "",
        *_trace_section(source),
        f"Trace files in `{_rel(traces_dir)}/` (numbers from the sweep table, edge_llm rows; "
        "GMAC = 1e9 multiply-accumulates per step):",
        "",
        _md_table(trace_rows, "{:.1f}"),
        "",
        "## The sweep and its wall time",
        "",
        "```sh",
        cmd,
        "```",
        "",
        f"- {stats['points']} points = {len(stats['configs'])} configs "
        f"({', '.join(stats['configs'])}) x {stats['grid_points']} grid points x "
        f"{len(stats['traces'])} traces; "
        + ", ".join(f"{v} {k}" for k, v in status.items()) + ".",
        f"- **Wall time: {wall:.1f} s** from an empty `--out` (target: under {TARGET_S:.0f} s), "
        f"`--workers 2` on {os.cpu_count()} cores ({platform.processor() or platform.machine()}"
        f", Python {platform.python_version()}), shared with other jobs: load average "
        f"{load_before} before, {load_after} after. The sweep's own `wall_s`: "
        f"{stats['wall_s']:.1f} s (excluding interpreter start).",
        f"- Rerunning the same command: {rerun_wall:.1f} s, computed {rerun['computed']}, "
        f"skipped {rerun['skipped']} (resume from `points.jsonl`).",
        "",
        "Points that did not run or do not fit (a failing point is a row with its reason):",
        "",
        *(failure_notes or ["none", ""]),
        "",
        "## Best point per config and trace",
        "",
        "Lowest latency among points that ran and fit in DRAM (latency and energy per tuning "
        "step; area is the proxy of `HwConfig.area_proxy` (sim/config.py) from each config's `area` constants).",
        "",
        _md_table(best_df),
        "",
        "## Which knob moves the full method's advantage over vanilla most",
        "",
        "Advantage = latency(vanilla) / latency(full) at the same config and grid point (only "
        "points where both ran and fit). Its range over the grid per config:",
        "",
        _md_table(ranges),
        "",
        "For a knob and one setting of the two other knobs, the *swing* is max / min of the "
        "advantage over the knob's three values (1.00 = the knob does not move it). The table "
        "gives the geometric mean swing over the other knobs' 9 settings and the largest one "
        "(`sim.sweep.report.ratio_effects`); `all` pools every config that has pairs "
        "(Eyeriss has none: vanilla never fits its DRAM).",
        "",
        _md_table(effects),
        "",
    ]
    if top:
        pooled = effects[effects["config"] == "all"].reset_index(drop=True)
        runner = pooled.iloc[1] if len(pooled) > 1 else None
        top_values = by_value[by_value["knob"] == top["knob"]]
        lines += [
            f"**Answer: `{top['knob']}`** moves the advantage most across the configs "
            f"(geometric-mean swing {top['swing']:.3f}, up to {top['swing_max']:.3f})"
            + (f", ahead of `{runner['knob']}` ({runner['swing']:.3f})" if runner is not None
               else "") + ". Per config the strongest knob is: "
            + "; ".join(f"{r['config']}: `{r['knob']}` ({r['swing']:.3f})"
                        for _, r in per_config_top.iterrows()) + ". "
            + f"Along `{top['knob']}` the advantage goes "
            + "; ".join(f"{config}: " + " -> ".join(f"{r:.2f}" for r in sub["ratio"])
                        for config, sub in top_values.groupby("config", sort=False))
            + f" (values {', '.join(str(v) for v in dict.fromkeys(table[top['knob']]))}).",
            "",
        ]
        rises, falls = [], []
        for config, sub in top_values.groupby("config", sort=False):
            (rises if sub["ratio"].iloc[-1] > sub["ratio"].iloc[0] else falls).append(config)
        if rises and falls:
            why = ""
            if (top["knob"] == "dram.bandwidth_gbps" and set(falls) <= set(inert_precision)
                    and not set(rises) & set(inert_precision)):
                why = (" The designs where it narrows are those whose PEs cannot run 4-bit "
                       "weights faster (see below): there compression only saves DRAM "
                       "traffic, which matters less as bandwidth grows, while where it widens "
                       "4-bit weights also cut compute time, which shows once DRAM stops being "
                       "the bottleneck.")
            lines += [
                f"Its direction depends on the design: raising `{top['knob']}` widens the "
                f"advantage on {', '.join(rises)} and narrows it on {', '.join(falls)}." + why,
                "",
            ]
        flat = [c for c in inert_precision if c in set(effects["config"])]
        if flat:
            lines += [
                f"`precision.model` cannot move it on {', '.join(flat)}: their configs set "
                "`precision.min_bits` equal to `base_bits`, so no precision model lets 4-bit "
                "weights run faster there; the advantage on those designs comes from fewer "
                "layers in backward and from less DRAM traffic.",
                "",
            ]
    lines += [
        "Advantage at each value of a knob (geometric mean over the other knobs' settings):",
        "",
        *[line for vt in value_tables for line in (_md_table(vt), "")],
        "Where the advantage comes from: it is the product of the depth part (vanilla / "
        "adaptive: fewer layers run backward) and the compression part (adaptive / full: 4-bit "
        "sparse weights). Pooled swings of each part:",
        "",
        _md_table(parts),
        "",
        "## Figures",
        "",
        f"![latency vs energy, Pareto set]({plots['pareto_png']})",
        "",
        f"![latency heat map over pe.rows x dram.bandwidth_gbps]({plots['heatmap_png']})",
        "",
        f"![where the time goes at each config's best point]({plots['time_png']})",
        "",
    ]
    # Sections other benchmarks own (<!-- BEGIN name --> ... <!-- END name -->, e.g. the Dask
    # one of bench_sweep_dask.py) are kept at the end of the page.
    old = path.read_text() if path.is_file() else ""
    blocks = [m.group(0) for m in re.finditer(r"<!-- BEGIN (\w+) -->.*?<!-- END \1 -->", old,
                                               re.S)]
    path.write_text("\n".join(lines) + "".join(f"\n{b}\n" for b in blocks))


def main() -> None:
    """Run the benchmark and write the report."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_sweep",
                   help="work folder for traces and the sweep (default: runs/bench_sweep)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "results",
                   help="where sweep.md and sweep_*.png go (default: docs/results)")
    p.add_argument("--workers", type=int, default=2, help="sweep worker processes (default: 2)")
    p.add_argument("--traces", choices=("auto", "real", "synthetic"), default="auto",
                   help="real: record with python -m workloads.trace; synthetic: "
                        "benchmarks/bench_sweep_traces.py; auto: real if that command exists "
                        "(default: auto)")
    p.add_argument("--fresh-traces", action="store_true",
                   help="re-record real traces even if the files exist (default: reuse)")
    args = p.parse_args()

    mode = args.traces
    if mode == "auto":
        mode = "real" if real_trace_cli() else "synthetic"
    source: dict = {"mode": mode}
    if mode == "real":
        traces_dir = args.out / "real"
        traces, commands, seconds = make_real_traces(traces_dir, args.fresh_traces)
        source.update(commands=commands, seconds=seconds)
    else:
        traces_dir = args.out / "traces"
        traces = write_all(traces_dir)
        source["command"] = f"python benchmarks/bench_sweep_traces.py --out {_rel(traces_dir)}"
    sweep_out = args.out / "sweep"
    shutil.rmtree(sweep_out, ignore_errors=True)  # time a full sweep, not a resume
    load_before = _load()
    argv, wall, stats = run_sweep_cli(traces, sweep_out, args.workers)
    load_after = _load()
    _, rerun_wall, rerun = run_sweep_cli(traces, sweep_out, args.workers)
    if rerun["computed"]:
        # Only internal errors are recomputed on a rerun: the simulator failed (e.g. it was
        # being edited while this ran). Numbers from such a run would be mixed; start over.
        raise SystemExit(f"the rerun recomputed {rerun['computed']} points (internal errors "
                         f"in the first run); see {_rel(sweep_out)}/sweep.csv and run again")
    table = pd.read_csv(sweep_out / "sweep.csv")
    result = analyse(table)

    args.docs.mkdir(parents=True, exist_ok=True)
    plots = {}
    for key in ("pareto_png", "heatmap_png", "time_png"):
        if key not in stats["files"]:
            raise SystemExit(f"the sweep wrote no {key}; its summary: {json.dumps(stats)[:2000]}")
        src = Path(stats["files"][key])
        src = src if src.is_absolute() else ROOT / src
        shutil.copyfile(src, args.docs / src.name)
        plots[key] = src.name
    md = args.docs / "sweep.md"
    write_markdown(md, argv=argv, wall=wall, stats=stats, rerun_wall=rerun_wall, rerun=rerun,
                   load_before=load_before, load_after=load_after, table=table, result=result,
                   plots=plots, traces_dir=traces_dir, source=source)
    print(f"sweep: {stats['points']} points in {wall:.1f} s (target < {TARGET_S:.0f} s); "
          f"rerun {rerun_wall:.1f} s; top knob: {result['top'].get('knob')} "
          f"(swing {result['top'].get('swing', float('nan')):.3f}); wrote {_rel(md)}")


if __name__ == "__main__":
    main()
