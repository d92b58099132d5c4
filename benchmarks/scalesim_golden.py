"""Generate SCALE-Sim v3 golden compute cycles for dense GEMMs of a SmolLM2 layer.

SCALE-Sim 3.0.0 (PyPI ``scalesim``) needs ``numpy<2``, so it lives in its own venv and this
script talks to it only through subprocesses. The script has two modes:

* driver (default), run with any Python 3.10+::

      python benchmarks/scalesim_golden.py --scalesim-python /work/venvs/scalesim/bin/python \
          --jobs 2 --out tests/golden/scalesim_gemm.csv

  It enumerates the shapes, launches one worker per (shape, array, dataflow) with ``--jobs``
  running at a time, appends every finished run to ``<out>.partial.jsonl`` (so an interrupted
  run resumes where it stopped) and finally writes the golden CSV.

* worker (``--worker M N K ROWS COLS DATAFLOW``), run by the driver inside the SCALE-Sim venv:
  writes a config, a one-row GEMM topology and the empty layout file SCALE-Sim insists on into
  a temporary folder, runs SCALE-Sim with ``InterfaceBandwidth: CALC`` and prints the
  COMPUTE_REPORT row as one JSON line.

Shape convention (ours -> SCALE-Sim): our op is ``out[M, N] = A[M, K] @ B[K, N]``. A SCALE-Sim
GEMM topology row ``name, M, N, K,`` builds an ifmap of ``M x K`` and a filter of ``K x N``
(topology_utils.load_arrays_gemm: ifmap h=M, w=K, filter 1xK, N filters), so the row is written
with our M, N, K unchanged: A is SCALE-Sim's ifmap, B its filter, ``out`` its ofmap.

SCALE-Sim is slow (about 40 us per simulated cycle and ~2 KB of RAM per cycle on this machine),
which bounds the shapes used: tokens 128 and 256, arrays 16x16, 32x32 and 16x64.
Nothing of SCALE-Sim is imported by the project or its tests; only the CSV is kept.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

# The worker runs inside SCALE-Sim's venv: the repo root is put on the path for the one
# standard-library module it shares with sim.export (the .cfg text).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.scalesim_cfg import scalesim_cfg  # noqa: E402

# SmolLM2-135M layer dimensions (config.json of HuggingFaceTB/SmolLM2-135M).
HIDDEN = 576
MLP = 1536
HEAD_DIM = 64
N_KV_HEADS = 3
KV_DIM = HEAD_DIM * N_KV_HEADS  # 192
TOKENS = (128, 256)  # batch 1 x seq_len; attention uses seq = tokens
ARRAYS = ((16, 16), (32, 32), (16, 64))
DATAFLOWS = ("ws", "os", "is")

LINEARS = {  # module: (in features, out features)
    "q_proj": (HIDDEN, HIDDEN), "k_proj": (HIDDEN, KV_DIM), "v_proj": (HIDDEN, KV_DIM),
    "o_proj": (HIDDEN, HIDDEN), "gate_proj": (HIDDEN, MLP), "up_proj": (HIDDEN, MLP),
    "down_proj": (MLP, HIDDEN),
}


def layer_linear_shapes(tokens: int) -> dict[tuple[int, int, int], list[str]]:
    """Distinct (M, N, K) of one decoder layer's linear products, with the ops of each.

    Follows docs/trace.md: linear ``y = x W^T`` gives fwd (T, in -> out), bwd_input
    (M=T, K=out, N=in) and bwd_weight (M=out, K=T, N=in).
    """
    shapes: dict[tuple[int, int, int], list[str]] = {}
    for name, (d_in, d_out) in LINEARS.items():
        for shape, phase in (((tokens, d_out, d_in), "fwd"), ((tokens, d_in, d_out), "bwd_input"),
                             ((d_out, d_in, tokens), "bwd_weight")):
            shapes.setdefault(shape, []).append(f"{name}.{phase}")
    return shapes


def layer_shapes(tokens: int) -> dict[tuple[int, int, int], list[str]]:
    """Distinct (M, N, K) of one decoder layer's tuning step, with the ops that produce each.

    The linear products (``layer_linear_shapes``) and attention per head: attn_qk (seq,
    N=seq, K=head_dim) and attn_pv (seq, N=head_dim, K=seq) and their backward products,
    which reuse those two shapes.
    """
    shapes = layer_linear_shapes(tokens)

    def add(shape: tuple[int, int, int], label: str) -> None:
        shapes.setdefault(shape, []).append(label)

    seq = tokens
    add((seq, seq, HEAD_DIM), "attn_qk.fwd")
    add((seq, HEAD_DIM, seq), "attn_pv.fwd")
    add((seq, HEAD_DIM, seq), "attn_qk.bwd_input(dQ,dK)")
    add((seq, seq, HEAD_DIM), "attn_pv.bwd_input(dP)")
    add((seq, HEAD_DIM, seq), "attn_pv.bwd_input(dV)")
    return shapes


def estimated_cycles(m: int, n: int, k: int, rows: int, cols: int, df: str) -> int:
    """Rough run cost, used only to start the longest SCALE-Sim runs first."""
    def up(a: int, b: int) -> int:
        return -(-a // b)
    if df == "ws":
        return up(k, rows) * up(n, cols) * (2 * rows + cols + m - 2)
    if df == "os":
        return up(m, rows) * up(n, cols) * (k + rows + cols - 2)
    return up(k, rows) * up(m, cols) * (2 * rows + cols + n - 2)


def run_worker(m: int, n: int, k: int, rows: int, cols: int, df: str) -> None:
    """Run SCALE-Sim once (inside its own venv) and print the COMPUTE_REPORT row as JSON."""
    from scalesim.scale_sim import scalesim  # only importable in the SCALE-Sim venv

    with tempfile.TemporaryDirectory(prefix="scalesim_golden_") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "cfg.cfg").write_text(scalesim_cfg(
            run_name="golden", rows=rows, cols=cols, ifmap_kib=1024, filter_kib=1024,
            ofmap_kib=1024, bandwidth=10, dataflow=df, interface_bandwidth="CALC"))
        (tmpdir / "topo.csv").write_text(f"Layer,M,N,K,\ngemm,{m},{n},{k},\n")
        # SCALE-Sim opens a layout file even with custom layouts off.
        (tmpdir / "layout.csv").write_text("Layer,\n")
        start = time.perf_counter()
        sim = scalesim(save_disk_space=True, verbose=False, config=str(tmpdir / "cfg.cfg"),
                       topology=str(tmpdir / "topo.csv"), layout=str(tmpdir / "layout.csv"),
                       input_type_gemm=True)
        sim.run_scale(top_path=str(tmpdir))
        wall_s = time.perf_counter() - start
        report = next(tmpdir.rglob("COMPUTE_REPORT.csv"))
        with report.open() as fh:
            rows_ = list(csv.reader(fh))
    row = {h.strip(): v.strip() for h, v in zip(rows_[0], rows_[1]) if h.strip()}
    print(json.dumps({
        "total_cycles": int(float(row["Total Cycles"])),
        "stall_cycles": int(float(row["Stall Cycles"])),
        "overall_util_pct": float(row["Overall Util %"]),
        "mapping_efficiency_pct": float(row["Mapping Efficiency %"]),
        "compute_util_pct": float(row["Compute Util %"]),
        "scalesim_wall_s": round(wall_s, 3),
    }))


def _scalesim_version(py: str) -> dict[str, str]:
    code = ("import importlib.metadata as m, json;"
            "print(json.dumps({'scalesim': m.version('scalesim'), 'numpy': m.version('numpy')}))")
    out = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scalesim-python", default="/work/venvs/scalesim/bin/python",
                        help="Python of the venv that has scalesim and numpy<2 "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("tests/golden/scalesim_gemm.csv"),
                        help="golden CSV to write (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="SCALE-Sim processes at once; each needs up to ~2.5 GB RAM "
                             "(default: %(default)s)")
    parser.add_argument("--worker", nargs=6, metavar=("M", "N", "K", "ROWS", "COLS", "DF"),
                        help="internal: run one SCALE-Sim case and print JSON")
    args = parser.parse_args(argv)

    if args.worker:
        m, n, k, rows, cols = (int(x) for x in args.worker[:5])
        run_worker(m, n, k, rows, cols, args.worker[5])
        return 0

    cases = []
    for tokens in TOKENS:
        for (m, n, k), sources in layer_shapes(tokens).items():
            for rows, cols in ARRAYS:
                for df in DATAFLOWS:
                    cases.append({"tokens": tokens, "M": m, "N": n, "K": k, "rows": rows,
                                  "cols": cols, "dataflow": df, "ops": ";".join(sources)})
    partial = args.out.with_name(args.out.name + ".partial.jsonl")
    partial.parent.mkdir(parents=True, exist_ok=True)
    done: dict[tuple, dict] = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            rec = json.loads(line)
            done[(rec["M"], rec["N"], rec["K"], rec["rows"], rec["cols"], rec["dataflow"])] = rec

    def key(c: dict) -> tuple:
        return (c["M"], c["N"], c["K"], c["rows"], c["cols"], c["dataflow"])

    todo = {key(c): c for c in cases if key(c) not in done}.values()
    todo = sorted(todo, key=lambda c: -estimated_cycles(*key(c)))
    print(f"{len(cases)} cases, {len(done)} already done, {len(todo)} to run", flush=True)

    def run_case(c: dict) -> dict:
        cmd = [args.scalesim_python, __file__, "--worker",
               *(str(x) for x in key(c))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return {**c, **json.loads(out.stdout.strip().splitlines()[-1])}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool, partial.open("a") as log:
        futures = [pool.submit(run_case, c) for c in todo]
        for i, fut in enumerate(as_completed(futures), 1):
            rec = fut.result()
            done[key(rec)] = rec
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(f"[{i}/{len(todo)}] M={rec['M']} N={rec['N']} K={rec['K']} "
                  f"{rec['rows']}x{rec['cols']} {rec['dataflow']}: {rec['total_cycles']} cycles "
                  f"in {rec['scalesim_wall_s']} s", flush=True)

    versions = _scalesim_version(args.scalesim_python)
    header = {"tool": "SCALE-Sim", **versions, "interface_bandwidth": "CALC",
              "column": "COMPUTE_REPORT 'Total Cycles'",
              "mapping": "topology row name,M,N,K -> ifmap MxK (our A), filter KxN (our B)",
              "command": "python benchmarks/scalesim_golden.py --jobs 2"}
    fields = ["tokens", "ops", "M", "N", "K", "rows", "cols", "dataflow", "total_cycles",
              "stall_cycles", "overall_util_pct", "mapping_efficiency_pct", "compute_util_pct",
              "scalesim_wall_s"]
    ordered = sorted((done[key(c)] for c in cases), key=lambda r: (
        r["tokens"], r["M"], r["N"], r["K"], r["rows"], r["cols"], r["dataflow"]))
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    with tmp_out.open("w", newline="") as fh:
        fh.write("# " + json.dumps(header) + "\n")
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ordered)
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({len(ordered)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
