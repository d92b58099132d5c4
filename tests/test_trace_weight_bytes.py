"""The bytes a product reads for its weight equal the packed tensor's bytes (issue 20, kind 2,
in the simulator's per-op traffic): real compressed weights of the tiny model are packed
(``workloads.luc.pack``), and every product row that reads one, forward and backward, carries
exactly those bytes in ``weight_bytes``, which ``sim`` charges as operand B, byte for byte, on
every hardware sparsity model; for every pattern, bit width and group size. Traces without
the column still read (the hardware's storage model then applies, as before)."""
from __future__ import annotations

import copy
import re
import shutil

import numpy as np
import pandas as pd
import pytest

import sim
from sim.errors import TraceError
from sim.trace import read_trace, validate_ops
from workloads import data as data_mod
from workloads.luc.compress import compress_model
from workloads.luc.layers import decoder_layers, linear_modules
from workloads.luc.pack import pack_weight, packed_bytes
from workloads.luc.policy import HEAD_GROUP, LayerPolicy, Policy
from workloads.trace import Trace, record_trace

HW = ["hwconfigs/edge_llm.yaml", "hwconfigs/orin_nano.yaml", "hwconfigs/mobile_npu.yaml",
      "hwconfigs/eyeriss.yaml"]  # unstructured skipping, 2:4 skipping, compressed storage, none
# (prune, quant, pattern, per-layer (sparsity, bits), group, head_bits): every pattern, bit
# widths 2..8 and 16, groups that divide the widths, that do not (100), and per-channel.
POLICIES = [
    ("magnitude", "rtn", "unstructured", [(0.0, 4)] * 4, 128, 16),
    ("magnitude", "rtn", "unstructured", [(0.0, 4)] * 4, 100000, 16),
    ("wanda", "rtn", "unstructured", [(0.5, 2), (0.3, 4), (0.0, 16), (0.7, 6)], 100, 8),
    ("sparsegpt", "rtn", "2:4", [(0.5, 4), (0.5, 3), (0.0, 5), (0.5, 16)], 32, 4),
    ("wanda", "rtn", "4:8", [(0.5, 8), (0.5, 2), (0.5, 16), (0.0, 4)], 48, 16),
    ("magnitude", "rtn", "unstructured", [(0.05, 16), (0.37, 16), (0.9, 4), (0.2, 7)], 64, 16),
]


@pytest.fixture(scope="module")
def step(tiny):
    """A vanilla tuning step (LoRA on every layer: fwd and bwd_input rows read every weight)."""
    return record_trace(tiny, method="vanilla", seq_len=16, batch=1)


@pytest.fixture(scope="module")
def calib(tiny):
    return data_mod.split_windows(tiny.tokenizer, "calibration", 32, max_windows=4)


def _packed_weights(model, policy: Policy) -> dict[tuple[int, str], int]:
    """``(layer, module) -> bytes`` of the packed compressed weights (head at ``(-1, lm_head)``)."""
    out = {}
    for i, layer in enumerate(decoder_layers(model)):
        lp = policy.layers[i]
        for name, mod in linear_modules(layer).items():
            w = mod.weight.detach()
            keep = (w != 0) if lp.sparsity > 0 else None
            out[(i, name)] = pack_weight(w, bits=lp.w_bits, group_size=policy.group_size, keep=keep,
                                         pattern=policy.pattern).nbytes
    head = model.get_input_embeddings().weight.detach()
    out[(-1, "lm_head")] = (pack_weight(head, bits=policy.head_bits, group_size=HEAD_GROUP, symmetric=True).nbytes
                            if policy.head_bits < 16 else head.numel() * 2)
    return out


@pytest.mark.parametrize("case", range(len(POLICIES)))
def test_products_read_the_packed_bytes_of_their_weight(tiny, step, calib, case):
    prune, quant, pattern, layers, group, head_bits = POLICIES[case]
    policy = Policy({i: LayerPolicy(s, b) for i, (s, b) in enumerate(layers)}, pattern=pattern, prune=prune,
                    quant=quant, group_size=group, head_bits=head_bits)
    model = copy.deepcopy(tiny.model)
    compress_model(model, policy, calib, progress=False)
    packed = _packed_weights(model, policy)
    ops = step.with_policy(policy).ops
    reads = ops[(ops["kind"] == "matmul") & ops["phase"].isin(["fwd", "bwd_input"])
                & ops["module"].isin([m for _, m in packed])]
    assert set(reads["phase"]) == {"fwd", "bwd_input"}
    expected = [packed[(int(layer), m) if m != "lm_head" else (-1, m)]
                for layer, m in zip(reads["layer"], reads["module"], strict=True)]
    assert reads["weight_bytes"].tolist() == expected
    # The simulator charges exactly those bytes for operand B, on every sparsity model.
    for hw in HW:
        res = sim.simulate_trace(reads, hw).ops
        a_bits = res["a_bits"].to_numpy()
        a_and_out = (res["M"] * res["K"] + res["M"] * res["N"]).to_numpy() * a_bits // 8
        weight = res["compulsory_bytes"].to_numpy() / res["count"].to_numpy() - a_and_out
        assert weight.tolist() == expected, hw
    # Group scales are not free: a quantized weight reads more than its codes.
    quantized = reads["w_bits"] < 16
    codes = np.ceil(reads["N"] * reads["K"] * (1 - reads["weight_sparsity"]) * reads["w_bits"] / 8)
    assert (reads.loc[quantized, "weight_bytes"] > codes[quantized]).all()


def test_weight_bytes_equal_the_tensor_table(step):
    """Every weight a product reads is charged the same in the tensor table (memory) and in the
    ops table (traffic): LoRA adapters, the head and the compressed linears alike."""
    policy = Policy({i: LayerPolicy(0.3, 3) for i in range(4)}, prune="wanda", group_size=48, head_bits=6)
    trace = step.with_policy(policy)
    tensors = trace.tensors.set_index("name")["bytes"]
    ops = trace.ops
    reads = ops[ops["weight_bytes"] > 0]
    assert set(reads["module"]) >= {"q_proj", "down_proj", "lora_A", "lora_B", "lm_head"}
    lora_bytes = set(trace.tensors.loc[trace.tensors["kind"] == "lora_weight", "bytes"])
    for layer, module, n, k, got in zip(reads["layer"], reads["module"], reads["N"], reads["K"],
                                        reads["weight_bytes"], strict=True):
        if module in ("lora_A", "lora_B"):  # 16-bit adapters, one per linear: by shape
            assert got == n * k * 2 and got in lora_bytes, (layer, module)
            continue
        name = "embed_tokens.weight" if module == "lm_head" else \
            next(n for n in tensors.index if n.startswith(f"layers.{layer}.") and n.endswith(f".{module}.weight"))
        assert got == tensors[name], (layer, module, name)
    # Activations as operand B carry no weight bytes, and no vector row does.
    assert (ops.loc[ops["phase"] == "bwd_weight", "weight_bytes"] == 0).all()
    assert (ops.loc[ops["kind"] == "vector", "weight_bytes"] == 0).all()


def test_issue_numbers_in_the_product():
    """4-bit dense q_proj 64x64 at group 128 reads 2,304 bytes (2,048 of codes and 64 float16
    scale + zero pairs), as the tensor table charges it, not the 2,048 of codes alone."""
    ops = pd.DataFrame([{"layer": 0, "module": "q_proj", "phase": "fwd", "M": 16, "N": 64, "K": 64,
                         "weight_sparsity": 0.0, "sparsity_pattern": "dense", "w_bits": 4, "a_bits": 16,
                         "trainable": False, "count": 1, "weight_bytes": packed_bytes(64, 64, bits=4,
                                                                                       group_size=128)}])
    with_bytes = sim.simulate_trace(ops, HW[0]).ops.iloc[0]
    without = sim.simulate_trace(ops.drop(columns="weight_bytes"), HW[0]).ops.iloc[0]
    a_and_out = (16 * 64 + 16 * 64) * 2
    assert with_bytes["compulsory_bytes"] - a_and_out == 2304
    assert without["compulsory_bytes"] - a_and_out == 2048  # the hardware's model: codes only


def test_traces_without_the_column_still_read(tmp_path):
    old = read_trace("tests/data/tiny_step_v2.csv")
    assert (old.ops["weight_bytes"] == 0).all()
    for name in ("tiny_step_v2.csv", "tiny_step_v2.tensors.csv"):
        shutil.copy(f"tests/data/{name}", tmp_path / name)
    loaded = Trace.load(tmp_path / "tiny_step_v2.csv")
    assert (loaded.ops["weight_bytes"] == 0).all()
    # Saved again, the column is written and reads back.
    again = Trace.load(loaded.save(tmp_path / "again.csv"))
    assert "weight_bytes" in pd.read_csv(tmp_path / "again.csv", comment="#").columns
    assert (again.ops["weight_bytes"] == 0).all()


@pytest.mark.parametrize(("row", "value", "message"), [
    (0, -1, "column weight_bytes must be an integer >= 0 (got -1)"),
    (0, 1.5, "column weight_bytes must be an integer >= 0 (got 1.5)"),
    ("vector", 8, "column weight_bytes must be 0 when kind is vector (got 8)"),
])
def test_bad_weight_bytes_is_one_line(row, value, message):
    ops = read_trace("tests/data/tiny_step_v2.csv").ops.copy()
    i = int(np.flatnonzero(ops["kind"] == "vector")[0]) if row == "vector" else row
    ops["weight_bytes"] = ops["weight_bytes"].astype(object)
    ops.loc[i, "weight_bytes"] = value
    with pytest.raises(TraceError, match=re.escape(f"row {i + 1}: {message}")):
        validate_ops(ops)
