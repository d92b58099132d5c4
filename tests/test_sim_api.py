"""The public function API on the hand-written trace: totals, footprint, purity, caching."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import sim
from sim import evaluate_op, load_hw, read_trace, simulate_gemm, simulate_trace

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "tests" / "data" / "tiny_step.csv"
HW = ROOT / "hwconfigs" / "edge_llm.yaml"


@pytest.fixture(scope="module")
def result() -> sim.SimResult:
    return simulate_trace(TRACE, HW)


def test_one_output_row_per_trace_row_with_report_columns(result: sim.SimResult) -> None:
    trace = read_trace(TRACE)
    assert len(result.ops) == len(trace.ops)
    pd.testing.assert_frame_equal(result.ops[trace.ops.columns], trace.ops)
    for col in ("cycles", "compute_cycles", "stall_cycles", "utilization", "dram_bytes",
                "energy_j", "roofline_cycles", "roofline_ratio", "bound", "dataflow",
                "loop_order", "tile_m", "tile_n", "tile_k"):
        assert col in result.ops
    assert set(result.ops["bound"]) <= {"compute", "memory"}
    assert (result.ops["roofline_ratio"] >= 1 - 1e-9).all()


def test_totals_per_phase_and_layer_add_up(result: sim.SimResult) -> None:
    for table in (result.per_phase(), result.per_layer()):
        assert table["cycles"].sum() == pytest.approx(result.total_cycles)
        assert table["dram_bytes"].sum() == pytest.approx(result.dram_bytes)
        assert table["energy_j"].sum() == pytest.approx(result.energy_j)
        assert table["ops"].sum() == len(result.ops)
    assert set(result.per_layer().index) == {-1, 0, 1}
    assert result.latency_s == pytest.approx(result.total_cycles / 1e9)  # 1 GHz clock


def test_footprint_from_tensor_table(result: sim.SimResult) -> None:
    tensors = read_trace(TRACE).tensors
    assert result.footprint is not None
    assert result.footprint.peak_memory_bytes == tensors["bytes"].sum()
    assert result.footprint.fits
    assert sum(result.footprint.by_kind.values()) == result.footprint.peak_memory_bytes
    tight = simulate_trace(TRACE, HW, overrides=["dram.capacity_gib=null",
                                                 "dram.capacity_mib=0.05"])
    assert tight.footprint is not None and not tight.footprint.fits
    summary = tight.summary()
    assert summary["fits_in_dram"] is False
    json.dumps(summary)  # JSON-ready


def test_count_multiplies_and_cache_matches_direct_evaluation(result: sim.SimResult) -> None:
    hw = load_hw(HW)
    for _, row in result.ops.iloc[::7].iterrows():
        one = evaluate_op(hw, int(row.M), int(row.N), int(row.K), w_bits=int(row.w_bits),
                          a_bits=int(row.a_bits), weight_sparsity=float(row.weight_sparsity),
                          sparsity_pattern=row.sparsity_pattern)
        assert row.cycles == pytest.approx(one["cycles"] * row["count"])
        assert row.dram_bytes == pytest.approx(one["dram_bytes"] * row["count"])
        assert row.dataflow == one["dataflow"]


def test_pure_and_deterministic() -> None:
    ops = read_trace(TRACE).ops
    before = ops.copy()
    a = simulate_trace(ops, load_hw(HW))
    b = simulate_trace(ops, load_hw(HW))
    pd.testing.assert_frame_equal(a.ops, b.ops)
    pd.testing.assert_frame_equal(ops, before)
    assert a.footprint is None and a.summary()["peak_memory_bytes"] is None


def test_fixed_dataflow_and_objectives() -> None:
    auto = simulate_trace(TRACE, HW)
    for df in ("ws", "os", "is"):
        fixed = simulate_trace(TRACE, HW, dataflow=df)
        assert set(fixed.ops["dataflow"]) == {df}
        assert fixed.total_cycles >= auto.total_cycles * (1 - 1e-12)
    energy = simulate_trace(TRACE, HW, objective="energy")
    assert energy.energy_j <= auto.energy_j * (1 + 1e-12)
    with pytest.raises(sim.SimError, match="dataflow must be"):
        simulate_trace(TRACE, HW, dataflow="rs")
    with pytest.raises(sim.SimError, match="objective must be"):
        simulate_trace(TRACE, HW, objective="area")


def test_compression_speeds_up_the_step_on_the_default_accelerator() -> None:
    ops = read_trace(TRACE).ops
    dense = ops.assign(weight_sparsity=0.0, sparsity_pattern="dense", w_bits=16)
    compressed = simulate_trace(ops, HW)
    baseline = simulate_trace(dense, HW)
    assert compressed.total_cycles < baseline.total_cycles
    assert compressed.dram_bytes < baseline.dram_bytes


def test_simulate_gemm_defaults_and_overrides() -> None:
    r = simulate_gemm(HW, 64, 96, 128, rows=8, cols=4)
    assert (r.rows, r.cols, r.w_bits, r.a_bits) == (8, 4, 16, 16)
    assert r.sparsity_pattern == "dense" and r.cycles >= r.roofline_cycles
    s = simulate_gemm(HW, 64, 96, 128, weight_sparsity=0.5)
    assert s.sparsity_pattern == "unstructured" and s.macs_effective < s.macs
    assert r.to_dict()["M"] == 64
    with pytest.raises(sim.TraceError, match="column M must be an integer > 0"):
        simulate_gemm(HW, 0, 96, 128)


def test_mapping_error_when_nothing_fits() -> None:
    hw = load_hw(HW, ["sram.input_kib=0.001"])
    with pytest.raises(sim.MappingError, match="no tiling that fits the SRAM"):
        evaluate_op(hw, 512, 512, 512)


def test_sim_imports_neither_torch_nor_the_other_packages(cli_env: dict) -> None:
    import subprocess
    import sys

    code = ("import pkgutil, sys, sim\n"
            "for mod in pkgutil.iter_modules(sim.__path__):\n"
            "    __import__(f'sim.{mod.name}')\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'workloads', 'dse', 'transformers', 'optuna'))\n"
            "print(','.join(bad))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=cli_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
