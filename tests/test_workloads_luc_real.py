"""LUC on the real SmolLM2-135M (marked: loads the real model)."""
import pytest
import torch

from workloads.luc import Policy, compress_model
from workloads.luc.layers import decoder_layers, linear_modules

pytestmark = pytest.mark.real_model


def test_real_model_weights_are_on_a_4bit_group32_grid(smollm2):
    """The GGUF Q4_1 model re-quantized at 4 bits, group 32 ("scale + min") comes back
    unchanged, and 50% magnitude pruning removes exactly half of every matrix."""
    before = {n: p.detach().clone() for n, p in smollm2.model.named_parameters()}
    try:
        compress_model(smollm2.model, Policy.uniform(30, 0.0, 4, prune="magnitude", quant="rtn", group_size=32), progress=False)
        for name, p in smollm2.model.named_parameters():
            assert torch.allclose(p, before[name], atol=1e-6, rtol=0), name
        report = compress_model(smollm2.model, Policy.uniform(30, 0.5, 16, prune="magnitude"), progress=False)
        assert all(m.sparsity == 0.5 for lr in report.layers for m in lr.modules)
        assert int((linear_modules(decoder_layers(smollm2.model)[7])["down_proj"].weight == 0).sum()) == 576 * 1536 // 2
    finally:
        with torch.no_grad():
            for name, p in smollm2.model.named_parameters():
                p.copy_(before[name])
