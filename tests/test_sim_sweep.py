"""The architect's sweep (sim.sweep): product size, resume, failures, outputs, CLI.

Traces are the hand-written tiny fixture (tests/data/tiny_step.csv) and a dense 16-bit
variant of it, so each sweep here takes well under a second.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.sweep.worker as sweep_worker
from sim.sweep import SweepInterrupted, run_sweep
from sim.errors import SweepError
from sim.sweep.plan import parse_grid
from sim.sweep.report import ratio_by_value, ratio_effects
from sim.sweep.store import PointStore
from sim.sweep.table import METRIC_COLUMNS, PROVENANCE_KEYS, pareto_mask

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
HW = ROOT / "hwconfigs"
TWO_HW = [str(HW / "edge_llm.yaml"), str(HW / "mobile_npu.yaml")]


def _write_dense_variant(src: Path, dst: Path) -> None:
    """The fixture trace with every weight dense and 16-bit (a 'vanilla' method header)."""
    lines = src.read_text().splitlines()
    header = json.loads(lines[0][1:])
    header.update(method="vanilla", window=[0, 1], policy="dense")
    ops = pd.read_csv(src, comment="#")
    ops["weight_sparsity"] = 0.0
    ops["sparsity_pattern"] = "dense"
    ops["w_bits"] = 16
    with dst.open("w") as fh:
        fh.write("# " + json.dumps(header) + "\n")
        ops.to_csv(fh, index=False)
    (dst.parent / "dense.tensors.csv").write_text((DATA / "tiny_step.tensors.csv").read_text())


@pytest.fixture
def traces(tmp_path: Path) -> list[str]:
    """Two traces in a private folder: the fixture (adaptive) and its dense variant."""
    folder = tmp_path / "traces"
    folder.mkdir()
    for name in ("tiny_step.csv", "tiny_step.tensors.csv"):
        (folder / name).write_text((DATA / name).read_text())
    _write_dense_variant(DATA / "tiny_step.csv", folder / "dense.csv")
    return [str(folder / "tiny_step.csv"), str(folder / "dense.csv")]


def _jsonl_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()
            if line.strip()]


# ----------------------------------------------------------------------------- the product

def test_product_size_and_columns(traces: list[str], tmp_path: Path) -> None:
    grid = ["pe.rows=8,16", "dram.bandwidth_gbps=4,8,16"]
    table = run_sweep(TWO_HW, traces, grid, out=tmp_path / "out", plots=False)
    assert len(table) == 2 * 2 * 3 * 2
    assert (table["status"] == "ok").all()
    # Every combination appears exactly once.
    combos = table.groupby(["config", "pe.rows", "dram.bandwidth_gbps", "trace"]).size()
    assert len(combos) == 24 and (combos == 1).all()
    for col in ("config", "pe.rows", "dram.bandwidth_gbps", "trace", *PROVENANCE_KEYS,
                *METRIC_COLUMNS, "pe_count", "sram_bytes", "area_mm2", "pareto"):
        assert col in table.columns, col
    assert set(table["method"]) == {"adaptive", "vanilla"}
    assert set(table["trace"]) == {"tiny_step", "dense"}
    # The swept value is the one simulated: PE count follows pe.rows x the config's cols.
    cols = {"edge_llm": 32, "mobile_npu": 64}
    assert (table["pe_count"] == table["pe.rows"] * table["config"].map(cols)).all()
    # Per-phase cycles add up to the step's cycles.
    phases = table[[f"cycles_{p}" for p in ("fwd", "bwd_input", "bwd_weight")]].sum(axis=1)
    assert np.allclose(phases, table["cycles"], rtol=1e-6, atol=3)
    assert (table["roofline_ratio"] >= 1 - 1e-9).all()
    on_disk = pd.read_csv(tmp_path / "out" / "sweep.csv")
    assert len(on_disk) == 24
    assert table.attrs["sweep"]["points"] == 24


def test_no_grid_runs_each_config_as_is(traces: list[str], tmp_path: Path) -> None:
    table = run_sweep(TWO_HW, traces[:1], out=tmp_path / "out", plots=False)
    assert len(table) == 2
    direct = __import__("sim").simulate_trace(traces[0], TWO_HW[0]).summary()
    row = table[table["config"] == "edge_llm"].iloc[0]
    assert row["cycles"] == direct["total_cycles"]
    assert row["energy_j"] == pytest.approx(direct["energy_j"])


def test_dataflow_and_objective_are_part_of_the_point(traces: list[str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    auto = run_sweep(TWO_HW, traces[:1], out=out, plots=False)
    ws = run_sweep(TWO_HW, traces[:1], out=out, plots=False, dataflow="ws")
    assert ws.attrs["sweep"]["computed"] == 2  # same configs and trace, new dataflow: new keys
    assert set(ws["dataflow_mix"].map(lambda m: tuple(json.loads(m)))) == {("ws",)}
    assert (ws["cycles"] >= auto["cycles"]).all()  # auto picks the best dataflow per op
    energy = run_sweep(TWO_HW, traces[:1], out=out, plots=False, objective="energy")
    assert energy.attrs["sweep"]["computed"] == 2
    assert (energy["energy_j"] <= auto["energy_j"] * (1 + 1e-12)).all()


def test_area_proxy_from_config_constants(traces: list[str], tmp_path: Path) -> None:
    table = run_sweep([TWO_HW[0]], traces[:1], ["pe.rows=8,16"], out=tmp_path / "o",
                      plots=False)
    # edge_llm.yaml: area.pe_um2 2500, area.sram_um2_per_kib 1500, 1024 KiB of SRAM.
    expected = (table["pe.rows"] * 32 * 2500 + 1024 * 1500) / 1e6
    assert np.allclose(table["area_mm2"], expected)
    assert (table["area_source"] == "config").all()


# ----------------------------------------------------------------------------- resume

def test_partial_then_full_sweep_recomputes_nothing(traces: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_sweep(TWO_HW, traces, ["pe.rows=8"], out=out, plots=False)
    assert first.attrs["sweep"]["computed"] == 4
    full = run_sweep(TWO_HW, traces, ["pe.rows=8,16"], out=out, plots=False)
    stats = full.attrs["sweep"]
    assert (stats["points"], stats["computed"], stats["skipped"]) == (8, 4, 4)
    assert len(_jsonl_lines(out)) == 8  # nothing computed twice
    old = full[full["pe.rows"] == 8].set_index(["config", "trace"]).sort_index()
    ref = first.set_index(["config", "trace"]).sort_index()
    assert (old["run_id"] == ref["run_id"]).all()  # rows from the first run kept as they were
    assert np.array_equal(old["cycles"].to_numpy(), ref["cycles"].to_numpy())
    again = run_sweep(TWO_HW, traces, ["pe.rows=8,16"], out=out, plots=False)
    assert again.attrs["sweep"]["computed"] == 0 and again.attrs["sweep"]["skipped"] == 8


def test_ctrl_c_keeps_finished_points_and_resume_completes(traces: list[str],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "out"
    grid = ["pe.rows=4,8,16", "dram.bandwidth_gbps=4,8"]

    def interrupt_after_three(done: int, total: int) -> None:
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(SweepInterrupted) as info:
        run_sweep(TWO_HW, traces, grid, out=out, plots=False, progress=interrupt_after_three)
    saved = info.value.stats["done"]
    assert 3 <= saved < 24 and not info.value.stats["complete"]
    assert len(pd.read_csv(out / "sweep.csv")) == saved  # the table holds what was done
    resumed = run_sweep(TWO_HW, traces, grid, out=out, plots=False)
    assert resumed.attrs["sweep"]["computed"] == 24 - saved
    assert len(_jsonl_lines(out)) == 24
    fresh = run_sweep(TWO_HW, traces, grid, out=tmp_path / "fresh", plots=False)
    cols = ["cycles", "energy_j", "dram_bytes", "status"]
    assert resumed[cols].equals(fresh[cols])


def _long_sweep(trace: str, out: Path) -> list[str]:
    """A CLI sweep of 64 points on one config, long enough to be stopped half-way."""
    return [sys.executable, "-m", "sim.sweep", "--hw", str(HW / "edge_llm.yaml"), "--trace",
            trace, "--grid", "pe.rows=4,8,12,16,20,24,28,32",
            "--grid", "dram.bandwidth_gbps=1,2,4,8,16,32,64,128", "--out", str(out),
            "--workers", "2", "--no-plots", "--json"]


def _wait_for_lines(jsonl: Path, n: int, timeout_s: float = 60) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if jsonl.is_file() and jsonl.read_text().count("\n") >= n:
            return
        time.sleep(0.01)


def _processes_writing_to(out: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(out) in cmdline:
                pids.append(int(entry.name))
    return pids


def test_sigkill_mid_sweep_loses_nothing_done(traces: list[str], tmp_path: Path,
                                             cli_env: dict) -> None:
    out = tmp_path / "out"
    cmd = _long_sweep(traces[0], out)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=cli_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    jsonl = out / "points.jsonl"
    _wait_for_lines(jsonl, 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines_before = jsonl.read_text().count("\n")
    assert 4 <= lines_before < 64, "the sweep must still be running when killed"
    # Orphaned workers notice the parent is gone and exit (they would otherwise hang).
    deadline = time.time() + 5
    while _processes_writing_to(out) and time.time() < deadline:
        time.sleep(0.1)
    assert not _processes_writing_to(out)
    # A kill can also cut a record mid-write; simulate that torn line.
    with jsonl.open("a") as fh:
        fh.write('{"key": "torn')
    done = subprocess.run(cmd, cwd=ROOT, env=cli_env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["points"] == 64 and stats["done"] == 64 and stats["complete"]
    assert stats["skipped"] == lines_before and stats["computed"] == 64 - lines_before
    table = pd.read_csv(out / "sweep.csv")
    assert len(table) == 64 and table["point_key"].is_unique


def test_point_store_skips_torn_line_and_appends_on_new_line(tmp_path: Path) -> None:
    with PointStore(tmp_path) as store:
        store.append([{"key": "a", "status": "ok"}])
    with (tmp_path / "points.jsonl").open("a") as fh:
        fh.write('{"key": "b", "sta')
    with PointStore(tmp_path) as store:
        assert set(store.load()) == {"a"} and store.skipped_lines == 1
        store.append([{"key": "c", "status": "ok"}])
    with PointStore(tmp_path) as store:
        assert set(store.load()) == {"a", "c"}


def test_second_sweep_on_same_folder_is_refused(tmp_path: Path) -> None:
    with PointStore(tmp_path), pytest.raises(SweepError, match="another sweep"), \
            PointStore(tmp_path):
        pass


def test_edited_trace_is_recomputed_renamed_trace_is_not(traces: list[str],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_sweep(TWO_HW, traces[:1], out=out, plots=False)
    renamed = Path(traces[0]).with_name("renamed.csv")
    renamed.write_text(Path(traces[0]).read_text())
    Path(traces[0]).with_name("renamed.tensors.csv").write_text(
        Path(traces[0]).with_name("tiny_step.tensors.csv").read_text())
    again = run_sweep(TWO_HW, [str(renamed)], out=out, plots=False)
    assert again.attrs["sweep"]["computed"] == 0
    assert set(again["trace"]) == {"renamed"}  # identity from this sweep, numbers reused
    text = renamed.read_text().replace("0,q_proj,fwd,32,64,64", "0,q_proj,fwd,32,64,128")
    renamed.write_text(text)
    edited = run_sweep(TWO_HW, [str(renamed)], out=out, plots=False)
    assert edited.attrs["sweep"]["computed"] == 2


def test_each_trace_read_once_per_process(traces: list[str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = sweep_worker.read_trace

    def counting(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(sweep_worker, "read_trace", counting)
    run_sweep(TWO_HW, traces, ["pe.rows=8,16", "dram.bandwidth_gbps=4,8"], out=tmp_path / "o",
              plots=False)
    assert sorted(calls) == sorted(traces)


def test_workers_give_the_same_numbers(traces: list[str], tmp_path: Path) -> None:
    grid = ["pe.rows=8,16", "dram.bandwidth_gbps=4,8"]
    one = run_sweep(TWO_HW, traces, grid, out=tmp_path / "a", plots=False, workers=1)
    two = run_sweep(TWO_HW, traces, grid, out=tmp_path / "b", plots=False, workers=2)
    cols = ["point_key", "cycles", "stall_cycles", "energy_j", "dram_bytes"]
    assert one[cols].equals(two[cols])


# ----------------------------------------------------------------------------- failures

def test_failing_points_are_rows_with_reasons(traces: list[str], tmp_path: Path) -> None:
    hw = [str(HW / "edge_llm.yaml"), str(HW / "eyeriss.yaml")]
    # pe.rows=0 is invalid everywhere; sram.unified_kib is invalid on edge_llm's split SRAM
    # and too small to map any op on eyeriss; dram.capacity_mib=0.05 fits no step.
    table = run_sweep(hw, traces[:1], ["pe.rows=0,8", "sram.unified_kib=0.25,64"],
                      overrides=["dram.capacity_mib=0.05"], out=tmp_path / "o", plots=False)
    assert len(table) == 8
    by = table.set_index(["config", "pe.rows", "sram.unified_kib"])
    assert by.loc[("edge_llm", 0, 64), "status"] == "error"
    assert "pe.rows: must be > 0" in by.loc[("edge_llm", 0, 64), "reason"]
    assert "unified_kib" in by.loc[("edge_llm", 8, 64), "reason"]
    assert by.loc[("eyeriss", 8, 0.25), "status"] == "error"
    assert "no tiling that fits" in by.loc[("eyeriss", 8, 0.25), "reason"]
    row = by.loc[("eyeriss", 8, 64)]
    assert row["status"] == "infeasible" and "DRAM capacity" in row["reason"]
    assert row["latency_s"] > 0 and not bool(row["fits_in_dram"])  # simulated all the same
    assert table.attrs["sweep"]["failed"] == 8 and table.attrs["sweep"]["ok"] == 0
    summary = (tmp_path / "o" / "summary.txt").read_text()
    assert "no tiling that fits" in summary and "DRAM capacity" in summary


def test_internal_errors_are_recorded_and_retried(traces: list[str], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(sweep_worker, "schedule_ops", broken)
    table = run_sweep(TWO_HW[:1], traces[:1], out=tmp_path / "o", plots=False)
    assert table.iloc[0]["status"] == "error"
    assert table.iloc[0]["reason"] == "internal error: ZeroDivisionError: boom"
    monkeypatch.undo()
    fixed = run_sweep(TWO_HW[:1], traces[:1], out=tmp_path / "o", plots=False)
    assert fixed.attrs["sweep"]["computed"] == 1 and fixed.iloc[0]["status"] == "ok"


# ----------------------------------------------------------------------------- outputs

def test_plots_and_summary_written(traces: list[str], tmp_path: Path) -> None:
    out = tmp_path / "o"
    run_sweep(TWO_HW, traces, ["pe.rows=8,16", "dram.bandwidth_gbps=4,8", "clock_mhz=500,1000"],
              out=out, heatmap="pe.rows,clock_mhz")
    for name in ("sweep_pareto.png", "sweep_heatmap.png", "sweep_time.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    summary = (out / "summary.txt").read_text()
    for config in ("edge_llm", "mobile_npu"):
        assert config in summary
    assert "trace tiny_step" in summary and "trace dense" in summary
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


def test_one_grid_key_gives_no_heatmap(traces: list[str], tmp_path: Path) -> None:
    table = run_sweep(TWO_HW[:1], traces, ["pe.rows=8,16"], out=tmp_path / "o")
    files = table.attrs["sweep"]["files"]
    assert "pareto_png" in files and "time_png" in files and "heatmap_png" not in files
    assert not (tmp_path / "o" / "sweep_heatmap.png").exists()


def test_best_point_is_the_fastest_ok_row(traces: list[str], tmp_path: Path) -> None:
    table = run_sweep(TWO_HW, traces, ["pe.rows=0,8,16", "dram.bandwidth_gbps=4,8"],
                      out=tmp_path / "o", plots=False)
    best = table.attrs["sweep"]["best"]
    for (config, trace), sub in table[table["status"] == "ok"].groupby(["config", "trace"]):
        assert best[config][trace]["latency_s"] == pytest.approx(sub["latency_s"].min())
    front = table[table["pareto"]]
    assert len(front) >= 2  # at least one per trace
    for _, sub in table[table["status"] == "ok"].groupby("trace"):
        top = sub.loc[sub["latency_s"].idxmin()]
        assert top["pareto"]


def test_parquet_matches_csv(traces: list[str], tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    # 'x' is no integer: an error row whose swept value is a string among integers.
    table = run_sweep(TWO_HW, traces[:1], ["pe.rows=8,x"], out=tmp_path / "o", plots=False)
    assert set(table["status"]) == {"ok", "error"}
    parquet = pd.read_parquet(tmp_path / "o" / "sweep.parquet")
    csv = pd.read_csv(tmp_path / "o" / "sweep.csv")
    assert list(parquet.columns) == list(csv.columns) and len(parquet) == len(csv) == 4
    assert np.allclose(parquet["cycles"], csv["cycles"], equal_nan=True)
    assert list(parquet["pe.rows"]) == ["8", "x", "8", "x"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=25))
def test_pareto_mask_matches_brute_force(points: list[tuple[int, int]]) -> None:
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    mask = pareto_mask(xs, ys)
    for i in range(len(xs)):
        dominated = any(xs[j] <= xs[i] and ys[j] <= ys[i] and (xs[j] < xs[i] or ys[j] < ys[i])
                        for j in range(len(xs)))
        assert mask[i] == (not dominated)


def test_ratio_effects_finds_the_knob_that_moves_the_ratio() -> None:
    rows = []
    for a in (1, 2, 4):
        for b in (1, 2):
            # 'slow' takes a x b, 'fast' takes b: the ratio is a, whatever b is.
            rows.append({"config": "c", "trace": "slow", "a": a, "b": b, "status": "ok",
                         "latency_s": float(a * b)})
            rows.append({"config": "c", "trace": "fast", "a": a, "b": b, "status": "ok",
                         "latency_s": float(b)})
    effects = ratio_effects(pd.DataFrame(rows), "slow", "fast", ["a", "b"])
    c = effects[effects["config"] == "c"].set_index("knob")
    assert c.loc["a", "swing"] == pytest.approx(4.0)
    assert c.loc["b", "swing"] == pytest.approx(1.0)
    assert effects.iloc[0]["knob"] == "a"
    values = ratio_by_value(pd.DataFrame(rows), "slow", "fast", ["a", "b"])
    a = values[values["knob"] == "a"]
    assert list(a["value"]) == [1, 2, 4] and np.allclose(a["ratio"], [1, 2, 4])


# ----------------------------------------------------------------------------- CLI

def _cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sim.sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_json_output(traces: list[str], tmp_path: Path, cli_env: dict) -> None:
    out = tmp_path / "o"
    res = _cli(["--hw", str(HW / "edge_*.yaml"), "--trace", *traces, "--grid", "pe.rows=8,16",
                "--out", str(out), "--json", "--no-plots"], cli_env)
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["points"] == 2 * 2 * 2 and stats["done"] == 8 and stats["failed"] == 0
    assert stats["computed"] == 8 and stats["skipped"] == 0
    assert set(stats["configs"]) == {"edge_llm", "edge_tpu"}
    assert set(stats["best"]) == {"edge_llm", "edge_tpu"}
    assert stats["best"]["edge_llm"]["tiny_step"]["grid"]["pe.rows"] in (8, 16)
    assert Path(stats["files"]["csv"]).is_file()
    assert json.loads((out / "summary.json").read_text())["points"] == 8
    again = json.loads(_cli(["--hw", str(HW / "edge_*.yaml"), "--trace", *traces, "--grid",
                             "pe.rows=8,16", "--out", str(out), "--json", "--no-plots"],
                            cli_env).stdout)
    assert again["skipped"] == 8 and again["computed"] == 0


HW1 = ["--hw", "hwconfigs/edge_llm.yaml"]
TR1 = ["--trace", "tests/data/tiny_step.csv"]


@pytest.mark.parametrize("args, message", [
    (["--hw", "hwconfigs/nothing_*.yaml", *TR1], "no config file matches"),
    (["--hw", "hwconfigs/missing.yaml", *TR1], "hardware config not found"),
    ([*HW1, "--trace", "tests/data/missing.csv"], "trace file not found"),
    ([*HW1, *TR1, "--grid", "pe.rows"], "expected KEY=V1,V2"),
    ([*HW1, *TR1, "--grid", "pe.rows=8,,16"], "empty value"),
    ([*HW1, *TR1, "--grid", "pe.rowz=8,16"], "unknown field 'rowz'"),
    ([*HW1, *TR1, "--grid", "pe.rows=8", "--grid", "pe.rows=16"], "given twice"),
    ([*HW1, *TR1, "--grid", "pe.rows=8,16", "--heatmap", "pe.rows,clock_mhz"], "--heatmap"),
    ([*HW1, *TR1, "--workers", "-1"], "--workers"),
    ([*HW1, *TR1, "--dataflow", "xs"], "invalid choice"),
])
def test_cli_user_errors_are_one_line_exit_2_and_write_nothing(
        args: list[str], message: str, tmp_path: Path, cli_env: dict) -> None:
    out = tmp_path / "never"
    res = _cli([*args, "--out", str(out)], cli_env)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert message in lines[0]
    assert res.stdout == ""
    assert not out.exists()


def test_cli_help_documents_every_flag(cli_env: dict) -> None:
    res = _cli(["--help"], cli_env)
    assert res.returncode == 0
    for flag in ("--hw", "--trace", "--grid", "--set", "--dataflow", "--objective", "--out",
                 "--workers", "--heatmap", "--no-plots", "--checkpoint-s", "--json"):
        assert flag in res.stdout
    text = " ".join(res.stdout.split())
    for unit in ("GB/s", "seconds", "default: 1", "default: auto"):
        assert unit in text


def test_grid_values_parse_like_set() -> None:
    axes = parse_grid(["pe.rows=8,16", "sram.double_buffering=true,false",
                       "precision.model=fixed,scalable", "dram.bandwidth_gbps=12.8"])
    assert axes[0].values == (8, 16)
    assert axes[1].values == (True, False)
    assert axes[2].values == ("fixed", "scalable")
    assert axes[3].values == (12.8,)


def test_sigterm_saves_like_ctrl_c(traces: list[str], tmp_path: Path, cli_env: dict) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(_long_sweep(traces[0], out), cwd=ROOT, env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    jsonl = out / "points.jsonl"
    _wait_for_lines(jsonl, 3)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "rerun the same command to resume" in err
    saved = len(pd.read_csv(out / "sweep.csv"))
    assert saved == jsonl.read_text().count("\n") and 3 <= saved < 64
