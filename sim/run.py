"""``python -m sim.run``: simulate a whole trace on one accelerator.

Example::

    python -m sim.run --hw hwconfigs/edge_llm.yaml --trace tests/data/tiny_step.csv --json
    python -m sim.run --hw hwconfigs/edge_llm.yaml --trace t.csv --set dram.bandwidth_gbps=8 \\
        --dataflow ws --ops-csv ops.csv
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sim.api import simulate_trace
from sim.cli import (
    CONFIG_EPILOG,
    SET_HELP,
    OneLineParser,
    add_mapping_flags,
    check_output,
    cli_main,
    write_atomic,
)
from sim.config import load_hw
from sim.foreign import hw_translation, resolve_dataflow, stated_defaults
from sim.trace import read_trace

__all__ = ["build_parser", "main"]

def build_parser() -> OneLineParser:
    """The command-line interface (every flag with units and default)."""
    p = OneLineParser(epilog=CONFIG_EPILOG, prog="python -m sim.run",
                      description="Simulate every op of a trace (docs/trace.md) on an "
                                  "accelerator (matrix products on the PE array, format-2 "
                                  "vector rows on its vector unit) and report cycles, stalls, "
                                  "DRAM bytes, energy, roofline bounds, a breakdown by phase "
                                  "and op kind, and the step's memory footprint. A format-1 "
                                  "trace has no vector rows: a warning says so.")
    p.add_argument("--hw", required=True, type=Path, metavar="YAML",
                   help="hardware config file, e.g. hwconfigs/edge_llm.yaml, a SCALE-Sim .cfg "
                        "or a ZigZag accelerator YAML (required; defaults taken for fields a "
                        "peer file lacks are printed)")
    p.add_argument("--trace", required=True, type=Path, metavar="CSV",
                   help="ops table NAME.csv with its '# {json}' header line, or a SCALE-Sim "
                        "topology CSV (GEMM or convolution rows) (required)")
    p.add_argument("--tensors", type=Path, metavar="CSV", default=None,
                   help="tensor table for the memory footprint (default: NAME.tensors.csv "
                        "next to the trace, if it exists)")
    add_mapping_flags(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help=SET_HELP)
    p.add_argument("--ops-csv", type=Path, metavar="CSV", default=None,
                   help="also write the per-op table (cycles, stall_cycles, dram_bytes, "
                        "energy_j, roofline_cycles, dataflow, tile_*, ...) to this CSV "
                        "(default: not written)")
    p.add_argument("--roofline-png", type=Path, metavar="PNG", default=None,
                   help="also save a roofline plot of the ops (default: not written)")
    p.add_argument("--json", action="store_true",
                   help="print the totals as one JSON object (total_cycles, latency_s in "
                        "seconds, matmul_cycles, vector_cycles, vector_latency_s, dram_bytes, "
                        "energy_j in joules, every other per-op cost field summed, "
                        "peak_memory_bytes, fits_in_dram, roofline_cycles, breakdowns "
                        "per_phase, per_layer, per_kind, per_vector_module, per_vector_class, "
                        "and stated_defaults: one line per default a peer file took) instead of "
                        "a text summary")
    return p


def _text_summary(s: dict[str, Any]) -> str:
    ms = 1e3
    lines = [
        f"hw {s['hw']}  dataflow {s['dataflow']}  objective {s['objective']}  "
        f"ops {s['ops']} ({s['products']} products, {s['vector_ops']} vector ops)",
        f"total {s['total_cycles']:,} cycles = {s['latency_s'] * ms:.3f} ms  "
        f"(compute {s['compute_cycles']:,}, stall {s['stall_cycles']:,}; roofline "
        f"{s['roofline_cycles']:,}, ratio {s['roofline_ratio']:.2f})",
        f"matmul {s['matmul_latency_s'] * ms:.4f} ms, vector {s['vector_latency_s'] * ms:.4f} ms "
        f"({s['vector_cycles'] / max(s['total_cycles'], 1):.1%} of the step)",
        f"DRAM {s['dram_bytes'] / 2**20:.2f} MiB (compulsory "
        f"{s['compulsory_bytes'] / 2**20:.2f} MiB, fused away "
        f"{s['fused_bytes'] / 2**20:.2f} MiB)  energy {s['energy_j'] * 1e3:.3f} mJ  "
        f"utilization {s['utilization']:.1%}",
    ]
    if s["peak_memory_bytes"] is not None:
        lines.append(f"memory {s['peak_memory_bytes'] / 2**20:.1f} MiB of "
                     f"{s['dram_capacity_bytes'] / 2**20:.0f} MiB DRAM: "
                     f"{'fits' if s['fits_in_dram'] else 'DOES NOT FIT'}")
    clock_hz = s["clock_mhz"] * 1e6
    lines.append("phase          ops   matmul ms   vector ms   stall%   DRAM MiB   energy mJ")
    for phase, row in s["per_phase"].items():
        lines.append(f"{phase:<12} {row['ops']:>5} {row['matmul_cycles'] / clock_hz * ms:>11.4f} "
                     f"{row['vector_cycles'] / clock_hz * ms:>11.4f} {_stall(row):>8.1%} "
                     f"{row['dram_bytes'] / 2**20:>10.2f} {row['energy_j'] * 1e3:>11.3f}")
    for title, key in (("vector module", "per_vector_module"),
                       ("vector class", "per_vector_class")):
        if not s[key]:
            continue
        lines.append(f"{title:<26} ops          ms   stall%   DRAM MiB   energy mJ")
        for name, row in sorted(s[key].items(), key=lambda kv: -kv[1]["cycles"]):
            lines.append(f"{name:<26} {row['ops']:>3} {row['latency_s'] * ms:>11.4f} "
                         f"{_stall(row):>8.1%} {row['dram_bytes'] / 2**20:>10.2f} "
                         f"{row['energy_j'] * 1e3:>11.3f}")
    return "\n".join(lines)


def _stall(row: dict[str, Any]) -> float:
    return row["stall_cycles"] / row["cycles"] if row["cycles"] else 0.0


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    # A bad output path fails now, not after the simulation (or after the first of two files).
    for out in (args.ops_csv, args.roofline_png):
        if out is not None:
            check_output(out)
    hw = load_hw(args.hw, args.overrides)
    peer = hw_translation(args.hw)
    trace = read_trace(args.trace, args.tensors)
    result = simulate_trace(trace, hw, dataflow=resolve_dataflow(args.dataflow, peer),
                            objective=args.objective)
    summary = result.summary()
    summary["trace"] = str(args.trace)
    summary["stated_defaults"] = stated_defaults(peer, trace.header)
    # Outputs are written only after everything above succeeded (nothing half-written).
    if args.ops_csv is not None:
        write_atomic(args.ops_csv, lambda tmp: result.ops.to_csv(tmp, index=False))
    if args.roofline_png is not None:
        from sim.roofline import plot_roofline

        write_atomic(args.roofline_png, lambda tmp: plot_roofline(result.ops, hw, tmp))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n".join([*summary["stated_defaults"], _text_summary(summary)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
