"""Reproduce the numbers of docs/results/luc.md: LUC against uniform compression on the real
SmolLM2-135M, the methods x budgets table, sensitivity profiling cost, and how well the
cheap loss predictor ranks policies against measured perplexity.

    python benchmarks/bench_luc.py --sections profile targets native_group methods predictor

Every measured run (policy -> compressed model -> held-out perplexity) is appended to a JSONL
file in the user cache folder and reused on the next invocation, so the script resumes after
an interruption and re-renders the tables for free. The tables are written between
``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers of docs/results/luc.md (the prose
around them is kept), and the figures to docs/results/luc_*.png.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workloads import data as data_mod  # noqa: E402
from workloads.luc.allocate import allocate, average  # noqa: E402
from workloads.luc.compress import compress_model, needs_calibration  # noqa: E402
from workloads.luc.policy import LayerPolicy, Policy  # noqa: E402
from workloads.luc.predict import predict_loss_increase  # noqa: E402
from workloads.luc.sensitivity import profile_sensitivity  # noqa: E402
from workloads.luc.table import SensitivityTable  # noqa: E402
from workloads.luc.uniform import uniform_policy  # noqa: E402
from workloads.metrics import model_scorer, perplexity  # noqa: E402
from workloads.models import cache_dir, load_model  # noqa: E402

MODEL = "smollm2-135m"
DOC = ROOT / "docs" / "results" / "luc.md"
SECTIONS = ("profile", "targets", "native_group", "methods", "predictor")


class Runner:
    """Compress a fresh copy of the model with a policy and measure held-out perplexity,
    remembering every result in a JSONL file keyed by everything that determines it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.path = Path(args.runs)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.done[rec["key"]] = rec
        self.loaded = load_model(MODEL)
        tok = self.loaded.tokenizer
        self.eval_windows = data_mod.split_windows(tok, "eval", args.seq_len, max_windows=args.eval_windows)
        self.calib = data_mod.split_windows(
            tok, "calibration", args.seq_len, max_windows=args.calib_windows, shuffle=True, seed=args.seed
        )

    def key(self, policy: Policy | None) -> str:
        spec = {
            "eval": [self.args.seq_len, int(self.eval_windows.shape[0])],
            "calib": int(self.calib.shape[0]),
            "policy": None if policy is None else {k: v for k, v in policy.to_dict().items() if k != "meta"},
        }
        return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]

    def ppl(self, policy: Policy | None, label: str) -> dict[str, Any]:
        key = self.key(policy)
        if key in self.done:
            return self.done[key]
        start = time.perf_counter()
        model = load_model(MODEL).model
        report = None
        if policy is not None:
            calib = self.calib if needs_calibration(policy) else None
            report = compress_model(model, policy, calib, progress=False)
        res = perplexity(model_scorer(model), self.eval_windows, progress=False)
        rec = {
            "key": key,
            "label": label,
            "perplexity": res.perplexity,
            "nll": res.nll,
            "tokens": res.tokens,
            "avg_sparsity": None if report is None else report.avg_sparsity,
            "avg_bits": None if report is None else report.avg_bits,
            "policy": None if policy is None else policy.to_dict(),
            "seconds": round(time.perf_counter() - start, 1),
        }
        with self.path.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        self.done[key] = rec
        print(f"  {label}: ppl {res.perplexity:.3f} ({rec['seconds']} s)", flush=True)
        return rec


def table_for(runner: Runner, prune: str, quant: str, group: int, pattern: str = "unstructured") -> SensitivityTable:
    return profile_sensitivity(
        runner.loaded,
        prune=prune,
        quant=quant,
        pattern=pattern,
        group_size=group,
        seq_len=runner.args.seq_len,
        windows=runner.args.profile_windows,
        seed=runner.args.seed,
        progress=True,
    )


def with_method(policy: Policy, prune: str, quant: str, group: int) -> Policy:
    """The same allocation, compressed with another method (profile cheap, compress well)."""
    return Policy(dict(policy.layers), pattern=policy.pattern, prune=prune, quant=quant, group_size=group, meta=dict(policy.meta))


# -- sections ------------------------------------------------------------------------------------
def section_profile(runner: Runner, out: dict[str, str]) -> None:
    rows = []
    for prune, quant, group in [("wanda", "rtn", runner.args.group)] + [tuple(m) for m in runner.args.profile_extra]:
        start = time.perf_counter()
        t = table_for(runner, prune, quant, int(group))
        took = time.perf_counter() - start
        rows.append(
            f"| {prune}/{quant} g{group} | {t.key['windows']} x {t.key['seq_len']} | {len(t.sparsities)} + {len(t.bits)} | "
            f"{t.seconds / 60:.1f} min | {took:.1f} s |"
        )
    out["profile"] = "\n".join(
        [
            "| method | calibration windows x tokens | settings per layer (sparsities + bit-widths) | first run (measured) | second run (cache) |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    t = table_for(runner, "wanda", "rtn", runner.args.group)
    plot_sensitivity(t, DOC.parent / "luc_sensitivity.png")


def section_targets(runner: Runner, out: dict[str, str]) -> None:
    a = runner.args
    prune, quant, group = a.prune, a.quant, a.group
    table = table_for(runner, a.profile_prune or prune, a.profile_quant or quant, group)
    dense = runner.ppl(None, "dense")["perplexity"]
    lines = [f"Method: {prune}/{quant}, group {group}; allocation from the {table.key['prune']}/{table.key['quant']} "
             f"sensitivity table. Dense perplexity {dense:.3f}.", ""]
    policies: dict[str, dict[str, Policy]] = {}
    for name, (s, b) in {"50% + 4 bit": (0.5, 4), "70%, 16 bit": (0.7, 16), "0% + 3.5 bit": (0.0, 3.5)}.items():
        cand: dict[str, Policy] = {}
        if float(b).is_integer():
            cand["uniform"] = uniform_policy(table, s, b)
        else:
            cand["uniform 3 bit"] = uniform_policy(table, s, math.floor(b))
            cand["3/4 split, wide first"] = uniform_policy(table, s, b, wide_first=True)
            cand["3/4 split, wide last"] = uniform_policy(table, s, b, wide_first=False)
        for rule in ("paper", "owl", "optimal"):
            cand[f"LUC {rule}"] = allocate(table, s, b, rule=rule)
        policies[name] = cand
        rows = []
        for label, pol in cand.items():
            pol = with_method(pol, prune, quant, group)
            rec = runner.ppl(pol, f"{name} {label}")
            ps, pb = average(pol, table)
            rows.append((label, ps, pb, predict_loss_increase(table, pol), rec["perplexity"]))
        best_base = min(r[4] for r in rows if not r[0].startswith("LUC"))
        lines += [f"**{name}**", "", "| policy | avg sparsity | avg bits | predicted loss increase (nats) | perplexity | x dense | vs best baseline |", "|---|---|---|---|---|---|---|"]
        for label, ps, pb, pred, p in rows:
            lines.append(f"| {label} | {ps:.3f} | {pb:.3f} | {pred:.3f} | {p:.3f} | {p / dense:.2f} | {best_base / p:.2f}x |")
        lines.append("")
    out["targets"] = "\n".join(lines)
    plot_policies(policies, table, DOC.parent / "luc_policies.png")


def section_native_group(runner: Runner, out: dict[str, str]) -> None:
    """50% + 4 bit again at group 32: the checkpoint's own 4-bit grid (Q4_1, group 32), so the
    quantization error left is what pruning moves off that grid."""
    a = runner.args
    table = table_for(runner, a.profile_prune, a.profile_quant, a.group)
    dense = runner.ppl(None, "dense")["perplexity"]
    cand = {"uniform": uniform_policy(table, 0.5, 4)}
    cand.update({f"LUC {rule}": allocate(table, 0.5, 4, rule=rule) for rule in ("paper", "owl", "optimal")})
    lines = [f"Method: {a.prune}/{a.quant}, **group 32**; allocation from the same {table.key['prune']}/"
             f"{table.key['quant']} table. Dense perplexity {dense:.3f}.", "",
             "| policy | avg sparsity | avg bits | perplexity | x dense |", "|---|---|---|---|---|"]
    for label, pol in cand.items():
        rec = runner.ppl(with_method(pol, a.prune, a.quant, 32), f"50% + 4 bit g32 {label}")
        ps, pb = average(pol, table)
        lines.append(f"| {label} | {ps:.3f} | {pb:.3f} | {rec['perplexity']:.3f} | {rec['perplexity'] / dense:.2f} |")
    out["native_group"] = "\n".join(lines)


def section_methods(runner: Runner, out: dict[str, str]) -> None:
    a = runner.args
    dense = runner.ppl(None, "dense")["perplexity"]
    budgets = [("50%", 0.5, 16, "unstructured"), ("2:4", 0.5, 16, "2:4"), ("4 bit", 0.0, 4, "unstructured"),
               ("3 bit", 0.0, 3, "unstructured"), ("50% + 4 bit", 0.5, 4, "unstructured"), ("50% + 3 bit", 0.5, 3, "unstructured")]
    header = "| prune / quant | " + " | ".join(b[0] for b in budgets) + " |"
    lines = [f"Uniform policies, quantization group {a.group}; perplexity (dense {dense:.3f}).", "", header,
             "|---|" + "---|" * len(budgets)]
    n = runner.loaded.num_layers
    for prune in ("magnitude", "wanda", "sparsegpt"):
        for quant in ("rtn", "gptq"):
            cells = []
            for _, s, b, pattern in budgets:
                if (s == 0 and prune != "wanda") or (b == 16 and quant != "rtn"):
                    cells.append("")  # the other method does not act at this budget
                    continue
                pol = Policy.uniform(n, s, b, prune=prune, quant=quant, pattern=pattern, group_size=a.group)
                cells.append(f"{runner.ppl(pol, f'{prune}/{quant} {pattern} s{s} b{b}')['perplexity']:.2f}")
            lines.append(f"| {prune} / {quant} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Empty cells: the budget does not use that method (no quantization at 16 bits, no pruning at 0%); "
                 "pure quantization rows are listed under wanda.")
    out["methods"] = "\n".join(lines)


def section_predictor(runner: Runner, out: dict[str, str]) -> None:
    a = runner.args
    table = table_for(runner, "wanda", "rtn", a.group)
    rng = np.random.default_rng(a.seed)
    cands: list[tuple[str, Policy]] = []
    budgets = [(0.3, 4), (0.4, 4), (0.5, 4), (0.5, 3.5), (0.6, 16), (0.5, 16), (0.4, 3.5), (0.6, 4)]
    for s, b in budgets:
        cands.append((f"uniform {s}/{b}", uniform_policy(table, s, b)))
        cands.append((f"optimal {s}/{b}", allocate(table, s, b, rule="optimal")))
        cands.append((f"random {s}/{b}", random_policy(table, s, b, rng)))
    preds, ppls, labels = [], [], []
    for label, pol in cands:
        rec = runner.ppl(pol, f"predictor {label}")
        preds.append(predict_loss_increase(table, pol))
        ppls.append(rec["perplexity"])
        labels.append(label)
    rho = spearman(np.array(preds), np.array(ppls))
    # Candidates come in threes per budget: does the predictor order each triple as measured?
    same = [spearman(np.array(preds[3 * k : 3 * k + 3]), np.array(ppls[3 * k : 3 * k + 3])) for k in range(len(budgets))]
    lines = [f"{len(cands)} policies (uniform, optimal and a random reallocation at each of {len(budgets)} budgets), "
             f"wanda/rtn, group {a.group}. Spearman rank correlation between predicted loss increase and measured "
             f"perplexity: **{rho:.3f}**.", "",
             "| policy | predicted loss increase (nats) | measured perplexity |", "|---|---|---|"]
    lines += [f"| {l} | {p:.3f} | {m:.3f} |" for l, p, m in zip(labels, preds, ppls)]
    lines.append("")
    agree = sum(1 for r in same if r > 0.99)
    lines.append(f"Within a budget (3 policies each), the predictor orders all three correctly in {agree} of {len(budgets)} budgets.")
    out["predictor"] = "\n".join(lines)
    plot_predictor(np.array(preds), np.array(ppls), rho, DOC.parent / "luc_predictor.png")


def random_policy(table: SensitivityTable, s: float, b: float, rng: np.random.Generator) -> Policy:
    """A random reallocation of the budget: sparsity perturbed and re-centered, bits shuffled."""
    base = uniform_policy(table, s, b)
    n = table.num_layers
    sp = np.clip(s + rng.uniform(-0.2, 0.2, n), 0.0, 0.9)
    sp = np.clip(sp - sp.mean() + s, 0.0, 0.9) if s > 0 else np.zeros(n)
    sp = sp + (s - sp.mean())  # exact mean (equal layers)
    widths = [base.layers[i].w_bits for i in range(n)]
    rng.shuffle(widths)
    return Policy({i: LayerPolicy(float(np.clip(sp[i], 0, 0.95)), int(widths[i])) for i in range(n)},
                  prune=base.prune, quant=base.quant, group_size=base.group_size, meta={"rule": "random"})


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


# -- figures -------------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sensitivity(t: SensitivityTable, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    im = axes[0].imshow(np.log10(np.maximum(t.prune.T, 1e-5)), aspect="auto", origin="lower", cmap="magma")
    axes[0].set_yticks(range(len(t.sparsities)), [f"{s:.1f}" for s in t.sparsities])
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("sparsity")
    axes[0].set_title(f"pruning ({t.key['prune']}): log10 {t.key['metric']}, nats/token")
    fig.colorbar(im, ax=axes[0])
    im = axes[1].imshow(np.log10(np.maximum(t.quant.T, 1e-5)), aspect="auto", origin="lower", cmap="magma")
    axes[1].set_yticks(range(len(t.bits)), [str(b) for b in t.bits])
    axes[1].set_xlabel("layer")
    axes[1].set_ylabel("bits")
    axes[1].set_title(f"quantization ({t.key['quant']}, group {t.key['group_size']})")
    fig.colorbar(im, ax=axes[1])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_policies(policies: dict[str, dict[str, Policy]], table: SensitivityTable, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, len(policies), figsize=(5 * len(policies), 3.8))
    layers = np.arange(table.num_layers)
    for ax, (name, cand) in zip(np.atleast_1d(axes), policies.items()):
        # Pure quantization budgets differ only in bits; the others are shown by sparsity.
        field = "w_bits" if name.startswith("0%") else "sparsity"
        for label, pol in cand.items():
            if label.startswith("LUC"):
                ax.plot(layers, [getattr(pol.layers[i], field) for i in layers], marker="o", ms=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("layer")
        ax.set_ylabel("bits" if field == "w_bits" else "sparsity")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_predictor(pred: np.ndarray, ppl: np.ndarray, rho: float, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(pred, np.log(ppl), s=14)
    ax.set_xlabel("predicted loss increase (nats/token)")
    ax.set_ylabel("log measured perplexity")
    ax.set_title(f"predictor vs measurement (Spearman {rho:.3f})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- document ------------------------------------------------------------------------------------
def write_sections(out: dict[str, str], path: Path = DOC) -> None:
    """Replace each ``<!-- BEGIN name -->...<!-- END name -->`` block (append if missing)."""
    text = path.read_text() if path.is_file() else "# LUC results\n"
    for name, body in out.items():
        block = f"<!-- BEGIN {name} -->\n{body}\n<!-- END {name} -->"
        pattern = re.compile(rf"<!-- BEGIN {name} -->.*?<!-- END {name} -->", re.S)
        text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run")
    parser.add_argument("--seq-len", type=int, default=256, help="tokens per window (default: %(default)s)")
    parser.add_argument("--eval-windows", type=int, default=32, help="eval-split windows per perplexity (default: %(default)s)")
    parser.add_argument("--calib-windows", type=int, default=32, help="calibration windows for compression (default: %(default)s)")
    parser.add_argument("--profile-windows", type=int, default=2, help="calibration windows for profiling (default: %(default)s)")
    parser.add_argument("--prune", default="sparsegpt", help="targets: pruning method (default: %(default)s)")
    parser.add_argument("--quant", default="gptq", help="targets: quantization method (default: %(default)s)")
    parser.add_argument("--group", type=int, default=128, help="quantization group size (default: %(default)s)")
    parser.add_argument("--profile-prune", default="wanda", help="targets: table's pruning method (default: %(default)s)")
    parser.add_argument("--profile-quant", default="rtn", help="targets: table's quantization method (default: %(default)s)")
    parser.add_argument("--profile-extra", nargs=3, action="append", default=[], metavar=("PRUNE", "QUANT", "GROUP"),
                        help="profile section: also time this method")
    parser.add_argument("--seed", type=int, default=0, help="random policies of the predictor section (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--runs", default=str(cache_dir() / "bench_luc" / "runs.jsonl"), help="JSONL of measured runs (default: %(default)s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    runner = Runner(args)
    steps: dict[str, Callable[[Runner, dict[str, str]], None]] = {
        "profile": section_profile,
        "targets": section_targets,
        "native_group": section_native_group,
        "methods": section_methods,
        "predictor": section_predictor,
    }
    for name in args.sections:
        print(f"== {name}", flush=True)
        out: dict[str, str] = {}
        steps[name](runner, out)
        write_sections(out)


if __name__ == "__main__":
    main()
