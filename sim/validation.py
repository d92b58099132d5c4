"""Comparison with SCALE-Sim v3: the equivalent configuration and the agreement table.

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

from pathlib import Path

import pandas as pd

from sim.config import HwConfig, hw_from_dict
from sim.scheduler import evaluate_op

__all__ = ["compare_with_golden", "read_golden", "scalesim_like_hw"]


def scalesim_like_hw(rows: int, cols: int) -> HwConfig:
    """An ``rows x cols`` array under SCALE-Sim's stall-free assumptions (see module doc)."""
    return hw_from_dict({
        "name": f"scalesim_like_{rows}x{cols}",
        "clock_mhz": 1000,
        "pe": {"rows": rows, "cols": cols, "macs_per_pe_per_cycle": 1, "accum_bits": 32},
        "precision": {"model": "fixed", "base_bits": 16, "min_bits": 16},
        "sparsity": {"support": "none"},
        # 1 GiB of SRAM, 16 KiB per cycle of SRAM ports and 1 PB/s of DRAM: never binding.
        "sram": {"unified_kib": 2**20, "banks": 1024, "bank_width_bits": 128,
                 "double_buffering": True},
        "dram": {"bandwidth_gbps": 1e6, "capacity_gib": 1, "energy_pj_per_bit": 1.0},
        "energy": {"mac_pj": 1.0, "sram_pj_per_byte": 1.0},
    }, source="scalesim_like_hw")


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
