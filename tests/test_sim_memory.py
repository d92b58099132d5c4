"""Peak memory of a step as a liveness timeline (sim.footprint), validated against the real step.

The tiny model's step is recorded (tensor lifetimes from the real run) and measured again by
torch's CPU allocator (``workloads.trace.measure``); the simulated peak must stay within the
issue's 10% of the measured one, at the same (host, float32) precision.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.bench_sim_memory import host_tensors
from sim.config import load_hw
from sim.errors import TraceError
from sim.footprint import footprint, live_bytes
from sim.trace import read_trace, validate_tensors

ROOT = Path(__file__).resolve().parents[1]
HW = load_hw(ROOT / "hwconfigs/edge_llm.yaml")
FIXTURE = ROOT / "tests/data/tiny_step_v2.csv"
SEQ, BATCH = 256, 4  # 1024 tokens x 64 hidden: the tiny model's storages reach the codec's minimum


def _table(rows: list[tuple[str, int, int, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"name": f"t{i}", "kind": kind, "layer": -1, "numel": size, "bits": 8,
                          "bytes": size, "first_op": first, "last_op": last}
                         for i, (kind, size, first, last) in enumerate(rows)])


def test_peak_is_the_most_live_at_once_not_the_sum():
    table = _table([("weight", 100, 0, 9), ("activation", 50, 1, 8), ("activation", 30, 2, 3),
                    ("activation_grad", 40, 5, 6), ("temporary", 1000, 9, 9)])
    fp = footprint(validate_tensors(table), HW)
    assert list(live_bytes(table, 10)) == [100, 150, 180, 180, 150, 190, 190, 150, 150, 1100]
    assert fp.peak_memory_bytes == 1100 and fp.peak_op == 9
    assert fp.by_kind == {"weight": 100, "temporary": 1000}
    assert fp.all_tensors_bytes == 1220


def test_a_table_without_lifetimes_keeps_every_tensor_live():
    table = _table([("weight", 100, 0, 0), ("activation", 50, 0, 0)]).drop(columns=["first_op", "last_op"])
    fp = footprint(validate_tensors(table), HW)
    assert fp.peak_memory_bytes == fp.all_tensors_bytes == 150 and fp.peak_op is None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 40), st.integers(0, 40)),
                min_size=1, max_size=30))
def test_peak_is_between_the_largest_tensor_and_the_sum(rows):
    table = _table([("temporary", size, min(a, b), max(a, b)) for size, a, b in rows])
    fp = footprint(validate_tensors(table), HW)
    assert table["bytes"].max() <= fp.peak_memory_bytes <= table["bytes"].sum()
    assert sum(fp.by_kind.values()) == fp.peak_memory_bytes


@pytest.mark.parametrize("change, needle", [
    ({"last_op": [0, 2]}, r"row 2: column last_op must be >= first_op \(got 2\)"),
    ({"first_op": [-1, 3]}, r"row 1: column first_op must be an integer >= 0"),
])
def test_bad_lifetimes_are_one_line_errors(change, needle):
    table = _table([("weight", 1, 0, 5), ("activation", 1, 3, 4)])
    for col, values in change.items():
        table[col] = values
    with pytest.raises(TraceError, match=needle):
        validate_tensors(table)
    with pytest.raises(TraceError, match="first_op and last_op go together"):
        validate_tensors(table.drop(columns=["last_op"]))


def test_last_op_beyond_the_ops_table_is_an_error(tmp_path):
    n = len(read_trace(FIXTURE).ops)
    shutil.copy(FIXTURE, tmp_path / "t.csv")
    _table([("weight", 1, 0, n)]).to_csv(tmp_path / "t.tensors.csv", index=False)
    with pytest.raises(TraceError, match=f"column last_op must be below the {n} rows of t.csv"):
        read_trace(tmp_path / "t.csv")


@pytest.fixture(scope="module")
def steps(tiny):
    from workloads.trace.measure import measure_step_memory
    from workloads.trace.record import record_trace

    out = {}
    for name, kw in {"vanilla": {"method": "vanilla"},
                     "packed": {"method": "adaptive", "window": 2, "act_bits": 8}}.items():
        kw = dict(kw, seq_len=SEQ, batch=BATCH)
        out[name] = (record_trace(tiny, a_bits=32, **kw), measure_step_memory(tiny, **kw))
    return out


@pytest.mark.parametrize("name", ["vanilla", "packed"])
def test_simulated_peak_within_10_percent_of_the_allocator(steps, name):
    trace, measured = steps[name]
    table = validate_tensors(host_tensors(trace.tensors))
    fp = footprint(table, HW)
    assert measured.end_bytes == 0  # the step gave back all it took
    assert abs(fp.peak_memory_bytes / measured.peak_bytes - 1) <= 0.10
    # The step's own part (above the resident weights, adapters and moments) too.
    resident = table.loc[table["kind"].isin(["weight", "lora_weight", "optimizer"]), "bytes"].sum()
    assert abs((fp.peak_memory_bytes - resident) / measured.step_peak_bytes - 1) <= 0.10
    # Saved activations: the trace's rows are the saved-tensor hooks' storages, byte for byte.
    assert table.loc[table["kind"] == "activation", "bytes"].sum() == measured.saved_bytes
    # The timeline is far below the old rule (every tensor of the table at once).
    assert fp.peak_memory_bytes < 0.5 * fp.all_tensors_bytes


def test_packed_step_holds_less_than_the_exact_one(steps):
    (exact, m_exact), (packed, m_packed) = steps["vanilla"], steps["packed"]
    assert m_packed.saved_bytes < m_exact.saved_bytes
    assert footprint(packed.tensors, HW).peak_memory_bytes < footprint(exact.tensors, HW).peak_memory_bytes


def test_lifetimes_follow_the_step(steps, tiny):
    trace, _ = steps["vanilla"]
    ops, t = trace.ops, trace.tensors
    n = len(ops)
    last_fwd = int(np.flatnonzero(ops["phase"].to_numpy() == "fwd").max())
    first_update = int(np.flatnonzero(ops["phase"].to_numpy() == "update").min())
    whole = t["kind"].isin(["weight", "lora_weight", "optimizer"])
    assert (t.loc[whole, "first_op"] == 0).all() and (t.loc[whole, "last_op"] == n - 1).all()
    act = t[t["kind"] == "activation"]
    assert (act["first_op"] <= last_fwd).all() and (act["last_op"] > last_fwd).all()
    assert (act["last_op"] < first_update).all()  # backward freed every saved tensor
    grads = t[t["kind"] == "gradient"]
    assert (grads["first_op"] > last_fwd).all() and (grads["last_op"] == n - 1).all()
    # Activation gradients come from backward, except the head's (formed in the forward pass).
    grad_rows = (t["kind"] == "activation_grad") & ~t["name"].str.startswith("lm_head")
    assert (t.loc[grad_rows, "first_op"] > last_fwd).all()
    # The head's logits chunk (256 positions x vocab) is a temporary of the head, live while
    # the chunk's loss gradient is formed over it.
    vocab = tiny.model.config.vocab_size
    head = t[(t["kind"] == "temporary") & (t["name"] == "lm_head.temporary")]
    assert (head["numel"] == 256 * vocab).any()
    assert (t["name"] == "lm_head.activation_grad").any()


def test_storages_made_and_freed_inside_one_operator_count_at_their_most_alive():
    """Three 4 KiB temporaries made and freed one after another between two rows never lived
    at once: one row of 4 KiB, not 12 KiB; two alive together make 8 KiB."""
    import torch

    from workloads.trace.liveness import StorageClock

    rows: list[dict] = [{}]
    clock = StorageClock(rows, site=lambda: ("mlp", 0), phase=lambda: "fwd")
    for _ in range(3):
        t = torch.empty(1024)
        clock.created([t])
        del t
    rows.append({})
    a, b = torch.empty(1024), torch.empty(1024)
    clock.created([a, b])
    del a, b
    kept = torch.empty(2048)
    clock.created([kept])
    rows.append({})
    table = clock.temporaries(a_bits=32, update_bits=32)
    within = {r["first_op"]: r["bytes"] for r in table if r["name"] == "mlp.within_op"}
    assert within == {1: 4096, 2: 8192}
    live = [r for r in table if r["name"] == "mlp.temporary"]
    assert [(r["bytes"], r["first_op"], r["last_op"]) for r in live] == [(8192, 2, None)]
    # At 16 device bits a float32 temporary takes half its host bytes.
    assert {r["bytes"] for r in clock.temporaries(a_bits=16, update_bits=32)
            if r["first_op"] == 1} == {2048}
