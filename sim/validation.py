"""Comparison with the peer simulators: SCALE-Sim v3 (stall-free and with finite bandwidth) and
ZigZag; the equivalent configurations and the agreement tables.

SCALE-Sim's GEMM topology row ``name, M, N, K,`` multiplies an ifmap of ``M x K`` by a filter
of ``K x N`` (its ``topology_utils.load_arrays_gemm`` turns the row into a 1-D convolution with
ifmap height M, width K, a 1 x K filter and N filters). Our ``out[M, N] = A[M, K] @ B[K, N]`` is
therefore written with M, N, K unchanged: A is SCALE-Sim's ifmap, B its filter, out its ofmap.
Its dataflows map onto ours one to one (ws: B stationary; os: out stationary; is: A
stationary), and its ``Total Cycles`` under ``InterfaceBandwidth: CALC`` is stall-free.

To compare like with like, our accelerator gets SCALE-Sim's assumptions: one 16-bit MAC per
PE per cycle, no sparsity, buffers and bandwidth so large that the mapping search keeps the
whole op in one tile and nothing stalls; ``compute_cycles`` is then the pure fold count.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.config import HwConfig, hw_from_dict
from sim.memory import LOOP_ORDERS, memory_timing
from sim.scheduler import evaluate_op

__all__ = ["compare_with_golden", "compare_with_scalesim_bandwidth", "compare_with_zigzag",
           "read_golden", "scalesim_bandwidth_hw", "scalesim_like_hw"]


def _peer_array(name: str, rows: int, cols: int, *, bits: int, accum_bits: int,
                sram: dict[str, Any], dram: dict[str, Any], energy: dict[str, Any],
                source: str) -> HwConfig:
    """A SCALE-Sim-like array at 1 GHz: one MAC per PE per cycle at ``bits``, no precision
    scaling, no sparsity support; ``source`` names it in errors."""
    return hw_from_dict({
        "name": name, "clock_mhz": 1000,
        "pe": {"rows": rows, "cols": cols, "macs_per_pe_per_cycle": 1, "accum_bits": accum_bits},
        "precision": {"model": "fixed", "base_bits": bits, "min_bits": bits},
        "sparsity": {"support": "none"}, "sram": sram, "dram": dram, "energy": energy,
    }, source=source)


def scalesim_like_hw(rows: int, cols: int) -> HwConfig:
    """An ``rows x cols`` array under SCALE-Sim's stall-free assumptions (see module doc)."""
    # 1 GiB of SRAM, 16 KiB per cycle of SRAM ports and 1 PB/s of DRAM: never binding.
    return _peer_array(
        f"scalesim_like_{rows}x{cols}", rows, cols, bits=16, accum_bits=32,
        sram={"unified_kib": 2**20, "banks": 1024, "bank_width_bits": 128,
              "double_buffering": True},
        dram={"bandwidth_gbps": 1e6, "capacity_gib": 1, "energy_pj_per_bit": 1.0},
        energy={"mac_pj": 1.0, "sram_pj_per_byte": 1.0}, source="scalesim_like_hw")


def read_golden(path: str | Path) -> pd.DataFrame:
    """The golden CSV written by ``benchmarks/scalesim_golden.py`` (first line: # header)."""
    return pd.read_csv(path, comment="#")


def compare_with_golden(golden: pd.DataFrame) -> pd.DataFrame:
    """Our stall-free compute cycles next to SCALE-Sim's for every golden row.

    Adds ``ours_compute_cycles`` and ``rel_error`` = (ours - SCALE-Sim) / SCALE-Sim.
    """
    configs: dict[tuple[int, int], HwConfig] = {}
    ours = []
    columns = [golden[c].to_numpy() for c in ("M", "N", "K", "rows", "cols", "dataflow")]
    for m, n, k, rows, cols, dataflow in zip(*columns, strict=True):
        key = (int(rows), int(cols))
        if key not in configs:
            configs[key] = scalesim_like_hw(*key)
        res = evaluate_op(configs[key], int(m), int(n), int(k), w_bits=16, a_bits=16,
                          dataflow=str(dataflow))
        ours.append(res["compute_cycles"])
    out = golden.copy()
    out["ours_compute_cycles"] = ours
    out["rel_error"] = (out["ours_compute_cycles"] - out["total_cycles"]) / out["total_cycles"]
    return out


# ----------------------------------------------------------------------------- finite memory

def scalesim_bandwidth_hw(rows: int = 32, cols: int = 32) -> HwConfig:
    """Our side of ``benchmarks/scalesim_bandwidth.py``: edge_llm's SRAM and DRAM, 8-bit words.

    SCALE-Sim counts one byte per word and keeps no wider partial sums, so operands and
    accumulators are 8-bit here; ifmap/filter/ofmap buffers are A/B/output buffers of 256 / 512
    / 256 KiB, double-buffered, and DRAM moves 25 bytes per cycle at 1 GHz (SCALE-Sim gives
    each of its three interfaces that bandwidth; ours share it).
    """
    return _peer_array(
        f"scalesim_bandwidth_{rows}x{cols}", rows, cols, bits=8, accum_bits=8,
        sram={"input_kib": 256, "weight_kib": 512, "output_kib": 256, "banks": 1024,
              "bank_width_bits": 128, "double_buffering": True},
        dram={"bandwidth_gbps": 25, "capacity_gib": 4, "energy_pj_per_bit": 1.0},
        # DRAM dominates energy, so the energy objective finds the least traffic.
        energy={"mac_pj": 0.0, "sram_pj_per_byte": 0.0, "static_mw": 0},
        source="scalesim_bandwidth_hw")


def _operand_bytes(hw: HwConfig, m: int, n: int, k: int, best: dict[str, Any]
                   ) -> dict[str, float]:
    """DRAM bytes of A, B and the output under the mapping ``best`` found by ``evaluate_op``."""
    bits = float(hw.precision.base_bits)
    tm, tn, tk = (np.array([math.ceil(d / t)], dtype=float) for d, t in
                  ((m, best["tile_m"]), (n, best["tile_n"]), (k, best["tile_k"])))
    trips = (tm, tn, tk)
    mem = memory_timing(trips, a_bytes=m * k * bits / 8, b_bytes=k * n * bits / 8,
                        out_bytes=m * n * bits / 8, psum_bytes=m * n * hw.pe.accum_bits / 8,
                        compute=np.array([1.0]), bytes_per_cycle=hw.dram_bytes_per_cycle,
                        double_buffering=hw.sram.double_buffering)
    order = LOOP_ORDERS.index(best["loop_order"])

    def pick(x: np.ndarray) -> float:  # (orders, ...) with one candidate and one variant
        return float(np.broadcast_to(x, mem.dram_bytes.shape).reshape(len(LOOP_ORDERS), -1)[
            order, 0])
    return {"A": pick(mem.a_bytes), "B": pick(mem.b_bytes), "out": pick(mem.out_bytes)}


def compare_with_scalesim_bandwidth(golden: pd.DataFrame) -> pd.DataFrame:
    """Our cycles, stalls and DRAM bytes next to SCALE-Sim's USER-bandwidth runs.

    Each golden row is mapped on ``scalesim_bandwidth_hw`` with the row's dataflow and the
    latency objective (our default); adds ``ours_cycles``, ``ours_stall_cycles``,
    ``ours_dram_{ifmap,filter,ofmap}`` (bytes = words), ``ours_dram_bytes``, the mapping chosen
    (tile, loop order), and ``ours_min_dram_bytes``: the traffic of the mapping the energy
    objective picks (DRAM dominates energy on this config), the least our search finds, with
    ``ours_min_dram_reads`` its A and B part.
    """
    rows = []
    for rec in golden.to_dict("records"):
        hw = scalesim_bandwidth_hw(int(rec["rows"]), int(rec["cols"]))
        m, n, k, df = int(rec["M"]), int(rec["N"]), int(rec["K"]), str(rec["dataflow"])
        best = evaluate_op(hw, m, n, k, w_bits=8, a_bits=8, dataflow=df)
        frugal = evaluate_op(hw, m, n, k, w_bits=8, a_bits=8, dataflow=df, objective="energy")
        per = _operand_bytes(hw, m, n, k, best)
        per_frugal = _operand_bytes(hw, m, n, k, frugal)
        rows.append({"ours_cycles": best["cycles"], "ours_compute_cycles": best["compute_cycles"],
                     "ours_stall_cycles": best["stall_cycles"], "ours_dram_ifmap": per["A"],
                     "ours_dram_filter": per["B"], "ours_dram_ofmap": per["out"],
                     "ours_dram_bytes": best["dram_bytes"],
                     "ours_min_dram_bytes": frugal["dram_bytes"],
                     "ours_min_dram_reads": per_frugal["A"] + per_frugal["B"],
                     "ours_mapping": (f"{best['tile_m']}x{best['tile_n']}x{best['tile_k']} "
                                      f"{best['loop_order']}")})
    out = pd.concat([golden.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    out["scalesim_dram_reads"] = out["dram_ifmap_reads"] + out["dram_filter_reads"]
    out["scalesim_dram_bytes"] = out["scalesim_dram_reads"] + out["dram_ofmap_writes"]
    return out


# ----------------------------------------------------------------------------- ZigZag

def compare_with_zigzag(golden: pd.DataFrame, hw: HwConfig, *, dataflow: str = "ws",
                        objective: str = "latency") -> pd.DataFrame:
    """Our latency, DRAM bytes and energy next to ZigZag's for every golden GEMM.

    ``golden`` is ``tests/golden/zigzag_tpu_like.csv`` (``benchmarks/zigzag_golden.py``);
    ``hw`` the translated accelerator (hwconfigs/zigzag_tpu_like.yaml). Operands are the
    config's base bits. Adds ``count`` (ops per layer with that shape), ``ours_cycles``,
    ``ours_compute_cycles``, ``ours_dram_bytes``, ``ours_energy_pj`` with its parts
    (``ours_mac_pj``: MACs x mac_pj, which includes the per-PE register files;
    ``ours_sram_pj``; ``ours_dram_pj``) and the chosen mapping.
    """
    bits = hw.precision.base_bits
    rows = []
    for rec in golden.to_dict("records"):
        m, n, k = int(rec["M"]), int(rec["N"]), int(rec["K"])
        best = evaluate_op(hw, m, n, k, w_bits=bits, a_bits=bits, dataflow=dataflow,
                           objective=objective)
        rows.append({
            "count": len(str(rec["ops"]).split(";")),
            "ours_cycles": best["cycles"], "ours_compute_cycles": best["compute_cycles"],
            "ours_dram_bytes": best["dram_bytes"], "ours_energy_pj": best["energy_j"] * 1e12,
            "ours_mac_pj": best["macs_effective"] * hw.energy.mac_pj,
            "ours_sram_pj": best["sram_access_bytes"] * hw.energy.sram_pj_per_byte_eff,
            "ours_dram_pj": best["dram_bytes"] * 8 * hw.dram.energy_pj_per_bit,
            "ours_mapping": (f"{best['dataflow']} {best['tile_m']}x{best['tile_n']}x"
                             f"{best['tile_k']} {best['loop_order']}")})
    return pd.concat([golden.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
