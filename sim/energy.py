"""Energy of an op from its action counts: MACs, SRAM bytes, DRAM bytes and busy time."""
from __future__ import annotations

import numpy as np

from sim.config import HwConfig

__all__ = ["energy_j"]


def energy_j(hw: HwConfig, *, macs_effective: float | np.ndarray,
             cycles_per_mac: float | np.ndarray, sram_bytes: np.ndarray,
             dram_bytes: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """Total energy in joules (elementwise over candidates).

    Args:
        macs_effective: MACs actually performed (skipped zeros excluded).
        cycles_per_mac: precision cost relative to base bits; a MAC's energy scales with it
            (a 4-bit MAC on a 16-bit bit-fusion PE uses about a quarter of the array).
        sram_bytes: bytes read or written in SRAM (array side plus DRAM fills and drains).
        dram_bytes: bytes moved to or from DRAM.
        cycles: busy cycles (static power is charged for them).
    """
    e = hw.energy
    dynamic_pj = (np.asarray(macs_effective) * cycles_per_mac * e.mac_pj
                  + np.asarray(sram_bytes) * e.sram_pj_per_byte_eff
                  + np.asarray(dram_bytes) * 8.0 * hw.dram.energy_pj_per_bit)
    static_j = e.static_mw * 1e-3 * np.asarray(cycles) / (hw.clock_mhz * 1e6)
    return np.asarray(dynamic_pj * 1e-12 + static_j)
