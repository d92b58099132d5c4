"""The trace's vector rows (format 2): the non-matrix work of a real step on the tiny model,
checked against counts derived from the LLaMA decoder's definition, the codec's rule and the
AdamW algorithm."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest

from workloads.trace import FORMAT, Trace, TraceFormatWarning, record_trace
from workloads.tuning import actcomp

SEQ, BATCH, RANK = 16, 2, 4  # SEQ = head_dim: dV and dP have one shape (folding must keep dP apart)
A_BYTES = 2  # a_bits = 16
ROOT = Path(__file__).resolve().parents[1]
LAYER_MODULES = {"input_layernorm", "post_attention_layernorm", "self_attn", "attn_softmax", "act_fn", "mlp",
                 "residual"}


@pytest.fixture(scope="module")
def traces(tiny):
    return {
        "vanilla": record_trace(tiny, method="vanilla", seq_len=SEQ, batch=BATCH, lora_rank=RANK),
        "adaptive": record_trace(tiny, method="adaptive", window=1, exit_layer=2, seq_len=SEQ, batch=BATCH,
                                 lora_rank=RANK),
        "inference": record_trace(tiny, method="inference", exits=[1, 3], seq_len=SEQ, batch=BATCH),
    }


def _bytes(ops):
    return ((ops["read_bytes"] + ops["write_bytes"]) * ops["count"]).sum()


def forward_vector_bytes(cfg, *, batch: int, seq: int, lora: bool, a_bytes: int = 2, weight_bytes: int = 2) -> dict:
    """Bytes one LLaMA decoder layer's forward reads plus writes outside its products, per module,
    from the layer's definition (transformers' LlamaDecoderLayer, peft's LoRA Linear), unfused:

    - RMSNorm of x [T, H]: x^2, mean over H, + eps, rsqrt, x * r, w * (x r): reads 4 TH + 3 T
      values and the weight (H), writes 3 TH + 3 T;
    - RoPE of q [T, heads * d] (and of k): q * cos, -x2, cat(-x2, x1), rot * sin, sum: reads
      5.5 Q + 2 S d (the cos and sin tables), writes 4.5 Q;
    - attention softmax per batch element and query head: reads and writes S x S;
    - two residual adds: read 2 TH, write TH each; SiLU(gate): TI in and out; SiLU * up: 2 TI in,
      TI out;
    - with LoRA, per adapted linear of output width n: scale (T n in and out) and sum with the
      base product (2 T n in, T n out).
    """
    t, h, i, d = batch * seq, cfg.hidden_size, cfg.intermediate_size, cfg.head_dim
    q, k = t * cfg.num_attention_heads * d, t * cfg.num_key_value_heads * d
    norm = (4 * t * h + 3 * t + 3 * t * h + 3 * t) * a_bytes + h * weight_bytes
    rope = sum(5.5 * x + 2 * seq * d + 4.5 * x for x in (q, k)) * a_bytes
    outs = [cfg.num_attention_heads * d, cfg.num_key_value_heads * d, cfg.num_key_value_heads * d, h, i, i, h]
    expected = {
        "input_layernorm": norm, "post_attention_layernorm": norm, "self_attn": rope,
        "attn_softmax": batch * cfg.num_attention_heads * 2 * seq * seq * a_bytes,
        "residual": 2 * 3 * t * h * a_bytes, "act_fn": 2 * t * i * a_bytes, "mlp": 3 * t * i * a_bytes,
    }
    if lora:
        expected["lora"] = sum(5 * t * n for n in outs) * a_bytes
    return {m: int(v) for m, v in expected.items()}


def layer_bytes(trace: Trace, layer: int, phase: str) -> dict:
    v = trace.vectors()
    v = v[(v["layer"] == layer) & (v["phase"] == phase)]
    return {m: int(b) for m, b in v.groupby("module").apply(_bytes, include_groups=False).items()}


def test_vector_rows_exist_for_every_layer_that_ran_and_none_for_the_others(traces):
    ad, va, inf = (traces[m].vectors() for m in ("adaptive", "vanilla", "inference"))
    by_phase = lambda v, p: set(v.loc[v["phase"] == p, "layer"])  # noqa: E731
    # Adaptive, window [2, 2]: layers 0-1 forward only, nothing above the exit (layer 3).
    assert by_phase(ad, "fwd") == {-1, 0, 1, 2}
    assert by_phase(ad, "bwd_input") == {-1, 2} and by_phase(ad, "update") == {-1, 2}
    assert by_phase(va, "fwd") == by_phase(va, "update") == {-1, 0, 1, 2, 3}
    assert by_phase(va, "bwd_input") == {-1, 0, 1, 2, 3}
    assert set(inf["phase"]) == {"fwd"} and by_phase(inf, "fwd") == {-1, 0, 1, 2, 3}
    for v, layers in ((ad, (0, 1, 2)), (va, range(4)), (inf, range(4))):
        for layer in layers:
            assert LAYER_MODULES <= set(v.loc[(v["layer"] == layer) & (v["phase"] == "fwd"), "module"])
    assert {"embed_tokens", "rotary_emb", "norm", "exit_head"} <= set(ad.loc[ad["layer"] == -1, "module"])
    assert set(ad.loc[ad["phase"] == "update", "module"]) == {"adamw", "grad_clip"}
    assert set(va["vector_class"]) == {"add", "exp", "rsqrt", "reduce", "move"}
    for tr in traces.values():
        assert tr.header["vector_unclassified"] == []
        assert "autograd" not in set(tr.vectors()["module"])  # every backward node traced to its module
        assert (tr.vectors()[["M", "N", "K"]] == 0).all().all() and not tr.vectors()["trainable"].any()
        assert tr.ops[["w_bits", "a_bits"]].isin(range(1, 33)).all().all()  # the contract's range


def test_forward_vector_bytes_per_layer_match_the_layer_definition(tiny, traces):
    cfg = tiny.model.config
    plain = forward_vector_bytes(cfg, batch=BATCH, seq=SEQ, lora=False)
    adapted = forward_vector_bytes(cfg, batch=BATCH, seq=SEQ, lora=True)
    for layer in (0, 1):
        assert layer_bytes(traces["adaptive"], layer, "fwd") == plain
    assert layer_bytes(traces["adaptive"], 2, "fwd") == adapted
    for layer in range(4):
        assert layer_bytes(traces["vanilla"], layer, "fwd") == adapted
        assert layer_bytes(traces["inference"], layer, "fwd") == plain


def test_backward_vector_bytes_follow_the_layer_definition(tiny, traces):
    cfg = tiny.model.config
    t, i, s = BATCH * SEQ, cfg.intermediate_size, SEQ
    per_head = BATCH * cfg.num_attention_heads
    for layer in range(4):
        bwd = layer_bytes(traces["vanilla"], layer, "bwd_input")
        # SiLU backward reads the gradient and the input, writes one gradient; the gating product's
        # backward multiplies the gradient by each factor (two reads, one write, twice).
        assert bwd["act_fn"] == 3 * t * i * A_BYTES and bwd["mlp"] == 6 * t * i * A_BYTES
        # Flash backward: recompute P from S and the log-sum-exp row; dS from P and dP.
        assert bwd["attn_softmax"] == per_head * ((2 * s * s + s) + 3 * s * s) * A_BYTES
        assert "residual" not in bwd  # an add's backward passes the gradient on unchanged
    # Same shapes, same work: the middle layers' backward is identical; layer 0 does less (its
    # input norm feeds only the frozen embedding, which needs no gradient).
    middle = [layer_bytes(traces["vanilla"], layer, "bwd_input") for layer in (1, 2, 3)]
    assert middle[0] == middle[1] == middle[2]
    layer0 = layer_bytes(traces["vanilla"], 0, "bwd_input")
    assert "input_layernorm" not in layer0 and sum(layer0.values()) < sum(middle[0].values())
    fwd = sum(layer_bytes(traces["vanilla"], 2, "fwd").values())
    assert fwd < sum(middle[0].values()) < 3 * fwd


def test_update_rows_cover_every_trained_parameter(traces):
    for method in ("vanilla", "adaptive"):
        tr = traces[method]
        grads = tr.tensors[tr.tensors["kind"] == "gradient"]
        v = tr.vectors()
        clip, adamw = v[v["module"] == "grad_clip"], v[v["module"] == "adamw"]
        n = int(grads["numel"].sum())
        # Clipping: one norm over every gradient, one multiply of every gradient.
        assert clip.loc[clip["vector_class"] == "reduce", "elements"].max() == n
        assert (clip.loc[clip["vector_class"] == "add", "elements"] * clip["count"]).sum() == n
        # AdamW divides three times per weight: sqrt(v), its bias correction, m / denominator.
        for layer, numel in grads.groupby("layer")["numel"].sum().items():
            mine = adamw[(adamw["layer"] == layer) & (adamw["vector_class"] == "rsqrt")]
            assert (mine["elements"] * mine["count"]).sum() == 3 * numel
        assert set(adamw["layer"]) == set(grads["layer"])
        # It reads the 16-bit weight and gradient and the two 32-bit moments, and writes all but the
        # gradient: at least (2 + 2 + 4 + 4) bytes in and (2 + 4 + 4) out per weight.
        assert (adamw["read_bytes"] * adamw["count"]).sum() >= 12 * n
        assert (adamw["write_bytes"] * adamw["count"]).sum() >= 10 * n
    assert traces["inference"].vectors()["phase"].eq("fwd").all()


def test_embedding_head_and_loss(tiny, traces):
    cfg = tiny.model.config
    v = traces["adaptive"].vectors()
    emb = v[v["module"] == "embed_tokens"].iloc[0]
    t = BATCH * SEQ
    assert (emb["vector_class"], emb["elements"]) == ("move", t * cfg.hidden_size)
    # The gather reads the token ids (int64) and the rows it copies, not the whole table.
    assert emb["read_bytes"] == t * 8 + t * cfg.hidden_size * A_BYTES
    head = v[v["module"] == "exit_head"]
    logits = BATCH * (SEQ - 1) * cfg.vocab_size
    lse = head[(head["phase"] == "fwd") & (head["elements"] == logits)]
    assert list(lse["vector_class"]) == ["reduce", "exp", "reduce"] and lse["fusable"].iloc[0]
    assert lse["read_bytes"].iloc[0] == logits * A_BYTES
    grad = head[(head["phase"] == "bwd_input") & (head["vector_class"] == "exp")]
    assert (grad["elements"] * grad["count"]).sum() == logits  # softmax - onehot, formed with the loss


def test_rows_are_in_execution_order_and_folded(traces):
    for tr in traces.values():
        ops = tr.ops.reset_index(drop=True)
        for layer in range(4):
            fwd = ops[(ops["layer"] == layer) & (ops["phase"] == "fwd")]
            if fwd.empty:
                continue
            first = fwd.index[0]
            assert ops.loc[first, "module"] == "input_layernorm"
            qk, soft, pv = (fwd.index[fwd["module"] == m][0] for m in ("attn_qk", "attn_softmax", "attn_pv"))
            assert qk + 1 == soft and soft < pv
        # A fusable row reads the whole output of the product just before it: no vector row between.
        for idx in ops.index[ops["fusable"]]:
            above, row = ops.loc[idx - 1], ops.loc[idx]
            assert above["kind"] == "matmul" and above["M"] * above["N"] == row["elements"]
            assert above["count"] == row["count"] and row["read_bytes"] >= row["elements"] * row["a_bits"] // 8
        # Identical consecutive rows are folded into count, except a product a fusable row reads.
        keys = [c for c in ops.columns if c != "count"]
        same = (ops[keys] == ops[keys].shift()).all(axis=1)
        assert not (same & ~ops["fusable"].shift(-1, fill_value=False)).any()


def test_a_bits_set_the_bytes_of_floating_tensors(tiny, traces):
    half = record_trace(tiny, method="adaptive", window=1, exit_layer=2, seq_len=SEQ, batch=BATCH,
                        lora_rank=RANK, a_bits=8)
    assert half.vectors()[["layer", "module", "elements", "count"]].equals(
        traces["adaptive"].vectors()[["layer", "module", "elements", "count"]])
    for module in ("attn_softmax", "act_fn", "mlp", "residual"):
        assert 2 * layer_bytes(half, 1, "fwd")[module] == layer_bytes(traces["adaptive"], 1, "fwd")[module]


def test_packed_activations_are_packed_once_and_unpacked_per_use(tiny, traces, monkeypatch):
    monkeypatch.setattr(actcomp, "MIN_NUMEL", 1)  # the tiny model's activations are below the threshold
    bits = 4
    packed = record_trace(tiny, method="adaptive", window=1, exit_layer=2, seq_len=SEQ, batch=BATCH,
                          lora_rank=RANK, act_bits=bits)
    exact = traces["adaptive"]
    assert not exact.vectors()["module"].isin(["act_pack", "act_unpack"]).any()
    assert packed.matmuls().reset_index(drop=True).equals(exact.matmuls().reset_index(drop=True))
    v = packed.vectors()
    pack = v[(v["module"] == "act_pack") & (v["read_bytes"] > 0)]
    unpack = v[v["module"] == "act_unpack"]
    stored = lambda n: math.ceil(actcomp.stored_bits(n, bits) / 8)  # noqa: E731
    # One pack per storage the tensor table lists at the packed bits, with that row's bytes.
    acts = packed.tensors[(packed.tensors["kind"] == "activation") & (packed.tensors["bits"] == bits)]
    assert sorted(pack["elements"].repeat(pack["count"])) == sorted(acts["numel"])
    assert sorted(pack["write_bytes"].repeat(pack["count"])) == sorted(acts["bytes"])
    assert (pack["read_bytes"] == pack["elements"] * A_BYTES).all()
    assert list(v.loc[v["module"] == "act_pack", "vector_class"].iloc[:3]) == ["reduce", "rsqrt", "move"]
    # Backward unpacks what it reads, each time it reads it.
    assert set(unpack["phase"]) == {"bwd_input"} and (unpack["count"].sum() >= len(acts))
    assert (unpack["read_bytes"] == unpack["elements"].map(stored)).all()
    assert (unpack["write_bytes"] == unpack["elements"] * A_BYTES).all()
    assert set(unpack["elements"]) <= set(acts["numel"])
    # Packing adds work; everything else is as recorded without it.
    rest = ~v["module"].isin(["act_pack", "act_unpack"])
    assert _bytes(v[rest]) == _bytes(exact.vectors())


def test_with_policy_leaves_vector_rows_and_save_load_round_trips(tmp_path, traces):
    from workloads.luc.policy import Policy

    base = traces["vanilla"]
    re = base.with_policy(Policy.uniform(4, 0.5, 4, pattern="2:4", group_size=32, head_bits=8))
    assert re.vectors().equals(base.vectors())
    assert re.macs() == base.macs() and base.macs() == int(
        (base.matmuls()[["M", "N", "K", "count"]].prod(axis=1)).sum())
    path = re.save(tmp_path / "v.csv")
    assert path.read_text().startswith('# {"format": "' + FORMAT)
    back = Trace.load(path)
    assert back.ops.equals(re.ops) and back.header == re.header


def test_version_1_traces_read_as_products_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = Trace.load(ROOT / "tests" / "data" / "tiny_step.csv")
    assert [w.category for w in caught] == [TraceFormatWarning]
    assert "no vector rows" in str(caught[0].message) and "\n" not in str(caught[0].message)
    assert set(old.ops["kind"]) == {"matmul"} and old.vectors().empty and old.vector_bytes() == 0
    assert old.macs() == int((old.ops["M"] * old.ops["N"] * old.ops["K"] * old.ops["count"]).sum()) > 0


def test_trace_bank_names_its_cache_by_trace_format(tiny, tmp_path):
    from dse.hardware import TraceBank
    from workloads.tuning.schedule import Window

    bank = TraceBank(tiny, seq_len=8, batch=1, root=tmp_path)
    # A format-1 trace cached under the old name is not picked up.
    stale = tmp_path / "adaptive-3-3.csv"
    stale.write_text((ROOT / "tests" / "data" / "tiny_step.csv").read_text())
    trace = bank.get("adaptive", Window(3, 3))
    assert trace.header["format"] == FORMAT and not trace.vectors().empty
    from workloads.trace import RECORDER_VERSION

    assert sorted(p.name for p in tmp_path.glob("adaptive-3-3-*.csv")) == [
        f"adaptive-3-3-v{RECORDER_VERSION}.csv", f"adaptive-3-3-v{RECORDER_VERSION}.tensors.csv"]


@pytest.mark.real_model
def test_real_step_vector_bytes_per_layer(smollm2):
    """SmolLM2-135M at batch 4 x 256: a layer's forward vector bytes match the definition (issue
    17 estimated about 34 MB per layer, unfused, 16-bit), and its backward moves more."""
    cfg = smollm2.model.config
    tr = record_trace(smollm2, method="adaptive", window=1, exit_layer=1, seq_len=256, batch=4, lora_rank=8)
    assert layer_bytes(tr, 0, "fwd") == forward_vector_bytes(cfg, batch=4, seq=256, lora=False)
    assert layer_bytes(tr, 1, "fwd") == forward_vector_bytes(cfg, batch=4, seq=256, lora=True)
    fwd, bwd = (sum(layer_bytes(tr, 1, p).values()) for p in ("fwd", "bwd_input"))
    assert fwd < bwd < 3 * fwd
    assert tr.header["vector_unclassified"] == []
