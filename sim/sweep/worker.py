"""The work of one sweep task: one resolved config on one or more traces.

A task groups the traces of one (config, grid point) so the scheduler's per-op dedupe spans
all of them: their ops tables are concatenated and mapped in one ``schedule_ops`` call, so a
shape that vanilla and adaptive traces share is searched once. Traces are read once per
process and kept in a module-level cache (each worker process has its own copy).

This module is imported by worker processes, so it holds nothing that prints.
"""
from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from sim.config import HwConfig
from sim.cost import cost_columns
from sim.errors import SimError, TraceFormatWarning
from sim.report import SimResult, footprint
from sim.scheduler import schedule_ops
from sim.trace import PHASES, Trace, read_trace

__all__ = ["PointOutcome", "Task", "cached_trace", "init_worker", "metric_columns", "metrics_of",
           "remember_trace", "run_task", "trace_cache_size"]

_TRACES: dict[tuple[str, str], Trace] = {}


def cached_trace(path: str, content_hash: str) -> Trace:
    """The validated trace at ``path``, read at most once per process and content.

    Keyed by path and content hash, so a file rewritten between two sweeps in one process is
    read again. Forked workers inherit the parent's cache (filled while planning), so they
    read nothing.
    """
    trace = _TRACES.get((path, content_hash))
    if trace is None:
        trace = _TRACES[(path, content_hash)] = read_trace(path)
    return trace


def remember_trace(path: str, content_hash: str, trace: Trace) -> None:
    """Put a trace read elsewhere into this process's cache (a Dask worker gets them shipped:
    it needs no shared file system)."""
    _TRACES[(path, content_hash)] = trace


def trace_cache_size() -> int:
    """How many traces this process has read (for tests of the read-once rule)."""
    return len(_TRACES)


def _exit_with_parent(parent: int, interval_s: float = 0.5) -> None:
    """End this worker when its parent is gone (e.g. SIGKILLed).

    A forked worker holds its own copy of the task queue's pipe, so it never sees EOF when
    the parent dies and would otherwise wait for work forever as an orphan.
    """
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent:
            os._exit(1)


def init_worker(traces: Sequence[tuple[str, str]]) -> None:
    """Process-pool initializer: read every trace once; leave Ctrl-C to the parent.

    The parent handles SIGINT (it owns the results file and shuts the pool down); a worker
    that also raised KeyboardInterrupt would only print a traceback per process.
    """
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True,
                     name="exit-with-parent").start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A forked worker inherits the CLI's SIGTERM-to-KeyboardInterrupt handler; undo it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # The parent read every trace while planning and reports their warnings once.
    warnings.simplefilter("ignore", TraceFormatWarning)
    for path, content_hash in traces:
        cached_trace(path, content_hash)


@dataclass(frozen=True)
class Task:
    """One config (already validated, overrides applied) on the traces still to compute."""

    task_id: int
    hw: HwConfig
    traces: tuple[tuple[str, str], ...]  # (path, content hash) of each trace to simulate
    dataflow: str
    objective: str


@dataclass(frozen=True)
class PointOutcome:
    """Result of one point: status ``ok``, ``infeasible`` (does not fit DRAM) or ``error``."""

    status: str
    reason: str
    metrics: dict[str, Any]
    seconds: float  # wall time spent on this point in the worker, s


_PER_PHASE = ("cycles", "compute_cycles", "stall_cycles", "vector_cycles")


def metric_columns() -> tuple[str, ...]:
    """Names of the per-point metrics ``metrics_of`` returns, in sweep-table order: every
    ``OpCost`` field (``sim.cost``), latency, per-phase cycles and per-kind time, ratios,
    counts and memory."""
    return (
        "latency_s", *cost_columns(),
        *(f"{c}_{p}" for p in PHASES for c in _PER_PHASE),
        *(f"latency_{p}_s" for p in PHASES),
        "matmul_cycles", "vector_cycles", "matmul_latency_s", "vector_latency_s",
        "utilization", "edp_js", "roofline_ratio", "ops", "products", "vector_ops",
        "peak_memory_bytes", "dram_capacity_bytes", "fits_in_dram",
    )


def metrics_of(result: SimResult) -> dict[str, Any]:
    """Flat JSON-ready metrics of one simulated trace (cycles in core cycles, bytes, joules),
    keyed by ``metric_columns()`` plus ``dataflow_mix``."""
    s = result.summary()
    clock_hz = result.hw.clock_mhz * 1e6
    out: dict[str, Any] = {"latency_s": float(s["latency_s"])}
    for name in cost_columns():
        out[name] = s["total_cycles" if name == "cycles" else name]
    for phase in PHASES:
        row = s["per_phase"].get(phase)
        for col in _PER_PHASE:
            out[f"{col}_{phase}"] = int(row[col]) if row else 0
        out[f"latency_{phase}_s"] = (row["cycles"] / clock_hz) if row else 0.0
    for key in ("matmul_cycles", "vector_cycles", "ops", "products", "vector_ops",
                "dram_capacity_bytes"):
        out[key] = int(s[key])
    for key in ("matmul_latency_s", "vector_latency_s", "utilization", "roofline_ratio"):
        out[key] = float(s[key])
    out["edp_js"] = float(s["energy_j"]) * float(s["latency_s"])
    out["peak_memory_bytes"] = s["peak_memory_bytes"]
    out["fits_in_dram"] = s["fits_in_dram"]
    out["dataflow_mix"] = s["dataflow_mix"]
    return out


def _outcome(result: SimResult, seconds: float) -> PointOutcome:
    metrics = metrics_of(result)
    fp = result.footprint
    if fp is not None and not fp.fits:
        reason = (f"peak memory {fp.peak_memory_bytes / 2**20:.1f} MiB > DRAM capacity "
                  f"{fp.capacity_bytes / 2**20:.1f} MiB of {result.hw.name}")
        return PointOutcome("infeasible", reason, metrics, seconds)
    return PointOutcome("ok", "", metrics, seconds)


def _error(exc: BaseException, seconds: float) -> PointOutcome:
    if isinstance(exc, SimError):
        return PointOutcome("error", str(exc), {}, seconds)
    # A bug, not a user error: keep the sweep going but say so plainly in the row.
    return PointOutcome("error", f"internal error: {type(exc).__name__}: {exc}", {}, seconds)


def _result(hw: HwConfig, trace: Trace, ops: pd.DataFrame, task: Task) -> SimResult:
    fp = footprint(trace.tensors, hw) if trace.tensors is not None else None
    return SimResult(ops=ops, hw=hw, dataflow=task.dataflow, objective=task.objective,
                     header=dict(trace.header), footprint=fp)


def run_task(task: Task) -> tuple[int, list[PointOutcome]]:
    """Simulate ``task.hw`` on each of ``task.traces``; one outcome per trace, in order.

    All traces are mapped in one ``schedule_ops`` call (shared per-op cache); if that fails
    (e.g. one trace has an op no tiling fits), each trace is retried alone so the failure is
    attributed to the traces that cause it.
    """
    start = time.perf_counter()
    traces = [cached_trace(p, h) for p, h in task.traces]
    n = len(traces)
    try:
        combined = pd.concat([t.ops for t in traces], ignore_index=True)
        mapped = schedule_ops(task.hw, combined, dataflow=task.dataflow,
                              objective=task.objective)
        seconds = (time.perf_counter() - start) / n
        outcomes = []
        offset = 0
        for trace in traces:
            rows = len(trace.ops)
            ops = mapped.iloc[offset:offset + rows].reset_index(drop=True)
            offset += rows
            outcomes.append(_outcome(_result(task.hw, trace, ops, task), seconds))
        return task.task_id, outcomes
    except Exception:  # noqa: BLE001 - retried per trace below, where it is attributed
        pass
    outcomes = []
    for trace in traces:
        t0 = time.perf_counter()
        try:
            ops = schedule_ops(task.hw, trace.ops, dataflow=task.dataflow,
                               objective=task.objective)
            outcomes.append(_outcome(_result(task.hw, trace, ops, task),
                                     time.perf_counter() - t0))
        except Exception as exc:  # noqa: BLE001 - a failing point is a row, not a crash
            outcomes.append(_error(exc, time.perf_counter() - t0))
    return task.task_id, outcomes

