"""The real SmolLM2-135M: a real language model, not noise."""
import math

import pytest
import torch

from workloads import data
from workloads.metrics import model_scorer, perplexity

pytestmark = pytest.mark.real_model


def test_real_model_shape(smollm2):
    cfg = smollm2.model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (9, 3, 49152)
    assert sum(p.numel() for p in smollm2.model.parameters()) == 134_515_008


def test_real_model_beats_shuffled_weights(smollm2):
    windows = data.split_windows(smollm2.tokenizer, "eval", 128, max_windows=8)
    real = perplexity(model_scorer(smollm2.model), windows, progress=False).perplexity
    saved = {n: p.detach().clone() for n, p in smollm2.model.named_parameters()}
    gen = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for p in smollm2.model.parameters():
                flat = p.view(-1)
                flat.copy_(flat[torch.randperm(flat.numel(), generator=gen)])
            shuffled = perplexity(model_scorer(smollm2.model), windows, progress=False).perplexity
    finally:
        with torch.no_grad():
            for n, p in smollm2.model.named_parameters():
                p.copy_(saved[n])
    assert math.isfinite(real) and real < 60
    assert real < shuffled / 10
