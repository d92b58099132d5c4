"""Running a sweep: many hardware configs x a grid of overrides x many traces.

Every config (paths or globs) under every point of the cartesian product of ``--grid``
overrides (the same dotted keys as ``--set``) runs every trace. The result is one table row
per point (``sweep.csv``, and ``sweep.parquet`` when pyarrow is importable), three plots, a
text summary of the best point per config and trace, and a JSON summary.

Example::

    python -m sim.sweep --hw 'hwconfigs/*.yaml' --trace vanilla.csv adaptive.csv \\
        --grid pe.rows=16,32,64 --grid dram.bandwidth_gbps=2,8,32 --out runs/sweep1 --workers 2

The pure API is ``run_sweep`` (returns the table; nothing printed)::

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as out:
    ...     table = run_sweep(["hwconfigs/edge_llm.yaml"], ["tests/data/tiny_step_v2.csv"],
    ...                       {"pe.rows": [8, 16]}, out=out, plots=False)
    >>> table[["pe.rows", "trace", "status"]].values.tolist()
    [[8, 'tiny_step_v2', 'ok'], [16, 'tiny_step_v2', 'ok']]

Resume: finished points are appended to ``OUT/points.jsonl`` (flushed and fsynced per task)
under a key that hashes the resolved config, the trace file content, the dataflow and the
objective; rerunning with the same ``--out`` computes only the points whose key is missing.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from common.files import write_atomic
from sim.errors import SweepError
from sim.foreign import hw_translation, stated_defaults
from sim.sweep.plan import (
    GridAxis,
    Point,
    SweepPlan,
    build_plan,
    expand_hw,
    load_configs,
    load_traces,
    parse_grid,
    parse_overrides,
)
from sim.sweep.report import best_summary, summary_text
from sim.sweep.store import PointStore, has_pyarrow, write_tables
from sim.sweep.table import build_table
from sim.sweep.worker import PointOutcome, Task, init_worker, run_task

__all__ = ["OUT_FILES", "Progress", "SweepInterrupted", "prepare", "run_sweep"]

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
            ) -> SweepPlan:
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


def _make_out(out: Path, scheduler: str | None) -> Path:
    """Create the output folder once every user error is ruled out (an unwritable folder, an
    unreachable cluster): a failed start writes nothing."""
    _check_out(out)
    if scheduler:
        from sim.sweep.cluster import check_cluster

        check_cluster(scheduler)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _tasks(plan: SweepPlan, pending: Sequence[Point]) -> tuple[list[tuple[Task, list[Point]]],
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


def _record(plan: SweepPlan, point: Point, outcome: PointOutcome, run_id: str) -> dict[str, Any]:
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


def _stats(plan: SweepPlan, table: pd.DataFrame, *, computed: int, skipped: int, wall_s: float,
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


def _stated_defaults(plan: SweepPlan) -> list[str]:
    """Defaults taken for fields that peer files (SCALE-Sim, ZigZag) lack, one line each."""
    lines = []
    for config in plan.configs:
        lines += [f"{config.label}: {line}" for line in stated_defaults(
            hw_translation(config.path))]
    for trace in plan.traces:
        lines += [f"{trace.label}: {line}" for line in stated_defaults(None, trace.header)]
    return lines


def _finish(plan: SweepPlan, records: Mapping[str, Mapping[str, Any]], out: Path, *,
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
        from sim.sweep.plots import choose_heatmap_keys, plot_heatmap, plot_pareto, plot_time

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
            cluster instead of local processes (``sim.sweep.cluster``; ``workers`` is ignored).

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
    out = _make_out(Path(out), scheduler)
    n_workers = (os.cpu_count() or 1) if workers == 0 else workers

    with PointStore(out) as store:
        state = _RunState.begin(plan, store, out, progress=progress, checkpoint_s=checkpoint_s)
        try:
            _run_tasks(state, scheduler=scheduler, n_workers=n_workers)
        except KeyboardInterrupt:
            # The interrupt may land between a log append and the in-memory update: the log
            # is the truth, so the saved table is rebuilt from it.
            table = _finish(plan, store.load(), out, computed=state.computed,
                            skipped=state.skipped, start=start, plots=False,
                            heatmap=heat_keys, complete=False)
            raise SweepInterrupted(table.attrs["sweep"]) from None
        return _finish(plan, state.records, out, computed=state.computed,
                       skipped=state.skipped, start=start, plots=plots, heatmap=heat_keys,
                       complete=True)


@dataclass
class _RunState:
    """What a running sweep knows: the stored records and how far it got.

    ``finish_points`` is the one place finished points go, whichever engine ran them: it
    appends them to the log, counts them, reports progress and rewrites ``sweep.csv`` every
    ``checkpoint_s`` seconds.
    """

    plan: SweepPlan
    store: PointStore
    out: Path
    records: dict[str, dict[str, Any]]
    pending: list[Point]
    weight: dict[str, int]  # plan points per pending key (duplicate grid values share one)
    skipped: int
    progress: Progress | None
    checkpoint_s: float
    run_id: str = field(
        default_factory=lambda: f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}")
    computed: int = 0
    done: int = 0
    last_checkpoint: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(cls, plan: SweepPlan, store: PointStore, out: Path, *, progress: Progress | None,
              checkpoint_s: float) -> _RunState:
        """Load the stored records and queue every point whose key is missing (or failed
        with an internal error), once per key."""
        records = store.load()
        pending: list[Point] = []
        weight: dict[str, int] = {}
        for point in plan.points:
            rec = records.get(point.key)
            if point.key in weight:
                weight[point.key] += 1
            elif rec is None or _retry(rec):
                weight[point.key] = 1
                pending.append(point)
        skipped = sum(1 for p in plan.points if p.key not in weight)
        return cls(plan=plan, store=store, out=out, records=records, pending=pending,
                   weight=weight, skipped=skipped, progress=progress,
                   checkpoint_s=checkpoint_s, done=skipped)

    def report_progress(self) -> None:
        """Call the progress callback with (points done, total points)."""
        if self.progress is not None:
            self.progress(self.done, len(self.plan.points))

    def finish_points(self, points: Sequence[Point], outcomes: Sequence[PointOutcome]) -> None:
        """Store the outcomes of finished points durably, then count and report them."""
        new = [_record(self.plan, p, o, self.run_id)
               for p, o in zip(points, outcomes, strict=True)]
        self.store.append(new)
        for rec in new:
            self.records[rec["key"]] = rec
        self.computed += len(new)
        self.done += sum(self.weight[p.key] for p in points)
        self.report_progress()
        if time.perf_counter() - self.last_checkpoint >= self.checkpoint_s:
            write_tables(build_table(self.plan, self.records), self.out / OUT_FILES["csv"],
                         None)
            self.last_checkpoint = time.perf_counter()


def _run_tasks(state: _RunState, *, scheduler: str | None, n_workers: int) -> None:
    """Compute the pending points: invalid configs as failed rows, the rest on the Dask
    cluster, a process pool or in this process."""
    tasks, invalid = _tasks(state.plan, state.pending)
    state.report_progress()
    if invalid:
        state.finish_points(invalid, [PointOutcome("error", p.error or "invalid config", {}, 0.0)
                                      for p in invalid])
    if tasks and scheduler:
        from sim.sweep.cluster import run_tasks_dask

        run_tasks_dask(tasks, state.plan, scheduler, state.finish_points)
    elif tasks and n_workers <= 1:
        for task, points in tasks:
            _, outcomes = run_task(task)
            state.finish_points(points, outcomes)
    elif tasks:
        _run_pool(tasks, state.plan, min(n_workers, len(tasks)), state.finish_points)


def _run_pool(tasks: Sequence[tuple[Task, list[Point]]], plan: SweepPlan, n_workers: int,
              finish: Callable[[Sequence[Point], Sequence[PointOutcome]], None]) -> None:
    """Run tasks on a process pool, handing each finished task to ``finish`` in the parent."""
    traces = [(str(t.path), t.content_hash) for t in plan.traces]
    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=_pool_context(),
                               initializer=init_worker, initargs=(traces,))
    try:
        futures: dict[Future[tuple[int, list[PointOutcome]]], list[Point]] = {
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


