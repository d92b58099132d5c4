"""The command line of the sweep: ``python -m sim.sweep`` (flags, progress bar, exit codes).

Everything it does goes through ``sim.sweep.run.run_sweep``; this module only parses flags,
draws the progress bar, turns a Ctrl-C or SIGTERM into exit code 130 and prints.
"""
from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.cli import (
    OneLineParser,
    add_mapping_flags,
    deferred_warnings,
    positive_int,
    print_error,
    print_warnings,
)
from sim.errors import SimError
from sim.sweep.run import Progress, SweepInterrupted, run_sweep

__all__ = ["build_parser", "main"]


_DESCRIPTION = (
    "Sweep hardware configs x a grid of config overrides x traces through the "
    "simulator. Writes OUT/sweep.csv (+ sweep.parquet if pyarrow is "
    "installed; one row per point: config, swept values, trace provenance, "
    "latency_s in seconds, every per-op cost field summed (cycles, "
    "dram_bytes, energy_j in joules, ...), compute/stall/vector cycles per "
    "phase, matmul_cycles, vector_cycles, vector_latency_s, utilization, "
    "peak_memory_bytes, fits_in_dram, roofline_ratio, pe_count, sram_bytes "
    "(SRAM capacity), area_mm2), points.jsonl (the resume "
    "log), summary.txt, summary.json and PNG plots. A point that fails is a "
    "row with status infeasible (its tensors exceed DRAM capacity) or error "
    "(invalid override, no mapping fits the SRAM) and a reason. Rerunning "
    "with the same --out computes only missing points (keyed by a hash of the "
    "resolved config, the trace files' content, dataflow and objective)."
)
_EPILOG = (
    "example: python -m sim.sweep --hw 'hwconfigs/*.yaml' --trace a.csv b.csv "
    "--grid pe.rows=16,32 --grid dram.bandwidth_gbps=8,25.6 --out runs/sweep1 "
    "--workers 2. Exit codes: 0 done (failed points included), 2 user error "
    "(nothing written), 130 interrupted by Ctrl-C or SIGTERM (finished points "
    "kept; rerun to resume)."
)


def build_parser() -> OneLineParser:
    """The command-line interface (every flag with its units and default)."""
    p = OneLineParser(prog="python -m sim.sweep", description=_DESCRIPTION, epilog=_EPILOG)
    _add_input_flags(p)
    _add_run_flags(p)
    return p


def _add_input_flags(p: OneLineParser) -> None:
    """What is swept: configs, traces, grid, fixed overrides, dataflow and objective."""
    p.add_argument("--hw", required=True, nargs="+", metavar="YAML",
                   help="hardware config files or quoted globs, e.g. 'hwconfigs/*.yaml'; "
                        "SCALE-Sim .cfg and ZigZag accelerator YAMLs too (required; a glob "
                        "that matches nothing is an error)")
    p.add_argument("--trace", required=True, nargs="+", metavar="CSV",
                   help="trace files NAME.csv (docs/trace.md) or SCALE-Sim topology CSVs; "
                        "NAME.tensors.csv next to each is used for peak memory when present "
                        "(required)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                   help="sweep a hardware field over comma-separated values, same dotted keys "
                        "and YAML values as sim.run --set, in that field's units (e.g. "
                        "pe.rows=8,16,32, dram.bandwidth_gbps=4,8,16 in GB/s, "
                        "sram.weight_kib=128,256 in KiB); repeat for more fields, the sweep "
                        "runs their cartesian product (default: no grid, configs as is)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="fixed override applied to every config before the grid's, e.g. "
                        "--set clock_mhz=500 (repeatable; default: none)")
    add_mapping_flags(p)


def _add_run_flags(p: OneLineParser) -> None:
    """Where results go and how the sweep runs: output folder, engine, plots, checkpoints."""
    p.add_argument("--out", required=True, type=Path, metavar="DIR",
                   help="output folder, created if missing; an existing sweep there is "
                        "resumed (required)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="worker processes; 0 = one per CPU core (default: 1, in-process)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the points on the Dask distributed cluster of this scheduler "
                        "(start it with `dask scheduler`, port 8786 by default, and `dask "
                        "worker tcp://HOST:8786`); keys, resume and --out work as with local "
                        "processes, --workers is ignored (default: none, local processes)")
    p.add_argument("--heatmap", default=None, metavar="KEY1,KEY2",
                   help="two --grid keys for the latency heat map (default: the first two "
                        "grid keys with 2+ values; no heat map with fewer)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip the PNG plots (default: write sweep_pareto.png, "
                        "sweep_heatmap.png, sweep_time.png)")
    p.add_argument("--checkpoint-s", type=positive_int, default=10, metavar="SECONDS",
                   help="rewrite sweep.csv at least this often while running, seconds "
                        "(points.jsonl is written after every task regardless; default: 10)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary (points, done, computed, skipped, ok, failed, "
                        "by_status, wall_s in seconds, files, best point per config and "
                        "trace) instead of the text summary")


def _tqdm_progress() -> tuple[Progress, Callable[[], None]]:
    """A progress callback drawing a tqdm bar on stderr, created on first use."""
    from tqdm.auto import tqdm

    bar: list[Any] = []

    def update(done: int, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, initial=done, unit="point", desc="sweep",
                            dynamic_ncols=True))
        else:
            bar[0].update(done - bar[0].n)

    def close() -> None:
        if bar:
            bar[0].close()

    return update, close


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 done, 2 user error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    update, close = _tqdm_progress()
    # A polite kill (SIGTERM) saves like Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with deferred_warnings() as messages:
            table = run_sweep(args.hw, args.trace, args.grid, out=args.out,
                              dataflow=args.dataflow, objective=args.objective,
                              workers=args.workers, overrides=args.overrides,
                              heatmap=args.heatmap, plots=not args.no_plots,
                              checkpoint_s=float(args.checkpoint_s), progress=update,
                              scheduler=args.scheduler)
    except SweepInterrupted as exc:
        close()
        s = exc.stats
        print(f"interrupted: {s['done']} of {s['points']} points saved in {s['out']}; rerun "
              f"the same command to resume", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        close()
        print("interrupted before any point ran; nothing written", file=sys.stderr)
        return 130
    except (SimError, OSError) as exc:
        close()
        print_error(exc)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    close()
    print_warnings(messages)
    stats = table.attrs["sweep"]
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print(Path(stats["files"]["summary"]).read_text(), end="")
        print("wrote " + ", ".join(stats["files"].values()))
    return 0

