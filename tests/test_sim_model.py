"""The closed-form pieces: fold cycles, precision and sparsity effects, tiling, DRAM traffic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim import evaluate_op, load_hw
from sim.dataflow import DF_CODE, fold_cycles
from sim.memory import LOOP_ORDERS, memory_timing
from sim.opwork import op_work
from sim.scheduler import evaluate_variants
from sim.tiling import TileSet, dim_candidates, tile_totals

ROOT = Path(__file__).resolve().parents[1]
EDGE = ROOT / "hwconfigs" / "edge_llm.yaml"


# SCALE-Sim v3 'Total Cycles' for tiny GEMMs (run by hand in its venv), plus one: SCALE-Sim
# reports the index of the last busy cycle, we count cycles.
@pytest.mark.parametrize(("shape", "array", "expected"), [
    ((20, 13, 11), (4, 8), {"ws": 203, "os": 209, "is": 242}),
    ((7, 5, 3), (2, 2), {"ws": 65, "os": 59, "is": 71}),
    ((100, 37, 64), (8, 16), {"ws": 3119, "os": 3353, "is": 3751}),
    ((33, 70, 129), (16, 4), {"ws": 10853, "os": 7937, "is": 8423}),
])
def test_fold_cycles_match_scalesim_on_small_shapes(shape, array, expected) -> None:
    m, n, k = shape
    for df, cycles in expected.items():
        assert fold_cycles(DF_CODE[df], m, n, k, *array) == cycles + 1


def test_fold_cycles_vectorize_and_empty_tiles_cost_nothing() -> None:
    out = fold_cycles(np.array([0, 1, 2]), np.array([8, 8, 0]), 8, 8, 4, 4)
    assert out.shape == (3,) and out[2] == 0
    assert out[0] == 2 * 2 * (4 + 8 + 4 + 4 - 2)  # 4 folds of (preload + stream + skew)


@pytest.mark.parametrize(("overrides", "w", "a", "expected"), [
    ({}, 16, 16, 1.0),
    ({}, 4, 16, 0.25),
    ({}, 3, 16, 0.25),  # bit-fusion modes are 16, 8, 4, 2: 3 bits run as 4
    ({}, 8, 8, 0.25),  # both operands scale
    ({}, 1, 16, 0.125),  # floor at min_bits = 2
    ({}, 32, 16, 2.0),  # wider than base: two passes
    ({"precision.model": "bit_serial", "precision.min_bits": 1}, 3, 16, 3 / 16),
    ({"precision.model": "fixed"}, 4, 4, 1.0),
    ({"precision.model": "fixed", "precision.base_bits": 8, "precision.min_bits": 8}, 8, 16, 2.0),
    ({"precision.operands": "weight"}, 4, 8, 0.25),
])
def test_precision_models(overrides, w, a, expected) -> None:
    hw = load_hw(EDGE, overrides)
    work = op_work(hw, np.array([w]), np.array([a]), np.array([0.0]), ["dense"])
    assert work.cycles_per_mac[0] == pytest.approx(expected)
    assert work.macs_per_pe_per_cycle[0] == pytest.approx(1.0 / expected)


def test_nm_sparsity_exact_ratio_only_for_compatible_patterns() -> None:
    hw = load_hw(EDGE, ["sparsity.support=nm", "sparsity.nm_patterns=['2:4']"])
    patterns = ["2:4", "1:4", "2:8", "4:8", "unstructured", "dense"]
    work = op_work(hw, np.full(6, 4), np.full(6, 16), np.array([0.5, 0.75, 0.75, 0.5, 0.5, 0]),
                   patterns)
    assert list(work.density) == [0.5, 0.5, 0.5, 1.0, 1.0, 1.0]
    # Compressed: kept values (half) plus log2(4) = 2 index bits each.
    assert work.b_bits[0] == pytest.approx(0.5 * (4 + 2))
    assert list(work.b_bits[3:]) == [4, 4, 4]


def test_unstructured_skipping_with_efficiency_and_metadata() -> None:
    hw = load_hw(EDGE)  # unstructured, efficiency 0.8, 4 metadata bits per non-zero
    work = op_work(hw, np.array([8, 4, 8]), np.array([16, 16, 16]), np.array([0.5, 0.5, 0.1]),
                   ["unstructured", "unstructured", "unstructured"])
    assert work.density == pytest.approx([0.6, 0.6, 0.92])
    assert work.b_bits == pytest.approx([6.0, 4.0, 8.0])  # compressed only when smaller


def test_no_sparsity_support_means_no_speedup_but_optional_compression() -> None:
    plain = load_hw(EDGE, ["sparsity.support=none"])
    work = op_work(plain, np.array([8]), np.array([16]), np.array([0.75]), ["unstructured"])
    assert work.density[0] == 1.0 and work.b_bits[0] == 8
    packed = load_hw(EDGE, ["sparsity.support=none", "sparsity.compressed_storage=true"])
    work = op_work(packed, np.array([8]), np.array([16]), np.array([0.75]), ["unstructured"])
    assert work.density[0] == 1.0 and work.b_bits[0] == pytest.approx(0.25 * (8 + 4))


def test_dim_candidates_are_aligned_splits() -> None:
    assert list(dim_candidates(576, 32)) == [32, 64, 96, 160, 288, 576]
    assert list(dim_candidates(5, 32)) == [5]
    assert dim_candidates(1536, 16).max() == 1536


def _shape(m: int, n: int, k: int) -> dict:
    """A dense 16-bit op of shape m x n x k on an 8 x 8 array with 32-bit partial sums."""
    return {"m": m, "n": n, "k": k, "rows": 8, "cols": 8, "density": 1.0, "macs_per_pe": 1.0,
            "a_bits": 16, "b_bits": 16, "accum_bits": 32}


def test_tiles_sum_exactly_over_edge_tiles() -> None:
    # One 50x40x30 op cut into 32x16x30 tiles: the totals equal the sum over the 2x3 tiles.
    tiles = TileSet(np.array([0.0]), np.array([32.0]), np.array([16.0]), np.array([30.0]))
    tot = tile_totals(tiles, **_shape(50, 40, 30), sram_bytes_per_cycle=1e9)
    by_hand = sum(fold_cycles(0, m, n, 30, 8, 8) for m in (32, 18) for n in (16, 16, 8))
    assert tot.array_cycles[0, 0] == by_hand
    assert tot.n_tiles[0] == 6 and [t[0] for t in tot.trips] == [2, 3, 1]


def test_sram_port_bandwidth_can_bound_compute() -> None:
    tiles = TileSet(np.array([1.0]), np.array([64.0]), np.array([64.0]), np.array([64.0]))
    fast = tile_totals(tiles, **_shape(64, 64, 64), sram_bytes_per_cycle=1e9)
    slow = tile_totals(tiles, **_shape(64, 64, 64), sram_bytes_per_cycle=1.0)
    assert fast.compute_cycles[0, 0] == fast.array_cycles[0, 0]
    assert slow.compute_cycles[0, 0] > 10 * fast.compute_cycles[0, 0]


def test_dram_reuse_depends_on_loop_order() -> None:
    # 2 tiles along m, 2 along n, 1 along k; A = 100 B, B = 200 B, out = 40 B.
    trips = (np.array([2.0]), np.array([2.0]), np.array([1.0]))
    mem = memory_timing(trips, a_bytes=100.0, b_bytes=200.0, out_bytes=40.0, psum_bytes=80.0,
                        compute=np.array([1000.0]), bytes_per_cycle=1.0, double_buffering=True)
    by_order = dict(zip(LOOP_ORDERS, mem.dram_bytes[:, 0, 0]))
    # m outer, n inner: A stays (fetched once), B is fetched again for each m tile.
    assert by_order["mnk"] == pytest.approx(100 + 2 * 200 + 40)
    # n outer, m inner: B stays, A is fetched again for each n tile.
    assert by_order["nmk"] == pytest.approx(2 * 100 + 200 + 40)
    assert mem.a_loads[LOOP_ORDERS.index("mnk"), 0, 0] == 2


def test_partial_sums_spill_when_k_is_outside() -> None:
    trips = (np.array([2.0]), np.array([1.0]), np.array([3.0]))
    mem = memory_timing(trips, a_bytes=120.0, b_bytes=300.0, out_bytes=40.0, psum_bytes=80.0,
                        compute=np.array([600.0]), bytes_per_cycle=1e9, double_buffering=True)
    by_order = dict(zip(LOOP_ORDERS, mem.dram_bytes[:, 0, 0]))
    assert by_order["mkn"] == pytest.approx(120 + 2 * 300 + 40)  # k inside m: no spill
    # k outside m: each of the 2 output tiles is visited 3 times, 2 spills + 2 reloads each.
    assert by_order["kmn"] == pytest.approx(120 + 300 + 40 + 2 * 2 * 40 * 2)


def test_double_buffering_hides_transfer() -> None:
    on = evaluate_op(load_hw(EDGE), 256, 1536, 576)
    off = evaluate_op(load_hw(EDGE, ["sram.double_buffering=false"]), 256, 1536, 576)
    assert on["cycles"] < off["cycles"]
    assert off["cycles"] == pytest.approx(off["compute_cycles"]
                                          + off["dram_bytes"] / load_hw(EDGE).dram_bytes_per_cycle)


def test_fixed_dataflow_mode_and_objectives() -> None:
    hw = load_hw(EDGE)
    picks = {df: evaluate_op(hw, 128, 576, 576, dataflow=df) for df in ("ws", "os", "is")}
    auto = evaluate_op(hw, 128, 576, 576)
    assert {p["dataflow"] for p in picks.values()} == {"ws", "os", "is"}
    assert auto["cycles"] == min(p["cycles"] for p in picks.values())
    low_energy = evaluate_op(hw, 128, 576, 576, objective="energy")
    edp = evaluate_op(hw, 128, 576, 576, objective="edp")
    assert low_energy["energy_j"] <= auto["energy_j"]
    assert edp["cycles"] * edp["energy_j"] <= auto["cycles"] * auto["energy_j"] * (1 + 1e-12)
    assert edp["cycles"] * edp["energy_j"] <= low_energy["cycles"] * low_energy["energy_j"] * (
        1 + 1e-12)


def test_variants_of_one_shape_match_one_by_one_evaluation() -> None:
    hw = load_hw(EDGE, ["sram.weight_kib=64"])  # small buffer: variants fit different tiles
    bits, acts = [16, 8, 4, 3, 2], [16, 16, 8, 16, 4]
    sparsity, patterns = [0.0, 0.3, 0.5, 0.7, 0.5], ["dense", "unstructured", "2:4",
                                                    "unstructured", "unstructured"]
    for objective in ("latency", "energy", "edp"):
        together = evaluate_variants(hw, 256, 576, 1536, w_bits=bits, a_bits=acts,
                                     weight_sparsity=sparsity, sparsity_patterns=patterns,
                                     objective=objective)
        for i, got in enumerate(together):
            alone = evaluate_op(hw, 256, 576, 1536, w_bits=bits[i], a_bits=acts[i],
                                weight_sparsity=sparsity[i], sparsity_pattern=patterns[i],
                                objective=objective)
            assert got == pytest.approx(alone)
