"""Joint design-space exploration: compression x tuning depth x dataflow schedule (x hardware).

    python -m dse.search                      # the default study (real model, default hardware)
    python -m dse.search --hw hwconfigs/edge_llm.yaml --trials 200 --sampler nsga2 \\
        --storage sqlite:///runs/study.db --study-name edge --out runs/edge --seed 0

Rerunning the same command resumes the study and completes the requested number of trials.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import sim
from dse.hypervolume import PERPLEXITY_BUDGET
from dse.pipeline import PHASES, REMEASURE_MC_ITEMS, SearchSettings, run_search
from dse.progress import Phases, duration
from dse.storage import open_storage
from dse.study import SAMPLERS, check_study
from workloads import data as data_mod
from workloads.errors import UserError, cli_main
from workloads.evaluate import positive_float, positive_int
from workloads.models import BUILTIN_MODELS, check_model_source

__all__ = ["DEFAULT_HW", "build_parser", "main", "refuse_early", "settings_from_args",
           "spawn_workers"]

DEFAULT_HW = "hwconfigs/edge_llm.yaml"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m dse.search``: hardware, model and data, study storage and size,
    which knobs to search, the accuracy budget and the sizes of the real measurements; every
    default comes from ``SearchSettings``.
    """
    d = SearchSettings()
    p = argparse.ArgumentParser(
        prog="python -m dse.search",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="example: python -m dse.search --trials 100 --out runs/default   (the defaults, what `make run` runs; rerun it to resume)\n\n"
        + textwrap.fill("Multi-objective Optuna search over LUC compression (average sparsity and bits, "
        "pattern, allocation rule), adaptive tuning depth (window, exits, voting) and dataflow (per-op "
        "scheduler or fixed), optionally hardware knobs. Objectives, all minimized: predicted perplexity "
        "after brief tuning, simulated latency of a tuning step (s), peak memory of a step (bytes); "
        "constraints: the step fits the device's DRAM, and the predicted perplexity stays within the accuracy "
        "budget (--max-perplexity-ratio). The Pareto front's members are then compressed, "
        "tuned and evaluated for real. Outputs: pareto.csv, pareto.json, trials.csv, pareto.png, "
        "hypervolume.png, summary.txt in --out. Progress: each phase is announced on stderr with what was "
        "read from the user cache (~/.cache/edgellm) and how long it took; loops draw a bar with an ETA.", 100),
    )
    p.add_argument("--hw", default=DEFAULT_HW, help="hardware config YAML (default: %(default)s)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a hardware field, e.g. --set dram.bandwidth_gbps=8 (repeatable)")
    p.add_argument("--model", default=d.model,
                   help=f"model: {' or '.join(BUILTIN_MODELS)}, a local Hugging Face folder or a .gguf file (default: %(default)s)")
    p.add_argument("--data", default=None, help="text corpus (default: the built-in Python documentation)")
    p.add_argument("--trials", type=positive_int, default=d.trials,
                   help="complete trials the study should hold when done, counting earlier runs (default: %(default)s)")
    p.add_argument("--sampler", choices=SAMPLERS, default=d.sampler, help="Optuna sampler (default: %(default)s)")
    p.add_argument("--storage", default=d.storage,
                   help="study storage: sqlite:///FILE.db, postgresql://USER@HOST/DB, or journal:FILE.log "
                   "(default: %(default)s)")
    p.add_argument("--study-name", default=d.study_name, help="study name in the storage (default: %(default)s)")
    p.add_argument("--out", default=None, help="output folder (default: runs/STUDY_NAME)")
    p.add_argument("--seed", type=int, default=d.seed, help="sampler seed (default: %(default)s)")
    p.add_argument("--search-hw", action="store_true",
                   help="also search the array shape, DRAM bandwidth (0.5-2x) and weight-buffer share, under "
                   "the config's area as a cap")
    p.add_argument("--search-schedule", action="store_true",
                   help="also search the tuning schedule (default: the paper's sequential schedule)")
    p.add_argument("--max-sparsity", type=float, default=d.max_sparsity,
                   help="largest average sparsity searched, [0, 0.9] (default: %(default)s)")
    p.add_argument("--max-perplexity-ratio", type=positive_float, default=d.max_perplexity_ratio,
                   help="accuracy budget: designs whose predicted perplexity exceeds this multiple of vanilla "
                   f"tuning's are infeasible (the hypervolume counts designs under {PERPLEXITY_BUDGET:g}x) (default: %(default)s)")
    p.add_argument("--remeasure", type=int, default=d.remeasure,
                   help="distinct front members to compress, tune and evaluate for real after the search "
                   f"(held-out perplexity and accuracy over {REMEASURE_MC_ITEMS} multiple-choice items); 0 skips "
                   "(default: %(default)s)")
    _add_measurement_args(p, d)
    p.add_argument("--workers", type=positive_int, default=1,
                   help="worker processes on this machine sharing the study (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--worker-only", action="store_true", help=argparse.SUPPRESS)  # set for --workers' children
    return p


def _add_measurement_args(p: argparse.ArgumentParser, d: SearchSettings) -> None:
    """The sizes of the real measurements and of the simulated step (defaults from ``d``)."""
    p.add_argument("--tune-steps", type=positive_int, default=d.fidelity.steps,
                   help="tuning steps of every real measurement (default: %(default)s)")
    p.add_argument("--tune-batch", type=positive_int, default=d.fidelity.batch_size,
                   help="sequences per tuning step of the measurements (default: %(default)s)")
    p.add_argument("--tune-seq-len", type=positive_int, default=d.fidelity.seq_len,
                   help="tokens per sequence of the measurements (default: %(default)s)")
    p.add_argument("--eval-windows", type=positive_int, default=d.fidelity.eval_windows,
                   help="held-out windows per measurement (default: %(default)s)")
    p.add_argument("--trace-seq-len", type=positive_int, default=d.trace_seq_len,
                   help="tokens per sequence of the simulated tuning step (default: %(default)s)")
    p.add_argument("--trace-batch", type=positive_int, default=d.trace_batch,
                   help="sequences of the simulated tuning step (default: %(default)s)")


def settings_from_args(args: argparse.Namespace) -> SearchSettings:
    """The ``SearchSettings`` the parsed options ask for.

    Raises:
        UserError: ``--max-sparsity`` outside [0, 0.9] or a negative ``--remeasure``.
    """
    from dse.measure import Fidelity

    if not 0.0 <= args.max_sparsity <= 0.9:
        raise UserError(f"--max-sparsity must be in [0, 0.9] (got {args.max_sparsity})")
    if args.remeasure < 0:
        raise UserError(f"--remeasure must be >= 0 (got {args.remeasure})")
    return SearchSettings(
        hw=args.hw,
        overrides=tuple(args.overrides),
        model=args.model,
        data=args.data,
        trials=args.trials,
        sampler=args.sampler,
        storage=args.storage,
        study_name=args.study_name,
        out=args.out or f"runs/{args.study_name}",
        seed=args.seed,
        search_hw=args.search_hw,
        search_schedule=args.search_schedule,
        max_sparsity=args.max_sparsity,
        max_perplexity_ratio=args.max_perplexity_ratio,
        remeasure=args.remeasure,
        fidelity=Fidelity(
            steps=args.tune_steps, batch_size=args.tune_batch, seq_len=args.tune_seq_len,
            eval_windows=args.eval_windows,
        ),
        trace_seq_len=args.trace_seq_len,
        trace_batch=args.trace_batch,
        workers=args.workers,
    )


def spawn_workers(argv: list[str], args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    """Start ``--workers - 1`` more processes on the same study (each with its own sampler
    seed); this process works too, then writes the outputs once when all are done."""
    if args.storage.startswith("sqlite") and args.workers > 1:
        print("note: SQLite serializes writers; for many workers prefer journal:FILE.log or PostgreSQL",
              file=sys.stderr)
    env = dict(os.environ, TQDM_DISABLE="1")
    return [
        subprocess.Popen(
            [sys.executable, "-m", "dse.search", *argv, "--workers", "1", "--worker-only",
             "--seed", str(args.seed + 1000 * i)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for i in range(1, args.workers)
    ]


def refuse_early(settings: SearchSettings) -> None:
    """Every check that can refuse the run, before anything is written to the storage or to
    ``--out`` (and before workers start): the hardware config, the output folder, the storage
    URL, and a study of the same name that this search cannot continue (``check_study``).

    Raises:
        UserError: one line naming the problem and the fix.
    """
    try:
        hw = sim.load_hw(settings.hw, settings.overrides)  # a bad config must not leave a new study file behind
    except sim.SimError as exc:
        raise UserError(str(exc)) from None
    check_model_source(settings.model)
    for split in data_mod.SPLITS:  # the text only (cheap): a bad --data is refused here, not after set-up
        data_mod.load_split(split, settings.data)
    out = Path(settings.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file, not a folder: give a folder for the outputs")
    existing = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        raise UserError(f"--out '{out}': cannot write in '{existing}' (permission denied); give a writable folder")
    storage = open_storage(settings.storage)  # one clear error here, not one per worker
    check_study(storage, settings.storage, settings.study_name, settings.identity(hw))


@cli_main
def main(argv: list[str] | None = None) -> int:
    """``python -m dse.search``: run (or resume) the study with ``--workers`` processes, then the
    report and the re-measurement of the front; prints the summary (or, with ``--json``, one JSON
    object) and returns the exit status 0.

    Raises:
        UserError: a bad option, hardware config, model or storage, or a design the simulator
            cannot map (one line via ``cli_main``).
    """
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    phases = Phases(PHASES, stream=None if args.worker_only else sys.stderr)
    refuse_early(settings)
    children = spawn_workers(list(sys.argv[1:] if argv is None else argv), args) if args.workers > 1 else []

    def join_workers() -> None:
        failed = [c for c in children if c.wait() != 0]
        if failed:
            print(f"warning: {len(failed)} of {len(children)} extra workers failed; rerun to complete the study",
                  file=sys.stderr)

    try:
        summary = run_search(settings, progress=not args.worker_only, worker_only=args.worker_only,
                             after_trials=join_workers, phases=phases)
    except sim.SimError as exc:
        raise UserError(str(exc)) from None
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
    if args.worker_only:
        return 0
    summary["seconds"] = round(phases.elapsed(), 1)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(Path(summary["out"], "summary.txt").read_text(), end="")
        print(f"outputs in {summary['out']}; total time {duration(summary['seconds'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
