"""The trace of a real step on the tiny model: complete (analytic MACs), only what autograd ran,
re-annotated for any policy without torch, readable by the simulator's reader."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from workloads.luc.policy import Policy
from workloads.trace import Trace, record_trace
from workloads.trace.annotate import weight_bytes
from workloads.tuning.lora import LINEAR_MODULES

SEQ, BATCH, RANK = 16, 2, 4


@pytest.fixture(scope="module")
def traces(tiny):
    return {
        "vanilla": record_trace(tiny, method="vanilla", seq_len=SEQ, batch=BATCH, lora_rank=RANK),
        "adaptive": record_trace(tiny, method="adaptive", window=1, exit_layer=2, seq_len=SEQ, batch=BATCH,
                                 lora_rank=RANK),
        "inference": record_trace(tiny, method="inference", exits=[1, 3], seq_len=SEQ, batch=BATCH),
    }


def analytic_forward_macs(cfg, layers: int, lora_layers: int, heads: int) -> int:
    """Linear + attention + LoRA + head MACs of a forward pass, from the config alone."""
    t = BATCH * SEQ
    h, i, hd = cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]  # (in, out)
    linear = t * sum(a * b for a, b in shapes)
    attention = BATCH * cfg.num_attention_heads * 2 * SEQ * SEQ * hd
    lora = t * RANK * sum(a + b for a, b in shapes)
    head = BATCH * (SEQ - 1) * h * cfg.vocab_size
    return layers * (linear + attention) + lora_layers * lora + heads * head


def test_forward_macs_equal_the_analytic_count(tiny, traces):
    cfg = tiny.model.config
    assert traces["vanilla"].macs("fwd") == analytic_forward_macs(cfg, 4, 4, 1)
    assert traces["adaptive"].macs("fwd") == analytic_forward_macs(cfg, 3, 1, 1)  # layers 0..2, LoRA in 2
    assert traces["inference"].macs("fwd") == analytic_forward_macs(cfg, 4, 0, 2)  # two exit heads


def test_adaptive_has_backward_only_in_the_window_and_nothing_above_the_exit(traces):
    ops = traces["adaptive"].matmuls()
    assert ops["layer"].max() == 2
    bwd = ops[ops["phase"] != "fwd"]
    assert set(bwd["layer"]) == {2, -1}
    assert set(ops.loc[ops["module"] == "exit_head", "phase"]) == {"fwd", "bwd_input"}
    window = bwd[bwd["layer"] == 2]
    assert set(window.loc[window["phase"] == "bwd_weight", "module"]) == {"lora_A", "lora_B"}
    assert {"attn_qk", "attn_pv"} <= set(window["module"])


def test_vanilla_backward_follows_autograd(traces):
    ops = traces["vanilla"].matmuls()
    base = ops[ops["module"].isin(LINEAR_MODULES)]
    # Frozen base weights never get weight gradients.
    assert not (base["phase"] == "bwd_weight").any()
    # Layer 0's q/k/v read the normed (frozen) embedding: autograd computes no input gradient
    # there; everything after the first adapter does.
    layer0 = base[(base["layer"] == 0) & (base["phase"] == "bwd_input")]
    assert set(layer0["module"]) == {"o_proj", "gate_proj", "up_proj", "down_proj"}
    for layer in (1, 2, 3):
        got = set(base[(base["layer"] == layer) & (base["phase"] == "bwd_input")]["module"])
        assert got == set(LINEAR_MODULES)
    # The LoRA A of layer 0's q/k/v read the embedding too: weight gradient only, so 7 weight
    # gradients but 4 input gradients (o, gate, up, down).
    lora_a0 = ops[(ops["layer"] == 0) & (ops["module"] == "lora_A")]
    assert lora_a0.groupby("phase")["count"].sum().to_dict() == {"bwd_input": 4, "bwd_weight": 7, "fwd": 7}
    assert ops.loc[ops["trainable"], "module"].isin(["lora_A", "lora_B"]).all()


def test_inference_has_no_backward_and_no_training_state(traces):
    tr = traces["inference"]
    assert set(tr.ops["phase"]) == {"fwd"}
    assert set(tr.tensors["kind"]) == {"weight"}
    products = tr.matmuls()
    assert set(products.loc[products["layer"] == -1, "module"]) == {"exit_head", "lm_head"}


def test_linear_and_attention_shapes_follow_the_contract(tiny, traces):
    ops = traces["vanilla"].ops
    t, cfg = BATCH * SEQ, tiny.model.config
    up = ops[(ops["layer"] == 1) & (ops["module"] == "up_proj")].set_index("phase")
    assert tuple(up.loc["fwd", ["M", "K", "N"]]) == (t, cfg.hidden_size, cfg.intermediate_size)
    assert tuple(up.loc["bwd_input", ["M", "K", "N"]]) == (t, cfg.intermediate_size, cfg.hidden_size)
    qk = ops[(ops["layer"] == 1) & (ops["module"] == "attn_qk") & (ops["phase"] == "fwd")].iloc[0]
    assert (qk["M"], qk["K"], qk["N"], qk["count"]) == (SEQ, cfg.head_dim, SEQ, BATCH * cfg.num_attention_heads)


def test_tensor_table_counts_the_whole_model_and_the_window_state(tiny, traces):
    n_params = sum(p.numel() for p in tiny.model.parameters())
    for tr in traces.values():
        assert tr.tensors.loc[tr.tensors["kind"] == "weight", "numel"].sum() == n_params
    ad, va = traces["adaptive"].tensors, traces["vanilla"].tensors
    assert set(ad.loc[ad["kind"] == "gradient", "layer"]) == {2}
    act = lambda t: t.loc[t["kind"] == "activation", "bytes"].sum()  # noqa: E731
    assert 0 < act(ad) < act(va)
    assert set(ad.loc[ad["kind"] == "activation", "layer"]) <= {2, -1}


def test_with_policy_reannotates_without_changing_shapes(tiny, traces):
    policy = Policy.uniform(4, 0.5, 4, pattern="2:4", group_size=32)
    base = traces["vanilla"]
    re = base.with_policy(policy, label="p.json")
    shape_cols = ["layer", "module", "phase", "M", "N", "K", "count", "trainable"]
    assert re.ops[shape_cols].equals(base.ops[shape_cols])
    lin = re.ops["module"].isin(LINEAR_MODULES) & (re.ops["phase"] != "bwd_weight")
    assert (re.ops.loc[lin, "w_bits"] == 4).all() and (re.ops.loc[lin, "sparsity_pattern"] == "2:4").all()
    assert (re.ops.loc[~lin, "weight_sparsity"] == 0).all()
    assert (re.ops.loc[re.ops["module"].isin(["lora_A", "lora_B"]) & (re.ops["phase"] != "bwd_weight"),
                       "w_bits"] == 16).all()
    w = re.tensors[re.tensors["name"] == "layers.1.mlp.up_proj.weight"].iloc[0]
    numel = tiny.model.config.hidden_size * tiny.model.config.intermediate_size
    # 2:4 at 4 bits: half the values, each 4 bits + 2 bits of position, plus 32 bits per 32-weight group.
    assert w["bits"] == 4 and w["bytes"] == (numel // 2 * 6 + numel // 32 * 32) // 8
    assert re.memory_bytes() < base.memory_bytes()
    assert re.header["policy"] == "p.json" and re.header["policy_summary"]["mean_w_bits"] == 4
    # Recording with the policy gives the same trace as re-annotating.
    direct = record_trace(tiny, method="vanilla", seq_len=SEQ, batch=BATCH, lora_rank=RANK, policy=policy,
                          policy_label="p.json")
    assert direct.ops.equals(re.ops) and direct.tensors.equals(re.tensors)
    assert base.with_policy(None).ops.equals(base.ops)


def test_head_bits_annotate_head_products_and_the_embedding(tiny, traces):
    base = traces["adaptive"]
    policy = Policy.uniform(4, 0.0, 4, group_size=32, head_bits=8)
    re = base.with_policy(policy)
    head = re.ops["module"].isin(["lm_head", "exit_head"]) & (re.ops["kind"] == "matmul")
    assert (re.ops.loc[head & (re.ops["phase"] != "bwd_weight"), "w_bits"] == 8).all()
    assert (base.with_policy(Policy.uniform(4, 0.0, 4)).ops.loc[head, "w_bits"] == 16).all()
    emb = re.tensors[re.tensors["name"] == "embed_tokens.weight"].iloc[0]
    assert emb["bits"] == 8 and emb["bytes"] == emb["numel"] + emb["numel"] // 32 * 2  # int8 + a float16 scale / 32
    norm = re.tensors[re.tensors["name"] == "norm.weight"].iloc[0]
    assert norm["bits"] == 16


def test_weight_storage_formats():
    # [8, 128]: one group of 128 per row, a float16 scale and zero point each.
    assert weight_bytes(8, 128, w_bits=16, sparsity=0.0, pattern="dense", group_size=128) == 1024 * 2
    assert weight_bytes(8, 128, w_bits=4, sparsity=0.0, pattern="dense", group_size=128) == 1024 * 4 // 8 + 8 * 4
    # Unstructured and quantized: values of the kept weights plus a bitmap (a pruned weight is
    # not on its group's grid, so the dense layout cannot hold it).
    assert weight_bytes(8, 128, w_bits=4, sparsity=0.7, pattern="unstructured", group_size=128) == \
        -(-(1024 - round(0.7 * 1024)) * 4 // 8) + 1024 // 8 + 8 * 4  # values padded to whole bytes
    # Unquantized: the bitmap only pays off once enough weights are gone.
    assert weight_bytes(8, 128, w_bits=16, sparsity=0.05, pattern="unstructured", group_size=128) == 1024 * 2


def test_record_trace_leaves_the_model_as_it_was(tiny, traces):
    assert not hasattr(tiny.model, "peft_config")
    assert all(p.requires_grad for p in tiny.model.parameters())
    assert tiny.model.config._attn_implementation == "sdpa"
    assert not any("lora" in n for n, _ in tiny.model.named_modules())


def test_save_load_roundtrip_is_read_by_the_simulator(tmp_path, traces):
    from sim import read_trace
    from sim.footprint import live_bytes

    path = traces["adaptive"].save(tmp_path / "step.csv")
    loaded = Trace.load(path)
    assert loaded.header == traces["adaptive"].header
    assert loaded.ops.equals(traces["adaptive"].ops) and loaded.tensors.equals(traces["adaptive"].tensors)
    sim_view = read_trace(path)
    assert sim_view.header["method"] == "adaptive" and len(sim_view.ops) == len(loaded.ops)
    assert live_bytes(sim_view.tensors, len(sim_view.ops)).max() == traces["adaptive"].memory_bytes()
    assert not list(tmp_path.glob("*.csv.*"))  # no temp files left behind


def test_trace_cli(tmp_path, cli_env):
    policy = tmp_path / "policy.json"
    Policy.uniform(4, 0.25, 8).save(policy)
    out = tmp_path / "t.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "workloads.trace", "--model", "tiny", "--method", "adaptive", "--window", "2",
         "--seq-len", "16", "--batch", "2", "--policy", str(policy), "--out", str(out), "--threads", "1",
         "--json"],
        capture_output=True, text=True, env=cli_env, check=True,
    )
    summary = json.loads(proc.stdout)
    assert summary["header"]["window"] == [2, 3] and summary["header"]["policy"] == str(policy)
    assert out.is_file() and (tmp_path / "t.tensors.csv").is_file()
    assert Trace.load(out).matmuls()["w_bits"].isin([8, 16]).all()
    assert summary["vector_rows"] > 0 and all(summary["vector_bytes"][p] > 0 for p in ("fwd", "bwd_input", "update"))
    bad = subprocess.run([sys.executable, "-m", "workloads.trace", "--model", "tiny", "--exit-layer", "7",
                          "--out", str(tmp_path / "x.csv")], capture_output=True, text=True, env=cli_env)
    assert bad.returncode == 2 and "exit-layer" in bad.stderr and not (tmp_path / "x.csv").exists()
