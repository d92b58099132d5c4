"""SCALE-Sim v3 with finite DRAM bandwidth and edge_llm's SRAM: stalls and DRAM traffic.

Where ``benchmarks/scalesim_golden.py`` runs SCALE-Sim stall-free (``InterfaceBandwidth:
CALC``, 1 MB buffers) to check compute cycles, this script gives it a real memory system
(``InterfaceBandwidth: USER``): the SRAM sizes of ``hwconfigs/edge_llm.yaml`` (ifmap 256 KiB,
filter 512 KiB, ofmap 256 KiB) and its DRAM bandwidth (25.6 GB/s at 1 GHz: 25 words per cycle
per interface). SCALE-Sim counts one byte per word, so our side of the comparison uses 8-bit
operands (``sim.validation.scalesim_bandwidth_hw``). Modes, as in scalesim_golden.py:

* setting the venv up (numpy<2, see /work/shared/DESIGN.md)::

      python -m venv /work/venvs/scalesim
      /work/venvs/scalesim/bin/pip install scalesim==3.0.0 "numpy<2"

* driver (default), project Python::

      python benchmarks/scalesim_bandwidth.py --scalesim-python /work/venvs/scalesim/bin/python

  runs every distinct linear GEMM of one SmolLM2-135M decoder layer at ``--tokens`` tokens on
  a 32 x 32 array in each ``--dataflows``, ``--jobs`` SCALE-Sim processes at a time under
  ``nice``, appending each finished run to ``<out>.partial.jsonl`` (an interrupted run resumes),
  and writes ``tests/golden/scalesim_bandwidth.csv``.
* worker (``--worker M N K ROWS COLS DF``), inside the SCALE-Sim venv: one run, one JSON line
  with COMPUTE_REPORT and DETAILED_ACCESS_REPORT fields.

SCALE-Sim's USER mode takes the ifmap and filter DRAM bandwidths from ``IfmapSRAMBankBandwidth``
and ``FilterSRAMBankBandwidth`` and the ofmap one from ``Bandwidth``: three independent
interfaces (ours share one). Each double-buffered read buffer uses half its size as the active
buffer (``active_buf_frac = 0.5`` in single_layer_sim.py).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scalesim_golden import estimated_cycles, layer_linear_shapes  # noqa: E402
from common.scalesim_cfg import scalesim_cfg  # noqa: E402

SRAM_KIB = {"ifmap": 256, "filter": 512, "ofmap": 256}  # hwconfigs/edge_llm.yaml
WORDS_PER_CYCLE = 25  # 25.6 GB/s at 1 GHz, whole 1-byte words
ARRAY = (32, 32)

_DETAIL = {"SRAM IFMAP Reads": "sram_ifmap_reads", "SRAM Filter Reads": "sram_filter_reads",
           "SRAM OFMAP Writes": "sram_ofmap_writes", "DRAM IFMAP Reads": "dram_ifmap_reads",
           "DRAM Filter Reads": "dram_filter_reads", "DRAM OFMAP Writes": "dram_ofmap_writes"}


def _report(folder: Path, name: str) -> dict[str, str]:
    with next(folder.rglob(name)).open() as fh:
        rows = list(csv.reader(fh))
    return {h.strip(): v.strip() for h, v in zip(rows[0], rows[1]) if h.strip()}


def run_worker(m: int, n: int, k: int, rows: int, cols: int, df: str) -> None:
    """Run SCALE-Sim once with the finite memory system and print one JSON line."""
    from scalesim.scale_sim import scalesim  # only importable in the SCALE-Sim venv

    with tempfile.TemporaryDirectory(prefix="scalesim_bw_") as tmp:
        tmpdir = Path(tmp)
        (tmpdir / "cfg.cfg").write_text(scalesim_cfg(
            run_name="bandwidth", rows=rows, cols=cols, ifmap_kib=SRAM_KIB["ifmap"],
            filter_kib=SRAM_KIB["filter"], ofmap_kib=SRAM_KIB["ofmap"],
            bandwidth=WORDS_PER_CYCLE, dataflow=df, bank_bandwidth=WORDS_PER_CYCLE, bank_num=1))
        (tmpdir / "topo.csv").write_text(f"Layer,M,N,K,\ngemm,{m},{n},{k},\n")
        (tmpdir / "layout.csv").write_text("Layer,\n")  # opened even with custom layouts off
        start = time.perf_counter()
        sim = scalesim(save_disk_space=True, verbose=False, config=str(tmpdir / "cfg.cfg"),
                       topology=str(tmpdir / "topo.csv"), layout=str(tmpdir / "layout.csv"),
                       input_type_gemm=True)
        sim.run_scale(top_path=str(tmpdir))
        wall_s = time.perf_counter() - start
        compute = _report(tmpdir, "COMPUTE_REPORT.csv")
        detail = _report(tmpdir, "DETAILED_ACCESS_REPORT.csv")
    out = {"total_cycles_incl_prefetch": int(float(compute["Total Cycles (incl. prefetch)"])),
           "total_cycles": int(float(compute["Total Cycles"])),
           "stall_cycles": int(float(compute["Stall Cycles"])),
           **{key: int(float(detail[col])) for col, key in _DETAIL.items()},
           "scalesim_wall_s": round(wall_s, 3)}
    print(json.dumps(out))


def _label(rec: dict) -> dict:
    """Name an extra case by the SmolLM2 ops of that shape (at 128, 256 or 1024 tokens)."""
    if rec["ops"] != "extra":
        return rec
    shape = (rec["M"], rec["N"], rec["K"])
    for tokens in (128, 256, 1024):
        ops = layer_linear_shapes(tokens).get(shape)
        if ops:
            return {**rec, "tokens": tokens, "ops": ";".join(ops)}
    return rec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scalesim-python", default="/work/venvs/scalesim/bin/python",
                        help="Python of the venv with scalesim==3.0.0 and numpy<2 "
                             "(default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=256,
                        help="tokens (rows of the activations) per GEMM (default: %(default)s)")
    parser.add_argument("--dataflows", default="ws,os,is",
                        help="comma-separated dataflows (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=2,
                        help="SCALE-Sim processes at once, ~2 KB RAM per simulated cycle each "
                             "(default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/golden/scalesim_bandwidth.csv",
                        help="golden CSV to write (default: %(default)s)")
    parser.add_argument("--extra", action="append", default=[], metavar="M,N,K,DF",
                        help="an extra GEMM case (repeatable), e.g. 128,1536,576,is for the "
                             "issue's input-stationary example (default: none)")
    parser.add_argument("--no-run", action="store_true",
                        help="write the CSV from the runs already in <out>.partial.jsonl and "
                             "run nothing (cases not run are listed in the header)")
    parser.add_argument("--worker", nargs=6, metavar=("M", "N", "K", "ROWS", "COLS", "DF"),
                        help="internal: run one SCALE-Sim case and print JSON")
    args = parser.parse_args(argv)
    if args.worker:
        m, n, k, rows, cols = (int(x) for x in args.worker[:5])
        run_worker(m, n, k, rows, cols, args.worker[5])
        return 0

    from tqdm import tqdm

    rows, cols = ARRAY
    cases = [{"tokens": args.tokens, "ops": ";".join(ops), "M": m, "N": n, "K": k, "rows": rows,
              "cols": cols, "dataflow": df}
             for (m, n, k), ops in layer_linear_shapes(args.tokens).items()
             for df in args.dataflows.split(",") if df]
    for extra in args.extra:
        m, n, k, df = extra.split(",")
        cases.append({"tokens": 0, "ops": "extra", "M": int(m), "N": int(n), "K": int(k),
                      "rows": rows, "cols": cols, "dataflow": df})

    def key(c: dict) -> tuple:
        return (c["M"], c["N"], c["K"], c["rows"], c["cols"], c["dataflow"])

    partial = args.out.with_name(args.out.name + ".partial.jsonl")
    partial.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if partial.exists():
        for line in partial.read_text().splitlines():
            rec = json.loads(line)
            done[key(rec)] = rec
    todo = sorted((c for c in cases if key(c) not in done),
                  key=lambda c: -estimated_cycles(*key(c)))
    skipped = [key(c) for c in todo] if args.no_run else []
    if args.no_run:
        todo = []

    def run_case(c: dict) -> dict:
        cmd = ["nice", "-n", "15", args.scalesim_python, __file__, "--worker",
               *(str(x) for x in key(c))]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        return {**c, **json.loads(out.stdout.strip().splitlines()[-1])}

    with ThreadPoolExecutor(max_workers=args.jobs) as pool, partial.open("a") as log:
        futures = [pool.submit(run_case, c) for c in todo]
        for fut in tqdm(as_completed(futures), total=len(futures), desc="SCALE-Sim runs"):
            rec = fut.result()
            done[key(rec)] = rec
            log.write(json.dumps(rec) + "\n")
            log.flush()

    code = ("import importlib.metadata as m, json;"
            "print(json.dumps({'scalesim': m.version('scalesim'), 'numpy': m.version('numpy')}))")
    versions = json.loads(subprocess.run([args.scalesim_python, "-c", code], check=True,
                                         capture_output=True, text=True).stdout)
    header = {"tool": "SCALE-Sim", **versions, "interface_bandwidth": "USER",
              "words_per_cycle_per_interface": WORDS_PER_CYCLE, "sram_kib": SRAM_KIB,
              "word_bytes": 1, "command": "python " + " ".join(
                  [Path(__file__).relative_to(ROOT).as_posix(), *(argv or sys.argv[1:])]),
              "not_run": [list(k) for k in skipped]}
    ordered = [_label(done[key(c)]) for c in cases if key(c) in done]
    ordered.sort(key=key)
    fields = list(ordered[0])
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    with tmp_out.open("w", newline="") as fh:
        fh.write("# " + json.dumps(header) + "\n")
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(ordered)
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out} ({len(ordered)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
