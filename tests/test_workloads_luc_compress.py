"""Pruning and fake quantization of the tiny model: exact sparsity, N:M structure, grids,
zeros that stay zero, and error-aware methods beating their simple counterparts."""
import copy

import pytest
import torch

from workloads import data
from workloads.errors import UserError
from workloads.luc.calibration import capture_layer_inputs, collect_stats
from workloads.luc.compress import compress_model, compress_weight
from workloads.luc.layers import decoder_layers, input_groups, linear_modules
from workloads.luc.policy import HEAD_GROUP, Policy
from workloads.luc.quantize import absmax_quantize, rtn_quantize

SEQ = 64


@pytest.fixture(scope="module")
def calib(tiny):
    return data.split_windows(tiny.tokenizer, "calibration", SEQ, max_windows=8)


@pytest.fixture(scope="module")
def layer0_stats(tiny, calib):
    """Calibration inputs and input statistics (with Hessians) of the tiny model's layer 0."""
    layer = decoder_layers(tiny.model)[0]
    inputs = capture_layer_inputs(tiny.model, calib)
    modules = linear_modules(layer)
    groups = input_groups(layer, inputs.hidden, inputs.kwargs)
    stats = collect_stats(layer, inputs, modules, groups, hessian=True)
    return modules, stats


def fresh(tiny):
    return copy.deepcopy(tiny.model)


def output_error(weight, new, stats):
    """||(W' - W) X||^2 over the calibration tokens, from the Hessian 2/n X^T X."""
    delta = (new - weight.detach().float()).double()
    return float(torch.einsum("ij,jk,ik->", delta, stats.hessian.double(), delta))


def test_input_groups_follow_execution_order(tiny, calib):
    inputs = capture_layer_inputs(tiny.model, calib[:1])
    groups = input_groups(decoder_layers(tiny.model)[0], inputs.hidden, inputs.kwargs)
    assert groups == [["q_proj", "k_proj", "v_proj"], ["o_proj"], ["gate_proj", "up_proj"], ["down_proj"]]


@pytest.mark.parametrize("prune", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.7])
def test_unstructured_sparsity_is_exact(tiny, calib, prune, sparsity):
    model = fresh(tiny)
    report = compress_model(model, Policy.uniform(4, sparsity, 16, prune=prune), calib, progress=False)
    for layer_report, layer in zip(report.layers, decoder_layers(model)):
        for mod_report in layer_report.modules:
            weight = linear_modules(layer)[mod_report.module].weight
            # Per-row selection rounds per row: at most half a weight per row off.
            assert abs(mod_report.sparsity - sparsity) <= 0.5 / weight.shape[1] + 1e-9
            assert int((weight == 0).sum()) == mod_report.pruned == mod_report.zeros
    assert report.avg_sparsity == pytest.approx(sparsity, abs=0.005)


@pytest.mark.parametrize("prune", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("pattern", ["2:4", "4:8"])
def test_nm_structure_holds(tiny, calib, prune, pattern):
    n, m = map(int, pattern.split(":"))
    model = fresh(tiny)
    report = compress_model(model, Policy.uniform(4, 1 - n / m, 16, prune=prune, pattern=pattern), calib, progress=False)
    assert report.avg_sparsity == pytest.approx(1 - n / m, abs=1e-12)
    for layer in decoder_layers(model):
        for mod in linear_modules(layer).values():
            nonzero = (mod.weight != 0).reshape(mod.weight.shape[0], -1, m).sum(-1)
            assert torch.all(nonzero == n)


@pytest.mark.parametrize("prune,quant", [("wanda", "rtn"), ("wanda", "gptq"), ("sparsegpt", "gptq"), ("magnitude", "gptq")])
@pytest.mark.parametrize("bits", [2, 3, 4])
def test_quantization_grid_and_pruned_zeros(tiny, calib, prune, quant, bits):
    model = fresh(tiny)
    group = 32
    policy = Policy.uniform(4, 0.5, bits, prune=prune, quant=quant, group_size=group)
    report = compress_model(model, policy, calib, progress=False)
    for layer_report, layer in zip(report.layers, decoder_layers(model)):
        for mod_report in layer_report.modules:
            w = linear_modules(layer)[mod_report.module].weight.detach()
            groups = w.reshape(w.shape[0], -1, group)
            # Kept weights sit on at most 2^bits levels per group; pruned ones are not stored.
            levels = max(len(torch.unique(g[g != 0])) for g in groups.reshape(-1, group))
            assert levels <= 2**bits
            # Pruned weights are exact zeros; rounding may add more zeros but never fewer.
            assert mod_report.zeros >= mod_report.pruned == round(0.5 * w.numel())


def test_compress_weight_keeps_pruned_zeros(layer0_stats):
    modules, stats = layer0_stats
    weight = modules["gate_proj"].weight
    for prune in ("magnitude", "wanda", "sparsegpt"):
        for quant in ("rtn", "gptq"):
            new, keep = compress_weight(weight, stats["gate_proj"], sparsity=0.6, w_bits=3, prune=prune, quant=quant)
            assert torch.all(new[~keep] == 0)
            assert int((~keep).sum()) == round(0.6 * weight.numel()) or prune == "wanda"


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_gptq_beats_rtn_on_layer_output(layer0_stats, bits):
    modules, stats = layer0_stats
    for name in ("q_proj", "o_proj", "down_proj"):
        weight, st = modules[name].weight, stats[name]
        rtn, _ = compress_weight(weight, st, sparsity=0.0, w_bits=bits, quant="rtn", group_size=32)
        gptq, _ = compress_weight(weight, st, sparsity=0.0, w_bits=bits, quant="gptq", group_size=32)
        assert output_error(weight, gptq, st) <= output_error(weight, rtn, st)


@pytest.mark.parametrize("pattern,sparsity", [("unstructured", 0.5), ("2:4", 0.5), ("4:8", 0.5)])
def test_sparsegpt_reconstruction_beats_magnitude_and_wanda(layer0_stats, pattern, sparsity):
    modules, stats = layer0_stats
    for name in ("k_proj", "o_proj", "up_proj", "down_proj"):
        weight, st = modules[name].weight, stats[name]
        errors = {
            prune: output_error(weight, compress_weight(weight, st, sparsity=sparsity, w_bits=16, prune=prune, pattern=pattern)[0], st)
            for prune in ("magnitude", "wanda", "sparsegpt")
        }
        assert errors["sparsegpt"] <= errors["magnitude"]
        assert errors["sparsegpt"] <= errors["wanda"]


def test_joint_sparsegpt_gptq_beats_wanda_rtn(layer0_stats):
    modules, stats = layer0_stats
    for name in ("v_proj", "down_proj"):
        weight, st = modules[name].weight, stats[name]
        joint, _ = compress_weight(weight, st, sparsity=0.5, w_bits=3, prune="sparsegpt", quant="gptq", group_size=32)
        simple, _ = compress_weight(weight, st, sparsity=0.5, w_bits=3, prune="wanda", quant="rtn", group_size=32)
        assert output_error(weight, joint, st) < output_error(weight, simple, st)


def test_rtn_is_exact_on_its_own_grid():
    torch.manual_seed(0)
    w = torch.randn(16, 64)
    once = rtn_quantize(w, 3, 16)
    # Weights already on a (lo + k * scale) grid, like the GGUF Q4_1 model, come back unchanged.
    assert torch.allclose(rtn_quantize(once, 3, 16), once, atol=1e-6)
    span = w.reshape(16, 4, 16)
    step = (span.amax(-1) - span.amin(-1)) / 7
    assert torch.all((once - w).abs().reshape(16, 4, 16) <= step[..., None] / 2 + 1e-6)


def test_gptq_leaves_grid_weights_alone(layer0_stats):
    modules, stats = layer0_stats
    grid = rtn_quantize(modules["up_proj"].weight, 4, 32)
    again, _ = compress_weight(grid, stats["up_proj"], sparsity=0.0, w_bits=4, quant="gptq", group_size=32)
    assert torch.allclose(again, grid, atol=1e-5)


def test_embedding_head_untouched_and_dense_policy_is_identity(tiny, calib):
    model = fresh(tiny)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    compress_model(model, Policy.dense(4), calib, progress=False)
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    compress_model(model, Policy.uniform(4, 0.5, 3, prune="sparsegpt", quant="gptq"), calib, progress=False)
    after = dict(model.named_parameters())
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert torch.equal(model.lm_head.weight, before["model.embed_tokens.weight"])  # tied to the embedding
    assert not torch.equal(after["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"])


def test_head_bits_quantize_the_tied_embedding_on_a_symmetric_grid(tiny):
    model = fresh(tiny)
    emb = model.get_input_embeddings().weight
    before = emb.detach().clone()
    compress_model(model, Policy.uniform(4, 0.0, 16, prune="magnitude", quant="rtn", head_bits=4), None, progress=False)
    assert model.lm_head.weight is emb  # still tied: quantized once
    groups = emb.detach().reshape(-1, HEAD_GROUP)
    scale = (before.reshape(-1, HEAD_GROUP).abs().amax(1, keepdim=True) / 7).half().float()
    levels = groups / torch.where(scale > 0, scale, torch.ones_like(scale))
    assert torch.allclose(levels, levels.round(), atol=1e-4) and levels.abs().max() <= 7 + 1e-4
    assert not torch.equal(emb, before)
    assert torch.equal(absmax_quantize(emb, 4, HEAD_GROUP), emb)  # on its grid: unchanged again
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, tiny.model.model.layers[0].mlp.up_proj.weight)


def test_absmax_reproduces_a_q8_0_grid():
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(-127, 128, (8, 64), generator=gen).float()
    q[:, ::32] = 127.0  # every block reaches its bound, as GGUF's max|x| / 127 scale makes it
    d = (torch.rand(8, 2, generator=gen) * 0.01).half().float().repeat_interleave(32, dim=1)
    w = q * d  # de-quantized Q8_0: int8 times a float16 block scale
    assert torch.equal(absmax_quantize(w, 8, 32), w)


def test_per_layer_policy_is_applied(tiny, calib):
    model = fresh(tiny)
    policy = Policy.uniform(4, 0.0, 16, prune="wanda", quant="gptq")
    policy.layers[1] = type(policy.layers[1])(0.6, 4)
    policy.layers[3] = type(policy.layers[3])(0.2, 16)
    report = compress_model(model, policy, calib, progress=False)
    assert [round(s, 2) for s in report.sparsity_by_layer().values()] == [0.0, 0.6, 0.0, 0.2]
    assert [lr.w_bits for lr in report.layers] == [16, 4, 16, 16]


def test_data_free_methods_need_no_calibration(tiny):
    model = fresh(tiny)
    report = compress_model(model, Policy.uniform(4, 0.5, 4, prune="magnitude", quant="rtn"), None, progress=False)
    assert report.avg_sparsity == pytest.approx(0.5) and report.calib_tokens == 0


@pytest.mark.parametrize(
    "policy,needle",
    [
        (Policy.uniform(4, 0.5, 4, prune="wanda"), "need calibration"),
        (Policy.uniform(4, 0.3, 16, prune="magnitude", pattern="2:4"), "fixes sparsity at 0.5"),
        (Policy.uniform(4, 0.5, 16, prune="obs"), "prune must be one of"),
        (Policy.uniform(3, 0.5, 16, prune="magnitude"), "the model has 4"),
    ],
)
def test_bad_policies_are_user_errors(tiny, policy, needle):
    with pytest.raises(UserError, match=needle):
        compress_model(fresh(tiny), policy, None, progress=False)
