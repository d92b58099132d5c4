"""``python -m sim.gemm``: simulate one matrix product ``out[M, N] = A[M, K] @ B[K, N]``.

Example::

    python -m sim.gemm --hw hwconfigs/edge_llm.yaml --M 128 --N 576 --K 576 --json
    python -m sim.gemm --hw hwconfigs/edge_llm.yaml --M 128 --N 576 --K 576 --dataflow ws \\
        --rows 16 --cols 16 --sparsity 0.5 --w-bits 4 --json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sim.api import simulate_gemm
from sim.cli import (
    CONFIG_EPILOG,
    SET_HELP,
    OneLineParser,
    add_mapping_flags,
    cli_main,
    positive_int,
)
from sim.config import load_hw
from sim.foreign import hw_translation, resolve_dataflow, stated_defaults

__all__ = ["build_parser", "main"]

def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def _bits(text: str) -> int:
    value = positive_int(text)
    if value > 32:
        raise argparse.ArgumentTypeError(f"expected bits in 1..32, got {value}")
    return value


def build_parser() -> OneLineParser:
    """The command-line interface (every flag with units and default)."""
    p = OneLineParser(epilog=CONFIG_EPILOG, prog="python -m sim.gemm",
                      description="Simulate one product out[M,N] = A[M,K] @ B[K,N] (B is the "
                                  "weight operand: its bits and sparsity) on an accelerator.")
    p.add_argument("--hw", required=True, type=Path, metavar="YAML",
                   help="hardware config file, e.g. hwconfigs/edge_llm.yaml, a SCALE-Sim .cfg "
                        "or a ZigZag accelerator YAML (required; defaults taken for fields a "
                        "peer file lacks are printed)")
    p.add_argument("--M", required=True, type=positive_int, help="rows of A and out (required)")
    p.add_argument("--N", required=True, type=positive_int,
                   help="columns of B and out (required)")
    p.add_argument("--K", required=True, type=positive_int,
                   help="reduction length: columns of A, rows of B (required)")
    add_mapping_flags(p)
    p.add_argument("--rows", type=positive_int, default=None,
                   help="PE array rows, overriding pe.rows (default: from --hw)")
    p.add_argument("--cols", type=positive_int, default=None,
                   help="PE array columns, overriding pe.cols (default: from --hw)")
    p.add_argument("--sparsity", type=_fraction, default=0.0,
                   help="fraction of zeros in B, in [0, 1) (default: 0)")
    p.add_argument("--pattern", default=None,
                   help="sparsity pattern of B: dense, unstructured or N:M such as 2:4 "
                        "(default: unstructured if --sparsity > 0, else dense)")
    p.add_argument("--w-bits", type=_bits, default=None,
                   help="bits of B, 1..32 (default: the config's precision.base_bits)")
    p.add_argument("--a-bits", type=_bits, default=None,
                   help="bits of A and of the output, 1..32 (default: precision.base_bits)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help=SET_HELP)
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (cycles, compute_cycles, stall_cycles, "
                        "utilization 0..1, dram_bytes, roofline_cycles, energy_j in joules, "
                        "latency_s in seconds, dataflow, tile, stated_defaults) instead of text")
    return p


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    hw = load_hw(args.hw, args.overrides)
    peer = hw_translation(args.hw)
    notes = stated_defaults(peer)
    res = simulate_gemm(hw, args.M, args.N, args.K,
                        dataflow=resolve_dataflow(args.dataflow, peer),
                        objective=args.objective, w_bits=args.w_bits, a_bits=args.a_bits,
                        weight_sparsity=args.sparsity, sparsity_pattern=args.pattern,
                        rows=args.rows, cols=args.cols)
    if args.json:
        print(json.dumps({**res.to_dict(), "stated_defaults": notes}, indent=2))
    else:
        for line in notes:
            print(line)
        print(f"{res.hw} {res.rows}x{res.cols}: M={res.M} N={res.N} K={res.K} "
              f"({res.a_bits}/{res.w_bits}-bit, sparsity {res.weight_sparsity} "
              f"{res.sparsity_pattern})")
        print(f"{res.dataflow} tile {res.tile_m}x{res.tile_n}x{res.tile_k} order "
              f"{res.loop_order}: {res.cycles:,.0f} cycles (compute {res.compute_cycles:,.0f}, "
              f"stall {res.stall_cycles:,.0f}), roofline {res.roofline_cycles:,.0f} "
              f"({res.bound}-bound), utilization {res.utilization:.1%}")
        print(f"DRAM {res.dram_bytes:,.0f} B (compulsory {res.compulsory_bytes:,.0f} B), "
              f"energy {res.energy_j * 1e6:.2f} uJ, latency {res.latency_s * 1e6:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
