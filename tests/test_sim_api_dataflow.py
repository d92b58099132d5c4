"""The API's dataflow default is the commands' (issue 23): a SCALE-Sim ``.cfg`` given as ``hw``
brings its own ``Dataflow``; ``dataflow`` given, a project YAML or a ``HwConfig`` object mean the
dataflow asked for, else the per-op choice (``auto``)."""
from __future__ import annotations

import json

import pytest

import sim
from sim import gemm as gemm_cli
from sim import run as run_cli
from sim.config import load_hw

TRACE = "tests/data/tiny_step_v2.csv"
TOPOLOGY = "tests/data/scalesim/gpt2.csv"


@pytest.mark.parametrize(("cfg", "fixed"), [("tests/data/scalesim/google.cfg", "os"),
                                            ("tests/data/scalesim/eyeriss.cfg", "ws")])
def test_a_scalesim_cfg_brings_its_dataflow(cfg, fixed, capsys):
    res = sim.simulate_trace(TRACE, cfg)
    assert res.dataflow == fixed
    products = res.ops[res.ops["kind"] == "matmul"]
    assert set(products["dataflow"]) == {fixed}
    # The same numbers as the command with its default --dataflow.
    assert run_cli.main(["--hw", cfg, "--trace", TRACE, "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    api = res.summary()
    assert cli["dataflow"] == fixed
    assert (cli["total_cycles"], cli["dram_bytes"]) == (api["total_cycles"], api["dram_bytes"])
    gemm = sim.simulate_gemm(cfg, 64, 96, 128)
    assert gemm.dataflow == fixed
    assert gemm_cli.main(["--hw", cfg, "--M", "64", "--N", "96", "--K", "128", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cycles"] == gemm.cycles


def test_a_topology_on_a_cfg_runs_unchanged():
    res = sim.simulate_trace(TOPOLOGY, "tests/data/scalesim/google.cfg")
    assert res.dataflow == "os" and set(res.ops["dataflow"]) == {"os"}


def test_what_is_asked_for_wins_and_our_configs_choose_per_op():
    cfg = "tests/data/scalesim/google.cfg"
    assert sim.simulate_trace(TRACE, cfg, dataflow="ws").dataflow == "ws"
    assert sim.simulate_trace(TRACE, cfg, dataflow="auto").dataflow == "auto"
    # A config object carries no file to read a fixed dataflow from: the per-op choice.
    assert sim.simulate_trace(TRACE, load_hw(cfg)).dataflow == "auto"
    mixed = sim.simulate_trace(TRACE, "hwconfigs/edge_llm.yaml")
    assert mixed.dataflow == "auto"
    assert sim.simulate_gemm("hwconfigs/edge_llm.yaml", 64, 96, 128).dataflow in ("ws", "os", "is")
