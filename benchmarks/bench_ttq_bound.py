"""Can compression beyond the checkpoint's grid reach issue 18's third target: the full method
>= 2.92x time-to-quality speed-up and >= 4x less memory against fair vanilla? Writes
docs/results/ttq_bound.md, ttq_bound.json and ttq_bound.png.

    python benchmarks/bench_ttq_bound.py [--hw hwconfigs/edge_llm.yaml]

For every window of the search space (``dse.space.window_choices``), every width of the
activations kept for backward (16, 8, 6) and a grid of compression beyond the checkpoint
(average bits 4, 3, 2.5 and unstructured sparsity 0, 0.3, 0.5, 0.7 mixed per layer by the
paper's rule; 2:4 on every layer), with the head at 8 bits and one exit: one tuning step of
the real model's real traces (``dse.hardware.TraceBank``) simulated on ``--hw`` under the per-op
scheduler, every operation charged, against vanilla LoRA under the same scheduler: the cost
model, designs and functions of ``dse.reproduce`` (``simulate_all``), nothing copied.

Two bounds come with it, both measured from the same traces:

- **Amdahl.** Compression changes only the rows that read a compressed weight (the decoder's
  linear products and the tied head's); every other row (the non-matrix work over all layers,
  attention's products, LoRA, the optimizer) costs the same at any compression. With the
  compressible rows at zero time the step can be no faster than that remainder: per window and
  activation width, ``vanilla step / incompressible time`` bounds the per-step speed-up of any
  compression. The same for memory, with every compressible tensor at zero bytes.
- **Time to quality.** ``ttq = 32 t_vanilla / (n t_method)``, with ``n`` the steps the method
  needs to reach vanilla's 32-step perplexity: ``ttq = speed-up x 32 / n``, so ttq <= per-step
  speed-up whenever ``n >= 32``; the measured ``n`` bounds of docs/results/window.md and
  headline.md sharpen it per window.

Untuned perplexity of each compression: predicted from the measured per-layer sensitivity
table (``workloads.luc.predict``; rank correlation 0.965 with measured perplexity in luc.md),
scaled to the checkpoint's measured untuned perplexity (headline.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402
from dse import io  # noqa: E402
from dse.hardware import TraceBank, design_windows  # noqa: E402
from dse.headline.configs import Plan, make_policy  # noqa: E402
from dse.headline.page import TARGETS  # noqa: E402
from dse.reproduce import simulate_all  # noqa: E402
from dse.space import ACT_BITS, Design, window_choices  # noqa: E402
from sim.footprint import footprint  # noqa: E402
from workloads.luc.policy import LayerPolicy, Policy  # noqa: E402
from workloads.luc.predict import predict_perplexity  # noqa: E402
from workloads.luc.sensitivity import profile_sensitivity  # noqa: E402
from workloads.models import load_model  # noqa: E402

DOC = ROOT / "docs" / "results" / "ttq_bound.md"
BITS = (4.0, 3.0, 2.5)
SPARSITIES = (0.0, 0.3, 0.5, 0.7)
HEAD_BITS = 8
STEPS = 32  # vanilla's budget: the quality threshold is vanilla's perplexity after 32 steps
# Compression no real policy reaches: every compressible row and tensor then differs from the
# uncompressed trace, which is how the Amdahl bound finds them (their cost is then set to zero).
EXTREME = {"sparsity": 0.95, "w_bits": 2}


def compressions(loaded: Any, *, data: str | None) -> dict[str, tuple[Plan, Policy]]:
    """The compression grid: label -> (plan, policy). The paper rule mixes bits and sparsity per
    layer from the sensitivity table; ``2:4`` keeps the rule's bits at 0% and makes every layer
    2:4 (the hardware skips its zeros like 50% unstructured ones)."""
    out: dict[str, tuple[Plan, Policy]] = {}
    for bits in BITS:
        for sparsity in SPARSITIES:
            plan = Plan(sparsity=sparsity, bits=bits, rule="paper", head_bits=HEAD_BITS)
            out[f"{bits:g}b s{sparsity:g}"] = (plan, make_policy(loaded, plan, data=data, progress=False))
        plan, dense = out[f"{bits:g}b s0"]
        layers = {i: LayerPolicy(0.5, lp.w_bits) for i, lp in dense.layers.items()}
        meta = {**dense.meta, "pattern": "2:4 on every layer", "achieved": {**dense.meta["achieved"], "sparsity": 0.5}}
        nm = replace(dense, layers=layers, pattern="2:4", meta=meta)
        out[f"{bits:g}b 2:4"] = (replace(plan, sparsity=0.5, pattern="2:4"), nm)
    return out


class SplitStep:
    """One window's step split into the rows compression moves and the rest (the Amdahl remainder).
    Ops are simulated one after another, each on its own (per-op scheduler, no fusion), so a
    policy's step is the remainder's cycles, simulated once, plus its compressible rows,
    simulated per policy: the same cost as ``simulate_design`` (``check`` asserts it) at a
    tenth of the work."""

    def __init__(self, bank: TraceBank, hw: sim.HwConfig, n_layers: int, window: int, act: int):
        design = replace(Plan(), window=window, act_bits=act).design("full", n_layers)
        (win,) = design_windows(design, n_layers)
        self.trace, self.hw, self.window, self.act = bank.get("adaptive", win, act), hw, window, act
        plain = self.trace.with_policy(None)
        squeezed = self.trace.with_policy(Policy.uniform(n_layers, EXTREME["sparsity"], EXTREME["w_bits"],
                                                         head_bits=EXTREME["w_bits"]))
        cols = ["w_bits", "weight_sparsity", "sparsity_pattern"]
        self.moves = (plain.ops[cols] != squeezed.ops[cols]).any(axis=1).to_numpy()
        self.tensor_moves = (plain.tensors["bytes"] != squeezed.tensors["bytes"]).to_numpy()
        res = sim.simulate_trace(plain.ops, hw, dataflow="auto", tensors=plain.tensors)
        self.cycles = res.ops["cycles"].to_numpy()
        self.vector = (res.ops["kind"] == "vector").to_numpy()
        self.plain = plain

    def fixed(self) -> dict[str, float]:
        """The remainder: ms no compression removes, peak MiB with every compressible tensor empty."""
        ms = 1e3 / (self.hw.clock_mhz * 1e6)
        tensors = self.plain.tensors.copy()
        tensors.loc[self.tensor_moves, "bytes"] = 0
        keep = ~self.moves
        return {"window": self.window, "act_bits": self.act, "step_ms": self.cycles.sum() * ms,
                "fixed_ms": self.cycles[keep].sum() * ms, "fixed_vector_ms": self.cycles[keep & self.vector].sum() * ms,
                "fixed_matmul_ms": self.cycles[keep & ~self.vector].sum() * ms,
                "fixed_mib": footprint(tensors, self.hw).peak_memory_bytes / 2**20}

    def step(self, policy: Policy | None) -> dict[str, float]:
        """Latency, vector time (ms) and peak memory (MiB) of one step under ``policy``."""
        trace = self.trace.with_policy(policy)
        moved = sim.simulate_trace(trace.ops[self.moves], self.hw, dataflow="auto")
        ms = 1e3 / (self.hw.clock_mhz * 1e6)
        keep = ~self.moves
        vector_moved = moved.ops.loc[moved.ops["kind"] == "vector", "cycles"].sum()
        return {"latency_ms": (self.cycles[keep].sum() + moved.ops["cycles"].sum()) * ms,
                "vector_ms": (self.cycles[keep & self.vector].sum() + vector_moved) * ms,
                "memory_mib": footprint(trace.tensors, self.hw).peak_memory_bytes / 2**20}


def simulate_grid(grid: dict[str, tuple[Plan, Policy]], bank: TraceBank, hw: sim.HwConfig, n_layers: int,
                  vanilla: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per (window, act_bits, compression): the full method's step against vanilla's;
    and the Amdahl remainder per (window, act_bits)."""
    rows, fixed = [], []
    for window in window_choices(n_layers):
        for act in ACT_BITS:
            split = SplitStep(bank, hw, n_layers, window, act)
            fixed.append(split.fixed())
            for label, (plan, policy) in grid.items():
                cost = split.step(policy)
                rows.append({"window": window, "act_bits": act, "compression": label, "avg_bits": plan.bits,
                             "sparsity": plan.sparsity, "pattern": plan.pattern, **cost,
                             "speedup": vanilla["latency_ms"] / cost["latency_ms"],
                             "memory_saving": vanilla["memory_mib"] / cost["memory_mib"]})
    return pd.DataFrame(rows), pd.DataFrame(fixed)


def check(grid: dict[str, tuple[Plan, Policy]], bank: TraceBank, hw: sim.HwConfig, n_layers: int,
          table: pd.DataFrame, loaded: Any) -> pd.DataFrame:
    """The split against ``dse.reproduce.simulate_all`` (the headline's own path) at vanilla, the
    headline's point and one grid point per window: the same numbers, or the run stops."""
    designs = {"vanilla": Plan().design("vanilla", n_layers), "headline": Plan().design("full", n_layers)}
    policies: dict[str, Policy | None] = {"vanilla": None,
                                         "headline": make_policy(loaded, Plan(), data=None, progress=False)}
    picks = table[(table["act_bits"] == 6) & (table["compression"] == "3b s0.5")]
    for _, row in picks.iterrows():
        name = f"w{row['window']}"
        plan, policy = grid[row["compression"]]
        designs[name], policies[name] = replace(plan, window=int(row["window"]), act_bits=6).design("full", n_layers), policy
    ref = simulate_all(designs, policies, bank, [hw], ablations={}).set_index("config")
    for _, row in picks.iterrows():
        r = ref.loc[f"w{row['window']}"]
        if abs(r["latency_ms"] - row["latency_ms"]) > 1e-6 * r["latency_ms"] or abs(r["memory_mib"] - row["memory_mib"]) > 1e-6:
            raise AssertionError(f"split step differs from simulate_design at window {row['window']}: "
                                 f"{row['latency_ms']} vs {r['latency_ms']} ms")
    return ref


def incompressible(bank: TraceBank, hw: sim.HwConfig, n_layers: int, window: int, act: int) -> dict[str, float]:
    """The part of one step no compression shrinks, for the full method's window and activation
    width: simulated ms of the rows whose annotation any weight compression leaves alone, and
    peak MiB with every compressible tensor at zero bytes (``SplitStep.fixed``)."""
    return SplitStep(bank, hw, n_layers, window, act).fixed()


def quality_evidence(n_layers: int) -> dict[int, dict[str, Any]]:
    """Per window, what the measurements say about ``n`` (steps to vanilla's 32-step perplexity)
    on the checkpoint's grid: window.md (seed 0, equal-time runs) and headline.md (3 seeds)."""
    window_md = json.loads((ROOT / "docs" / "results" / "window.json").read_text())
    head = json.loads((ROOT / "docs" / "results" / "headline.json").read_text())
    van0 = window_md["vanilla"]["perplexity"]
    out: dict[int, dict[str, Any]] = {}
    for r in window_md["rows"]:
        reached = r["ppl_equal_time"] <= van0
        out[int(r["window"])] = {
            "n_min": STEPS if reached else r["equal_steps"] + 1, "source": "window.md (seed 0)",
            "evidence": f"{r['ppl_equal_time']:.2f} after {r['equal_steps']} steps vs vanilla's {van0:.2f} after "
                        f"{STEPS}: {'reached' if reached else 'not reached'}"}
    q = head["quality"]
    full, van = q["full"]["at_steps"]["perplexity"], q["vanilla"]["at_steps"]["perplexity"]
    out.setdefault(int(head["plan"]["window"]), {"n_min": STEPS + 1, "source": "headline.md (3 seeds)",
                                                 "evidence": f"{full['mean']:.2f} vs {van['mean']:.2f} after {STEPS}"})
    if "luc" in q and q["luc"]["at_steps"]["perplexity"]["mean"] == van["mean"]:
        out[n_layers] = {"n_min": STEPS, "source": "headline.md (3 seeds)",
                         "evidence": "LUC on the grid with LoRA on every layer is vanilla's own run (same weights)"}
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every number of the page, JSON-ready (see the module docstring)."""
    loaded = load_model(args.model, seed=0)
    n_layers = int(loaded.model.config.num_hidden_layers)
    hw = sim.load_hw(args.hw)
    bank = TraceBank(loaded, seq_len=256, batch=4)
    grid = compressions(loaded, data=None)
    van = simulate_all({"vanilla": Plan().design("vanilla", n_layers)}, {"vanilla": None}, bank, [hw],
                       ablations={}).set_index("config").loc["vanilla"]
    table, amdahl = simulate_grid(grid, bank, hw, n_layers, van)
    ref = check(grid, bank, hw, n_layers, table, loaded)
    plan0 = Plan()
    sens = profile_sensitivity(loaded, data=None, prune=plan0.prune, quant=plan0.quant, group_size=plan0.group_size,
                               progress=False)
    head = json.loads((ROOT / "docs" / "results" / "headline.json").read_text())
    untuned = float(head["untuned"]["perplexity"])
    predicted = {label: predict_perplexity(sens, policy, untuned) for label, (_, policy) in grid.items()}
    table["untuned_ppl_predicted"] = [predicted[c] for c in table["compression"]]
    amdahl["speedup_bound"] = van["latency_ms"] / amdahl["fixed_ms"]
    amdahl["memory_bound"] = van["memory_mib"] / amdahl["fixed_mib"]
    best = table.groupby(["window", "act_bits"])[["speedup", "memory_saving"]].max().reset_index()
    amdahl = amdahl.merge(best.rename(columns={"speedup": "best_speedup", "memory_saving": "best_memory_saving"}))
    evidence = quality_evidence(n_layers)
    table["n_min"] = [evidence.get(w, {}).get("n_min", STEPS) for w in table["window"]]
    table["ttq_bound"] = table["speedup"] * STEPS / table["n_min"]
    return {"hw": hw.name, "hw_path": args.hw, "n_layers": n_layers,
            "targets": {k: TARGETS[k] for k in ("ttq_speedup", "memory_saving")},
            "vanilla": {k: float(van[k]) for k in ("latency_ms", "vector_ms", "memory_mib")},
            "headline_check": {k: float(ref.loc["headline", k]) for k in ("latency_ms", "speedup", "memory_saving")},
            "split_checked": [c for c in ref.index if c.startswith("w")],
            "untuned_perplexity": untuned, "vanilla_perplexity": head["quality"]["vanilla"]["at_steps"]["perplexity"],
            "amdahl": amdahl.to_dict("records"), "quality_evidence": {str(k): v for k, v in evidence.items()},
            "rows": table.to_dict("records"), "policies": {k: v[1].to_dict() for k, v in grid.items()}}


def measure_untuned(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Untuned held-out perplexity of grid points, compressed for real (``dse.measure.compressed_copy``:
    the policy's pruning and quantization, calibrated on 32 windows) and evaluated like the headline."""
    from dse.measure import Fidelity, compressed_copy
    from workloads.evaluate import evaluate

    unknown = [label for label in args.measure_untuned if label not in result["policies"]]
    if unknown:
        raise SystemExit(f"error: --measure-untuned: no grid point {unknown[0]!r}; use one of "
                         f"{', '.join(result['policies'])}")
    loaded = load_model(args.model, seed=0)
    fid = Fidelity(seq_len=256, calib_windows=32)
    out = {}
    for label in args.measure_untuned:
        start = time.perf_counter()
        work = compressed_copy(loaded, Policy.from_dict(result["policies"][label]), fid)
        ev = evaluate(work, seq_len=256, mc_items=0, progress=False)
        out[label] = {"perplexity": ev["perplexity"], "tokens": ev["tokens"], "seconds": time.perf_counter() - start,
                      "command": f"python benchmarks/bench_ttq_bound.py --measure-untuned '{label}'"}
        del work
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hw", default="hwconfigs/edge_llm.yaml", help="hardware config (default: %(default)s)")
    p.add_argument("--model", default="smollm2-135m", help="model (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DOC, help="markdown to write; its .json and .png beside it "
                   "(default: %(default)s)")
    p.add_argument("--render-only", action="store_true", help="re-render the page and figure from the JSON beside "
                   "--out (no simulation)")
    p.add_argument("--measure-untuned", nargs="+", metavar="LABEL", default=None,
                   help="compress the real model with these grid points' policies (e.g. '3b s0') and measure their "
                   "untuned held-out perplexity (all eval windows of 256 tokens); added to the JSON beside --out")
    args = p.parse_args(argv)
    json_path, png = args.out.with_suffix(".json"), args.out.with_suffix(".png")
    if args.render_only or args.measure_untuned:
        result = json.loads(json_path.read_text())
        if args.measure_untuned:
            result.setdefault("untuned_measured", {}).update(measure_untuned(args, result))
            io.write_json(json_path, result)
    else:
        start = time.perf_counter()
        result = {"command": "python benchmarks/bench_ttq_bound.py" + "".join(
            f" {a}" for a in (argv if argv is not None else sys.argv[1:])), **measure(args)}
        result["seconds"] = time.perf_counter() - start
        io.write_json(json_path, result)
    table, amdahl = pd.DataFrame(result["rows"]), pd.DataFrame(result["amdahl"])
    figure(table, amdahl, png, result["hw"])
    io.write_text(args.out, markdown(result, table, amdahl, fig=png.name))
    print(args.out.read_text())
    return 0


def figure(table: pd.DataFrame, amdahl: pd.DataFrame, path: Path, hw_name: str) -> None:
    """Speed-up against memory saving of every grid point, colour = window; each window's
    Amdahl bound (best over activation widths) as a dashed line in its colour; targets in black."""
    fig = Figure(figsize=(9, 5.6))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"]
    windows = sorted(table["window"].unique())
    markers = {16: "o", 8: "s", 6: "^"}
    for i, w in enumerate(windows):
        color = cmap(i / max(1, len(windows) - 1))
        for act, mk in markers.items():
            part = table[(table["window"] == w) & (table["act_bits"] == act)]
            ax.scatter(part["memory_saving"], part["speedup"], color=color, marker=mk, s=22, alpha=0.85,
                       label=f"window {w}" if act == 16 else None)
        bound = amdahl.loc[amdahl["window"] == w, "speedup_bound"].max()
        ax.axhline(bound, color=color, ls=":", lw=1.2)
    ax.axhline(TARGETS["ttq_speedup"], color="k", ls="--", lw=1.2)
    ax.axvline(TARGETS["memory_saving"], color="k", ls="--", lw=1.2)
    ax.text(ax.get_xlim()[1], TARGETS["ttq_speedup"], " 2.92x target", va="bottom", ha="right", fontsize=8)
    ax.text(TARGETS["memory_saving"], ax.get_ylim()[1], " 4x target", va="top", ha="left", fontsize=8)
    ax.set_xlabel(f"memory saving vs vanilla (peak, simulated on {hw_name})")
    ax.set_ylabel("per-step speed-up vs vanilla (same scheduler, every op charged)")
    ax.set_title("Compression beyond the checkpoint: o 16-bit, s 8-bit, ^ 6-bit saved activations;\n"
                 "dotted: each window's Amdahl bound (compressible work at zero cost)", fontsize=9)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    io.save_figure(path, fig)


def markdown(r: dict[str, Any], table: pd.DataFrame, amdahl: pd.DataFrame, *, fig: str) -> str:
    """The page, every number from ``r`` (the JSON this script wrote)."""
    t_speed, t_mem = r["targets"]["ttq_speedup"], r["targets"]["memory_saving"]
    van, chk = r["vanilla"], r["headline_check"]
    fast = table[table["speedup"] >= t_speed]
    small = table[table["memory_saving"] >= t_mem]
    both = fast[fast["memory_saving"] >= t_mem]
    top = table.loc[table["speedup"].idxmax()]
    best_ttq = table.loc[table["ttq_bound"].idxmax()]
    verdict = ("no point of the grid can reach it" if best_ttq["ttq_bound"] < t_speed else
               f"{int((table['ttq_bound'] >= t_speed).sum())} points are not ruled out")
    lines = [
        "# Time-to-quality bound: can compression beyond the checkpoint reach 2.92x and 4x?",
        "",
        f"Command (every number on this page): `{r['command']}` (then `--render-only` re-renders from "
        f"ttq_bound.json). Simulated on `{r['hw']}`; {len(table)} points in {r.get('seconds', 0) / 60:.0f} min.",
        "",
        "## Answer",
        "",
        f"- **Per step**: the fastest point is {_point(top)} at {top['speedup']:.2f}x "
        f"({top['memory_saving']:.2f}x memory). {len(fast)} of {len(table)} points reach {t_speed}x per step, "
        f"all with windows of {_windows(fast)} layers; {len(small)} reach {t_mem:g}x memory; {len(both)} reach both.",
        f"- **Time to quality**: {verdict} under the bound below (largest: {best_ttq['ttq_bound']:.2f}x, "
        f"{_point(best_ttq)}). The windows short enough for {t_speed}x per step need, measured on the checkpoint's "
        f"grid, {_n_range(r, fast)} steps to reach vanilla's 32-step perplexity; for every window, Amdahl bound x 32 / n_min "
        f"stays below {t_speed}x (table below), so no compression at all gets there under the assumption.",
        f"- **The step itself**: with every compressible row at zero cost (Amdahl), only windows of "
        f"{_windows(amdahl[amdahl['speedup_bound'] >= t_speed])} layers could reach {t_speed}x per step. What "
        f"compression cannot touch is {_vector_share(amdahl)} non-matrix work (the forward pass's norms, softmax, "
        "activations and the head's cross-entropy through every layer, the window's backward, packing).",
        "",
        "## Set-up",
        "",
        f"Vanilla LoRA (dense 16-bit weights, all {r['n_layers']} layers, full backprop) and the full method (one exit "
        f"at the top, window W, LUC policy, head at {HEAD_BITS} bits, saved activations at 16, 8 or 6 bits), both "
        "simulated from real traces of SmolLM2-135M (batch 4 x 256) under the per-op scheduler, every operation "
        f"charged (`dse.reproduce.simulate_all`, the headline's cost model). Vanilla: {van['latency_ms']:.1f} ms a "
        f"step, {van['vector_ms']:.1f} ms of it non-matrix work, peak {van['memory_mib']:.1f} MiB. Check against "
        f"headline.md: its own point (window 12, 4-bit optimal policy, 6-bit activations) simulates here at "
        f"{chk['speedup']:.2f}x and {chk['memory_saving']:.2f}x.",
        "",
        "Compression grid, beyond the checkpoint's 4-bit grid: average bits "
        f"{', '.join(f'{b:g}' for b in BITS)} and unstructured sparsity {', '.join(f'{x:g}' for x in SPARSITIES)}, "
        "mixed per layer by the paper's rule from the measured sensitivity table (wanda + GPTQ, groups of 32); and "
        "2:4 on every layer at the rule's bits. The hardware skips unstructured zeros (80% of them, with 4-bit "
        "indices) and so skips 2:4 zeros as 50% unstructured ones: it has no N:M unit.",
        "",
        f"![speed-up against memory saving]({fig})",
        "",
        "## The Amdahl bound: what compression cannot shrink",
        "",
        "Compression changes only the rows that read a compressed weight: the decoder's linear products and the "
        "tied head's. Everything else costs the same at any compression: the non-matrix work (norms, RoPE, "
        "softmax, activations, residuals, the head's softmax and cross-entropy, packing of saved activations) "
        "over every layer the forward pass crosses, attention's two products, the LoRA products, the optimizer. "
        "Found by annotating each trace with an extreme policy (95% sparse, 2-bit, head included) and keeping "
        "the rows whose annotation did not move; their simulated time is `fixed_ms`. With the compressible rows "
        "at zero time a step costs at least `fixed_ms`, so `vanilla / fixed_ms` bounds the per-step speed-up of "
        "any compression. Memory likewise, with every compressible tensor (weights) at zero bytes.",
        "",
        io.markdown_table(amdahl[["window", "act_bits", "fixed_ms", "fixed_vector_ms", "fixed_matmul_ms",
                                  "speedup_bound", "best_speedup", "memory_bound", "best_memory_saving"]].round(3)),
        "",
        "`best_*`: the grid's best point at that window and width. Smaller saved activations shrink memory, not "
        "time: packing them is vector work of its own.",
        "",
        *_ttq_section(r, table, amdahl),
        *_memory_section(r, table),
        "## The grid at 6-bit saved activations (speed-up / memory saving)",
        "",
        io.markdown_table(_pivot(table[table["act_bits"] == 6])),
        "",
        "Every point at every width is in ttq_bound.json (`rows`), with its policy (`policies`).",
        "",
    ]
    return "\n".join(lines)


def _n_range(r: dict[str, Any], frame: pd.DataFrame) -> str:
    ev = {int(k): v["n_min"] for k, v in r["quality_evidence"].items()}
    ns = sorted({ev.get(int(w), STEPS) for w in frame["window"]})
    return f"more than {ns[0] - 1}" if ns else "n/a"


def _vector_share(amdahl: pd.DataFrame) -> str:
    share = amdahl["fixed_vector_ms"] / amdahl["fixed_ms"]
    return f"{share.min():.0%}-{share.max():.0%}"


def _point(row: pd.Series) -> str:
    return f"window {int(row['window'])}, {row['compression']}, {int(row['act_bits'])}-bit activations"


def _windows(frame: pd.DataFrame) -> str:
    ws = sorted({int(w) for w in frame["window"]})
    return ", ".join(map(str, ws)) if ws else "none"


def _pivot(frame: pd.DataFrame) -> pd.DataFrame:
    cells = frame.assign(cell=[f"{s:.2f} / {m:.2f}" for s, m in zip(frame["speedup"], frame["memory_saving"])])
    out = cells.pivot(index="compression", columns="window", values="cell")
    out.columns = [f"w{c}" for c in out.columns]
    return out.reset_index()


def _ttq_section(r: dict[str, Any], table: pd.DataFrame, amdahl: pd.DataFrame) -> list[str]:
    t_speed = r["targets"]["ttq_speedup"]
    ev = {int(k): v for k, v in r["quality_evidence"].items()}
    rows = []
    for w, part in amdahl.groupby("window"):
        e = ev.get(int(w), {"n_min": STEPS, "source": "none: n >= 32 assumed", "evidence": ""})
        grid = table[table["window"] == w]
        rows.append({"window": int(w), "n_min": e["n_min"], "measured": f"{e['source']}: {e['evidence']}".rstrip(": "),
                     "amdahl_speedup": round(float(part["speedup_bound"].max()), 3),
                     "ttq_bound": round(float(part["speedup_bound"].max()) * STEPS / e["n_min"], 3),
                     "grid_best_ttq": round(float(grid["ttq_bound"].max()), 3)})
    evidence = pd.DataFrame(rows)
    van = r["vanilla_perplexity"]
    open_points = table[table["ttq_bound"] >= t_speed]
    return [
        "## Why the per-step speed-up bounds time to quality",
        "",
        f"Time-to-quality speed-up (headline.md): vanilla reaches perplexity {van['mean']:.2f} (mean of 3 seeds) in "
        f"{STEPS} steps; if the method needs `n` steps to reach it, `ttq = {STEPS} t_vanilla / (n t_method) = "
        f"speed-up x {STEPS} / n`. So **ttq <= per-step speed-up whenever n >= {STEPS}**, that is whenever the "
        f"method's perplexity after {STEPS} steps is no better than vanilla's.",
        "",
        "The assumption, stated plainly: *compressing the frozen base weights beyond the checkpoint's grid does not "
        "make tuning reach a given perplexity in fewer steps* (it starts from a worse model: the untuned perplexity "
        f"below rises from {r['untuned_perplexity']:.2f} with every step of compression, and LoRA of the same rank "
        "must recover that loss on top of the adaptation). Then the `n` measured on the grid is a lower bound for "
        "the same window beyond it, and `ttq <= Amdahl bound x 32 / n_min` for any compression. Each window's "
        "`n_min` (on the grid: 4-bit layers, sparsity 0):",
        "",
        io.markdown_table(evidence),
        "",
        "`measured`: window.md's runs (seed 0, saved activations at 16 bits, head at 16 bits; at equal simulated "
        "time under its matrix-only cost model: whatever that count was, the run had not reached vanilla's "
        "seed-0 perplexity after it) and headline.md's (3 seeds). Windows without a measurement keep n >= 32, the "
        "assumption alone. 8- and 6-bit saved activations raise perplexity after 32 steps by 0.18% and 0.43% "
        "(act_bits.md, window 12) and the 8-bit head changes nothing (same page), so neither shortens n: the bound "
        "carries over. `grid_best_ttq` is the grid's best `speed-up x 32 / n_min`.",
        "",
        (f"No grid point's bound reaches {t_speed}x, so the time-to-quality target is out of reach for this model "
         "and hardware at any compression of the grid under the assumption above; the Amdahl column says the same "
         "for any compression at all. " if open_points.empty else
         f"Not ruled out by the bound ({len(open_points)} points): they need tuning runs (next step below). ")
        + (f"Where the per-step speed-up alone exceeds {t_speed}x (windows of {_windows(table[table['speedup'] >= t_speed])} "
           "layers), the n >= 32 bound would leave ttq open; the measured n of those windows closes it."
           if not table[table["speedup"] >= t_speed].empty else ""),
        "",
        "Next step, to test the assumption with real tuning rather than rely on it (vanilla's runs are reused "
        "from headline_runs; each tunes 3 seeds to 128 steps): the fastest points that also save 4x memory, and "
        "`python benchmarks/bench_ttq_bound.py --measure-untuned '2.5b s0.7' '3b s0.5'` to replace the predicted "
        "untuned perplexity below by a measured one:",
        "",
        "```sh",
        *[f"python -m dse.reproduce --hw {r['hw_path']} --configs vanilla,full --window {int(p['window'])} "
          f"--act-bits {int(p['act_bits'])} --bits {p['avg_bits']:g} --sparsity {p['sparsity']:g} --rule paper "
          f"--runs docs/results/headline_runs --curve-steps 8 16 32 64 128 --skip-equal-time "
          f"--md docs/results/ttq_w{int(p['window'])}.md"
          for _, p in _candidates(table, r).iterrows()],
        "```",
        "",
    ]


def _candidates(table: pd.DataFrame, r: dict[str, Any]) -> pd.DataFrame:
    """Per window, the unstructured point with the largest per-step speed-up among those saving
    the target memory (the points a tuning run would test first)."""
    ok = table[(table["memory_saving"] >= r["targets"]["memory_saving"]) & (table["pattern"] == "unstructured")
               & (table["speedup"] >= r["targets"]["ttq_speedup"])]
    return ok.loc[ok.groupby("window")["speedup"].idxmax()] if not ok.empty else ok


def _memory_section(r: dict[str, Any], table: pd.DataFrame) -> list[str]:
    t_mem = r["targets"]["memory_saving"]
    ok = table[table["memory_saving"] >= t_mem]
    least = ok.loc[ok.groupby(["window", "act_bits"])["untuned_ppl_predicted"].idxmin()] if not ok.empty else ok
    cols = ["window", "act_bits", "compression", "speedup", "memory_saving", "memory_mib", "untuned_ppl_predicted"]
    return [
        f"## Memory: which points save {t_mem:g}x, and at what untuned perplexity",
        "",
        f"{len(ok)} of {len(table)} points save at least {t_mem:g}x. Per window and width, the one with the "
        "lowest predicted untuned perplexity (the least compression that gets there):",
        "",
        io.markdown_table(least[cols].round(3)) if not least.empty else "(none)",
        "",
        f"Untuned perplexity: the checkpoint's measured {r['untuned_perplexity']:.2f} (headline.md) times "
        "exp(predicted loss increase) of the policy from the measured per-layer sensitivity table "
        "(`workloads.luc.predict`). The predictor adds layers' losses and misses their compounding, so it reads "
        "low for aggressive policies: luc.md measured 58.9 for uniform 3 bits and 73.0 for the paper rule at 70% "
        "sparsity. For 2:4 it uses the unstructured table at 50%, a lower bound (luc.md: wanda 2:4 106.9 against "
        "50% unstructured 38.2).",
        "",
        *_measured_untuned(r, table),
    ]


def _measured_untuned(r: dict[str, Any], table: pd.DataFrame) -> list[str]:
    measured = r.get("untuned_measured") or {}
    if not measured:
        return []
    predicted = table.drop_duplicates("compression").set_index("compression")["untuned_ppl_predicted"]
    rows = [{"compression": k, "predicted": round(float(predicted[k]), 2), "measured": round(v["perplexity"], 2),
             "tokens": v["tokens"], "command": f"`{v['command']}`"} for k, v in measured.items()]
    return ["Measured for real (the policy applied to the real model: wanda + GPTQ in groups of 32, calibrated "
            "on 32 windows of the calibration split; held-out perplexity on every eval window of 256 tokens, as "
            "the headline's untuned row):", "", io.markdown_table(pd.DataFrame(rows)), ""]


if __name__ == "__main__":
    sys.exit(main())
