"""Trace format 2 and the vector unit: reading, validation, the cost model and its bounds.

The fixture ``tests/data/tiny_step_v2.csv`` is hand-written from docs/trace.md (one decoder
layer with LoRA on down_proj: forward, backward to the LoRA weights, AdamW update).
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim
from sim import ConfigError, TraceError, load_hw, read_trace, simulate_trace, validate_ops
from sim.errors import TraceFormatWarning
from sim.trace import OPS_COLUMNS, OPTIONAL_OPS_COLUMNS, PHASES, V1_COLUMNS
from sim.vector import preceding_product_bytes, vector_costs

ROOT = Path(__file__).resolve().parents[1]
V2 = ROOT / "tests" / "data" / "tiny_step_v2.csv"
V1 = ROOT / "tests" / "data" / "tiny_step.csv"
HW = ROOT / "hwconfigs" / "edge_llm.yaml"
BASE = load_hw(HW)
V2_LINES = V2.read_text().splitlines()
V2_HEADER, V2_COLUMNS = V2_LINES[0], V2_LINES[1]


def _read_v2() -> sim.Trace:
    with warnings.catch_warnings():
        warnings.simplefilter("error", TraceFormatWarning)  # a format-2 trace never warns
        return read_trace(V2)


@pytest.fixture(scope="module")
def v2() -> sim.Trace:
    return _read_v2()


# ----------------------------------------------------------------------------- reading

def test_v2_fixture_reads_with_every_kind_class_and_phase(v2: sim.Trace) -> None:
    ops = v2.ops
    assert v2.version == 2 and list(ops.columns) == [*OPS_COLUMNS, *OPTIONAL_OPS_COLUMNS]
    assert set(ops["kind"]) == {"matmul", "vector"}
    assert set(ops.loc[ops["kind"] == "vector", "vector_class"]) == {
        "add", "exp", "rsqrt", "reduce", "move"}
    assert set(ops["phase"]) == set(PHASES)
    vec = ops[ops["kind"] == "vector"]
    assert (vec[["M", "N", "K"]] == 0).all().all() and (vec["elements"] > 0).all()
    mat = ops[ops["kind"] == "matmul"]
    assert (mat[["M", "N", "K"]] > 0).all().all()
    assert (mat[["elements", "read_bytes", "write_bytes"]] == 0).all().all()
    assert not mat["fusable"].any() and (mat["vector_class"] == "").all()
    assert set(ops.loc[ops["phase"] == "update", "kind"]) == {"vector"}


def test_v1_trace_reads_as_matmul_only_with_one_warning() -> None:
    with pytest.warns(TraceFormatWarning) as caught:
        trace = read_trace(V1)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "\n" not in message and str(V1) in message and "edgellm-trace/1" in message
    assert "not charged" in message
    assert trace.version == 1 and list(trace.ops.columns) == [*OPS_COLUMNS, *OPTIONAL_OPS_COLUMNS]
    assert (trace.ops["kind"] == "matmul").all() and not trace.ops["fusable"].any()
    res = simulate_trace(trace, HW)
    s = res.summary()
    assert s["vector_cycles"] == 0 and s["vector_ops"] == 0 and s["per_vector_module"] == {}
    assert s["matmul_cycles"] == s["total_cycles"] > 0


def _v2_file(tmp_path: Path, *, header: str = V2_HEADER, columns: str = V2_COLUMNS,
             rows: list[str] | None = None) -> Path:
    path = tmp_path / "t.csv"
    body = V2_LINES[2:] if rows is None else rows
    path.write_text("\n".join([header, columns, *body]) + "\n")
    return path


def _edit(line: str, **cells: object) -> str:
    values = dict(zip(V2_COLUMNS.split(","), line.split(","), strict=True))
    values.update({k: str(v) for k, v in cells.items()})
    return ",".join(values[c] for c in V2_COLUMNS.split(","))


VEC_ROW = V2_LINES[2]  # embed_tokens, a vector row
MAT_ROW = next(line for line in V2_LINES[2:] if ",matmul," in line)


@pytest.mark.parametrize(("rows", "expected"), [
    ([_edit(VEC_ROW, kind="tensor")], "row 1: column kind must be one of matmul, vector"),
    ([_edit(VEC_ROW, vector_class="sin")], "row 1: column vector_class must be one of add, exp"),
    ([_edit(VEC_ROW, vector_class="")], "row 1: column vector_class must be one of"),
    ([_edit(VEC_ROW, M=32)], "row 1: column M must be 0 when kind is vector (got 32)"),
    ([_edit(VEC_ROW, sparsity_pattern="2:4", weight_sparsity=0.5)],
     "row 1: column weight_sparsity must be 0 when kind is vector"),
    ([_edit(VEC_ROW, elements=-1)], "row 1: column elements must be an integer >= 0 (got -1)"),
    ([_edit(VEC_ROW, read_bytes=1.5)], "row 1: column read_bytes must be an integer >= 0"),
    ([_edit(VEC_ROW, write_bytes="nan")], "row 1: column write_bytes must be an integer"),
    ([_edit(VEC_ROW, fusable="maybe")], "row 1: column fusable must be true or false"),
    ([_edit(VEC_ROW, fusable="true")],
     "row 1: column fusable must be false when no matmul row comes before it"),
    ([MAT_ROW, _edit(MAT_ROW, M=0)],
     "row 2: column M must be an integer > 0 (got 0; kind is matmul)"),
    ([_edit(MAT_ROW, vector_class="exp")],
     "row 1: column vector_class must be empty when kind is matmul (got 'exp')"),
    ([_edit(MAT_ROW, elements=5)], "row 1: column elements must be 0 when kind is matmul"),
    ([_edit(MAT_ROW, fusable="true")], "row 1: column fusable must be false when kind is matmul"),
    ([_edit(MAT_ROW, phase="update")],
     "row 1: column phase must be one of fwd, bwd_input, bwd_weight in a matrix product"),
    ([_edit(VEC_ROW, phase="step")], "row 1: column phase must be one of fwd, bwd_input"),
])
def test_bad_v2_cells_fail_in_one_line_naming_row_and_column(tmp_path: Path, rows: list[str],
                                                             expected: str) -> None:
    path = _v2_file(tmp_path, rows=rows)
    with pytest.raises(TraceError) as err:
        read_trace(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert expected in message


def test_v2_header_needs_every_format_2_column(tmp_path: Path) -> None:
    cols = V2_COLUMNS.replace(",fusable", "")
    rows = [line.rsplit(",", 1)[0] for line in V2_LINES[2:5]]
    with pytest.raises(TraceError, match=r"missing column\(s\) fusable \(see docs/trace.md\)"):
        read_trace(_v2_file(tmp_path, columns=cols, rows=rows))
    # A format-1 header reads the first twelve columns only (no warning is an error here).
    v1_header = V2_HEADER.replace("edgellm-trace/2", "edgellm-trace/1")
    mat_rows = [",".join(line.split(",")[:12]) for line in V2_LINES[2:] if ",matmul," in line]
    with pytest.warns(TraceFormatWarning):
        trace = read_trace(_v2_file(tmp_path, header=v1_header, columns=",".join(V1_COLUMNS),
                                    rows=mat_rows))
    assert len(trace.ops) == len(mat_rows)
    bad = V2_HEADER.replace("edgellm-trace/2", "edgellm-trace/3")
    with pytest.raises(TraceError, match="header format must be 'edgellm-trace/1' or "
                                         "'edgellm-trace/2' \\(got 'edgellm-trace/3'\\)"):
        read_trace(_v2_file(tmp_path, header=bad))


def test_validate_ops_infers_the_format_from_the_columns(v2: sim.Trace) -> None:
    again = validate_ops(v2.ops[list(OPS_COLUMNS)])
    pd.testing.assert_frame_equal(again, v2.ops)
    v1 = validate_ops(v2.ops.loc[v2.ops["kind"] == "matmul", list(V1_COLUMNS)])
    assert (v1["kind"] == "matmul").all()
    with pytest.raises(TraceError, match=r"missing column\(s\) vector_class, elements"):
        validate_ops(v2.ops[[*V1_COLUMNS, "kind"]])


# ----------------------------------------------------------------------------- the cost model

def _vector_ops(rows: list[dict], *, before: dict | None = None) -> pd.DataFrame:
    """A validated table of vector rows, optionally after one product."""
    base = {"layer": 0, "module": "act_fn", "phase": "fwd", "M": 0, "N": 0, "K": 0,
            "weight_sparsity": 0.0, "sparsity_pattern": "dense", "w_bits": 16, "a_bits": 16,
            "trainable": False, "count": 1, "kind": "vector", "vector_class": "add",
            "elements": 0, "read_bytes": 0, "write_bytes": 0, "fusable": False}
    table = [{**base, **r} for r in rows]
    if before is not None:
        table.insert(0, {**base, "module": "gate_proj", "kind": "matmul", "vector_class": "",
                         **before})
    return validate_ops(pd.DataFrame(table))


def test_one_vector_row_matches_the_closed_form() -> None:
    hw = sim.apply_overrides(BASE, {"vector.lanes": 16, "vector.elements_per_cycle.exp": 0.5,
                                    "sram.double_buffering": False})
    ops = _vector_ops([{"vector_class": "exp", "elements": 4096, "read_bytes": 8192,
                        "write_bytes": 8192, "count": 3}])
    row = simulate_trace(ops, hw).ops.iloc[0]
    compute = 4096 / (16 * 0.5)
    bw = 25.6e9 / 1e9  # bytes per cycle at 1 GHz
    assert row["compute_cycles"] == pytest.approx(3 * compute)
    assert row["dram_bytes"] == pytest.approx(3 * 16384)
    assert row["cycles"] == pytest.approx(3 * (compute + 16384 / bw))  # nothing overlaps
    assert row["roofline_cycles"] == pytest.approx(3 * max(compute, 16384 / bw))
    assert row["vector_elements"] == 3 * 4096 and row["macs"] == 0
    pj = 2.0 * hw.energy.mac_pj  # the default exp energy (VECTOR_PJ_PER_MAC)
    sram = 16384 + 16384
    energy = (4096 * pj + sram * hw.energy.sram_pj_per_byte_eff
              + 16384 * 8 * hw.dram.energy_pj_per_bit) * 1e-12 \
        + hw.energy.static_mw * 1e-3 * (compute + 16384 / bw) / 1e9
    assert row["energy_j"] == pytest.approx(3 * energy)
    assert row["dataflow"] is None and row["bound"] == "memory"
    overlapped = simulate_trace(ops, sim.apply_overrides(hw, ["sram.double_buffering=true"]))
    # Double buffering hides all but one chunk's transfer: between the bound and serial time.
    cycles = overlapped.ops.iloc[0]["cycles"]
    assert row["roofline_cycles"] <= cycles < row["cycles"]
    assert cycles == pytest.approx(row["roofline_cycles"], rel=0.01)


def test_fusion_lowers_dram_bytes_of_fusable_rows_only(v2: sim.Trace) -> None:
    plain = simulate_trace(v2, BASE).ops
    fused = simulate_trace(v2, sim.apply_overrides(BASE, ["vector.fusion=elementwise"])).ops
    fusable = v2.ops["fusable"].to_numpy()
    assert fusable.sum() >= 5
    same = ["cycles", "dram_bytes", "energy_j"]
    pd.testing.assert_frame_equal(plain.loc[~fusable, same], fused.loc[~fusable, same])
    saved = plain["dram_bytes"] - fused["dram_bytes"]
    assert (saved[fusable] > 0).all()
    # Saved bytes: the row's read, at most the output of the product before it.
    expected = np.minimum(v2.ops["read_bytes"], preceding_product_bytes(v2.ops)
                          / v2.ops["count"]) * v2.ops["count"]
    np.testing.assert_allclose(saved[fusable], expected[fusable])
    np.testing.assert_allclose(fused.loc[fusable, "fused_bytes"], expected[fusable])
    # The residual after o_proj reads 8192 bytes, of which the product made 32 x 64 x 2.
    residual = v2.ops.index[(v2.ops["module"] == "residual") & v2.ops["fusable"]][0]
    assert fused.loc[residual, "fused_bytes"] == 32 * 64 * 2 < v2.ops.loc[residual, "read_bytes"]
    assert fused["cycles"].sum() < plain["cycles"].sum()


def test_summary_breaks_the_step_down_by_phase_and_kind(v2: sim.Trace) -> None:
    res = simulate_trace(v2, BASE)
    s = res.summary()
    assert s["vector_cycles"] > 0 and s["matmul_cycles"] > 0
    assert abs(s["vector_cycles"] + s["matmul_cycles"] - s["total_cycles"]) <= 1
    assert s["vector_latency_s"] == pytest.approx(res.vector_cycles / 1e9)
    assert set(s["per_kind"]) == {"matmul", "vector"}
    assert list(s["per_phase"]) == list(PHASES)  # step order
    assert s["per_phase"]["update"]["matmul_cycles"] == 0
    assert s["per_phase"]["update"]["vector_cycles"] > 0
    for key in ("per_phase", "per_kind", "per_vector_module", "per_vector_class", "per_layer"):
        block = s[key]
        assert all(set(res.total.as_dict()) <= set(row) for row in block.values())
    total_vector = sum(r["cycles"] for r in s["per_vector_module"].values())
    assert total_vector == pytest.approx(s["vector_cycles"], abs=len(s["per_vector_module"]))
    assert set(s["per_vector_class"]) == {"add", "exp", "rsqrt", "reduce", "move"}
    assert s["products"] == int(v2.ops.loc[v2.ops["kind"] == "matmul", "count"].sum())
    assert s["vector_ops"] == int(v2.ops.loc[v2.ops["kind"] == "vector", "count"].sum())
    assert set(s["dataflow_mix"]) <= {"ws", "os", "is"}
    assert s["total_cycles"] >= s["roofline_cycles"]


def test_run_cli_shows_the_breakdown_and_warns_once_for_format_1(
        capsys: pytest.CaptureFixture[str]) -> None:
    from sim import run as sim_run

    assert sim_run.main(["--hw", str(HW), "--trace", str(V2)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for needle in ("vector", "matmul ms", "update", "vector module", "attn_softmax",
                   "vector class", "rsqrt"):
        assert needle in out, needle
    assert sim_run.main(["--hw", str(HW), "--trace", str(V1), "--json"]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "edgellm-trace/1" in lines[0]
    assert out.startswith("{")
    # A run that fails prints its error alone, even after reading a format-1 trace.
    with pytest.raises(SystemExit):
        sim_run.main(["--hw", str(HW), "--trace", str(V1), "--set", "sram.input_kib=0.001"])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")


# ----------------------------------------------------------------------------- the bound

vector_rows = st.fixed_dictionaries({
    "vector_class": st.sampled_from(["add", "exp", "rsqrt", "reduce", "move"]),
    "elements": st.integers(0, 10**7),
    "read_bytes": st.integers(0, 10**8),
    "write_bytes": st.integers(0, 10**8),
    "count": st.integers(1, 64),
    "fusable": st.booleans(),
})


@st.composite
def vector_hw(draw: st.DrawFn) -> sim.HwConfig:
    rate = st.sampled_from([0.0625, 0.125, 0.25, 0.5, 1.0, 2.0])
    return sim.apply_overrides(BASE, {
        "vector.lanes": draw(st.integers(1, 2048)),
        "vector.elements_per_cycle": {c: draw(rate) for c in
                                      ("add", "exp", "rsqrt", "reduce", "move")},
        "vector.fusion": draw(st.sampled_from(["none", "elementwise"])),
        "dram.bandwidth_gbps": draw(st.floats(0.1, 500)),
        "sram.double_buffering": draw(st.booleans()),
        "clock_mhz": draw(st.sampled_from([200, 625, 1000])),
    })


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(vector_hw(), st.lists(vector_rows, min_size=1, max_size=6),
       st.tuples(st.integers(1, 512), st.integers(1, 512)))
def test_vector_time_is_never_below_its_throughput_or_bandwidth_bound(
        hw: sim.HwConfig, rows: list[dict], product: tuple[int, int]) -> None:
    m, n = product
    ops = _vector_ops(rows, before={"M": m, "N": n, "K": 8})
    cost = vector_costs(hw, ops)
    vec = ops[ops["kind"] == "vector"]
    rates = hw.vector.elements_per_cycle.model_dump()
    per_cycle = np.array([rates[c] for c in vec["vector_class"]]) * hw.vector_lanes
    count = vec["count"].to_numpy()
    throughput_bound = vec["elements"].to_numpy() / per_cycle * count
    dram_read = vec["read_bytes"].to_numpy() * count - cost["fused_bytes"].to_numpy()
    bandwidth_bound = (dram_read + vec["write_bytes"].to_numpy() * count) \
        / hw.dram_bytes_per_cycle
    cycles = cost["cycles"].to_numpy()
    assert (cycles >= throughput_bound * (1 - 1e-9)).all()
    assert (cycles >= bandwidth_bound * (1 - 1e-9)).all()
    assert (cycles >= cost["roofline_cycles"].to_numpy() * (1 - 1e-9)).all()
    assert (cost["stall_cycles"] >= -1e-6 * np.maximum(cycles, 1)).all()
    fused = cost["fused_bytes"].to_numpy()
    assert ((fused >= 0) & (fused <= vec["read_bytes"].to_numpy() * count + 1e-6)).all()
    if hw.vector.fusion.value == "none":
        assert (fused == 0).all()
    assert (fused[~vec["fusable"].to_numpy()] == 0).all()
    assert np.isfinite(cost["energy_j"]).all() and (cost["energy_j"] >= 0).all()
    if not hw.sram.double_buffering:  # serial: compute then transfer
        np.testing.assert_allclose(cycles, throughput_bound + bandwidth_bound, rtol=1e-9)


# ----------------------------------------------------------------------------- the config

def _base_tree() -> dict:
    return yaml.safe_load(HW.read_text())


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda v: v.update(lanes=0), "vector.lanes: must be > 0 (got 0)"),
    (lambda v: v.update(lanes=-8), "vector.lanes: must be > 0 (got -8)"),
    (lambda v: v.update(lanes=2.5), "vector.lanes: "),
    (lambda v: v.update(lanes=True), "vector.lanes: expected a number (got True)"),
    (lambda v: v.update(lanes=1e15), "vector.lanes: out of range"),
    (lambda v: v["elements_per_cycle"].update(exp=0), "vector.elements_per_cycle.exp: must be > 0"),
    (lambda v: v["elements_per_cycle"].update(add=-1),
     "vector.elements_per_cycle.add: must be > 0"),
    (lambda v: v["elements_per_cycle"].update(rsqrt="fast"), "vector.elements_per_cycle.rsqrt: "),
    (lambda v: v["elements_per_cycle"].update(reduce=float("nan")),
     "vector.elements_per_cycle.reduce: "),
    (lambda v: v["elements_per_cycle"].update(move=float("inf")),
     "vector.elements_per_cycle.move: "),
    (lambda v: v["elements_per_cycle"].update(sin=1),
     "vector.elements_per_cycle.sin: unknown field (allowed: add, exp, rsqrt, reduce, move)"),
    (lambda v: v.update(pj_per_element={"add": 0.1}), "vector.pj_per_element.exp: missing"),
    (lambda v: v.update(pj_per_element={c: 0.1 for c in ("add", "exp", "rsqrt", "reduce")}
                        | {"move": -1}), "vector.pj_per_element.move: must be >= 0"),
    (lambda v: v.update(fusion="always"),
     "vector.fusion: must be one of 'none' or 'elementwise' (got 'always')"),
    (lambda v: v.update(fuse="none"), "vector.fuse: unknown field (allowed: lanes,"),
])
def test_invalid_vector_fields_fail_in_one_line(tmp_path: Path, mutate, expected: str) -> None:
    data = _base_tree()
    mutate(data["vector"])
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        load_hw(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert expected in message


def test_vector_section_is_optional_with_stated_defaults() -> None:
    data = _base_tree()
    data.pop("vector")
    hw = sim.hw_from_dict(data)
    assert hw.vector_lanes == hw.pe.cols
    rates = hw.vector.elements_per_cycle
    assert (rates.add, rates.exp, rates.rsqrt, rates.reduce, rates.move) == (1, 0.25, 0.25, 1, 1)
    assert hw.vector.fusion.value == "none"
    assert hw.vector_pj_per_element == pytest.approx(
        {c: r * hw.energy.mac_pj for c, r in sim.config.VECTOR_PJ_PER_MAC.items()})
    given = sim.apply_overrides(hw, {"vector.pj_per_element": {c: 0.5 for c in rates.model_dump()}})
    assert given.vector_pj_per_element["exp"] == 0.5
    with pytest.raises(ConfigError, match="vector: "):
        sim.hw_from_dict({**data, "vector": 3})


@pytest.mark.parametrize("path", sorted((ROOT / "hwconfigs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_vector_units_are_explicit_and_transcendentals_slower(path: Path) -> None:
    tree = yaml.safe_load(path.read_text())
    assert "vector" in tree and list(tree)[-1] == "vector"  # appended at the end
    hw = load_hw(path)
    rates = hw.vector.elements_per_cycle
    assert rates.exp < rates.add and rates.rsqrt < rates.add
    assert hw.vector_lanes >= hw.pe.cols  # at least one lane per array column
    comment = path.read_text().split("vector:")[0].rsplit("\n# Vector unit", 1)[1]
    assert "lane" in comment and ("20" in comment)  # justified, with a dated source


def _schema_leaves(model: type, prefix: str = "") -> list[str]:
    from pydantic import BaseModel

    keys = []
    for name, info in model.model_fields.items():
        ann = info.annotation
        sub = next((a for a in (ann, *getattr(ann, "__args__", ()))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        keys += _schema_leaves(sub, f"{prefix}{name}.") if sub else [f"{prefix}{name}"]
    return keys


def test_config_help_lists_every_key_of_the_schema() -> None:
    from sim.cli import CONFIG_EPILOG

    missing = [k for k in _schema_leaves(sim.HwConfig) if k != "name" and k not in CONFIG_EPILOG]
    assert missing == []


def test_energy_and_cycles_of_vector_rows_are_finite_on_every_shipped_config(
        v2: sim.Trace) -> None:
    for path in sorted((ROOT / "hwconfigs").glob("*.yaml")):
        res = simulate_trace(v2, path)
        assert math.isfinite(res.energy_j) and res.vector_cycles > 0, path.stem
        assert (res.ops["cycles"] >= res.ops["roofline_cycles"] * (1 - 1e-9)).all(), path.stem
