"""The per-op cost record: it adds and scales, every total derives from it, and a metric added
to it in one place reaches ``sim.run --json``, ``sim.gemm --json`` and the sweep table."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

import sim
from sim.cost import COST_COLUMNS, OpCost, cost_columns

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hwconfigs" / "edge_llm.yaml"
V2 = ROOT / "tests" / "data" / "tiny_step_v2.csv"


def test_record_adds_scales_and_sums() -> None:
    a = OpCost(cycles=10.0, dram_bytes=64.0, energy_j=1e-9, vector_elements=3.0)
    b = OpCost(cycles=5.0, macs=100.0)
    total = a + b
    assert total.cycles == 15.0 and total.dram_bytes == 64.0 and total.macs == 100.0
    assert (a * 4).dram_bytes == 256.0 and (4 * a) == a * 4
    assert sum([a, b, a]) == a * 2 + b
    assert OpCost() + a == a
    assert cost_columns() == COST_COLUMNS == tuple(f.name for f in fields(OpCost))
    with pytest.raises(TypeError):
        a + 3  # noqa: B018 - a cost adds only to a cost
    with pytest.raises(TypeError):
        a * True  # noqa: B018 - a count, not a flag


def test_json_rounding_keeps_whole_cycles_and_bytes() -> None:
    cost = OpCost(cycles=10.2, dram_bytes=63.6, energy_j=0.5, macs=12.0, vector_elements=7.0)
    out = cost.to_json()
    assert out["cycles"] == 11 and out["dram_bytes"] == 64 and out["energy_j"] == 0.5
    assert out["macs"] == 12 and out["vector_elements"] == 7
    assert isinstance(out["cycles"], int) and isinstance(out["energy_j"], float)


def test_every_total_is_the_sum_of_the_records() -> None:
    res = sim.simulate_trace(V2, HW)
    total = res.total
    assert total == OpCost.total(res.ops)
    assert total.cycles == pytest.approx(res.total_cycles)
    s = res.summary()
    for name, value in total.to_json().items():
        assert s["total_cycles" if name == "cycles" else name] == value, name
    for table in (res.per_phase(), res.per_layer(), res.per_kind()):
        for col in COST_COLUMNS:
            assert table[col].sum() == pytest.approx(getattr(total, col)), col
    # Scaling by count: a row repeated 3 times costs 3 times one row.
    one = res.ops.iloc[[0]][list(sim.trace.OPS_COLUMNS)].copy()
    three = one.assign(count=3 * one["count"])
    a = sim.simulate_trace(one, HW).total
    b = sim.simulate_trace(three, HW).total
    for col in COST_COLUMNS:
        assert getattr(b, col) == pytest.approx(getattr(a * 3, col)), col


def _package_with_dummy_metric(tmp_path: Path) -> Path:
    """A copy of ``sim`` with one new field in OpCost, and nothing else changed."""
    pkg = tmp_path / "pkg"
    for name in ("sim", "common"):  # sim and the one package it imports from this repo
        shutil.copytree(ROOT / name, pkg / name, ignore=shutil.ignore_patterns("__pycache__"))
    cost = pkg / "sim" / "cost.py"
    text = cost.read_text()
    anchor = "\n    def __add__(self, other: OpCost) -> OpCost:"
    assert text.count(anchor) == 1
    # Default 1 per op: every product and every vector repeat counts one.
    cost.write_text(text.replace(anchor, "\n    dummy_units: float = 1.0\n" + anchor))
    return pkg


def _run_copy(pkg: Path, cli_env: dict, *args: str) -> subprocess.CompletedProcess:
    env = {**cli_env, "PYTHONPATH": str(pkg)}
    # cwd = the copy, so ``-m sim.run`` imports the edited package, not this checkout.
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=env, cwd=pkg, timeout=300)


def test_a_metric_added_in_one_place_reaches_json_and_sweep_table(tmp_path: Path,
                                                                   cli_env: dict) -> None:
    pkg = _package_with_dummy_metric(tmp_path)
    ops_csv = tmp_path / "ops.csv"
    proc = _run_copy(pkg, cli_env, "sim.run", "--hw", str(HW), "--trace", str(V2), "--json",
                     "--ops-csv", str(ops_csv))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    repeats = out["products"] + out["vector_ops"]
    assert out["dummy_units"] == pytest.approx(repeats)
    assert sum(p["dummy_units"] for p in out["per_phase"].values()) == pytest.approx(repeats)
    assert out["per_kind"]["vector"]["dummy_units"] == pytest.approx(out["vector_ops"])
    assert pd.read_csv(ops_csv)["dummy_units"].sum() == pytest.approx(repeats)

    proc = _run_copy(pkg, cli_env, "sim.gemm", "--hw", str(HW), "--M", "64", "--N", "64",
                     "--K", "64", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dummy_units"] == 1.0

    proc = _run_copy(pkg, cli_env, "sim.sweep", "--hw", str(HW), "--trace", str(V2),
                     "--grid", "pe.rows=16,32", "--out", str(tmp_path / "sweep"), "--no-plots",
                     "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    assert len(table) == 2 and (table["dummy_units"] == repeats).all()

    # The checkout itself has no such metric: the copy's one edit is what put it there.
    assert "dummy_units" not in sim.simulate_trace(V2, HW).summary()
