"""Write the regression pin: whole-step totals of one fixed trace on every hardware config.

    python benchmarks/sim_regression_pin.py            # rewrite tests/golden/sim_pin.json
    python benchmarks/sim_regression_pin.py --check    # compare only, exit 1 on a change

The trace is ``tests/data/smollm2_synthetic_step_v1.csv`` (and its ``.tensors.csv``): the
synthetic SmolLM2-135M LoRA step of ``benchmarks/bench_sim.py`` (seed 0, 962 matrix-product
rows), frozen in trace format 1 so that later trace formats (vector rows) leave it alone.
``tests/test_sim_peers.py`` fails when any pinned total moves; a deliberate model change
rewrites the pin with this script and says why in its commit message.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim import simulate_trace  # noqa: E402

TRACE = ROOT / "tests/data/smollm2_synthetic_step_v1.csv"
PIN = ROOT / "tests/golden/sim_pin.json"
METRICS = ("total_cycles", "dram_bytes", "energy_j", "peak_memory_bytes")


def step_totals(trace: Path = TRACE) -> dict[str, dict[str, float]]:
    """Totals of ``trace`` on every ``hwconfigs/*.yaml``: {config name: {metric: value}}."""
    out = {}
    for path in sorted((ROOT / "hwconfigs").glob("*.yaml")):
        with warnings.catch_warnings():  # a format-1 trace may be read with a warning
            warnings.simplefilter("ignore")
            summary = simulate_trace(trace, path).summary()
        out[path.stem] = {key: summary[key] for key in METRICS}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the pin instead of rewriting it")
    args = parser.parse_args(argv)
    totals = step_totals()
    if args.check:
        pinned = json.loads(PIN.read_text())["totals"]
        changed = {hw: (pinned.get(hw), now) for hw, now in totals.items()
                   if pinned.get(hw) != now}
        for hw, (old, new) in changed.items():
            print(f"{hw}: pinned {old}, now {new}")
        return 1 if changed else 0
    PIN.write_text(json.dumps({
        "trace": str(TRACE.relative_to(ROOT)),
        "command": "python benchmarks/sim_regression_pin.py",
        "units": {"total_cycles": "cycles", "dram_bytes": "bytes", "energy_j": "joules",
                  "peak_memory_bytes": "bytes"},
        "totals": totals}, indent=2) + "\n")
    print(f"wrote {PIN} ({len(totals)} configs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
