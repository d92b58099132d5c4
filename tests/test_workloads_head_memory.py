"""The chunked head holds one chunk of logits at a time (review of issue 19's memory work): the
logits of a chunk are freed before the next chunk's are made, in the real step as the trace's
liveness timeline records it."""
from __future__ import annotations

import numpy as np
import torch
from transformers import LlamaForCausalLM

from sim.footprint import live_bytes
from workloads.models import LoadedModel, byte_tokenizer, tiny_config
from workloads.trace import record_trace
from workloads.tuning.head import DEFAULT_CHUNK

VOCAB = 4096  # wide enough that a chunk of logits stands out among the step's tensors


def test_the_chunked_head_keeps_one_chunk_of_logits_alive():
    torch.manual_seed(0)
    model = LlamaForCausalLM(tiny_config(vocab_size=VOCAB, num_layers=1)).eval()
    loaded = LoadedModel(model, byte_tokenizer(), "tiny-wide", "random")
    # 4 x 127 = 508 predicted positions: two chunks of 256 and 252.
    trace = record_trace(loaded, method="vanilla", seq_len=128, batch=4, a_bits=32)
    tensors = trace.tensors
    logits = tensors[tensors["kind"].isin(["temporary", "activation_grad"])
                     & (tensors["numel"] >= (4 * 127 - DEFAULT_CHUNK) * VOCAB)]
    assert len(logits) >= 2, "both chunks' logits are in the tensor table"
    live = live_bytes(logits, len(trace.ops))
    chunk_bytes = DEFAULT_CHUNK * VOCAB * 4
    assert np.max(live) <= chunk_bytes, f"{np.max(live) / chunk_bytes:.2f} chunks of logits live at once"
