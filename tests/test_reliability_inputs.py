"""Reliability of ``python -m workloads.evaluate``'s user inputs: ``--model`` folders, ``--data``
files and folders, and the numeric flags.

Errors raised by the tool itself (``UserError``) end in exactly one stderr line ``error: ...``
and exit code 2, without a traceback. Flag values argparse rejects (``--seq-len 0``, ``--seed
x``) exit 2 with argparse's own message: a usage block followed by one
``python -m workloads.evaluate: error: ...`` line; that form is accepted here (and counted
separately). The tool writes no files, so there is no partial output to check.

Counts go to ``$EDGELLM_RELIABILITY_REPORT`` like ``tests/test_reliability_sim.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from test_reliability_report import Tally
from workloads import data as data_mod
from workloads import evaluate
from workloads.errors import UserError
from workloads.models import load_model

TALLY = Tally(Path(__file__).stem)
tried = TALLY.add


def fuzzed(category: str, *, accepted: bool) -> None:
    """Count a generated input: refused ones are bad inputs, accepted ones valid edge cases."""
    tried(category, "hypothesis", kind="valid_edge_input" if accepted else "bad_input")
SCALE = float(os.environ.get("EDGELLM_FUZZ_SCALE", "1"))
PROG = "python -m workloads.evaluate"
# Small enough that a run which gets past the inputs would take well under a second.
FAST = ["--seq-len", "16", "--max-windows", "2", "--mc-items", "2"]


@pytest.fixture(scope="module", autouse=True)
def _reliability_report() -> Iterator[None]:
    yield
    TALLY.flush()


def fuzz(examples: int) -> settings:
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None,
                    derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def run_main(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``workloads.evaluate.main`` in this process; any other exception fails the test."""
    capsys.readouterr()
    try:
        code = evaluate.main([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert out == "", out
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("error: "), err
    for needle in needles:
        assert needle in err, (needle, err)
    return err.rstrip("\n")


def assert_usage_error(code: int, out: str, err: str, *needles: str) -> str:
    """argparse's form: usage lines, then one ``PROG: error: ...`` line; exit 2."""
    assert "Traceback" not in err, err
    assert code == 2 and out == "", (code, out, err)
    lines = err.rstrip("\n").splitlines()
    assert lines[0].startswith("usage: "), err
    assert lines[-1].startswith(f"{PROG}: error: "), err
    assert not any(": error: " in line for line in lines[:-1]), err
    for needle in needles:
        assert needle in lines[-1], (needle, err)
    return lines[-1]


# ----------------------------------------------------------------------------- --model

@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A saved tiny model and broken variants of it (each a folder a user might pass)."""
    root = tmp_path_factory.mktemp("models")
    tiny = load_model("tiny")
    good = root / "good"
    tiny.model.save_pretrained(good)
    tiny.tokenizer.save_pretrained(good)
    config = json.loads((good / "config.json").read_text())

    def variant(name: str, *, config_text: str | None = None, drop: tuple[str, ...] = (),
                truncate: bool = False) -> Path:
        folder = root / name
        folder.mkdir()
        for f in good.iterdir():
            if f.name not in drop:
                (folder / f.name).write_bytes(f.read_bytes())
        if config_text is not None:
            (folder / "config.json").write_text(config_text)
        if truncate:
            blob = (good / "model.safetensors").read_bytes()
            (folder / "model.safetensors").write_bytes(blob[: len(blob) // 2])
        return folder

    (root / "empty").mkdir()
    (root / "a_file").write_text("not a model")
    (root / "config_is_dir").mkdir()
    (root / "config_is_dir" / "config.json").mkdir()
    only_weights = root / "no_config"
    only_weights.mkdir()
    (only_weights / "model.safetensors").write_bytes((good / "model.safetensors").read_bytes())
    return {
        "missing": root / "missing",
        "a_file": root / "a_file",
        "empty": root / "empty",
        "no_config": only_weights,
        "config_is_dir": root / "config_is_dir",
        "config_not_json": variant("config_not_json", config_text="{not json"),
        "config_a_list": variant("config_a_list", config_text="[1, 2]"),
        "unknown_architecture": variant("unknown_architecture", config_text=json.dumps(
            {**config, "model_type": "no_such_arch"})),
        "no_tokenizer": variant("no_tokenizer", drop=("tokenizer.json", "tokenizer_config.json",
                                                      "special_tokens_map.json")),
        "no_weights": variant("no_weights", drop=("model.safetensors",)),
        "truncated_weights": variant("truncated_weights", truncate=True),
        "wrong_shapes": variant("wrong_shapes", config_text=json.dumps(
            {**config, "hidden_size": 32})),
        "newline\nin_name": root / "newline\nin_name",
        "good": good,
    }


MODEL_CASES = [
    ("missing", "not found"), ("a_file", "is a file, not a model folder"), ("empty", "no config.json"),
    ("no_config", "no config.json"), ("config_is_dir", "no config.json"),
    ("config_not_json", "cannot load"), ("config_a_list", "cannot load"),
    ("unknown_architecture", "cannot load"), ("no_tokenizer", "cannot load"),
    ("no_weights", "cannot load its model"), ("truncated_weights", "cannot load its model"),
    ("wrong_shapes", "cannot load its model"), ("newline\nin_name", "not found"),
]


@pytest.mark.parametrize(("case", "needle"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_model_folders(capsys: pytest.CaptureFixture[str], model_folders: dict[str, Path],
                           case: str, needle: str) -> None:
    res = run_main(capsys, "--model", model_folders[case], *FAST)
    line = assert_one_line_error(*res, needle)
    assert model_folders[case].name.split("\n")[0] in line
    tried("evaluate --model: bad folders")


def test_a_good_folder_still_loads(capsys: pytest.CaptureFixture[str],
                                   model_folders: dict[str, Path]) -> None:
    """The control: the folder the broken ones were made from evaluates (nothing on stderr)."""
    code, out, err = run_main(capsys, "--model", model_folders["good"], *FAST, "--json")
    assert code == 0 and err == "", err
    assert json.loads(out)["tokens"] == 2 * 15


# ----------------------------------------------------------------------------- --data

@pytest.fixture(scope="module")
def data_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    root = tmp_path_factory.mktemp("data")

    def put(name: str, content: str | bytes) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    (root / "empty_dir").mkdir()
    put("other_suffixes/notes.md", "# text\n")
    put("other_suffixes/table.csv", "a,b\n")
    (root / "dir_named_txt" / "x.txt").mkdir(parents=True)
    nested_bad = put("nested/ok.txt", "fine text " * 50)
    put("nested/sub/bad.jsonl", '{"text": "a"}\n{"text": 3}\n')
    # One short passage, in whatever split its hash puts it: too small for evaluation.
    return {
        "missing": root / "missing.txt",
        "empty_string": "",
        "csv": put("corpus.csv", "text\nhello\n"),
        "json": put("corpus.json", '{"text": "hello"}'),
        "no_suffix": put("corpus", "hello"),
        "jsonl_not_json": put("a.jsonl", '{"text": "ok"}\n{text: nope}\n'),
        "jsonl_array": put("b.jsonl", "[1, 2]\n"),
        "jsonl_text_not_string": put("c.jsonl", '{"text": 5}\n'),
        "jsonl_no_text": put("d.jsonl", '{"body": "x"}\n'),
        "jsonl_binary": put("e.jsonl", b"\xff\xfe\x00\x01garbage"),
        "jsonl_utf16": put("f.jsonl", '{"text": "hi"}\n'.encode("utf-16")),
        "empty_txt": put("empty.txt", ""),
        "whitespace_txt": put("space.txt", " \n\n\t \n"),
        "empty_jsonl": put("empty.jsonl", "\n\n"),
        "empty_dir": root / "empty_dir",
        "other_suffixes": root / "other_suffixes",
        "dir_named_txt": root / "dir_named_txt",
        "bad_file_in_folder": nested_bad.parent,
        "too_small": put("small.txt", "One short passage only."),
    }


DATA_CASES = [
    ("missing", "not found"), ("empty_string", "not found"),
    ("csv", "unsupported file type '.csv'"), ("json", "unsupported file type '.json'"),
    ("no_suffix", "unsupported file type"), ("jsonl_not_json", "a.jsonl:2: not valid JSON"),
    ("jsonl_array", "b.jsonl:1: each line needs a string field 'text'"),
    ("jsonl_text_not_string", "c.jsonl:1:"), ("jsonl_no_text", "d.jsonl:1:"),
    ("jsonl_binary", "does not decode"), ("jsonl_utf16", "too small"),
    ("empty_txt", "holds no text"), ("whitespace_txt", "holds no text"),
    ("empty_jsonl", "holds no text"), ("empty_dir", "holds no .txt or .jsonl files"),
    ("other_suffixes", "holds no .txt or .jsonl files"),
    ("dir_named_txt", "holds no .txt or .jsonl files"),
    ("bad_file_in_folder", "bad.jsonl:2:"), ("too_small", "too small"),
]


@pytest.mark.parametrize(("case", "needle"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data(capsys: pytest.CaptureFixture[str], data_inputs: dict[str, Path | str],
                  case: str, needle: str) -> None:
    res = run_main(capsys, "--model", "tiny", "--data", data_inputs[case], *FAST)
    assert_one_line_error(*res, needle)
    tried("evaluate --data: bad files and folders")


def test_unreadable_data_file(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A permission error while reading (root cannot chmod it away, so it is injected)."""
    corpus = tmp_path / "locked.txt"
    corpus.write_text("text " * 100)
    real_read = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == corpus:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    res = run_main(capsys, "--model", "tiny", "--data", corpus, *FAST)
    assert_one_line_error(*res, "cannot read data", "Permission denied")
    tried("evaluate --data: bad files and folders")


@fuzz(150)
@given(lines=st.lists(st.one_of(
    st.text(max_size=30),
    st.dictionaries(st.sampled_from(["text", "body", ""]), st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
        st.lists(st.integers(), max_size=2)), max_size=3).map(json.dumps),
    st.sampled_from(["[]", "null", "1", '"text"', '{"text": ""}', '{"text": "ok"}', "{",
                     '{"text": "a"} trailing'])), max_size=5))
@example(lines=['{"text": "ok"}', "{oops"])
def test_fuzzed_jsonl_lines(tmp_path: Path, lines: list[str]) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    accepted = False
    try:
        docs = data_mod.load_documents(str(path))
    except UserError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg, msg
        assert str(path) in msg or "fuzz.jsonl" in msg, msg
    else:
        accepted = True
        assert docs and all(isinstance(d, str) and d.strip() for d in docs)
    fuzzed("evaluate --data: fuzzed .jsonl lines (load_documents)", accepted=accepted)


@fuzz(60)
@given(blob=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".txt"]))
def test_fuzzed_bytes_as_data(tmp_path: Path, blob: bytes, suffix: str) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(blob)
    accepted = False
    try:
        docs = data_mod.load_documents(str(path))
    except UserError as exc:
        assert "\n" not in str(exc), str(exc)
    else:
        accepted = True
        assert all(isinstance(d, str) for d in docs)
    fuzzed("evaluate --data: fuzzed file bytes (load_documents)", accepted=accepted)


# ----------------------------------------------------------------------------- numeric flags

USAGE_CASES = [
    ("--seq-len", "0"), ("--seq-len", "-3"), ("--seq-len", "x"), ("--seq-len", "1.5"),
    ("--seq-len", ""), ("--batch-size", "0"), ("--max-windows", "0"), ("--max-windows", "-1"),
    ("--mc-items", "-1"), ("--mc-items", "x"), ("--threads", "0"), ("--split", "test"),
    ("--seed", "x"), ("--seed", "-1"), ("--seed", str(2**64)),
]


@pytest.mark.parametrize(("flag", "value"), USAGE_CASES, ids=[f"{f}={v}" for f, v in USAGE_CASES])
def test_bad_flag_values_are_argparse_usage_errors(capsys: pytest.CaptureFixture[str],
                                                   flag: str, value: str) -> None:
    res = run_main(capsys, "--model", "tiny", *FAST, f"{flag}={value}")
    assert_usage_error(*res, f"argument {flag}")
    tried("evaluate flags: argparse usage errors (usage block + one error line)")


@pytest.mark.parametrize(("args", "needle"), [
    (["--seq-len", "1"], "--seq-len must be at least 2"),
    (["--seq-len", "100000"], "fewer than one window of 100000"),
])
def test_flag_values_the_tool_rejects(capsys: pytest.CaptureFixture[str], args: list[str],
                                      needle: str) -> None:
    res = run_main(capsys, "--model", "tiny", "--max-windows", "2", "--mc-items", "2", *args)
    assert_one_line_error(*res, needle)
    tried("evaluate flags: rejected by the tool (one line)")


FLAGS = ["--seq-len", "--batch-size", "--max-windows", "--mc-items", "--threads", "--seed",
         "--split"]


@fuzz(200)
@given(flags=st.dictionaries(st.sampled_from(FLAGS), st.one_of(
    st.integers(-2**70, 2**70).map(str), st.floats().map(str), st.text(max_size=8),
    st.sampled_from(["0", "-1", "1", "2", "eval", "tuning", "calibration", str(2**64 - 1),
                     str(2**64), "0x10", "1_000", " 3", "1e3"])), min_size=1, max_size=4))
def test_fuzzed_flag_values_parse_or_fail_with_usage(capsys: pytest.CaptureFixture[str],
                                                     flags: dict[str, str]) -> None:
    argv = ["--model", "tiny", *(f"{k}={v}" for k, v in flags.items())]
    capsys.readouterr()
    accepted = False
    try:
        args = evaluate.build_parser().parse_args(argv)
    except SystemExit as exc:
        out, err = capsys.readouterr()
        assert_usage_error(int(exc.code or 0), out, err)
    else:
        accepted = True
        # What main() relies on once parsing succeeded.
        assert args.seq_len > 0 and args.batch_size > 0 and args.mc_items >= 0
        assert args.max_windows is None or args.max_windows > 0
        assert args.threads is None or args.threads > 0
        assert 0 <= args.seed < 2**64 and args.split in data_mod.SPLITS
    fuzzed("evaluate flags: fuzzed values (parser)", accepted=accepted)


# ----------------------------------------------------------------------------- real entry point

def test_real_entry_point_broken_model_folder(cli_env: dict,
                                              model_folders: dict[str, Path]) -> None:
    proc = subprocess.run([sys.executable, "-m", "workloads.evaluate", "--model",
                           str(model_folders["wrong_shapes"]), *FAST], capture_output=True,
                          text=True, env=cli_env, timeout=300)
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "cannot load its model")
    tried("evaluate: real entry point (python -m, subprocess)")
