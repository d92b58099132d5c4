"""Sweep tasks on a Dask distributed cluster (``python -m sim.sweep ... --scheduler ADDR``).

The plan, the content keys and the ``points.jsonl`` store stay in the client process, exactly
as with the local process pool; only ``run_task`` runs on the cluster. So resume and
de-duplication work the same on either engine, and a point is durable the moment its task's
result reaches the client (appended and fsynced by the caller's ``finish``). When a worker
dies mid-task, the scheduler runs that task again on another worker (Dask's
``distributed.scheduler.allowed-failures``, default 3); a task that kills every worker it
meets becomes failed rows with reason ``internal error: KilledWorker``, recomputed on the next
run like any internal error. Points already finished are never lost: they are in the store.

Workers need this project importable (the same code as the client: checked before the first
task) but no shared file system: each validated trace is shipped once with
``Client.scatter`` and cached in the worker (``sim.sweep.worker.remember_trace``).

Start a cluster on one machine (or the scheduler on one and workers on many)::

    dask scheduler --port 8786 &
    dask worker tcp://127.0.0.1:8786 --nworkers 2 --nthreads 1 &
    python -m sim.sweep --hw 'hwconfigs/*.yaml' --trace t.csv --out runs/s \\
        --scheduler tcp://127.0.0.1:8786
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sim.errors import SweepError
from sim.sweep.plan import Point, SweepPlan
from sim.sweep.worker import PointOutcome, Task, cached_trace, remember_trace, run_task

__all__ = ["check_cluster", "code_fingerprint", "run_tasks_dask", "task_key"]

CONNECT_TIMEOUT_S = 20.0
WORKER_WAIT_S = 60.0


def _sources_digest() -> str:
    """sha256 over the Python sources of ``sim`` and of ``common``, the one package it
    imports from this repository."""
    import common

    digest = hashlib.sha256()
    for root in (Path(__file__).resolve().parents[1], Path(common.__file__).resolve().parent):
        for path in sorted(root.rglob("*.py")):
            digest.update(f"{root.name}/{path.relative_to(root)}".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


# Taken when this process imported the simulator: a worker started before the sources were
# edited still runs the old code, and must say so.
_FINGERPRINT = _sources_digest()


def code_fingerprint() -> str:
    """sha256 of the ``sim`` and ``common`` Python sources as this process loaded them (client
    and workers must agree)."""
    return _FINGERPRINT


def task_key(points: Sequence[Point]) -> str:
    """Dask key of a task: its points' content keys, so equal work shares one key."""
    blob = ",".join(sorted(p.key for p in points))
    return "edgellm-sweep-" + hashlib.sha256(blob.encode()).hexdigest()[:24]


def run_remote(task: Task, *traces: Any) -> tuple[int, list[PointOutcome]]:
    """On a worker: cache the shipped traces, then ``run_task`` (Dask pickles this by name)."""
    for (path, content_hash), trace in zip(task.traces, traces, strict=True):
        remember_trace(path, content_hash, trace)
    return run_task(task)


def _connect(scheduler: str) -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise SweepError("--scheduler needs the dask and distributed packages: pip install "
                         "'dask[distributed]' (or this project's [dask] extra)") from None
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SweepError(f"--scheduler {scheduler}: cannot reach a Dask scheduler ({first}); "
                         f"start one with `dask scheduler` and workers with `dask worker "
                         f"{scheduler}`") from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        client.close()
        raise SweepError(f"--scheduler {scheduler}: no Dask worker joined within "
                         f"{WORKER_WAIT_S:.0f} s; start some with `dask worker {scheduler}`"
                         ) from None
    return client


def _check_workers(client: Any, scheduler: str) -> None:
    """Every worker must run the client's ``sim`` code, or content keys would lie."""
    mine = code_fingerprint()
    try:
        theirs = client.run(code_fingerprint)
    except (ImportError, AttributeError) as exc:
        raise SweepError(f"--scheduler {scheduler}: the workers cannot import this project "
                         f"({type(exc).__name__}: {exc}); install it on every worker or start "
                         f"them with PYTHONPATH=<repo>") from None
    stale = sorted(w for w, h in theirs.items() if h != mine)
    if stale:
        raise SweepError(f"--scheduler {scheduler}: worker(s) {', '.join(stale)} run other "
                         f"sim code than this client; restart them from the same checkout")


def check_cluster(scheduler: str) -> None:
    """Fail early (before the sweep writes anything) if the cluster cannot run the sweep.

    Raises:
        SweepError: no scheduler at that address, no worker, or workers with other code.
    """
    client = _connect(scheduler)
    try:
        _check_workers(client, scheduler)
    finally:
        client.close()


def _killed(exc: BaseException, seconds: float = 0.0) -> PointOutcome:
    return PointOutcome("error", f"internal error: {type(exc).__name__}: {exc}", {}, seconds)


def run_tasks_dask(tasks: Sequence[tuple[Task, list[Point]]], plan: SweepPlan, scheduler: str,
                   finish: Callable[[Sequence[Point], Sequence[PointOutcome]], None]) -> None:
    """Run tasks on the Dask cluster at ``scheduler``; hand each finished one to ``finish``.

    Raises:
        SweepError: no scheduler, no worker, or workers with other code (before any task).
        KeyboardInterrupt: passed on after cancelling the tasks still queued or running.
    """
    from distributed import as_completed

    client = _connect(scheduler)
    futures: dict[Any, list[Point]] = {}
    try:
        _check_workers(client, scheduler)
        traces = {(str(t.path), t.content_hash): cached_trace(str(t.path), t.content_hash)
                  for t in plan.traces}
        shipped = dict(zip(traces, client.scatter(list(traces.values())), strict=True))
        for task, points in tasks:
            args = [shipped[ref] for ref in task.traces]
            fut = client.submit(run_remote, task, *args, key=task_key(points), pure=False,
                                retries=0)
            futures[fut] = points
        # Results are gathered on the client's event loop as tasks end (no blocking round trip
        # per task); a failed task yields (type, exception, traceback) instead of raising.
        done = as_completed(list(futures), loop=client.loop, with_results=True,
                            raise_errors=False)
        for fut, result in done:
            points = futures.pop(fut)
            if fut.status == "error":  # a lost task is failed rows, not a crash
                outcomes = [_killed(result[1]) for _ in points]
            else:
                outcomes = result[1]
            finish(points, outcomes)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        client.close()
