"""Sweeps on a Dask distributed cluster give the local table, resume, and survive lost workers.

``test_cluster_table_equals_local`` runs on the cluster named by ``EDGELLM_DASK_SCHEDULER``
(.ci/run starts a ``dask scheduler`` and 2 ``dask worker`` processes on loopback and sets it).
The lost-worker test starts its own small cluster (it kills one of its workers).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("distributed", reason="the dask and distributed packages are not installed")

from sim.sweep import cluster as sweep_dask  # noqa: E402
from sim.sweep import main as sweep_main  # noqa: E402
from sim.sweep import run_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
SCHEDULER = os.environ.get("EDGELLM_DASK_SCHEDULER")
# Columns that say when and where a point ran, not what it computed.
RUN_COLUMNS = ["run_id", "point_seconds"]
HW = [str(ROOT / "hwconfigs" / "edge_llm.yaml"), str(DATA / "scalesim" / "google.cfg")]
TRACES = [str(DATA / "tiny_step.csv"), str(DATA / "scalesim" / "gpt2.csv")]
GRID = {"pe.rows": [8, 16, 32], "dram.bandwidth_gbps": [4, 8, 16]}


def _same_table(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.drop(columns=RUN_COLUMNS).reset_index(drop=True),
                                  b.drop(columns=RUN_COLUMNS).reset_index(drop=True))


@pytest.mark.skipif(SCHEDULER is None, reason="no Dask scheduler given: set "
                    "EDGELLM_DASK_SCHEDULER=tcp://HOST:PORT (.ci/run starts one with 2 workers)")
def test_cluster_table_equals_local(tmp_path):
    local = run_sweep(HW, TRACES, GRID, out=tmp_path / "local", workers=2, plots=False)
    cluster = run_sweep(HW, TRACES, GRID, out=tmp_path / "dask", plots=False,
                        scheduler=SCHEDULER)
    assert len(cluster) == 2 * 9 * 2 and (cluster["status"] == "ok").all()
    _same_table(cluster, local)
    on_disk = [pd.read_csv(tmp_path / d / "sweep.csv") for d in ("local", "dask")]
    _same_table(*on_disk)
    # Resume on the cluster: nothing is computed again.
    again = run_sweep(HW, TRACES, GRID, out=tmp_path / "dask", plots=False, scheduler=SCHEDULER)
    assert again.attrs["sweep"]["computed"] == 0
    # A local run resumes a cluster run's folder (same keys, same store).
    more = run_sweep(HW, TRACES, {**GRID, "pe.rows": [8, 16, 32, 64]}, out=tmp_path / "dask",
                     plots=False)
    assert more.attrs["sweep"]["computed"] == 2 * 3 * 2


@pytest.mark.skipif(SCHEDULER is None, reason="no Dask scheduler given: set "
                    "EDGELLM_DASK_SCHEDULER=tcp://HOST:PORT (.ci/run starts one with 2 workers)")
def test_workers_with_other_code_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_dask, "_FINGERPRINT", "edited-since-the-workers-started")
    out = tmp_path / "s"
    code = sweep_main(["--hw", HW[0], "--trace", TRACES[0], "--out", str(out),
                       "--scheduler", SCHEDULER, "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "run other sim code than this client" in err[-1]
    assert not out.exists()


def test_unreachable_scheduler_is_one_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep_dask, "CONNECT_TIMEOUT_S", 1.0)
    out = tmp_path / "s"
    code = sweep_main(["--hw", HW[0], "--trace", TRACES[0], "--out", str(out),
                       "--scheduler", "tcp://127.0.0.1:9", "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("error: --scheduler tcp://127.0.0.1:9: cannot reach a Dask "
                              "scheduler")
    assert not out.exists()


def _start_cluster(folder: Path, workers: int) -> tuple[str, subprocess.Popen,
                                                        list[subprocess.Popen]]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    sched_file = folder / "scheduler.json"
    scheduler = subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(sched_file)],
                                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not sched_file.is_file() and time.monotonic() < deadline:
        time.sleep(0.2)
    address = json.loads(sched_file.read_text())["address"]
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                               "--nthreads", "1", "--no-dashboard", "--memory-limit", "0",
                               "--no-nanny", "--name", f"w{i}"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(workers)]
    return address, scheduler, procs


def test_lost_worker_loses_no_finished_point(tmp_path):
    address, scheduler, workers = _start_cluster(tmp_path, 2)
    out = tmp_path / "s"
    # 48 points of a few hundred ms each: long enough to kill a worker in the middle.
    cmd = [sys.executable, "-m", "sim.sweep", "--hw", HW[1], "--trace", TRACES[1],
           "--grid", "pe.rows=4,6,8,10,12,16", "--grid", "pe.cols=4,6,8,12,16,24,32,48",
           "--out", str(out), "--no-plots", "--json", "--scheduler", address]
    env = dict(os.environ, TQDM_DISABLE="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    sweep = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        log = out / "points.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sweep.poll() is None:
            if log.is_file() and len(log.read_text().splitlines()) >= 4:
                break
            time.sleep(0.05)
        before = len(log.read_text().splitlines())
        assert sweep.poll() is None, "the sweep ended before a worker could be killed"
        workers[0].send_signal(signal.SIGKILL)  # a worker lost mid-sweep, its task with it
        stdout, stderr = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, stderr[-2000:]
    finally:
        for proc in [sweep, *workers, scheduler]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    stats = json.loads(stdout)
    assert stats["points"] == 48 and stats["ok"] == 48 and before >= 4
    keys = [json.loads(line)["key"] for line in log.read_text().splitlines()]
    # Every point finished exactly once: none lost, none of the finished ones recomputed.
    assert len(keys) == 48 and max(Counter(keys).values()) == 1
