"""Saved-activation packing: exact forward, rounded backward, each storage packed once, and
the device account of a trace follows what the codec packed."""
from __future__ import annotations

import pytest
import torch

from workloads.errors import UserError
from workloads.models import load_model
from workloads.trace.record import record_trace
from workloads.tuning import actcomp, lora
from workloads.tuning.memory import SavedTensorLog
from workloads.tuning.schedule import Window
from workloads.tuning.step import StepPlan, step_loss
from workloads.tuning.train import TuneConfig, tune

IDS = torch.randint(0, 250, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def pack_small(monkeypatch):
    """The tiny model's activations are below the real threshold: pack everything floating."""
    monkeypatch.setattr(actcomp, "MIN_NUMEL", 1)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("numel", [64, 1000, 4096])
@pytest.mark.parametrize("magnitude", [1e-6, 1e-4, 1.0, 1e5])  # gradient-sized to beyond float16's range
def test_quantize_error_is_at_most_half_a_step_and_zeros_stay(bits, numel, magnitude):
    x = torch.randn(numel, generator=torch.Generator().manual_seed(bits)) * magnitude
    x[::7] = 0.0
    packed = actcomp.quantize(x, bits)
    back = actcomp.dequantize(packed)
    assert back.shape == x.shape and back.dtype == x.dtype
    scale = packed.scale.float().repeat_interleave(actcomp.GROUP)[:numel]
    assert torch.all((back - x).abs() <= scale / 2 * (1 + 1e-5))
    assert torch.all(back[::7] == 0) and torch.isfinite(back).all()
    if bits >= 4:  # levels are used, not rounded away (2 bits has only -1, 0, 1)
        assert (back != 0).sum() > 0.5 * (x != 0).sum()
    assert packed.q.abs().max() <= 2 ** (bits - 1) - 1
    assert actcomp.stored_bits(numel, bits) == numel * bits + -(-numel // actcomp.GROUP) * 16


def test_bits_are_checked():
    with pytest.raises(UserError, match="act-bits"):
        actcomp.check_bits(12)
    with pytest.raises(UserError):
        actcomp.ActivationCodec(16)
    with pytest.raises(UserError, match="act-bits"):
        TuneConfig(act_bits=1).validate(4)


def _step_grads(model, codec=None):
    plan = StepPlan.adaptive(Window(1, 3))
    log = SavedTensorLog(exclude=list(model.parameters()), codec=codec)
    with log:
        loss = step_loss(model, IDS, plan)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return loss.item(), grads, log


def test_forward_is_exact_and_gradients_close_but_rounded(pack_small):
    model = lora.attach_lora(load_model("tiny", seed=0).model, [1, 2, 3], rank=4)
    with torch.no_grad():
        for p in lora.lora_parameters(model).values():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.05)
    loss, grads, exact_log = _step_grads(model)
    codec = actcomp.ActivationCodec(8, exclude=list(model.parameters()))
    loss8, grads8, log8 = _step_grads(model, codec)
    assert loss8 == loss  # packing happens after the values are used: the forward is untouched
    num = sum(((grads8[n] - g) ** 2).sum() for n, g in grads.items())
    den = sum((g ** 2).sum() for g in grads.values())
    assert 0 < (num / den) ** 0.5 < 0.05
    packed = [e for e in log8.entries if e.packed_bits == 8]
    assert packed and all(e.nbytes < e.numel * 4 for e in packed)
    # the same storages are counted with and without packing, packed ones at about a quarter
    assert sum(e.numel for e in log8.entries) == sum(e.numel for e in exact_log.entries)
    assert log8.total_bytes < exact_log.total_bytes / 2


def test_a_storage_saved_by_several_ops_is_packed_once(pack_small):
    x = torch.randn(8, 64, requires_grad=True)
    ws = [torch.randn(64, 64) for _ in range(3)]
    codec = actcomp.ActivationCodec(8)
    calls: list[actcomp.View] = []
    with codec:
        h = torch.relu(x * 2.0)
        outs = []
        for w in ws:  # h is saved by all three products, twice as a reshaped view
            view = h if w is ws[0] else h.reshape(2, 4, 64)
            outs.append((view.reshape(8, 64) @ w.requires_grad_()).sum())
        for t in (h, h.reshape(2, 4, 64)):
            calls.append(codec.pack(t))
    assert calls[0].packed is calls[1].packed
    sum(outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_a_reused_address_with_new_values_gets_its_own_pack(pack_small):
    t = torch.randn(4, 64)
    codec = actcomp.ActivationCodec(8)
    first = codec.pack(t)
    t.mul_(3.0)  # same address, same shape, other values
    second = codec.pack(t)
    assert first.packed is not second.packed
    assert torch.allclose(codec.unpack(second), t, atol=float(second.packed.scale.max()))


def test_parameters_are_not_packed(pack_small):
    w = torch.nn.Parameter(torch.randn(64, 64))
    codec = actcomp.ActivationCodec(8, exclude=[w])
    assert codec.pack(w) is w
    assert codec.pack(w.t()) is not None and not isinstance(codec.pack(w.t()), actcomp.View)


def test_tune_with_packed_activations_keeps_less_for_backward(pack_small):
    results = {}
    for bits in (16, 8):
        cfg = TuneConfig(method="adaptive", steps=2, batch_size=2, seq_len=16, lr=1e-3, window=2, num_exits=1,
                         act_bits=bits)
        results[bits] = tune(load_model("tiny", seed=0), cfg, progress=False)
    assert results[8].saved_tensor_bytes < results[16].saved_tensor_bytes / 2
    assert results[8].losses[0] == results[16].losses[0]  # first step: same weights, exact forward
    assert results[8].losses[1] != results[16].losses[1]  # the update came from rounded activations


def test_trace_lists_packed_activations_at_their_bits(pack_small, tiny):
    exact = record_trace(tiny, method="adaptive", window=2, seq_len=16, batch=2)
    packed = record_trace(tiny, method="adaptive", window=2, seq_len=16, batch=2, act_bits=4)
    assert packed.header["act_bits"] == 4 and exact.header["act_bits"] == 16
    # Packing changes memory, not the products (its own work is vector rows: test_workloads_trace_vector).
    assert packed.matmuls().reset_index(drop=True).equals(exact.matmuls().reset_index(drop=True))
    act, act4 = (t.tensors[t.tensors["kind"] == "activation"] for t in (exact, packed))
    assert list(act["numel"]) == list(act4["numel"])
    floats = act4["bits"] == 4
    assert floats.any()
    expected = [-(-actcomp.stored_bits(n, 4) // 8) for n in act4.loc[floats, "numel"]]
    assert list(act4.loc[floats, "bytes"]) == expected
    assert packed.memory_bytes() < exact.memory_bytes()
    # The same weights, adapters, gradients and optimizer state (their lifetimes follow the ops
    # rows, which packing adds to; temporaries differ by the codec's own work).
    kept = ["weight", "lora_weight", "gradient", "optimizer"]
    cols = ["name", "kind", "layer", "numel", "bits", "bytes"]
    weights, weights4 = (t.tensors.loc[t.tensors["kind"].isin(kept), cols].reset_index(drop=True)
                         for t in (exact, packed))
    assert weights.equals(weights4)


def test_real_threshold_keeps_small_statistics_exact():
    assert not actcomp.compressible(torch.randn(4, 9, 256))  # attention log-sum-exp of one layer
    assert not actcomp.compressible(torch.arange(1 << 17))  # integers
    assert actcomp.compressible(torch.randn(4, 256, 576))


def test_views_with_offsets_and_transposes_unpack_to_their_own_values(pack_small):
    base = torch.randn(6, 70)
    codec = actcomp.ActivationCodec(8)
    for view in (base[2:, 3:], base[2:, 3:].t(), base[1], base.expand(2, 6, 70)):
        back = codec.unpack(codec.pack(view))
        assert back.shape == view.shape
        assert torch.allclose(back, view, atol=float(base.abs().max()) / 127)


def test_the_heads_saved_loss_gradient_stays_exact(pack_small, tiny):
    model = lora.attach_lora(load_model("tiny", seed=0).model, [2, 3], rank=4)
    codec = actcomp.ActivationCodec(8, exclude=list(model.parameters()))
    log = SavedTensorLog(exclude=list(model.parameters()), codec=codec,
                         where=lambda: ("head", -1))  # every save labelled; the head's is the last
    with log:
        step_loss(model, IDS, StepPlan.adaptive(Window(2, 3)))
    assert log.entries[-1].packed_bits is None and log.entries[-1].is_float
    assert any(e.packed_bits == 8 for e in log.entries[:-1])
