"""The real SmolLM2-135M: its adaptive-step trace is complete and its final exit is the model."""
from __future__ import annotations

import pytest
import torch

from workloads.metrics import model_scorer
from workloads.trace import record_trace
from workloads.tuning.voting import ExitVoter

pytestmark = pytest.mark.real_model


def test_real_adaptive_trace_and_exit_scorer(smollm2):
    cfg = smollm2.model.config
    seq, batch, rank, window = 32, 1, 8, 4
    tr = record_trace(smollm2, method="adaptive", window=window, exit_layer=20, seq_len=seq, batch=batch,
                      lora_rank=rank)
    t, h, i, hd = batch * seq, cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    shapes = [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]
    per_layer = t * sum(a * b for a, b in shapes) + batch * cfg.num_attention_heads * 2 * seq * seq * hd
    lora = t * rank * sum(a + b for a, b in shapes)
    head = batch * (seq - 1) * h * cfg.vocab_size
    assert tr.macs("fwd") == 21 * per_layer + window * lora + head
    bwd_layers = set(tr.ops.loc[tr.ops["phase"] != "fwd", "layer"])
    assert bwd_layers == {17, 18, 19, 20, -1}
    weights = tr.tensors[tr.tensors["kind"] == "weight"]
    assert weights["numel"].sum() == 134_515_008 and weights["layer"].max() == 29

    ids = torch.randint(0, cfg.vocab_size, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model_scorer(smollm2.model)(ids, 0)
    got = ExitVoter(smollm2.model, [20, 29]).scorer("exit:29")(ids, 0)
    assert torch.allclose(got.logprob, ref.logprob, atol=1e-4)
