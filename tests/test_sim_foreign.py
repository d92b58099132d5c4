"""Peer files in and out: SCALE-Sim .cfg and topologies, ZigZag accelerator YAMLs, sim.export.

The peers' files in tests/data/scalesim and tests/data/zigzag are copied unchanged from their
releases (tests/data/README.md), so these tests run what an architect brings.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import export as export_cli
from sim import gemm as gemm_cli
from sim import run as run_cli
from sim.config import load_hw
from sim.errors import ConfigError, TraceError
from sim.foreign import hw_translation
from sim.foreign.scalesim import topology_rows
from sim.sweep import run_sweep
from sim.trace import read_trace

DATA = Path(__file__).resolve().parent / "data"
GOOGLE = DATA / "scalesim" / "google.cfg"
EYERISS = DATA / "scalesim" / "eyeriss.cfg"
GPT2 = DATA / "scalesim" / "gpt2.csv"
ALEXNET = DATA / "scalesim" / "alexnet.csv"
TPU_LIKE = DATA / "zigzag" / "hardware" / "tpu_like.yaml"
TINY = DATA / "tiny_step.csv"


def test_google_cfg_is_read_as_shipped():
    hw = load_hw(GOOGLE)
    assert (hw.name, hw.pe.rows, hw.pe.cols) == ("GoogleTPU_v1_os", 256, 256)
    assert (hw.sram.input_kib, hw.sram.weight_kib, hw.sram.output_kib) == (6144, 6144, 2048)
    # InterfaceBandwidth USER, Bandwidth 10 words (bytes) per cycle at the stated 1 GHz.
    assert hw.dram_bytes_per_cycle == pytest.approx(10.0)
    peer = hw_translation(GOOGLE)
    assert peer is not None and peer.dataflow == "os"
    assert any(line.startswith("clock_mhz = 1000") for line in peer.defaults)
    assert all("\n" not in line for line in peer.defaults)


def test_eyeriss_cfg_without_layout_section_and_calc_bandwidth():
    hw = load_hw(EYERISS)
    assert (hw.pe.rows, hw.pe.cols, hw.sram.input_kib) == (12, 14, 36)
    peer = hw_translation(EYERISS)
    assert peer.dataflow == "ws"
    assert any("CALC" in line for line in peer.defaults)


def test_zigzag_tpu_like_yaml():
    hw = load_hw(TPU_LIKE)
    assert (hw.name, hw.pe.rows, hw.pe.cols) == ("tpu_like", 32, 32)
    # sram_2MB holds I1 and O: split in two; the weights live only in the 128-byte register
    # file of each of 1024 PEs: a 128 KiB weight buffer.
    assert (hw.sram.input_kib, hw.sram.weight_kib, hw.sram.output_kib) == (1024, 128, 1024)
    assert hw.sram.bank_width_bits == 2048  # sram_2MB's port; the registers feed their own PE
    assert hw.dram_bytes_per_cycle == pytest.approx(64 / 8)  # dram port: 64 bits per cycle
    assert hw.dram.energy_pj_per_bit == pytest.approx(700 / 64)  # r_cost per 64-bit access
    # unit_energy 0.04 + the per-PE registers' accesses of one MAC: rf_128B read 0.095,
    # rf_2B read and write 0.021 each; the 16-bit rf_2B is the accumulator.
    assert hw.energy.mac_pj == pytest.approx(0.177) and hw.pe.accum_bits == 16
    assert hw.energy.sram_pj_per_byte_eff == pytest.approx(416.16 / 256)
    assert hw.dram.capacity_bytes == 10_000_000_000 // 8
    peer = hw_translation(TPU_LIKE)
    assert peer.dataflow is None and any(r.startswith("mac_pj 0.177") for r in peer.rules)
    assert any(d.startswith("clock_mhz") for d in peer.defaults)
    assert hw_translation("hwconfigs/edge_llm.yaml") is None


def test_zigzag_memory_shared_by_all_operands_is_one_unified_buffer():
    import yaml

    data = yaml.safe_load(TPU_LIKE.read_text())
    data["memories"]["sram_2MB"]["operands"] = ["I1", "I2", "O"]
    del data["memories"]["rf_128B"], data["memories"]["rf_2B"]
    from sim.foreign.zigzag import accelerator_to_hw

    t = accelerator_to_hw(data)
    assert t.data["sram"]["unified_kib"] == 2048 and "input_kib" not in t.data["sram"]
    assert t.data["energy"]["mac_pj"] == 0.04 and t.data["pe"]["accum_bits"] == 32
    assert any(d.startswith("pe.accum_bits = 32") for d in t.defaults)


def test_gemm_topology_with_crlf_and_no_final_newline():
    trace = read_trace(GPT2)
    assert GPT2.read_bytes().count(b"\r\n") == 6 and not GPT2.read_bytes().endswith(b"\n")
    ops = trace.ops
    assert list(ops["module"]) == ["QKT", "QKTV", "Linear1", "Linear2", "PW-FF-L1", "PW-FF-L2"]
    assert list(ops.loc[2, ["M", "N", "K"]]) == [1024, 4800, 1600]
    assert set(ops["phase"]) == {"fwd"} and set(ops["w_bits"]) == {8}
    assert trace.tensors is None and trace.header["defaults"]


def test_conv_row_lowered_as_scalesim_lowers_it():
    ops = read_trace(ALEXNET).ops
    # Conv1: 224x224 IFMAP, 11x11 filter, 3 channels, 96 filters, stride 4 (no padding):
    # ceil((224 - 11 + 4) / 4) = 55 output rows and columns; K = 11 * 11 * 3.
    assert list(ops.loc[0, ["module", "M", "N", "K", "count"]]) == ["Conv1", 55 * 55, 96, 363, 1]
    # Conv2: 27x27, 5x5 x 96 channels, 256 filters, stride 1: 23 x 23 pixels.
    assert list(ops.loc[1, ["M", "N", "K"]]) == [23 * 23, 256, 5 * 5 * 96]


def test_depthwise_conv_row_is_split_per_channel():
    text = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            "Num Filter, Strides,\nConv_DP1, 8, 8, 3, 3, 32, 1, 2,\n")
    _, rows = topology_rows(text)
    # ceil((8 - 3 + 2) / 2) = 4 output rows and columns; one channel per layer, 32 layers.
    assert list(rows.loc[0, ["M", "N", "K", "count"]]) == [16, 1, 9, 32]


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 5000), n=st.integers(1, 5000), k=st.integers(1, 5000))
def test_gemm_written_as_conv_lowers_back(m, n, k):
    """SCALE-Sim runs a GEMM row as the convolution [M, K, 1, K, 1, N, 1]
    (topology_utils.load_arrays_gemm); lowering that convolution gives the GEMM back."""
    text = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
            f"Num Filter, Strides,\ng, {m}, {k}, 1, {k}, 1, {n}, 1,\n")
    _, conv = topology_rows(text)
    _, gemm = topology_rows(f"Layer,M,N,K,\ng,{m},{n},{k},\n")
    assert list(conv.loc[0, ["M", "N", "K"]]) == list(gemm.loc[0, ["M", "N", "K"]]) == [m, n, k]


def test_nm_sparsity_column_of_a_topology():
    _, rows = topology_rows("Layer,M,N,K,\na,8,8,8,2:4,\nb,8,8,8,1:1,\n")
    assert list(rows["sparsity_pattern"]) == ["2:4", "dense"]
    assert rows.loc[0, "weight_sparsity"] == pytest.approx(0.5)


@pytest.mark.parametrize("text, needle", [
    ("Layer,M,N,K,\na,8,0,8,\n", "row 1: N must be an integer > 0"),
    ("Layer,M,N,K,\na,8,8,\n", "row 1: a GEMM row needs name, M, N, K"),
    ("Layer,M,N,K,\na,8,8,8,5:4,\n", "row 1: sparsity must be N:M"),
    ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, "
     "Strides,\nc, 3, 3, 5, 5, 1, 1, 1,\n", "row 1: filter 5x5 is larger than the IFMAP 3x3"),
])
def test_bad_topology_rows_are_one_line(tmp_path, text, needle):
    path = tmp_path / "topo.csv"
    path.write_text(text)
    with pytest.raises(TraceError) as err:
        read_trace(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("edit, needle", [
    (("ArrayHeight:    256\n", ""), "[architecture_presets] ArrayHeight: missing required field"),
    (("Dataflow : os", "Dataflow : xs"), "Dataflow: must be one of ws, os, is"),
    (("IfmapSramSzkB:    6144", "IfmapSramSzkB: lots"), "IfmapSramSzkB: must be an integer"),
    (("InterfaceBandwidth: USER", "InterfaceBandwidth: MAYBE"), "must be USER or CALC"),
    (("Bandwidth : 10", "Bandwidth : 0"), "Bandwidth: must be > 0"),
])
def test_bad_cfg_is_one_line(tmp_path, edit, needle):
    path = tmp_path / "bad.cfg"
    text = GOOGLE.read_text()
    assert edit[0] in text
    path.write_text(text.replace(*edit))
    with pytest.raises(ConfigError) as err:
        load_hw(path)
    assert needle in str(err.value) and str(err.value).startswith(str(path))


def test_sim_run_takes_google_cfg_and_gpt2_topology_unchanged(capsys):
    assert run_cli.main(["--hw", str(GOOGLE), "--trace", str(GPT2), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataflow"] == "os" and out["ops"] == 6
    assert out["macs"] == sum(m * n * k for m, n, k in [
        (1024, 1024, 64), (1024, 64, 1024), (1024, 4800, 1600), (1024, 1600, 1600),
        (1024, 3072, 1600), (1024, 1600, 3072)])
    lines = out["stated_defaults"]
    assert any(line.startswith("hw default (scalesim-cfg): clock_mhz") for line in lines)
    assert any(line.startswith("trace default (scalesim-topology-gemm)") for line in lines)
    # The text output lists the same defaults, one line each, before the totals.
    assert run_cli.main(["--hw", str(GOOGLE), "--trace", str(GPT2)]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[:len(lines)] == lines


def test_explicit_dataflow_beats_the_cfg(capsys):
    assert gemm_cli.main(["--hw", str(GOOGLE), "--M", "64", "--N", "64", "--K", "64",
                          "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataflow"] == "os"
    assert gemm_cli.main(["--hw", str(GOOGLE), "--M", "64", "--N", "64", "--K", "64",
                          "--dataflow", "ws", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dataflow"] == "ws"


def test_sweep_runs_each_cfg_with_its_dataflow(tmp_path):
    table = run_sweep([GOOGLE, EYERISS, "hwconfigs/edge_llm.yaml"], [GPT2, TINY],
                      {"pe.rows": [8, 16]}, out=tmp_path / "s", plots=False)
    assert (table["status"] == "ok").all() and len(table) == 12
    by_config = table.groupby("config")["dataflow"].agg(set).to_dict()
    assert by_config == {"GoogleTPU_v1_os": {"os"}, "eyeriss": {"ws"}, "edge_llm": {"auto"}}
    for _, row in table[table["config"] == "eyeriss"].iterrows():
        assert json.loads(row["dataflow_mix"]) == {"ws": int(row["ops"])}
    stats = table.attrs["sweep"]
    assert any(line.startswith("eyeriss: hw default") for line in stats["stated_defaults"])
    assert "hw default" in (tmp_path / "s" / "summary.txt").read_text()
    # An explicit --dataflow is another point: it gets its own key.
    forced = run_sweep([EYERISS], [TINY], out=tmp_path / "f", dataflow="auto", plots=False)
    assert forced["point_key"].iloc[0] not in set(table["point_key"])


def _macs_by_shape(ops: pd.DataFrame) -> dict[tuple[int, int, int], int]:
    out: dict[tuple[int, int, int], int] = {}
    for row in ops.itertuples(index=False):
        out[(row.M, row.N, row.K)] = out.get((row.M, row.N, row.K), 0) + int(row.count)
    return out


def test_export_round_trip(tmp_path, capsys):
    out = tmp_path / "scalesim"
    assert export_cli.main(["--trace", str(TINY), "--to", "scalesim", str(out)]) == 0
    text = capsys.readouterr().out
    assert "note: " in text and "run SCALE-Sim: python -m scalesim.scale" in text
    assert (out / "layout.csv").read_text() == "Layer,\n"
    original = read_trace(TINY)
    back = read_trace(out / "tiny_step_topology.csv")
    # Every product comes back with its shape, repeats written as rows of their own.
    assert _macs_by_shape(back.ops) == _macs_by_shape(original.ops)
    assert len(back.ops) == int(original.ops["count"].sum())
    # The config comes back whole (SCALE-Sim's keys plus the [edgellm] section) ...
    assert load_hw(out / "tiny_step.cfg") == load_hw("hwconfigs/edge_llm.yaml")
    assert hw_translation(out / "tiny_step.cfg").dataflow == "ws"
    # ... and an edit made in SCALE-Sim's own keys wins over the saved config.
    cfg = out / "tiny_step.cfg"
    cfg.write_text(cfg.read_text().replace("ArrayHeight: 32", "ArrayHeight: 8")
                   .replace("Dataflow : ws", "Dataflow : os"))
    edited = load_hw(cfg)
    assert edited.pe.rows == 8
    assert edited.model_dump(exclude={"pe"}) == load_hw("hwconfigs/edge_llm.yaml").model_dump(
        exclude={"pe"})
    assert hw_translation(cfg).dataflow == "os"


def test_export_keeps_nm_sparsity_and_names_what_it_drops(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text('# {"format": "edgellm-trace/1", "model": "m", "method": "inference", '
                     '"seq_len": 4, "batch": 1}\n'
                     "layer,module,phase,M,N,K,weight_sparsity,sparsity_pattern,w_bits,a_bits,"
                     "trainable,count\n"
                     "0,q_proj,fwd,4,8,8,0.5,2:4,8,8,false,1\n"
                     "0,k_proj,fwd,4,8,8,0.3,unstructured,4,8,false,2\n")
    result = export_cli.export_scalesim(trace, tmp_path / "o", hw_path=GOOGLE)
    back = read_trace(result["files"]["topology"]).ops
    assert list(back["sparsity_pattern"]) == ["2:4", "dense", "dense"]
    assert any("unstructured" in n for n in result["notes"])
    assert any("bit widths [4, 8]" in n for n in result["notes"])
    assert "Dataflow : os" in Path(result["files"]["cfg"]).read_text()  # from google.cfg


def test_export_errors_write_nothing(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        export_cli.main(["--trace", str(tmp_path / "missing.csv"), "--to", "scalesim",
                         str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "o").exists()


def test_bandwidth_rounding_is_stated():
    from sim.foreign.scalesim import hw_to_cfg

    hw = load_hw("hwconfigs/edge_llm.yaml").model_dump(mode="json", exclude_none=True)
    hw["dram"]["bandwidth_gbps"] = 12.3
    _, notes = hw_to_cfg(hw, dataflow="ws")
    bpc = 12.3 * 1000 / hw["clock_mhz"]
    assert any(f"rounded from {bpc:g} bytes/cycle" in n for n in notes)
    assert not math.isclose(bpc, round(bpc))


def test_lowering_matches_scalesims_own_parser(tmp_path):
    """Golden rows from SCALE-Sim 3.0.0's topology_utils (benchmarks/scalesim_lowering_golden.py):
    every layer of its alexnet, mobilenet (strided 3x3 and 1x1 convolutions) and gpt2 files and
    a depth-wise row, which SCALE-Sim splits into one layer per channel."""
    golden = pd.read_csv(Path(__file__).parent / "golden" / "scalesim_lowering.csv", comment="#")
    header = json.loads((Path(__file__).parent / "golden" / "scalesim_lowering.csv")
                        .read_text().splitlines()[0][1:])
    for name, expected in golden.groupby("topology", sort=False):
        if name == "depthwise":
            path = tmp_path / "depthwise.csv"
            path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, "
                            f"Channels, Num Filter, Strides,\n{header['depthwise_row']}\n")
        else:
            path = DATA / "scalesim" / str(name)
        ops = read_trace(path).ops
        ours = ops.loc[ops.index.repeat(ops["count"]), ["M", "N", "K"]].to_numpy().tolist()
        assert ours == expected[["M", "N", "K"]].to_numpy().tolist(), name
