"""Invariants over random shapes and configs (hypothesis).

Physics the simulator must respect whatever the mapping search picks: never faster than the
roofline, never less DRAM traffic than reading each operand once, tiles that fit their buffers,
and monotone responses (more bandwidth, fewer bits, more zeros are never slower when the
hardware can use them).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from sim import HwConfig, MappingError, evaluate_op, load_hw
from sim.opwork import op_work

ROOT = Path(__file__).resolve().parents[1]
BASE = load_hw(ROOT / "hwconfigs" / "edge_llm.yaml")
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

dims = st.integers(min_value=1, max_value=2048)


@st.composite
def hardware(draw: st.DrawFn) -> HwConfig:
    """Random but valid accelerators derived from the default one."""
    over = {
        "pe.rows": draw(st.integers(1, 64)),
        "pe.cols": draw(st.integers(1, 64)),
        "pe.macs_per_pe_per_cycle": draw(st.sampled_from([1, 2, 4])),
        "dram.bandwidth_gbps": draw(st.floats(0.5, 200)),
        "sram.double_buffering": draw(st.booleans()),
        "sram.banks": draw(st.sampled_from([1, 8, 64])),
        "precision.model": draw(st.sampled_from(["scalable", "bit_serial", "fixed"])),
        "sparsity.support": draw(st.sampled_from(["none", "unstructured", "nm"])),
        "sparsity.nm_patterns": ["2:4", "1:4"],
    }
    if draw(st.booleans()):
        over.update({"sram.input_kib": None, "sram.weight_kib": None, "sram.output_kib": None,
                     "sram.unified_kib": draw(st.sampled_from([128, 512, 4096]))})
    else:
        over.update({"sram.input_kib": draw(st.sampled_from([64, 256])),
                     "sram.weight_kib": draw(st.sampled_from([64, 512])),
                     "sram.output_kib": draw(st.sampled_from([64, 256]))})
    return _with(BASE, over)


def _with(hw: HwConfig, over: dict) -> HwConfig:
    from sim import apply_overrides

    return apply_overrides(hw, over)


@st.composite
def ops(draw: st.DrawFn) -> dict:
    pattern = draw(st.sampled_from(["dense", "unstructured", "2:4", "1:4"]))
    sparsity = 0.0 if pattern == "dense" else draw(st.floats(0.0, 0.95))
    return {"m": draw(dims), "n": draw(dims), "k": draw(dims),
            "w_bits": draw(st.integers(1, 16)), "a_bits": draw(st.sampled_from([4, 8, 16])),
            "weight_sparsity": sparsity, "sparsity_pattern": pattern,
            "dataflow": draw(st.sampled_from(["auto", "ws", "os", "is"]))}


def _run(hw: HwConfig, op: dict) -> dict:
    args = dict(op)
    m, n, k = args.pop("m"), args.pop("n"), args.pop("k")
    try:
        return evaluate_op(hw, m, n, k, **args)
    except MappingError:
        reject()
        raise  # unreachable: reject() raises


@SETTINGS
@given(hardware(), ops())
def test_never_below_roofline_and_compulsory_traffic(hw: HwConfig, op: dict) -> None:
    r = _run(hw, op)
    assert r["cycles"] >= r["roofline_cycles"] * (1 - 1e-9)
    assert r["compute_cycles"] >= r["compute_roof_cycles"] * (1 - 1e-9)
    assert r["dram_bytes"] >= r["compulsory_bytes"] * (1 - 1e-9)
    assert r["cycles"] >= r["dram_bytes"] / hw.dram_bytes_per_cycle * (1 - 1e-9)
    assert r["stall_cycles"] >= -1e-6
    assert 0 < r["utilization"] <= 1 + 1e-9
    assert r["energy_j"] > 0
    if op["dataflow"] != "auto":
        assert r["dataflow"] == op["dataflow"]


@SETTINGS
@given(hardware(), ops())
def test_chosen_tiles_fit_the_buffers(hw: HwConfig, op: dict) -> None:
    r = _run(hw, op)
    assert 1 <= r["tile_m"] <= op["m"] and 1 <= r["tile_n"] <= op["n"]
    assert 1 <= r["tile_k"] <= op["k"]
    work = op_work(hw, np.array([op["w_bits"]]), np.array([op["a_bits"]]),
                   np.array([op["weight_sparsity"]]), [op["sparsity_pattern"]])
    # Double buffering holds two copies of a tile, except of one that is the whole operand
    # (it never changes: sim.tiling.buffer_copies).
    two = 2 if hw.sram.double_buffering else 1
    whole_m, whole_n, whole_k = (r["tile_m"] >= op["m"], r["tile_n"] >= op["n"],
                                 r["tile_k"] >= op["k"])
    a = r["tile_m"] * r["tile_k"] * op["a_bits"] / 8 * (1 if whole_m and whole_k else two)
    b = r["tile_k"] * r["tile_n"] * work.b_bits[0] / 8 * (1 if whole_k and whole_n else two)
    c = r["tile_m"] * r["tile_n"] * hw.pe.accum_bits / 8 * (1 if whole_m and whole_n else two)
    s = hw.sram
    if s.unified_kib is not None:
        assert a + b + c <= s.unified_kib * 1024
    else:
        assert a <= s.input_kib * 1024 and b <= s.weight_kib * 1024 and c <= s.output_kib * 1024


@SETTINGS
@given(hardware(), ops(), st.floats(1.1, 10))
def test_more_bandwidth_is_never_slower(hw: HwConfig, op: dict, factor: float) -> None:
    slow = _run(hw, op)
    fast = _run(_with(hw, {"dram.bandwidth_gbps": hw.dram.bandwidth_gbps * factor}), op)
    assert fast["cycles"] <= slow["cycles"] * (1 + 1e-9)


@SETTINGS
@given(hardware(), ops(), st.integers(1, 15))
def test_fewer_bits_are_never_slower(hw: HwConfig, op: dict, fewer: int) -> None:
    wide = _run(hw, op)
    narrow = _run(hw, {**op, "w_bits": max(1, op["w_bits"] - fewer)})
    assert narrow["cycles"] <= wide["cycles"] * (1 + 1e-9)
    narrow_a = _run(hw, {**op, "a_bits": max(1, op["a_bits"] // 2)})
    assert narrow_a["cycles"] <= wide["cycles"] * (1 + 1e-9)


@SETTINGS
@given(hardware(), ops(), st.floats(0.0, 0.95))
def test_more_unstructured_sparsity_is_never_slower(hw: HwConfig, op: dict, extra: float
                                                    ) -> None:
    base = {**op, "sparsity_pattern": "unstructured"}
    sparser = {**base, "weight_sparsity": min(0.99, op["weight_sparsity"] + extra)}
    hw = _with(hw, {"sparsity.support": "unstructured"})
    assert _run(hw, sparser)["cycles"] <= _run(hw, base)["cycles"] * (1 + 1e-9)


@SETTINGS
@given(hardware(), ops())
def test_nm_pattern_is_never_slower_than_dense_on_nm_hardware(hw: HwConfig, op: dict) -> None:
    hw = _with(hw, {"sparsity.support": "nm"})
    dense = _run(hw, {**op, "sparsity_pattern": "dense", "weight_sparsity": 0.0})
    sparse = _run(hw, {**op, "sparsity_pattern": "2:4", "weight_sparsity": 0.5})
    assert sparse["cycles"] <= dense["cycles"] * (1 + 1e-9)
    assert sparse["macs_effective"] == dense["macs"] * 0.5


@SETTINGS
@given(hardware(), ops())
def test_sparsity_without_support_gives_no_speedup(hw: HwConfig, op: dict) -> None:
    hw = _with(hw, {"sparsity.support": "none", "sparsity.compressed_storage": False})
    dense = _run(hw, {**op, "sparsity_pattern": "dense", "weight_sparsity": 0.0})
    sparse = _run(hw, {**op, "sparsity_pattern": "unstructured", "weight_sparsity": 0.9})
    assert sparse["cycles"] == dense["cycles"]
    assert sparse["macs_effective"] == sparse["macs"]


@settings(max_examples=15, deadline=None)
@given(hardware(), ops())
def test_deterministic(hw: HwConfig, op: dict) -> None:
    assert _run(hw, op) == _run(hw, op)
