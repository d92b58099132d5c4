"""Where every energy constant in hwconfigs/ comes from: published numbers and one scaling rule.

    python benchmarks/energy_constants.py            # the table (markdown)
    python benchmarks/energy_constants.py --json     # the same as JSON

Sources:

* **Horowitz**, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
  45 nm at 0.9 V: integer add 0.03 pJ (8 bit), 0.1 pJ (32 bit); integer multiply 0.2 pJ
  (8 bit), 3.1 pJ (32 bit); FP16 add 0.4 pJ, multiply 1.1 pJ; FP32 add 0.9 pJ, multiply
  3.7 pJ; a 64-bit SRAM read 10 pJ (8 KB), 20 pJ (32 KB), 100 pJ (1 MB); DRAM 1.3-2.6 nJ
  per 64-bit access.
* **Eyeriss** (Chen, Emer, Sze, ISCA 2016; Chen et al., JSSC 2017), 65 nm: energy per 16-bit
  access normalized to one MAC: register file 1x, inter-PE 2x, global buffer 6x, DRAM 200x.
* **ZigZag**'s example accelerators (zigzag-dse, inputs/hardware/*.yaml): CACTI-derived pJ per
  access of a given width; used as they are for hwconfigs/zigzag_tpu_like.yaml
  (``benchmarks/zigzag_golden.py``).

Rules (first order, stated so anyone can redo them):

* an integer multiplier's energy grows with the square of its width (array multiplier), so a
  16-bit multiply is 0.2 pJ x (16/8)^2 = 0.8 pJ at 45 nm (3.1 pJ x (16/32)^2 = 0.78 pJ from
  the 32-bit point agrees); a MAC is a multiply plus a 32-bit add (the accumulator);
* an SRAM access costs what one *bank* costs: energy per 64-bit read interpolated log-log
  through Horowitz's 8 KB / 32 KB / 1 MB points at the bank size (total / banks);
* node scaling after Dennard (JSSC 1974): dynamic energy C V^2 with C proportional to the
  feature size, ``E(node, V) = E45 x (node / 45 nm) x (V / 0.9 V)^2``. Logic and SRAM scale
  this way; DRAM energy is a property of the DRAM part and interface, not of the accelerator's
  node, so it is not scaled.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Horowitz, ISSCC 2014, 45 nm, 0.9 V (pJ).
H45_INT_MULT_8 = 0.2
H45_INT_ADD_32 = 0.1
H45_FP16_MULT = 1.1
H45_FP32_ADD = 0.9
H45_SRAM_64BIT_READ = {8: 10.0, 32: 20.0, 1024: 100.0}  # KB -> pJ per 64-bit read
H45_NODE_NM, H45_VDD = 45.0, 0.9
# Eyeriss normalized energy per 16-bit access (MAC = 1).
EYERISS_GLB_X, EYERISS_DRAM_X = 6.0, 200.0


def node_scale(node_nm: float, vdd: float) -> float:
    """Dennard factor from Horowitz's 45 nm / 0.9 V to ``node_nm`` at ``vdd`` volts."""
    return (node_nm / H45_NODE_NM) * (vdd / H45_VDD) ** 2


def int_mac_pj_45(bits: int) -> float:
    """pJ of one ``bits`` x ``bits`` integer MAC (multiply + 32-bit add) at 45 nm."""
    return H45_INT_MULT_8 * (bits / 8) ** 2 + H45_INT_ADD_32


def fp16_mac_pj_45() -> float:
    """pJ of one FP16 multiply with FP32 accumulate at 45 nm."""
    return H45_FP16_MULT + H45_FP32_ADD


def sram_pj_per_byte_45(bank_kib: float) -> float:
    """pJ per byte read from an SRAM bank of ``bank_kib`` KiB at 45 nm (log-log interpolation).

    Below 8 KB or above 1 MB the nearest segment is extended.
    """
    points = sorted(H45_SRAM_64BIT_READ.items())
    lo, hi = (points[0], points[1]) if bank_kib <= points[1][0] else (points[1], points[2])
    slope = math.log(hi[1] / lo[1]) / math.log(hi[0] / lo[0])
    pj_64 = lo[1] * (bank_kib / lo[0]) ** slope
    return pj_64 / 8.0


@dataclass(frozen=True)
class Derivation:
    """One config's energy constants and how they follow from the sources."""

    config: str
    node_nm: float
    vdd: float
    mac_pj: float
    mac_rule: str
    sram_pj_per_byte: float
    sram_rule: str
    dram_pj_per_bit: float
    dram_rule: str


def _r(x: float) -> float:
    return round(x, 3)


def derivations() -> list[Derivation]:
    """Every config's constants (values written into hwconfigs/*.yaml, rounded to 3 decimals)."""
    out = []

    def add(config: str, node: float, vdd: float, mac45: float, mac_rule: str, bank_kib: float,
            banks_rule: str, dram: float, dram_rule: str) -> None:
        f = node_scale(node, vdd)
        out.append(Derivation(
            config=config, node_nm=node, vdd=vdd, mac_pj=_r(mac45 * f),
            mac_rule=f"{mac_rule} = {mac45:.2f} pJ at 45 nm, x {f:.3f}",
            sram_pj_per_byte=_r(sram_pj_per_byte_45(bank_kib) * f),
            sram_rule=(f"Horowitz SRAM at a {bank_kib:g} KiB bank ({banks_rule}): "
                       f"{sram_pj_per_byte_45(bank_kib):.2f} pJ/B at 45 nm, x {f:.3f}"),
            dram_pj_per_bit=dram, dram_rule=dram_rule))

    lpddr = ("assumption (LPDDR4X/5 device + PHY, no figure in the sources; Horowitz's DDR3 "
             "20-40 pJ/bit bounds it above)")
    add("edge_llm", 28, 0.9, int_mac_pj_45(16), "16-bit int MAC (Bit Fusion base precision)",
        1024 / 32, "1 MiB in 32 banks", 4.0, lpddr)
    add("edge_tpu", 28, 0.9, int_mac_pj_45(8), "8-bit int MAC", 8192 / 64,
        "8 MiB in 64 banks", 20.0,
        "assumption (PCIe Gen2 x1 + host DRAM) at Horowitz's DDR3 lower bound")
    add("mobile_npu", 7, 0.75, int_mac_pj_45(8), "8-bit int MAC", 2048 / 32,
        "2 MiB in 32 banks", 4.0, lpddr)
    add("orin_nano", 8, 0.75, fp16_mac_pj_45(), "FP16 multiply + FP32 add (Tensor Core)",
        3584 / 64, "3.5 MiB in 64 banks", 4.0, lpddr)
    # Eyeriss: its own normalized costs, anchored at the Horowitz MAC scaled to 65 nm / 1.0 V.
    f = node_scale(65, 1.0)
    mac = int_mac_pj_45(16) * f
    out.append(Derivation(
        config="eyeriss", node_nm=65, vdd=1.0, mac_pj=_r(mac),
        mac_rule=f"16-bit int MAC = {int_mac_pj_45(16):.2f} pJ at 45 nm, x {f:.3f}",
        sram_pj_per_byte=_r(EYERISS_GLB_X * mac / 2),
        sram_rule=f"Eyeriss global buffer = {EYERISS_GLB_X:g} x MAC per 16-bit access",
        dram_pj_per_bit=_r(EYERISS_DRAM_X * mac / 16),
        dram_rule=f"Eyeriss DRAM = {EYERISS_DRAM_X:g} x MAC per 16-bit access"))
    return sorted(out, key=lambda d: d.config)


def markdown_table(rows: list[Derivation]) -> str:
    """The derivations as a markdown table."""
    lines = ["| config | node, V | mac_pj | from | sram_pj_per_byte | from | "
             "dram pJ/bit | from |", "|---|---|---|---|---|---|---|---|"]
    for d in rows:
        lines.append(f"| {d.config} | {d.node_nm:g} nm, {d.vdd:g} V | {d.mac_pj} | "
                     f"{d.mac_rule} | {d.sram_pj_per_byte} | {d.sram_rule} | "
                     f"{d.dram_pj_per_bit:g} | {d.dram_rule} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Energy constants of hwconfigs/*.yaml and "
                                                 "their derivation (pJ; see module doc).")
    parser.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    args = parser.parse_args(argv)
    rows = derivations()
    if args.json:
        print(json.dumps([asdict(d) for d in rows], indent=2))
    else:
        print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
