"""Is the search worth it? Samplers against random search at equal budget, and the joint search
against the sequential flow (compress first for accuracy, then tune and schedule for speed).

    python -m dse.compare --samplers nsga2,tpe,random --seeds 0,1,2 --trials 200 --out runs/compare

Every study uses the same evaluator (model, sensitivities, traces, tuning table) and one
hypervolume scale (normalized by vanilla tuning), so the numbers compare. Studies are kept in
``--out/studies.db``: rerunning resumes them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

from dse import io, report
from dse.hypervolume import REFERENCE_POINT
from dse.pipeline import Search, set_up
from dse.search import build_parser as search_parser
from dse.search import settings_from_args
from dse.sequential import latency_gain, sequential_front
from dse.study import SAMPLERS, make_sampler, open_study, run_trials
from workloads.errors import UserError, cli_main

__all__ = ["build_parser", "hv_at", "main", "markdown", "plot", "run", "verdict"]


def _csv(kind: type, text: str) -> list[Any]:
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list (got {text!r})") from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m dse.compare``: every flag of ``dse.search`` (whose sampler, storage,
    study-name and seed flags this command replaces) plus ``--samplers``, ``--seeds``,
    ``--checkpoints`` and ``--no-sequential``.
    """
    p = search_parser()
    p.prog = "python -m dse.compare"
    p.description = ("Run the same search budget with several samplers and seeds and report the hypervolume "
                     "each reaches (normalized by vanilla tuning), then compare the joint search's front with "
                     "the sequential flow's (compress for accuracy first, then choose tuning depth and dataflow). "
                     "Takes every flag of python -m dse.search (its --sampler, --storage, --study-name and "
                     "--seed are replaced by the flags below). Writes compare.csv, compare.json, compare.md and "
                     "compare.png in --out.")
    p.add_argument("--samplers", type=lambda t: _csv(str, t), default=["nsga2", "tpe", "random"],
                   help="samplers to compare (default: nsga2,tpe,random)")
    p.add_argument("--seeds", type=lambda t: _csv(int, t), default=[0, 1, 2], help="seeds per sampler (default: 0,1,2)")
    p.add_argument("--checkpoints", type=lambda t: _csv(int, t), default=None,
                   help="trial counts at which to report hypervolume (default: trials/4, trials/2, trials)")
    p.add_argument("--no-sequential", action="store_true", help="skip the joint-vs-sequential comparison")
    p.set_defaults(out="runs/compare", remeasure=0, trials=200)
    return p


def hv_at(history: np.ndarray, n: int) -> float:
    """The hypervolume after ``n`` complete trials, from a history of one value per complete trial
    (``[trials]``, normalized by vanilla tuning); the last value when the study holds fewer, 0.0
    for an empty history.
    """
    return float(history[min(n, len(history)) - 1]) if len(history) else 0.0


def run(search: Search, *, samplers: list[str], seeds: list[int], trials: int, checkpoints: list[int], out: Path,
        progress: bool) -> pd.DataFrame:
    """Run ``trials`` complete trials per sampler and seed, each in its own study of one SQLite file
    in ``out`` (the same search, same reference, same budget: equal treatment), and save each
    study's hypervolume history as ``hv-SAMPLER-sSEED.npy``.

    Returns one row per (sampler, seed): ``seconds`` (wall-clock) and ``hv@N`` for each of
    ``checkpoints`` (hypervolume normalized by vanilla tuning; Optuna's samplers, Zitzler's
    hypervolume indicator).
    """
    storage = f"sqlite:///{out / 'studies.db'}"
    ref = search.reference()
    rows = []
    for sampler in samplers:
        for seed in seeds:
            study = open_study(storage, f"{sampler}-s{seed}", make_sampler(sampler, seed=seed),
                               search.settings.identity(search.hw))
            if report.REFERENCE_KEY not in study.user_attrs:
                study.set_user_attr(report.REFERENCE_KEY, ref)
            start = time.perf_counter()
            run_trials(study, search.objective, trials, progress=progress)
            history = report.hv_history(study)
            row: dict[str, Any] = {"sampler": sampler, "seed": seed, "seconds": time.perf_counter() - start}
            row.update({f"hv@{n}": hv_at(history, n) for n in checkpoints})
            rows.append(row)
            np.save(out / f"hv-{sampler}-s{seed}.npy", history)
    return pd.DataFrame(rows)


def verdict(table: pd.DataFrame, trials: int) -> dict[str, Any]:
    """The issue's test: does NSGA-II or TPE reach within trials/2 the hypervolume random search
    reaches within ``trials`` (means over seeds)?"""
    mean = table.groupby("sampler").mean(numeric_only=True)
    half = f"hv@{trials // 2}"
    out: dict[str, Any] = {}
    if "random" in mean.index and half in mean.columns:
        target = float(mean.loc["random", f"hv@{trials}"])
        out["random_hv_at_full"] = target
        for name in mean.index:
            if name != "random":
                out[f"{name}_hv_at_half"] = float(mean.loc[name, half])
                out[f"{name}_beats_random"] = bool(mean.loc[name, half] >= target)
    return out


def plot(out: Path, samplers: list[str], seeds: list[int]) -> None:
    """Write ``compare.png`` in ``out``: the hypervolume against complete trials per sampler, the
    mean over ``seeds`` with a min-max band (from the histories ``run`` saved).
    """
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for sampler in samplers:
        curves = [np.load(out / f"hv-{sampler}-s{seed}.npy") for seed in seeds]
        n = min(len(c) for c in curves)
        stack = np.stack([c[:n] for c in curves])
        x = np.arange(1, n + 1)
        ax.plot(x, stack.mean(axis=0), label=f"{sampler} (mean of {len(seeds)})")
        ax.fill_between(x, stack.min(axis=0), stack.max(axis=0), alpha=0.2)
    ax.set_xlabel("complete trials")
    ax.set_ylabel("hypervolume (normalized by vanilla)")
    ax.set_title("search vs random search at equal budget")
    ax.grid(alpha=0.3)
    ax.legend()
    io.save_figure(out / "compare.png", fig)


def markdown(table: pd.DataFrame, result: dict[str, Any], command: str) -> str:
    """The ``compare.md`` page: the command, the hypervolume table per sampler and seed, its means
    over seeds, and ``result`` (the verdict and the joint-vs-sequential comparison) as JSON.
    """
    lines = ["# Search vs random search, joint vs sequential", "", f"Command: `{command}`", "",
             "Hypervolume (normalized by vanilla tuning; higher is better), per sampler and seed:", "",
             io.markdown_table(table), "", "Means over seeds:", "",
             io.markdown_table(table.groupby("sampler").mean(numeric_only=True).drop(columns=["seed"]), index=True), "",
             "```json", json.dumps(result, indent=1, default=str), "```", ""]
    return "\n".join(lines)


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``python -m dse.compare``: run the samplers at equal budget, compare the joint search's front
    with the sequential flow's, write compare.csv / .json / .md / .png in ``--out`` and print the
    page (or, with ``--json``, the result); returns the exit status 0.

    Raises:
        UserError: an unknown sampler or any ``dse.search`` setting error (one line via ``cli_main``).
    """
    args = build_parser().parse_args(argv)
    bad = [s for s in args.samplers if s not in SAMPLERS]
    if bad:
        raise UserError(f"unknown sampler(s) {bad}: use {', '.join(SAMPLERS)}")
    settings = settings_from_args(args)
    trials = settings.trials
    checkpoints = sorted(set(args.checkpoints or [max(1, trials // 4), max(1, trials // 2), trials]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    search = set_up(replace(settings, out=str(out)), progress=True)
    table = run(search, samplers=args.samplers, seeds=args.seeds, trials=trials, checkpoints=checkpoints, out=out,
                progress=True)
    io.write_csv(out / "compare.csv", table)
    plot(out, args.samplers, args.seeds)
    result: dict[str, Any] = {"trials": trials, "checkpoints": checkpoints, "samplers": verdict(table, trials)}
    if not args.no_sequential:
        from optuna import load_study

        from dse.study import front

        best = table.sort_values(f"hv@{trials}").iloc[-1]
        study = load_study(study_name=f"{best['sampler']}-s{int(best['seed'])}", storage=f"sqlite:///{out / 'studies.db'}")
        seq = sequential_front(search, progress=True)
        io.write_csv(out / "sequential.csv", seq)
        # Only front members the hypervolume counts (perplexity under its reference corner).
        useful = REFERENCE_POINT[0] * study.user_attrs[report.REFERENCE_KEY]["perplexity"]
        result["joint_vs_sequential"] = latency_gain(front(study), seq, max_perplexity=useful)
        result["joint_study"] = study.study_name
    command = "python -m dse.compare " + " ".join(sys.argv[1:] if argv is None else argv)
    io.write_text(out / "compare.md", markdown(table, result, command))
    io.write_json(out / "compare.json", result)
    print(json.dumps(result, default=str) if args.json else (out / "compare.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
