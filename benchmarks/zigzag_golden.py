"""ZigZag as a second peer: translate its ``tpu_like`` accelerator and keep its GEMM numbers.

ZigZag (KU Leuven, PyPI ``zigzag-dse``) is an analytical loop-nest cost model: per memory level
it counts accesses of every operand, charges each access its CACTI-derived energy, and derives
latency from the ideal MAC cycles plus the stalls of memory ports that cannot keep up, the
initial on-loading and the final off-loading. It pins numpy>=2 and many other packages, so it
lives in its own venv and this script talks to it only through subprocesses, as
``benchmarks/scalesim_golden.py`` does for SCALE-Sim. Setting the venv up::

    python -m venv /work/venvs/zigzag
    /work/venvs/zigzag/bin/pip install zigzag-dse six tqdm   # 3.9.1 imports six undeclared

Modes:

* driver (default), run with the project's Python::

      python benchmarks/zigzag_golden.py --zigzag-python /work/venvs/zigzag/bin/python

  translates ZigZag's ``tpu_like`` hardware YAML into ``hwconfigs/zigzag_tpu_like.yaml``
  (``translate_tpu_like``: every number is read from ZigZag's file, the rule for each is
  written into the YAML's comment header), runs every distinct GEMM of one SmolLM2-135M
  decoder layer's tuning step (fwd, bwd_input, bwd_weight of q/k/v/o/gate/up/down at
  ``--tokens`` tokens) through ZigZag one worker at a time, and writes
  ``tests/golden/zigzag_tpu_like.csv``.
* worker (``--worker M N K ACCELERATOR``), run inside the ZigZag venv: runs
  ``zigzag.api.get_hardware_performance_zigzag`` on one GEMM with the accelerator's own mapping
  file and prints one JSON line (latency terms, energy terms, DRAM words per operand).

Shape convention: our ``out[M, N] = A[M, K] @ B[K, N]`` is ZigZag's
``O[b][k] += I[b][c] * W[c][k]`` with B = M, C = K, K = N; A is its input I (operand I1), B its
weight W (operand I2). tpu_like unrolls K(=our N) x C(=our K) over its 32 x 32 array, so the
weight is the operand held in the PEs: our ``ws`` dataflow.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.scalesim_golden import layer_linear_shapes  # noqa: E402

ACCELERATOR = "tpu_like"
PRECISION = {"W": 8, "I": 8, "O": 16, "O_final": 8}  # tpu_like: 8-bit RF words, 16-bit psums
TOKENS = 1024  # the step's 4 sequences x 256 tokens


# ----------------------------------------------------------------------------- worker side

def run_worker(m: int, n: int, k: int, accelerator: str) -> None:
    """Run ZigZag on one GEMM (inside its venv) and print one JSON line."""
    import logging

    logging.disable(logging.WARNING)  # ZigZag logs every stage at INFO
    import tempfile

    import zigzag
    from zigzag.api import get_hardware_performance_zigzag

    inputs = Path(zigzag.__file__).parent / "inputs"
    workload = [{"id": 0, "name": "gemm", "operator_type": "Gemm",
                 "equation": "O[b][k]+=I[b][c]*W[c][k]", "dimension_relations": [],
                 "loop_dims": ["B", "C", "K"], "loop_sizes": [m, k, n],
                 "operand_precision": PRECISION, "operand_source": {"I": 0}}]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zigzag_golden_") as tmp:
        _, _, cmes = get_hardware_performance_zigzag(
            workload, str(inputs / "hardware" / f"{accelerator}.yaml"),
            str(inputs / "mapping" / f"{accelerator}.yaml"), opt="latency", dump_folder=tmp,
            loma_show_progress_bar=False)
    cme = cmes[0][1][0][0]
    # memory_word_access[operand] lists the operand's memory levels, innermost first; the last
    # is DRAM. Its four directions (read down, write up, read up, write down) are counted in
    # accesses of the DRAM port's width.
    words = {str(op): {str(d): int(v) for d, v in levels[-1].data.items()}
             for op, levels in cme.memory_word_access.items()}
    levels = cme.accelerator.memory_hierarchy.mem_level_list
    dram = max(levels, key=lambda lvl: lvl.memory_instance.size).memory_instance
    print(json.dumps({
        "latency_cycles": float(cme.latency_total2),
        "ideal_cycles": float(cme.ideal_cycle),
        "ideal_temporal_cycles": float(cme.ideal_temporal_cycle),
        "stall_cycles": float(cme.stall_slack_comb),
        "onloading_cycles": float(cme.data_onloading_cycle),
        "offloading_cycles": float(cme.data_offloading_cycle),
        "systolic_drain_cycles": float(cme.systolic_drain_cycle),
        "energy_pj": float(cme.energy_total),
        "mac_energy_pj": float(cme.mac_energy),
        "mem_energy_pj": float(cme.mem_energy),
        "dram_energy_pj": float(sum(lv[-1] for lv in cme.mem_energy_breakdown.values())),
        "dram_words": words,
        "dram_word_bits": int(max(p.bw_max for p in dram.ports)),
        "temporal_mapping": str(cme.temporal_mapping),
        "spatial_mapping": str(cme.spatial_mapping),
        "zigzag_wall_s": round(time.perf_counter() - start, 3),
    }))


# ----------------------------------------------------------------------------- driver side

def zigzag_inputs(python: str) -> Path:
    """The folder of example inputs inside the ZigZag venv's installed package."""
    code = "import zigzag, os; print(os.path.dirname(zigzag.__file__))"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return Path(out.stdout.strip()) / "inputs"


def _memory(acc: dict, name: str) -> dict:
    return acc["memories"][name]


def example_arrays(inputs: Path) -> dict[str, dict]:
    """Array shape of every example accelerator ZigZag ships: which ones match our model.

    Ours is a 2-D systolic array with SRAM buffers; only a 2-D array that declares its
    dimensions systolic is the same kind of machine.
    """
    import yaml

    out = {}
    for path in sorted((inputs / "hardware").glob("*.yaml")):
        array = yaml.safe_load(path.read_text()).get("operational_array", {})
        out[path.stem] = {"sizes": array.get("sizes"),
                          "systolic_dimensions": array.get("systolic_dimensions", []),
                          "memories": sorted(yaml.safe_load(path.read_text()).get("memories", {}))}
    return out


CAPACITY_GIB = 4  # edge_llm's DRAM budget (see translate_tpu_like)


def translate_tpu_like(acc: dict) -> tuple[dict, list[str]]:
    """Our hardware config (dict) for ZigZag's tpu_like YAML, and the rules used, as comments.

    The translation is ``sim.foreign.zigzag.accelerator_to_hw``, the one reader of ZigZag
    accelerator files (``sim.run --hw tpu_like.yaml`` gives the same numbers); its module
    docstring states each rule. This comparison adds what ZigZag's file does not settle:

    * ``name`` zigzag_tpu_like;
    * DRAM capacity: edge_llm's 4 GiB instead of ZigZag's 10 Gbit (1.16 GiB): the example's
      DRAM size is a placeholder that never binds in ZigZag's cost model, and the peer config
      should fit the same tuning steps as the project's own 32 x 32 config;
    * area: edge_llm's proxies (ZigZag's file has unit_area 1 and memory area 0);
    * the dataflow: tpu_like's mapping file unrolls K x C, our N x K, so weights stay in the
      PEs (``ws``), which the comparison passes to the simulator.
    """
    from sim.foreign.zigzag import accelerator_to_hw

    translation = accelerator_to_hw(acc, source=f"{ACCELERATOR}.yaml")
    config = dict(translation.data)
    config["name"] = f"zigzag_{ACCELERATOR}"
    dram = config["dram"]
    config["dram"] = {"bandwidth_gbps": dram["bandwidth_gbps"], "capacity_gib": CAPACITY_GIB,
                      "energy_pj_per_bit": dram["energy_pj_per_bit"]}
    # ZigZag's file gives no usable area (unit_area 1, memory area 0): edge_llm's area
    # proxies (same 32 x 32 class) keep the area column defined.
    config["area"] = {"pe_um2": 2500, "sram_um2_per_kib": 1500}
    rules = [r for r in translation.rules if not r.startswith("dram capacity")]
    rules += [f"dram capacity {CAPACITY_GIB} GiB: edge_llm's budget, not ZigZag's "
              f"{dram['capacity_mib'] / 1024:.2f} GiB placeholder (it never binds in ZigZag)",
              "weight-stationary: tpu_like's mapping unrolls K x C, i.e. our N x K",
              *[f"default: {d}" for d in translation.defaults],
              "area: none in ZigZag's file (unit_area 1, memory area 0); edge_llm's proxies"]
    return config, rules


# ZigZag models no vector unit; format-2 traces (vector rows) need one, so this config takes
# edge_llm's, whose array has the same 32 columns (its justification, repeated).
_VECTOR = """# Vector unit for the step's non-matrix rows (trace format 2; sim/config.py Vector, sim/vector.py):
# ZigZag's tpu_like has none; this is edge_llm's (same 32-column array): one lane per array
# column, as the TPU's vector unit sits beside its matrix unit at the array's width (Norrie et
# al., "The Design Process for Google's Training Chips: TPUv2 and TPUv3", IEEE Micro 41(2), 2021).
# exp and rsqrt run at a quarter of add, the ratio of special-function units to FP32 lanes in an
# NVIDIA A100 SM (CUDA C++ Programming Guide, compute capability 8.0). No fusion.
vector:
  lanes: 32
  elements_per_cycle: {add: 1, exp: 0.25, rsqrt: 0.25, reduce: 1, move: 1}
  fusion: none
"""


def write_hwconfig(config: dict, rules: list[str], source: Path, path: Path) -> None:
    """Write the translated config with its derivation as the comment header."""
    import yaml

    header = [f"ZigZag peer config, modelled after its example accelerator {source.name} "
              "(zigzag-dse 3.9.1, "
              "inputs/hardware/; a", "weight-stationary systolic array as in TPU v1: Jouppi et "
              "al., ISCA 2017), translated by sim.foreign.zigzag through",
              "python benchmarks/zigzag_golden.py; do not edit by hand. Energies are ZigZag's "
              "values (pJ per", "access; ZigZag derives memory costs with the CACTI wrapper "
              "it ships, zigzag/cacti; the file", "names no process node, so none is claimed "
              "here). Rules:"]
    header += [f"- {rule}" for rule in rules]
    text = "".join(f"# {line}\n" for line in header) + yaml.safe_dump(config, sort_keys=False)
    path.write_text(text + _VECTOR)


def run_case(python: str, m: int, n: int, k: int) -> dict:
    """One ZigZag worker run, niced (the machine is shared)."""
    cmd = ["nice", "-n", "15", python, __file__, "--worker", str(m), str(n), str(k),
           ACCELERATOR]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _zigzag_version(python: str) -> str:
    code = "import importlib.metadata as m; print(m.version('zigzag-dse'))"
    return subprocess.run([python, "-c", code], check=True, capture_output=True,
                          text=True).stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zigzag-python", default="/work/venvs/zigzag/bin/python",
                        help="Python of the venv with zigzag-dse (default: %(default)s)")
    parser.add_argument("--tokens", type=int, default=TOKENS,
                        help="tokens per step: batch x sequence (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests/golden/zigzag_tpu_like.csv",
                        help="golden CSV to write (default: %(default)s)")
    parser.add_argument("--hw-out", type=Path, default=ROOT / "hwconfigs/zigzag_tpu_like.yaml",
                        help="translated hardware config (default: %(default)s)")
    parser.add_argument("--translate-only", action="store_true",
                        help="write the translated hardware config and stop (no ZigZag runs)")
    parser.add_argument("--worker", nargs=4, metavar=("M", "N", "K", "ACCELERATOR"),
                        help="internal: run one ZigZag case and print JSON")
    args = parser.parse_args(argv)
    if args.worker:
        m, n, k = (int(x) for x in args.worker[:3])
        run_worker(m, n, k, args.worker[3])
        return 0

    import yaml
    from tqdm import tqdm

    inputs = zigzag_inputs(args.zigzag_python)
    source = inputs / "hardware" / f"{ACCELERATOR}.yaml"
    config, rules = translate_tpu_like(yaml.safe_load(source.read_text()))
    write_hwconfig(config, rules, source, args.hw_out)
    print(f"wrote {args.hw_out}")
    examples = example_arrays(inputs)
    (args.out.parent / "zigzag_examples.json").write_text(json.dumps(examples, indent=2) + "\n")
    if args.translate_only:
        return 0

    shapes = layer_linear_shapes(args.tokens)
    records = []
    for (m, n, k), ops in tqdm(shapes.items(), desc="ZigZag GEMMs", unit="gemm"):
        res = run_case(args.zigzag_python, m, n, k)
        words = res.pop("dram_words")
        bits = res["dram_word_bits"]
        dram = {op: sum(w.values()) * bits / 8 for op, w in words.items()}
        records.append({"tokens": args.tokens, "ops": ";".join(ops), "M": m, "N": n, "K": k,
                        "latency_cycles": res["latency_cycles"],
                        "ideal_cycles": res["ideal_cycles"],
                        "ideal_temporal_cycles": res["ideal_temporal_cycles"],
                        "stall_cycles": res["stall_cycles"],
                        "onloading_cycles": res["onloading_cycles"],
                        "offloading_cycles": res["offloading_cycles"],
                        "systolic_drain_cycles": res["systolic_drain_cycles"],
                        "energy_pj": res["energy_pj"], "mac_energy_pj": res["mac_energy_pj"],
                        "mem_energy_pj": res["mem_energy_pj"],
                        "dram_energy_pj": res["dram_energy_pj"],
                        "dram_bytes_I": dram.get("I1", 0.0), "dram_bytes_W": dram.get("I2", 0.0),
                        "dram_bytes_O": dram.get("O", 0.0),
                        "dram_bytes": sum(dram.values()),
                        "temporal_mapping": res["temporal_mapping"],
                        "spatial_mapping": res["spatial_mapping"],
                        "zigzag_wall_s": res["zigzag_wall_s"]})
    header = {"tool": "ZigZag", "zigzag-dse": _zigzag_version(args.zigzag_python),
              "accelerator": ACCELERATOR, "mapping": f"inputs/mapping/{ACCELERATOR}.yaml",
              "opt": "latency", "precision": PRECISION, "latency": "latency_total2",
              "workload": "O[b][k]+=I[b][c]*W[c][k] with B=M, C=K, K=N",
              "command": "python benchmarks/zigzag_golden.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        fh.write("# " + json.dumps(header) + "\n")
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} ({len(records)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
