"""Any Hugging Face decoder traced and tuned correctly (issue 23, part 2).

Tiny random models of six architectures, built from transformers' own config classes (nothing
downloaded), each with the feature that sets it apart: Qwen2 (q/k/v biases, untied head),
Mistral (GQA, a sliding window shorter than the sequence), Gemma (tied, GeGLU, one KV head, a
head_dim that is not hidden / heads, a scaled embedding), Phi-3 (fused qkv_proj and
gate_up_proj), GPT-2 (Conv1D, learned positions, LayerNorm), OPT (ReLU, learned positions,
project_in / project_out). For each: the forward MACs of the trace equal a count from the
config alone, fused projections are one product of their real shape, the vector rows show the
architecture's norm and activation, LoRA lands on the layer's own linear modules, and tuning
runs. Architectures the recorder cannot follow fail with one line and no trace.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import transformers as hf
from torch.utils.flop_counter import FlopCounterMode

import workloads.architecture as arch_module
from workloads.architecture import architecture
from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.models import LoadedModel, byte_tokenizer, load_model
from workloads.trace import Trace, record_trace
from workloads.tuning import lora
from workloads.tuning.forward import run_layers
from workloads.tuning.head import exit_stats
from workloads.tuning.train import TuneConfig, tune

VOCAB, LAYERS, SEQ, BATCH, RANK = 300, 3, 12, 2, 4
EXITS = [1, 2]


def _configs() -> dict[str, Callable[[], hf.PretrainedConfig]]:
    common = dict(vocab_size=VOCAB, num_hidden_layers=LAYERS, max_position_embeddings=64, bos_token_id=0,
                  eos_token_id=0)
    return {
        "qwen2": lambda: hf.Qwen2Config(hidden_size=64, intermediate_size=160, num_attention_heads=4,
                                        num_key_value_heads=2, tie_word_embeddings=False, **common),
        "mistral": lambda: hf.MistralConfig(hidden_size=64, intermediate_size=160, num_attention_heads=4,
                                            num_key_value_heads=2, head_dim=16, sliding_window=8, **common),
        "gemma": lambda: hf.GemmaConfig(hidden_size=64, intermediate_size=160, num_attention_heads=4,
                                        num_key_value_heads=1, head_dim=24, **common),
        "phi3": lambda: hf.Phi3Config(hidden_size=64, intermediate_size=160, num_attention_heads=4,
                                      num_key_value_heads=2, pad_token_id=0, **common),
        "gpt2": lambda: hf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=LAYERS, n_head=4, n_positions=64,
                                      bos_token_id=0, eos_token_id=0),
        "opt": lambda: hf.OPTConfig(vocab_size=VOCAB, hidden_size=64, ffn_dim=160, num_hidden_layers=LAYERS,
                                    num_attention_heads=4, max_position_embeddings=64, word_embed_proj_dim=32,
                                    pad_token_id=1, bos_token_id=2, eos_token_id=2),
    }


ARCHS = tuple(_configs())


def build(name: str, seed: int = 0) -> LoadedModel:
    """A tiny random model of architecture ``name`` with the byte tokenizer (259 < VOCAB ids)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = hf.AutoModelForCausalLM.from_config(_configs()[name]()).eval()
    return LoadedModel(model, byte_tokenizer(), name, f"random {name}")


@pytest.fixture(scope="module", autouse=True)
def _collect_garbage_after():
    """Free this module's models before later modules run: a collection during another test's
    tuning steps would lower its resident memory below the baseline that test measures."""
    yield
    gc.collect()


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    return {name: build(name) for name in ARCHS}


@pytest.fixture(scope="module")
def inference(models) -> dict[str, Trace]:
    return {name: record_trace(m, method="inference", exits=EXITS, seq_len=SEQ, batch=BATCH)
            for name, m in models.items()}


@pytest.fixture(scope="module")
def vanilla(models) -> dict[str, Trace]:
    return {name: record_trace(m, method="vanilla", seq_len=SEQ, batch=BATCH, lora_rank=RANK)
            for name, m in models.items()}


def layer_shapes(name: str, cfg: hf.PretrainedConfig) -> list[tuple[str, int, int]]:
    """(label, in, out) of every product module of one decoder layer, from the config alone."""
    if name == "gpt2":
        h = cfg.n_embd
        inner = cfg.n_inner or 4 * h
        return [("c_attn", h, 3 * h), ("attn.c_proj", h, h), ("c_fc", h, inner), ("mlp.c_proj", inner, h)]
    if name == "opt":
        h, f = cfg.hidden_size, cfg.ffn_dim
        return [("k_proj", h, h), ("v_proj", h, h), ("q_proj", h, h), ("out_proj", h, h), ("fc1", h, f),
                ("fc2", f, h)]
    h, i = cfg.hidden_size, cfg.intermediate_size
    hd = getattr(cfg, "head_dim", None) or h // cfg.num_attention_heads
    q, kv = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    if name == "phi3":
        return [("o_proj", q, h), ("qkv_proj", h, q + 2 * kv), ("gate_up_proj", h, 2 * i), ("down_proj", i, h)]
    return [("q_proj", h, q), ("k_proj", h, kv), ("v_proj", h, kv), ("o_proj", q, h), ("gate_proj", h, i),
            ("up_proj", h, i), ("down_proj", i, h)]


def analytic_forward_macs(name: str, cfg: hf.PretrainedConfig, *, layers: int, lora_layers: int, heads: int,
                          rank: int = RANK) -> int:
    """Forward MACs of ``layers`` decoder layers, LoRA (rank ``rank``) on every linear of
    ``lora_layers`` of them, and ``heads`` exit heads over ``BATCH x (SEQ - 1)`` positions."""
    tokens = BATCH * SEQ
    shapes = layer_shapes(name, cfg)
    linear = tokens * sum(a * b for _, a, b in shapes)
    adapters = tokens * rank * sum(a + b for _, a, b in shapes)
    n_heads = cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    attention = BATCH * n_heads * 2 * SEQ * SEQ * hd  # S = Q K^T and O = P V, the causal mask not skipped
    hidden = cfg.hidden_size
    head_in = getattr(cfg, "word_embed_proj_dim", hidden) if name == "opt" else hidden
    head = BATCH * (SEQ - 1) * head_in * cfg.vocab_size
    outside = 0
    if name == "opt" and head_in != hidden:
        outside += tokens * head_in * hidden  # project_in, once
        head += BATCH * (SEQ - 1) * hidden * head_in  # project_out, in every exit head
    return layers * (linear + attention) + lora_layers * adapters + heads * head + outside


@pytest.mark.parametrize("name", ARCHS)
def test_inference_forward_macs_equal_the_analytic_count(name, models, inference):
    cfg = models[name].model.config
    want = analytic_forward_macs(name, cfg, layers=max(EXITS) + 1, lora_layers=0, heads=len(EXITS))
    assert inference[name].macs("fwd") == want
    assert inference[name].macs() == want  # nothing but forward


@pytest.mark.parametrize("name", ARCHS)
def test_vanilla_forward_macs_include_an_adapter_on_every_linear(name, models, vanilla):
    cfg = models[name].model.config
    assert vanilla[name].macs("fwd") == analytic_forward_macs(name, cfg, layers=LAYERS, lora_layers=LAYERS, heads=1)


@pytest.mark.parametrize("name", ARCHS)
def test_every_product_module_is_one_row_of_its_real_shape(name, models, inference):
    """A fused projection (Phi-3's qkv_proj, GPT-2's c_attn) is one product of its full width."""
    ops = inference[name].matmuls()
    shapes = layer_shapes(name, models[name].model.config)
    assert inference[name].header["linear_modules"] == [label for label, _, _ in shapes]
    for layer in range(max(EXITS) + 1):
        rows = ops[(ops["layer"] == layer) & ~ops["module"].isin(["attn_qk", "attn_pv"])]
        got = [(r.module, r.K, r.N, r.M * r.count) for r in rows.itertuples()]
        assert sorted(got) == sorted((label, a, b, BATCH * SEQ) for label, a, b in shapes)


def test_sliding_window_mask_is_the_models_own(models):
    """Mistral's window (8) is shorter than the sequence (12): the hidden states run_layers
    returns are the model's own, so the sliding-window mask was applied."""
    m = models["mistral"].model
    ids = torch.randint(0, 256, (BATCH, SEQ), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        own = m(input_ids=ids, output_hidden_states=True).hidden_states[2]  # after layer 1
        mine = run_layers(m, ids, last_layer=1)[1]
        full = build("mistral").model
        full.config.sliding_window = None  # the same weights, plain causal attention
        causal = run_layers(full, ids, last_layer=1)[1]
    assert torch.allclose(own, mine, atol=1e-5)
    assert not torch.allclose(causal, mine, atol=1e-3)  # the window changed the result


@pytest.mark.parametrize("name", ARCHS)
def test_exit_head_reproduces_the_models_logits(name, models):
    m = models[name].model
    arch = architecture(m)
    ids = torch.randint(0, 256, (BATCH, SEQ), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        top = run_layers(m, ids)[LAYERS - 1]
        logits = arch.head(arch.final(top))
        assert torch.allclose(logits, m(input_ids=ids).logits, atol=1e-4)


RMS_NORM = {"qwen2", "mistral", "gemma", "phi3"}
NORMS = {"gpt2": ("ln_1", "ln_2"), "opt": ("self_attn_layer_norm", "final_layer_norm")}
ACTIVATION = {"gpt2": "act", "opt": "activation_fn", "phi3": "activation_fn"}


def _mlp_width(name: str, cfg: hf.PretrainedConfig) -> int:
    if name == "gpt2":
        return cfg.n_inner or 4 * cfg.n_embd
    return cfg.ffn_dim if name == "opt" else cfg.intermediate_size


def _fwd_vectors(trace: Trace, layer: int, module: str) -> dict[str, int]:
    v = trace.vectors()
    v = v[(v["layer"] == layer) & (v["module"] == module) & (v["phase"] == "fwd")]
    return {cls: int((g["elements"] * g["count"]).sum()) for cls, g in v.groupby("vector_class")}


@pytest.mark.parametrize("name", ARCHS)
def test_vector_rows_follow_the_architecture(name, models, inference):
    """Every operator classified; RMSNorm (a reciprocal square root per row) or LayerNorm (two
    reductions per element); SiLU / GELU (a transcendental per element) or ReLU (none); the
    gating product of a GLU; learned positions added in the decoder's own code."""
    trace, cfg = inference[name], models[name].model.config
    assert trace.header["vector_unclassified"] == []
    tokens, h = BATCH * SEQ, cfg.hidden_size
    norms = NORMS.get(name, ("input_layernorm", "post_attention_layernorm"))
    for norm in norms:
        work = _fwd_vectors(trace, 0, norm)
        if name in RMS_NORM:
            assert work["rsqrt"] == tokens and work["reduce"] == tokens * h
        else:
            assert work == {"reduce": 2 * tokens * h, "add": 4 * tokens * h}
    inner = _mlp_width(name, cfg)
    act = _fwd_vectors(trace, 0, ACTIVATION.get(name, "act_fn"))
    if name == "opt":
        assert act == {"add": tokens * inner}  # ReLU: a comparison, no transcendental
    else:
        assert act["exp"] == tokens * inner  # SiLU, GELU (tanh approximation in Gemma and GPT-2)
    gated = _fwd_vectors(trace, 0, "mlp").get("add", 0)
    assert gated == (tokens * inner if name not in ("gpt2", "opt") else 0)
    decoder = _fwd_vectors(trace, -1, "decoder")  # the decoder's own floating-point work
    if name == "gpt2":
        assert decoder == {"add": tokens * h}  # token + position embedding
    elif name == "opt":  # the same add, after position ids from a cumulative sum over a float mask of ones
        assert decoder == {"add": tokens * h + 2 * tokens, "move": 2 * tokens, "reduce": tokens}
    else:
        assert decoder == {}  # rotary positions: integer position ids only
    if name == "gemma":  # the embedding is scaled by sqrt(hidden)
        assert _fwd_vectors(trace, -1, "embed_tokens")["add"] == tokens * h


EXPECTED_TARGETS = {
    "phi3": {"self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"},
    "gpt2": {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"},
    "opt": {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"},
}
LLAMA_TARGETS = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
                 "mlp.up_proj", "mlp.down_proj"}


@pytest.mark.parametrize("name", ARCHS)
def test_lora_targets_every_linear_of_the_chosen_layers(name):
    loaded = build(name)
    peft_model = lora.attach_lora(loaded.model, [1], rank=RANK)
    try:
        wrapped = {n for n, m in peft_model.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")}
        arch = architecture(peft_model)
        prefix = f"base_model.model.{arch.decoder_path}.{arch.container}.1."
        assert all(n.startswith(prefix) for n in wrapped)
        assert {n[len(prefix):] for n in wrapped} == EXPECTED_TARGETS.get(name, LLAMA_TARGETS)
        # Each adapter has the shape of its product: in -> rank -> out.
        for n in wrapped:
            module = peft_model.get_submodule(n)
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            base = module.base_layer.weight
            fan = (base.shape[0], base.shape[1]) if arch.conv1d else (base.shape[1], base.shape[0])
            assert (a.shape[1], b.shape[0]) == fan and a.shape[0] == b.shape[1] == RANK
    finally:
        lora.detach_lora(peft_model)


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("method", ["vanilla", "adaptive"])
def test_tuning_trains_the_adapters_and_changes_nothing_else(name, method):
    loaded = build(name)
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    config = TuneConfig(method=method, steps=2, batch_size=2, seq_len=16, window=1, exits=[1, 2], lr=1e-2,
                        rank=RANK)
    result = tune(loaded, config, progress=False, account_tensors=False)
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    adapters = lora.lora_parameters(result.model)
    assert any(float(p.detach().abs().sum()) > 0 for n, p in adapters.items() if "lora_B" in n)
    trained_layers = {lora.layer_of(n) for n, p in adapters.items() if "lora_B" in n and float(p.detach().abs().sum()) > 0}
    assert trained_layers == ({0, 1, 2} if method == "vanilla" else {1, 2})
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
            for n, p in result.model.named_parameters() if ".lora_" not in n}
    assert all(torch.equal(before[n], p) for n, p in base.items())


def test_trace_tune_and_evaluate_clis_take_a_model_folder(tmp_path, cli_env):
    folder = tmp_path / "gpt2"
    loaded = build("gpt2")
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    out = tmp_path / "t.csv"
    subprocess.run([sys.executable, "-m", "workloads.trace", "--model", str(folder), "--method", "adaptive",
                    "--window", "1", "--seq-len", "8", "--batch", "1", "--out", str(out)],
                   capture_output=True, text=True, env=cli_env, check=True)
    trace = Trace.load(out)
    assert trace.header["architecture"] == "GPT2LMHeadModel" and "c_attn" in set(trace.ops["module"])
    proc = subprocess.run(
        [sys.executable, "-m", "workloads.tune", "--model", str(folder), "--method", "adaptive", "--steps", "2",
         "--seq-len", "16", "--batch-size", "2", "--window", "1", "--exits", "1,2", "--eval-max-windows", "2",
         "--mc-items", "4", "--threads", "1", "--json"],
        capture_output=True, text=True, env=cli_env, check=True)
    res = json.loads(proc.stdout)
    assert set(res["eval"]["per_exit"]) == {"1", "2"}
    proc = subprocess.run([sys.executable, "-m", "workloads.evaluate", "--model", str(folder), "--seq-len", "16",
                           "--max-windows", "2", "--mc-items", "4", "--threads", "1", "--json"],
                          capture_output=True, text=True, env=cli_env, check=True)
    assert json.loads(proc.stdout)["perplexity"] > 1


def _gemma2() -> hf.PreTrainedModel:
    return hf.AutoModelForCausalLM.from_config(hf.Gemma2Config(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16))


def _bloom() -> hf.PreTrainedModel:  # ALiBi attention: its own baddbmm, not the attention interface
    return hf.AutoModelForCausalLM.from_config(hf.BloomConfig(vocab_size=VOCAB, hidden_size=64, n_layer=2, n_head=4))


def _mamba() -> hf.PreTrainedModel:  # a state-space model: a causal convolution in each layer
    return hf.AutoModelForCausalLM.from_config(hf.MambaConfig(vocab_size=VOCAB, hidden_size=32,
                                                              num_hidden_layers=2, state_size=4))


class _NoLayers(torch.nn.Module):
    config = hf.LlamaConfig(num_hidden_layers=2)


@pytest.mark.parametrize(("build_model", "missing"), [
    (_gemma2, "logit soft-cap"),
    (_bloom, "MACs of matrix products outside nn.Linear / Conv1D modules and the attention interface"),
    (_mamba, "convolution kernels, which have no product rows"),
    (_NoLayers, "no list of 2 decoder layers"),
])
def test_unsupported_architectures_fail_in_one_line_without_a_trace(build_model, missing):
    torch.manual_seed(0)
    loaded = LoadedModel(build_model().eval(), byte_tokenizer(), "x", "random")
    with pytest.raises(UserError) as err:
        record_trace(loaded, method="inference", seq_len=8, batch=1)
    message = str(err.value)
    assert missing in message and "\n" not in message


def test_builtin_tiny_llama_still_has_llamas_modules():
    trace = record_trace(load_model("tiny"), method="inference", seq_len=8, batch=1)
    assert trace.header["linear_modules"] == list(lora.LINEAR_MODULES)
    assert trace.header["head_weights"] == ["embed_tokens.weight"]


def test_a_model_peft_already_wraps_has_the_same_architecture():
    loaded = build("gpt2", seed=3)
    peft_model = lora.attach_lora(loaded.model, [0], rank=RANK)
    try:
        arch_module._LAYOUTS.pop(peft_model.get_base_model())  # forget the layout found before wrapping
        assert architecture(peft_model).product_labels == architecture(build("gpt2").model).product_labels
    finally:
        lora.detach_lora(peft_model)


@pytest.mark.parametrize("name", ["gpt2", "qwen2", "opt"])
def test_a_policy_compresses_the_architectures_own_linears_and_head(name, inference):
    """The header's ``linear_modules`` and ``head_weights`` drive the annotation: GPT-2's
    Conv1D weights and tied ``wte``, Qwen2's untied head; biases and norms stay dense."""
    trace = inference[name]
    policy = Policy.uniform(LAYERS, 0.5, 4, group_size=32, head_bits=8)
    re = trace.with_policy(policy)
    ops = re.matmuls()
    linear = ops["module"].isin(trace.header["linear_modules"])
    assert linear.sum() == len(trace.header["linear_modules"]) * (max(EXITS) + 1)
    assert (ops.loc[linear, "w_bits"] == 4).all() and (ops.loc[linear, "weight_sparsity"] == 0.5).all()
    assert (ops.loc[~linear, "weight_sparsity"] == 0).all()
    assert (ops.loc[ops["module"] == "exit_head", "w_bits"] == 8).all()
    tensors = re.tensors.set_index("name")
    weights = [f"{p}.weight" for p in (architecture(build(name).model).product_labels)]
    in_layers = tensors[tensors["layer"] == 1]
    for path in weights:
        assert in_layers.loc[[n for n in in_layers.index if n.endswith(path)], "bits"].tolist() == [4]
    others = in_layers[~in_layers.index.map(lambda n: any(n.endswith(p) for p in weights))]
    assert len(others) > 0 and (others["bits"] == 16).all()  # norms and biases
    if name == "qwen2":
        assert {n.rsplit(".", 2)[-2] for n in others.index if n.endswith(".bias")} == {"q_proj", "k_proj", "v_proj"}
    for head in trace.header["head_weights"]:
        assert tensors.loc[head, "bits"] == 8


@pytest.mark.parametrize("name", ARCHS)
def test_macs_match_torchs_flop_counter_with_eager_attention(name, inference):
    """A peer count: torch's own ``FlopCounterMode`` over the same inference pass, with the
    model's own eager attention (torch's counter does not count the CPU SDPA kernel). The trace
    recorded through that eager attention has the MACs of the SDPA trace."""
    loaded = build(name)
    loaded.model.set_attn_implementation("eager")
    trace = record_trace(loaded, method="inference", exits=EXITS, seq_len=SEQ, batch=BATCH)
    assert trace.header["attention"] == "eager" and trace.macs() == inference[name].macs()
    ids = torch.randint(0, 256, (BATCH, SEQ), generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        hidden = run_layers(loaded.model, ids, last_layer=max(EXITS), capture=EXITS)
        for e in EXITS:
            exit_stats(loaded.model, hidden[e], ids, exit_layer=e)
    assert counter.get_total_flops() == 2 * trace.macs()


@pytest.mark.parametrize("name", ARCHS)
def test_the_simulator_reads_every_architectures_trace(name, vanilla, tmp_path):
    from sim import simulate_trace

    path = vanilla[name].save(tmp_path / f"{name}.csv")
    summary = simulate_trace(path, Path(__file__).resolve().parents[1] / "hwconfigs" / "edge_llm.yaml").summary()
    assert summary["macs"] == vanilla[name].macs() and summary["latency_s"] > 0
    assert summary["peak_memory_bytes"] == vanilla[name].memory_bytes()


def test_a_tuning_step_is_traced_in_train_mode_with_the_models_dropout(models, inference, vanilla):
    """``tune`` trains GPT-2 with its own dropout (0.1): the tuning trace has its work, the
    inference trace none, and the model keeps its mode."""
    dropouts = {"drop", "resid_dropout", "dropout"}  # embedding, attention output, MLP output
    tokens, h = BATCH * SEQ, models["gpt2"].model.config.n_embd
    fwd = vanilla["gpt2"].vectors()
    fwd = fwd[fwd["phase"] == "fwd"]
    assert set(fwd["module"]) >= dropouts
    per_layer = fwd[(fwd["layer"] == 0) & fwd["module"].isin(dropouts)]
    assert int((per_layer["elements"] * per_layer["count"]).sum()) >= 2 * tokens * h  # two dropouts a layer
    assert not set(inference["gpt2"].vectors()["module"]) & dropouts
    assert not models["gpt2"].model.training
