"""``python -m sim.export``: write a trace and a hardware config in a peer simulator's format.

Example::

    python -m sim.export --trace tests/data/tiny_step.csv --to scalesim runs/tiny_scalesim/
    python -m scalesim.scale -c runs/tiny_scalesim/tiny_step.cfg \\
        -t runs/tiny_scalesim/tiny_step_topology.csv -l runs/tiny_scalesim/layout.csv -i gemm

writes ``OUT/NAME_topology.csv`` (a SCALE-Sim GEMM topology: one row per product, a row with
``count`` c written c times), ``OUT/NAME.cfg`` (the ``--hw`` config as SCALE-Sim's
``[architecture_presets]``, with the whole config kept in an ``[edgellm]`` section that
SCALE-Sim ignores and ``load_hw`` reads back) and ``OUT/layout.csv`` (the header-only layout
file SCALE-Sim opens even with custom layouts off), so anyone can cross-check a step in the
peer. What SCALE-Sim cannot express (bit widths, unstructured sparsity, vector rows, a
unified buffer) is printed, one line each.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sim.cli import OneLineParser, cli_main, write_atomic
from sim.config import load_hw
from sim.dataflow import DATAFLOWS
from sim.errors import SimError
from sim.foreign import hw_translation
from sim.foreign.scalesim import hw_to_cfg, trace_to_topology
from sim.trace import read_trace

__all__ = ["build_parser", "export_scalesim", "main"]

FORMATS = ("scalesim",)
DEFAULT_HW = "hwconfigs/edge_llm.yaml"
# The default config is found next to the package too, so the command works from any folder.
_REPO_HW = Path(__file__).resolve().parents[1] / DEFAULT_HW


def build_parser() -> OneLineParser:
    """The command-line interface (every flag with its default)."""
    p = OneLineParser(prog="python -m sim.export",
                      description="Write a trace (docs/trace.md) and a hardware config as a "
                                  "peer simulator's input files: for SCALE-Sim v3 a GEMM "
                                  "topology NAME_topology.csv, a config NAME.cfg and the "
                                  "layout.csv it opens. Approximations are printed, one line "
                                  "each.",
                      epilog="example: python -m sim.export --trace tests/data/tiny_step.csv "
                             "--to scalesim runs/tiny_scalesim/. User errors print one line "
                             "'error: ...' and exit with code 2; nothing is written then.")
    p.add_argument("--trace", required=True, type=Path, metavar="CSV",
                   help="trace NAME.csv (or a SCALE-Sim topology) to export (required)")
    p.add_argument("--to", required=True, choices=FORMATS,
                   help="the peer's format: scalesim (required)")
    p.add_argument("out", type=Path, metavar="OUT/",
                   help="output folder, created if missing; files in it are replaced")
    p.add_argument("--hw", type=Path, default=None, metavar="YAML",
                   help=f"hardware config to write as the peer's config: a hwconfig YAML, a "
                        f"SCALE-Sim .cfg or a ZigZag YAML (default: {DEFAULT_HW})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a hardware field first, as in sim.run (repeatable; "
                        "default: none)")
    p.add_argument("--dataflow", choices=DATAFLOWS, default=None,
                   help="SCALE-Sim's Dataflow, which it fixes for every layer (default: the "
                        "--hw file's own if it fixes one, else ws)")
    p.add_argument("--json", action="store_true",
                   help="print {files, rows, notes, command} as JSON instead of text")
    return p


def export_scalesim(trace_path: Path, out: Path, *, hw_path: Path,
                    overrides: list[str] | tuple[str, ...] = (),
                    dataflow: str | None = None) -> dict[str, Any]:
    """Write ``trace_path`` and ``hw_path`` as SCALE-Sim files into ``out``.

    Returns:
        ``files`` (topology, cfg, layout paths), ``rows`` (topology rows written), ``notes``
        (one line per approximation) and ``command`` (how to run SCALE-Sim on them).

    Raises:
        SimError: a bad trace, config or output folder; nothing is written then.
    """
    trace = read_trace(trace_path)
    hw = load_hw(hw_path, overrides)
    peer = hw_translation(hw_path)
    dataflow = dataflow or (peer.dataflow if peer is not None and peer.dataflow else "ws")
    name = trace_path.name[:-4] if trace_path.name.endswith(".csv") else trace_path.stem
    topology, notes = trace_to_topology(trace.ops)
    cfg, cfg_notes = hw_to_cfg(hw.model_dump(mode="json", exclude_none=True),
                               dataflow=dataflow)
    if out.exists() and not out.is_dir():
        raise SimError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    files = {"topology": out / f"{name}_topology.csv", "cfg": out / f"{name}.cfg",
             "layout": out / "layout.csv"}
    write_atomic(files["topology"], lambda p: p.write_text(topology))
    write_atomic(files["cfg"], lambda p: p.write_text(cfg))
    write_atomic(files["layout"], lambda p: p.write_text("Layer,\n"))
    command = (f"python -m scalesim.scale -c {files['cfg']} -t {files['topology']} "
               f"-l {files['layout']} -i gemm -p {out / 'scalesim_logs'}")
    return {"files": {k: str(v) for k, v in files.items()},
            "rows": topology.count("\n") - 1, "notes": [*notes, *cfg_notes],
            "command": command}


@cli_main
def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    hw = args.hw
    if hw is None:
        hw = Path(DEFAULT_HW) if Path(DEFAULT_HW).is_file() else _REPO_HW
    result = export_scalesim(args.trace, args.out, hw_path=hw, overrides=args.overrides,
                             dataflow=args.dataflow)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"wrote {result['files']['topology']} ({result['rows']} rows), "
          f"{result['files']['cfg']}, {result['files']['layout']}")
    print(f"run SCALE-Sim: {result['command']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
