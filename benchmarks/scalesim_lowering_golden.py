"""Golden data: how SCALE-Sim itself turns topology rows into GEMMs, for tests/test_sim_foreign.py.

    PYTHONPATH=/path/to/unpacked/scalesim-3.0.0-wheel python benchmarks/scalesim_lowering_golden.py

(any Python where ``scalesim.topology_utils`` imports: that module needs only ``math``, so the
unpacked PyPI wheel of ``scalesim`` 3.0.0 is enough, without SCALE-Sim's numpy<2 venv). For
every layer SCALE-Sim's own ``topologies`` object computes, it writes the operand-matrix shape
SCALE-Sim simulates (``compute/operand_matrix.py``): M = ofmap pixels per filter
(``get_layer_num_ofmap_px / get_layer_num_filters``), N = filters, K = conv window
(``get_layer_window_size``). Inputs: the topologies in tests/data/scalesim/ (as SCALE-Sim
ships them) and one depth-wise row (a name containing ``DP``, which SCALE-Sim splits into one
layer per channel). The project's reader must give the same products (tests).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGIES = {"alexnet.csv": "conv", "mobilenet.csv": "conv", "gpt2.csv": "gemm"}
DEPTHWISE = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
             "Num Filter, Strides,\nConv_DP1, 112, 112, 3, 3, 32, 1, 2,\n")


def lowered(path: Path, kind: str) -> list[dict]:
    """SCALE-Sim's per-layer GEMM of one topology file."""
    from scalesim.topology_utils import topologies

    topo = topologies()
    topo.load_arrays(str(path), mnk_inputs=kind == "gemm")
    topo.topo_calc_hyperparams()
    rows = []
    for i in range(topo.get_num_layers()):
        filters = topo.get_layer_num_filters(i)
        rows.append({"layer": i, "name": topo.get_layer_name(i),
                     "M": topo.get_layer_num_ofmap_px(i) // filters, "N": filters,
                     "K": topo.get_layer_window_size(i)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "golden" / "scalesim_lowering.csv",
                   help="golden CSV (default: tests/golden/scalesim_lowering.csv)")
    args = p.parse_args()
    import importlib.metadata

    rows = []
    for name, kind in TOPOLOGIES.items():
        rows += [{"topology": name, **r} for r in lowered(ROOT / "tests/data/scalesim" / name, kind)]
    with tempfile.TemporaryDirectory() as tmp:
        dp = Path(tmp) / "depthwise.csv"
        dp.write_text(DEPTHWISE)
        rows += [{"topology": "depthwise", **r} for r in lowered(dp, "conv")]
    try:
        version = importlib.metadata.version("scalesim")
    except importlib.metadata.PackageNotFoundError:
        version = "3.0.0 (unpacked wheel on PYTHONPATH)"
    header = {"tool": "SCALE-Sim", "scalesim": version,
              "source": "scalesim.topology_utils.topologies (load_arrays, topo_calc_hyperparams)",
              "depthwise_row": DEPTHWISE.splitlines()[1],
              "command": "PYTHONPATH=<unpacked scalesim wheel> python benchmarks/scalesim_lowering_golden.py"}
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    with tmp_out.open("w", newline="") as fh:
        fh.write("# " + json.dumps(header) + "\n")
        writer = csv.DictWriter(fh, fieldnames=["topology", "layer", "name", "M", "N", "K"])
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({len(rows)} layers)")


if __name__ == "__main__":
    main()
