"""Issue 20, kind 1: every reader of a user's file decodes the same way (common.textfile): BOMs
honoured, else strict UTF-8 with the byte offset in the error, CRLF normalized, binaries refused.
The same text in each encoding gives identical tokens and perplexity, policies, configs, traces."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.textfile import decode_text, file_problem, read_text

ROOT = Path(__file__).resolve().parents[1]
# (name, encoder): the BOM'd encodings Windows and editors write, plus plain UTF-8.
ENCODINGS = {
    "utf-8": lambda t: t.encode("utf-8"),
    "utf-8-sig": lambda t: t.encode("utf-8-sig"),
    "utf-16le-bom": lambda t: b"\xff\xfe" + t.encode("utf-16-le"),  # PowerShell's `>`
    "utf-16be-bom": lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
    "utf-32le-bom": lambda t: b"\xff\xfe\x00\x00" + t.encode("utf-32-le"),
    "utf-32be-bom": lambda t: b"\x00\x00\xfe\xff" + t.encode("utf-32-be"),
}
TEXT = "Caf\u00e9 \u2713 na\u00efve \U0001f600\nsecond line\n\nthird paragraph\n"


def _write(path: Path, text: str, encoding: str, *, crlf: bool) -> Path:
    path.write_bytes(ENCODINGS[encoding](text.replace("\n", "\r\n") if crlf else text))
    return path


@pytest.mark.parametrize("crlf", [False, True])
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_every_bom_and_line_end_decodes_to_the_same_text(encoding, crlf):
    data = ENCODINGS[encoding](TEXT.replace("\n", "\r\n") if crlf else TEXT)
    assert decode_text(data, source="x.txt") == TEXT


def test_a_lone_cr_is_a_line_end():
    assert decode_text(b"a\rb\r\nc\n", source="x") == "a\nb\nc\n"


@pytest.mark.parametrize(("data", "needles"), [
    ("caf\u00e9".encode("latin-1"), ("x.txt: not UTF-8 text: byte 0xe9 at offset 3", "save it as UTF-8")),
    (b"ok\n" * 1000 + b"\xc3(", ("byte 0xc3 at offset 3000",)),
    ("plain words".encode("utf-16-le"), ("apparently UTF-16LE text without a byte-order mark",)),
    ("plain words".encode("utf-16-be"), ("apparently UTF-16BE text without a byte-order mark",)),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ("a binary file (NUL byte at offset 8)", "not a text corpus")),
    (b"\xff\xfeh\x00i", ("not UTF-16LE text although it starts with a UTF-16LE byte-order mark", "offset 4")),
    (b"\xef\xbb\xbfok\x00", ("a binary file (NUL character 2",)),
])
def test_undecodable_bytes_are_one_line_naming_file_and_offset(data, needles):
    with pytest.raises(ValueError) as info:
        decode_text(data, source="x.txt", what="text corpus")
    message = str(info.value)
    assert "\n" not in message and message.startswith("x.txt: ")
    for needle in needles:
        assert needle in message, message


def test_file_problem_words(tmp_path):
    (tmp_path / "f").write_text("x")
    assert file_problem(tmp_path / "f") is None
    assert file_problem(tmp_path) == "is a folder, not a file"
    assert file_problem(tmp_path / "nope") == "not found"
    assert read_text(tmp_path / "f") == "x"


@pytest.fixture(scope="module")
def corpus_text() -> str:
    from pydoc_data.topics import topics

    names = sorted(topics)[:60]
    return "\n\n".join(topics[n] for n in names)


def test_same_corpus_in_every_encoding_gives_identical_tokens_and_perplexity(tiny, tmp_path, corpus_text):
    """The issue's input: a UTF-16LE corpus with a BOM and CRLF line ends (PowerShell's `>`)
    used to be read as garbage with exit code 0."""
    from workloads import data as data_mod
    from workloads.evaluate import evaluate

    results = {}
    for encoding in ENCODINGS:
        for crlf in (False, True):
            path = _write(tmp_path / f"corpus-{encoding}-{crlf}.txt", corpus_text, encoding, crlf=crlf)
            assert data_mod.load_documents(str(path)) == [corpus_text]
            r = evaluate(tiny, data=str(path), seq_len=64, max_windows=6, mc_items=0, progress=False)
            results[(encoding, crlf)] = (r["tokens"], r["windows"], r["perplexity"])
    assert len(set(results.values())) == 1, results
    tokens, windows, _ = results[("utf-8", False)]
    assert windows == 6 and tokens > 0


def test_jsonl_in_utf16_gives_the_same_documents(tmp_path):
    from workloads import data as data_mod

    lines = "".join(json.dumps({"text": t}) + "\n" for t in ("first\r\ndoc", "second \u00e9"))
    docs = {enc: data_mod.load_documents(str(_write(tmp_path / f"{enc}.jsonl", lines, enc, crlf=True)))
            for enc in ENCODINGS}
    assert all(d == ["first\ndoc", "second \u00e9"] for d in docs.values()), docs


def test_policy_json_in_every_encoding_loads_the_same_policy(tmp_path):
    from workloads.luc.policy import Policy

    policy = Policy.uniform(4, 0.5, 4, group_size=64)
    text = json.dumps(policy.to_dict(), indent=1)
    for enc in ENCODINGS:
        loaded = Policy.load(_write(tmp_path / f"{enc}.json", text, enc, crlf=True))
        assert loaded.to_dict() == policy.to_dict(), enc


def test_hw_yaml_and_traces_in_every_encoding_read_the_same(tmp_path):
    import sim
    from workloads.trace import Trace

    hw_text = (ROOT / "hwconfigs" / "edge_llm.yaml").read_text(encoding="utf-8")
    base_hw = sim.load_hw(ROOT / "hwconfigs" / "edge_llm.yaml")
    ops_text = (ROOT / "tests" / "data" / "tiny_step_v2.csv").read_text(encoding="utf-8")
    tensors_text = (ROOT / "tests" / "data" / "tiny_step_v2.tensors.csv").read_text(encoding="utf-8")
    base = sim.read_trace(ROOT / "tests" / "data" / "tiny_step_v2.csv")
    for enc in ENCODINGS:
        hw = sim.load_hw(_write(tmp_path / f"{enc}.yaml", hw_text, enc, crlf=True))
        assert hw == base_hw, enc
        folder = tmp_path / enc
        folder.mkdir()
        ops = _write(folder / "step.csv", ops_text, enc, crlf=True)
        _write(folder / "step.tensors.csv", tensors_text, enc, crlf=True)
        trace = sim.read_trace(ops)
        assert trace.header == base.header and trace.ops.equals(base.ops) and trace.tensors.equals(base.tensors), enc
        ours = Trace.load(ops)
        assert ours.header == base.header and len(ours.ops) == len(base.ops), enc


def test_evaluate_cli_refuses_utf16_without_bom_in_one_line(tmp_path, capsys, corpus_text):
    from workloads.evaluate import main

    path = tmp_path / "corpus.txt"
    path.write_bytes(corpus_text.encode("utf-16-le"))
    with pytest.raises(SystemExit) as err:
        main(["--model", "tiny", "--data", str(path), "--seq-len", "64", "--max-windows", "2", "--mc-items", "0"])
    assert err.value.code == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and "UTF-16LE text without a byte-order mark" in line and str(path) in line
