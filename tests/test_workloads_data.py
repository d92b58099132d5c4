import json

import pytest
import torch

from workloads import data
from workloads.errors import UserError


def test_builtin_splits_are_disjoint_cover_and_stable():
    all_passages = data.passages(data.load_documents())
    splits = {s: data.load_split(s) for s in data.SPLITS}
    assert sum(len(v) for v in splits.values()) == len(all_passages)
    sets = {s: set(v) for s, v in splits.items()}
    assert not sets["eval"] & sets["tuning"] and not sets["eval"] & sets["calibration"]
    assert not sets["tuning"] & sets["calibration"]
    assert splits == {s: data.load_split(s) for s in data.SPLITS}  # deterministic
    chars = {s: sum(map(len, v)) for s, v in splits.items()}
    total = sum(chars.values())
    assert 0.04 < chars["calibration"] / total < 0.2
    assert 0.1 < chars["eval"] / total < 0.35
    assert chars["tuning"] / total > 0.5


def test_passages_respect_target_size():
    doc = "\n\n".join(f"paragraph {i} " + "x" * 300 for i in range(40))
    parts = data.passages([doc], target_chars=1000)
    assert len(parts) > 5
    assert all(len(p) < 1000 + 400 for p in parts)
    assert "".join(parts).replace("\n", "") == doc.replace("\n", "")


def test_user_corpora(tmp_path):
    (tmp_path / "a.txt").write_text("alpha text")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(json.dumps({"text": "beta"}) + "\n\n" + json.dumps({"text": "gamma"}))
    (tmp_path / "ignored.bin").write_bytes(b"\0")
    assert data.load_documents(str(tmp_path)) == ["alpha text", "beta", "gamma"]
    assert data.load_documents(str(tmp_path / "a.txt")) == ["alpha text"]


@pytest.mark.parametrize(
    "content, message",
    [("{not json", "not valid JSON"), (json.dumps({"txt": "x"}), "field 'text'"), (json.dumps([1]), "field 'text'")],
)
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + content + "\n")
    with pytest.raises(UserError, match=rf"bad.jsonl:2: .*{message}"):
        data.load_documents(str(path))


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(UserError, match="not found"):
        data.load_documents(str(tmp_path / "missing.txt"))
    with pytest.raises(UserError, match="no .txt or .jsonl"):
        data.load_documents(str(tmp_path))
    with pytest.raises(UserError, match="unknown split"):
        data.load_split("test")


def test_windows_non_overlapping_and_seeded():
    ids = torch.arange(1000)
    w = data.windows(ids, 64)
    assert w.shape == (15, 64) and torch.equal(w.flatten(), ids[: 15 * 64])
    a = data.windows(ids, 64, shuffle=True, seed=3, max_windows=5)
    b = data.windows(ids, 64, shuffle=True, seed=3, max_windows=5)
    c = data.windows(ids, 64, shuffle=True, seed=4, max_windows=5)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (5, 64)
    with pytest.raises(UserError, match="fewer than one window"):
        data.windows(ids[:10], 64)


def test_tokenize_ends_passages_with_eos(tiny):
    ids = data.tokenize(tiny.tokenizer, ["ab", "c"])
    eos = tiny.tokenizer.eos_token_id
    assert ids.tolist() == [*tiny.tokenizer("ab")["input_ids"], eos, *tiny.tokenizer("c")["input_ids"], eos]


def test_choice_items(tiny):
    texts = data.load_split("eval")
    items = data.choice_items(tiny.tokenizer, texts, n_items=200, seed=0)
    assert len(items) == 200
    labels = [it.label for it in items]
    assert set(labels) == {0, 1, 2, 3}
    stream = data.tokenize(tiny.tokenizer, texts).tolist()
    as_text = ",".join(map(str, stream))
    for it in items[:20]:
        true_span = it.context.tolist() + it.choices[it.label].tolist()
        assert ",".join(map(str, true_span)) in as_text  # context + true continuation is real text
        assert it.choices.shape == (4, 16) and it.context.shape == (32,)
    again = data.choice_items(tiny.tokenizer, texts, n_items=200, seed=0)
    assert all(torch.equal(a.choices, b.choices) and a.label == b.label for a, b in zip(items, again))
