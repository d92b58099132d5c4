"""``python -m sim.sweep``: many hardware configs x a grid of overrides x many traces.

Every config (paths or globs) under every point of the cartesian product of ``--grid``
overrides (the same dotted keys as ``--set``) runs every trace. The result is one table row
per point (``sweep.csv``, and ``sweep.parquet`` when pyarrow is importable), three plots, a
text summary of the best point per config and trace, and a JSON summary.

Example::

    python -m sim.sweep --hw 'hwconfigs/*.yaml' --trace vanilla.csv adaptive.csv \\
        --grid pe.rows=16,32,64 --grid dram.bandwidth_gbps=2,8,32 --out runs/sweep1 --workers 2

The pure API is ``run_sweep`` (returns the table; nothing printed)::

    >>> table = run_sweep(["hwconfigs/edge_llm.yaml"], ["tests/data/tiny_step.csv"],
    ...                   {"pe.rows": [8, 16]}, out="runs/s")  # doctest: +SKIP
    >>> table[["config", "pe.rows", "trace", "status", "latency_s"]]  # doctest: +SKIP

Resume: finished points are appended to ``OUT/points.jsonl`` (flushed and fsynced per task)
under a key that hashes the resolved config, the trace file content, the dataflow and the
objective; rerunning with the same ``--out`` computes only the points whose key is missing.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

import pandas as pd

from sim.cli import OneLineParser, deferred_warnings, one_line, positive_int, print_warnings
from sim.dataflow import DATAFLOWS
from sim.errors import SimError
from sim.foreign import hw_translation, stated_defaults
from sim.scheduler import OBJECTIVES
from sim.sweep_plan import (
    GridAxis,
    Plan,
    Point,
    SweepError,
    build_plan,
    expand_hw,
    load_configs,
    load_traces,
    parse_grid,
    parse_overrides,
)
from sim.sweep_report import best_summary, summary_text
from sim.sweep_store import PointStore, has_pyarrow, write_atomic, write_tables
from sim.sweep_table import build_table
from sim.sweep_worker import Outcome, Task, init_worker, run_task

__all__ = ["SweepInterrupted", "build_parser", "main", "prepare", "run_sweep"]

Progress = Callable[[int, int], None]  # (points done so far incl. skipped, total points)

OUT_FILES = {"csv": "sweep.csv", "parquet": "sweep.parquet", "jsonl": "points.jsonl",
             "summary": "summary.txt", "json": "summary.json",
             "pareto_png": "sweep_pareto.png", "heatmap_png": "sweep_heatmap.png",
             "time_png": "sweep_time.png"}


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM in the CLI) stopped the sweep; finished points are saved.

    ``stats`` is the JSON summary at the moment of the interrupt.
    """

    def __init__(self, stats: dict[str, Any]) -> None:
        super().__init__("sweep interrupted")
        self.stats = stats


def prepare(hw_paths: Iterable[str | Path], trace_paths: Iterable[str | Path],
            grid: Iterable[str] | Mapping[str, Sequence[Any]] = (), *,
            dataflow: str | None = None,
            objective: str = "latency", overrides: Iterable[str] | Mapping[str, Any] = ()
            ) -> Plan:
    """Validate all inputs and build the plan (reads configs and traces; writes nothing).

    Raises:
        SimError: a user error (no config matches, a missing or bad trace, a malformed grid).
    """
    axes = parse_grid(grid)
    fixed = parse_overrides(overrides)
    configs = load_configs(expand_hw(hw_paths))
    traces = load_traces(trace_paths)
    return build_plan(configs, axes, traces, dataflow=dataflow, objective=objective,
                      fixed=fixed)


def _check_heatmap(heatmap: Sequence[str] | str | None, axes: Sequence[GridAxis]
                   ) -> tuple[str, str] | None:
    if heatmap is None:
        return None
    keys = [k.strip() for k in heatmap.split(",")] if isinstance(heatmap, str) else list(heatmap)
    if len(keys) != 2 or keys[0] == keys[1]:
        raise SweepError(f"--heatmap {','.join(keys)}: expected two different grid keys, "
                         f"e.g. pe.rows,dram.bandwidth_gbps")
    sizes = {a.key: len(a.values) for a in axes}
    for key in keys:
        if sizes.get(key, 0) < 2:
            raise SweepError(f"--heatmap {key}: not a --grid key with 2 or more values "
                             f"(grid keys: {', '.join(sizes) or 'none'})")
    return keys[0], keys[1]


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise SweepError(f"--out {out}: exists and is not a folder")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent if not out.exists() else out, os.W_OK):
        raise SweepError(f"--out {out}: folder is not writable")


def _tasks(plan: Plan, pending: Sequence[Point]) -> tuple[list[tuple[Task, list[Point]]],
                                                        list[Point]]:
    """Group pending points into one task per (config, grid point); split off invalid ones."""
    groups: dict[tuple[int, tuple[Any, ...]], list[Point]] = {}
    invalid = []
    for point in pending:
        if point.hw is None:
            invalid.append(point)
        else:
            groups.setdefault((point.config, point.grid), []).append(point)
    tasks = []
    for task_id, points in enumerate(groups.values()):
        hw = points[0].hw
        assert hw is not None
        traces = tuple((str(plan.traces[p.trace].path), plan.traces[p.trace].content_hash)
                       for p in points)
        tasks.append((Task(task_id=task_id, hw=hw, traces=traces, dataflow=points[0].dataflow,
                           objective=plan.objective), points))
    return tasks, invalid


def _record(plan: Plan, point: Point, outcome: Outcome, run_id: str) -> dict[str, Any]:
    return {
        "key": point.key, "status": outcome.status, "reason": outcome.reason,
        "metrics": outcome.metrics, "seconds": round(outcome.seconds, 6), "run_id": run_id,
        "finished_at": time.time(),
        # Identity for a human reading the log; tables take identity from the current plan.
        "config": plan.configs[point.config].label, "trace": plan.traces[point.trace].label,
        "grid": {a.key: v for a, v in zip(plan.axes, point.grid, strict=True)},
    }


def _retry(record: Mapping[str, Any]) -> bool:
    """Stored points worth recomputing: internal errors (bugs that may since be fixed)."""
    return str(record.get("reason", "")).startswith("internal error:")


def _pool_context() -> Any:
    # fork shares the parent's already-read traces and imports (fast start); elsewhere spawn.
    if sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _stats(plan: Plan, table: pd.DataFrame, *, computed: int, skipped: int, wall_s: float,
           out: Path, written: Mapping[str, Path], complete: bool) -> dict[str, Any]:
    status = table["status"].value_counts() if len(table) else pd.Series(dtype=int)
    ok = int(status.get("ok", 0))
    return {
        "points": len(plan.points), "done": int(len(table)), "computed": computed,
        "skipped": skipped, "ok": ok, "failed": int(len(table)) - ok,
        "by_status": {str(k): int(v) for k, v in status.items()}, "complete": complete,
        "configs": [c.label for c in plan.configs],
        "grid": {a.key: list(a.values) for a in plan.axes}, "grid_points": plan.grid_size,
        "traces": [t.label for t in plan.traces], "dataflow": plan.dataflow or "per config",
        "objective": plan.objective, "wall_s": round(wall_s, 3), "out": str(out),
        "files": {k: str(v) for k, v in written.items()},
        "best": best_summary(table, [a.key for a in plan.axes]),
        "stated_defaults": _stated_defaults(plan),
    }


def _stated_defaults(plan: Plan) -> list[str]:
    """Defaults taken for fields that peer files (SCALE-Sim, ZigZag) lack, one line each."""
    lines = []
    for config in plan.configs:
        lines += [f"{config.label}: {line}" for line in stated_defaults(
            hw_translation(config.path))]
    for trace in plan.traces:
        lines += [f"{trace.label}: {line}" for line in stated_defaults(None, trace.header)]
    return lines


def _finish(plan: Plan, records: Mapping[str, Mapping[str, Any]], out: Path, *,
            computed: int, skipped: int, start: float, plots: bool,
            heatmap: tuple[str, str] | None, complete: bool) -> pd.DataFrame:
    """Write tables, summary and plots of everything done so far; return the table."""
    table = build_table(plan, records)
    parquet = out / OUT_FILES["parquet"] if has_pyarrow() else None
    write_tables(table, out / OUT_FILES["csv"], parquet)
    written: dict[str, Path] = {"csv": out / OUT_FILES["csv"], "jsonl": out / OUT_FILES["jsonl"]}
    if parquet is not None:
        written["parquet"] = parquet
    if plots and (table["status"] == "ok").any():
        from sim.sweep_plots import choose_heatmap_keys, plot_heatmap, plot_pareto, plot_time

        write_atomic(out / OUT_FILES["pareto_png"], lambda p: plot_pareto(table, p))
        written["pareto_png"] = out / OUT_FILES["pareto_png"]
        write_atomic(out / OUT_FILES["time_png"], lambda p: plot_time(table, p))
        written["time_png"] = out / OUT_FILES["time_png"]
        keys = heatmap or choose_heatmap_keys(plan.axes)
        if keys is not None:
            write_atomic(out / OUT_FILES["heatmap_png"],
                         lambda p: plot_heatmap(table, plan.axes, keys, p))
            written["heatmap_png"] = out / OUT_FILES["heatmap_png"]
    written["summary"] = out / OUT_FILES["summary"]
    written["json"] = out / OUT_FILES["json"]
    stats = _stats(plan, table, computed=computed, skipped=skipped,
                   wall_s=time.perf_counter() - start, out=out, written=written,
                   complete=complete)
    head = [f"sweep: {len(plan.configs)} config(s) x {plan.grid_size} grid point(s) x "
            f"{len(plan.traces)} trace(s) = {len(plan.points)} points; dataflow "
            f"{plan.dataflow or 'per config'}, objective {plan.objective}",
            f"done {stats['done']} ({computed} computed now, {skipped} reused from "
            f"{OUT_FILES['jsonl']}){'' if complete else '; INTERRUPTED, rerun to resume'}",
            *stats["stated_defaults"],
            "best = lowest latency among points that ran and fit in DRAM; latency and energy "
            "per step"]
    text = summary_text(table, [a.key for a in plan.axes], header_lines=head)
    write_atomic(out / OUT_FILES["summary"], lambda p: p.write_text(text))
    write_atomic(out / OUT_FILES["json"], lambda p: p.write_text(json.dumps(stats, indent=2)))
    table.attrs["sweep"] = stats
    return table


def run_sweep(hw_paths: Iterable[str | Path], trace_paths: Iterable[str | Path],
              grid: Iterable[str] | Mapping[str, Sequence[Any]] = (), *,
              out: str | Path, dataflow: str | None = None, objective: str = "latency",
              workers: int = 1, overrides: Iterable[str] | Mapping[str, Any] = (),
              heatmap: Sequence[str] | str | None = None, plots: bool = True,
              checkpoint_s: float = 10.0, progress: Progress | None = None,
              scheduler: str | None = None) -> pd.DataFrame:
    """Run (or resume) a sweep and write its outputs into ``out``.

    Args:
        hw_paths: hardware YAML paths or globs (``"hwconfigs/*.yaml"``).
        trace_paths: trace files ``NAME.csv`` (docs/trace.md).
        grid: ``["pe.rows=8,16", "dram.bandwidth_gbps=4,8"]`` or ``{"pe.rows": [8, 16]}``;
            the sweep runs their cartesian product (no grid: each config as is).
        out: output folder (created); a folder with earlier points resumes them.
        dataflow: ``auto`` (per-op choice) or a fixed ``ws``/``os``/``is``; None (default):
            each config's own, i.e. the Dataflow of a SCALE-Sim .cfg, else auto.
        objective: per-op mapping objective: ``latency``, ``energy`` or ``edp``.
        workers: processes (1: run in this process; 0: one per CPU core).
        overrides: fixed ``key=value`` overrides applied to every point before the grid's.
        heatmap: two grid keys for the heat map (default: the first two with 2+ values).
        plots: write the PNG plots.
        checkpoint_s: rewrite ``sweep.csv`` at least this often during the run, seconds.
        progress: called as ``progress(done, total)`` after every finished task.
        scheduler: a Dask scheduler address (``tcp://HOST:8786``): run the tasks on that
            cluster instead of local processes (``sim.sweep_dask``; ``workers`` is ignored).

    Returns:
        The sweep table (one row per finished point, plan order); ``table.attrs["sweep"]`` is
        the JSON summary (points, done, computed, skipped, ok, failed, files, best per config).

    Raises:
        SimError: a user error, before anything is written.
        SweepInterrupted: Ctrl-C; every finished point is saved and the tables rewritten.
    """
    start = time.perf_counter()
    if workers < 0:
        raise SweepError(f"--workers must be >= 0 (got {workers})")
    plan = prepare(hw_paths, trace_paths, grid, dataflow=dataflow, objective=objective,
                   overrides=overrides)
    heat_keys = _check_heatmap(heatmap, plan.axes)
    out = Path(out)
    _check_out(out)
    if scheduler:
        from sim.sweep_dask import check_cluster

        check_cluster(scheduler)  # an unreachable cluster is a user error: nothing written
    out.mkdir(parents=True, exist_ok=True)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    n_workers = (os.cpu_count() or 1) if workers == 0 else workers

    with PointStore(out) as store:
        records: dict[str, dict[str, Any]] = store.load()
        pending: list[Point] = []
        queued: set[str] = set()
        for point in plan.points:
            rec = records.get(point.key)
            if (rec is None or _retry(rec)) and point.key not in queued:
                queued.add(point.key)
                pending.append(point)
        skipped = sum(1 for p in plan.points if p.key not in queued)
        total = len(plan.points)
        done = skipped
        computed = 0
        # Plan points that share a key (duplicate grid values) finish together.
        weight = {k: 0 for k in queued}
        for point in plan.points:
            if point.key in weight:
                weight[point.key] += 1
        last_checkpoint = time.perf_counter()

        def finish_points(points: Sequence[Point], outcomes: Sequence[Outcome]) -> None:
            nonlocal done, computed, last_checkpoint
            new = [_record(plan, p, o, run_id) for p, o in zip(points, outcomes, strict=True)]
            store.append(new)
            for rec in new:
                records[rec["key"]] = rec
            computed += len(new)
            done += sum(weight[p.key] for p in points)
            if progress is not None:
                progress(done, total)
            if time.perf_counter() - last_checkpoint >= checkpoint_s:
                write_tables(build_table(plan, records), out / OUT_FILES["csv"], None)
                last_checkpoint = time.perf_counter()

        tasks, invalid = _tasks(plan, pending)
        try:
            if progress is not None:
                progress(done, total)
            if invalid:
                finish_points(invalid, [Outcome("error", p.error or "invalid config", {}, 0.0)
                                        for p in invalid])
            if tasks and scheduler:
                from sim.sweep_dask import run_tasks_dask

                run_tasks_dask(tasks, plan, scheduler, finish_points)
            elif tasks and n_workers <= 1:
                for task, points in tasks:
                    _, outcomes = run_task(task)
                    finish_points(points, outcomes)
            elif tasks:
                _run_pool(tasks, plan, min(n_workers, len(tasks)), finish_points)
        except KeyboardInterrupt:
            # The interrupt may land between a log append and the in-memory update: the log
            # is the truth, so the saved table is rebuilt from it.
            records = store.load()
            table = _finish(plan, records, out, computed=computed, skipped=skipped,
                            start=start, plots=False, heatmap=heat_keys, complete=False)
            raise SweepInterrupted(table.attrs["sweep"]) from None
        return _finish(plan, records, out, computed=computed, skipped=skipped, start=start,
                       plots=plots, heatmap=heat_keys, complete=True)


def _run_pool(tasks: Sequence[tuple[Task, list[Point]]], plan: Plan, n_workers: int,
              finish: Callable[[Sequence[Point], Sequence[Outcome]], None]) -> None:
    """Run tasks on a process pool, handing each finished task to ``finish`` in the parent."""
    traces = [(str(t.path), t.content_hash) for t in plan.traces]
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=_pool_context(),
                               initializer=init_worker, initargs=(traces,))
    try:
        futures: dict[Future[tuple[int, list[Outcome]]], list[Point]] = {
            pool.submit(run_task, task): points for task, points in tasks}
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in finished:
                _, outcomes = fut.result()
                finish(futures[fut], outcomes)
    except BaseException:
        # Do not wait for queued tasks; running ones end on their own (workers ignore SIGINT).
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


# ----------------------------------------------------------------------------- CLI

def build_parser() -> OneLineParser:
    """The command-line interface (every flag with its units and default)."""
    p = OneLineParser(
        prog="python -m sim.sweep",
        description="Sweep hardware configs x a grid of config overrides x traces through the "
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
                    "resolved config, the trace files' content, dataflow and objective).",
        epilog="example: python -m sim.sweep --hw 'hwconfigs/*.yaml' --trace a.csv b.csv "
               "--grid pe.rows=16,32 --grid dram.bandwidth_gbps=8,25.6 --out runs/sweep1 "
               "--workers 2. Exit codes: 0 done (failed points included), 2 user error "
               "(nothing written), 130 interrupted by Ctrl-C or SIGTERM (finished points "
               "kept; rerun to resume).")
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
    p.add_argument("--dataflow", choices=("auto", *DATAFLOWS), default=None,
                   help="auto: per-op best of ws (weight-), os (output-), is (input-"
                        "stationary); or one dataflow for every op; each SCALE-Sim .cfg in --hw "
                        "brings its own Dataflow unless this flag is given (default: auto)")
    p.add_argument("--objective", choices=OBJECTIVES, default="latency",
                   help="what the per-op mapping search minimizes: latency (cycles), energy "
                        "(joules) or edp (default: latency)")
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
    return p


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
    except SimError as exc:
        close()
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        close()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {one_line(where)}{one_line(exc.strerror or exc)}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
