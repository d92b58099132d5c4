"""Reliability of policy JSON, the file every compression-aware CLI reads (``--policy``).

Generated documents (hypothesis) either load as a valid policy or are refused with one
``UserError`` line; a list of classic mistakes (wrong layer count, bits outside 2..8, sparsity
outside [0, 1), wrong types, not JSON, a missing file) goes through the real entry points of
``workloads.evaluate``, ``workloads.tune`` and ``workloads.trace``: each ends in one
``error: ...`` line, exit code 2, nothing on stdout and no output file.

Counts go to ``$EDGELLM_RELIABILITY_REPORT`` like ``tests/test_reliability_sim.py``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_reliability_report import Tally
from workloads import evaluate
from workloads import tune as tune_cli
from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.trace import __main__ as trace_cli

TALLY = Tally(Path(__file__).stem)
LAYERS = 4  # the tiny model's decoder layers


@pytest.fixture(scope="module", autouse=True)
def _reliability_report() -> Iterator[None]:
    yield
    TALLY.flush()


def good_doc(n: int = LAYERS) -> dict[str, Any]:
    return Policy.uniform(n, 0.5, 4).to_dict()


def test_tiny_model_has_the_assumed_layer_count(tiny) -> None:
    assert tiny.num_layers == LAYERS


# ------------------------------------------------------------------------------ generated
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 20), st.floats(allow_nan=True),
                   st.text(max_size=6), st.lists(st.integers(), max_size=2), st.just({}))
EDITS = st.lists(st.one_of(
    st.tuples(st.just("layer"), st.sampled_from(["0", "3", "4", "-1", "x", "01", "²"]),
              st.sampled_from(["sparsity", "w_bits", "extra"]), VALUES),
    st.tuples(st.just("drop_layer"), st.sampled_from(["0", "1"]), st.just(""), st.none()),
    st.tuples(st.just("top"), st.sampled_from(["pattern", "prune", "quant", "group_size", "head_bits", "meta",
                                                       "layers"]),
              st.just(""), st.one_of(VALUES, st.sampled_from(["2:4", "4:8", "3:4", "sparsegpt", "gptq", "hqq"]))),
), min_size=1, max_size=4)


def apply(doc: dict[str, Any], edits: list[tuple]) -> dict[str, Any]:
    for kind, key, field, value in edits:
        layers = doc.get("layers")
        if kind == "top":
            doc[key] = value
        elif not isinstance(layers, dict):
            continue
        elif kind == "drop_layer":
            layers.pop(key, None)
        else:
            entry = layers.setdefault(key, {"sparsity": 0.5, "w_bits": 4})
            if isinstance(entry, dict):
                entry[field] = value
    return doc


def in_range(doc: dict[str, Any]) -> bool:
    """What a valid tiny-model policy must look like (an independent statement of the rules)."""
    layers = doc.get("layers")
    if not isinstance(layers, dict) or sorted(layers) != [str(i) for i in range(LAYERS)]:
        return False
    for entry in layers.values():
        if not isinstance(entry, dict) or set(entry) != {"sparsity", "w_bits"}:
            return False
        s, b = entry["sparsity"], entry["w_bits"]
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0 <= s < 1):
            return False
        if isinstance(b, bool) or not isinstance(b, int) or not (2 <= b <= 8 or b == 16):
            return False
    g, h = doc.get("group_size", 128), doc.get("head_bits", 16)
    return (isinstance(h, int) and not isinstance(h, bool) and (2 <= h <= 8 or h == 16) and doc.get("pattern", "unstructured") in ("unstructured", "2:4", "4:8")
            and doc.get("prune", "wanda") in ("magnitude", "wanda", "sparsegpt")
            and doc.get("quant", "rtn") in ("rtn", "gptq")
            and isinstance(g, int) and not isinstance(g, bool) and g > 0
            and isinstance(doc.get("meta", {}), dict))


@settings(max_examples=400, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(edits=EDITS)
def test_fuzzed_policy_documents_load_or_fail_in_one_line(edits: list[tuple]) -> None:
    doc = apply(good_doc(), edits)
    try:
        policy = Policy.from_dict(doc, where="p.json").validate(LAYERS, where="p.json")
    except UserError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg and msg.startswith("p.json"), msg
        assert not in_range(doc), (doc, msg)
        TALLY.add("policy JSON: fuzzed documents (Policy.from_dict + validate)", "hypothesis")
    else:
        assert in_range(doc), doc
        assert all(0 <= lp.sparsity < 1 and not math.isnan(lp.sparsity) for lp in policy.layers.values())
        TALLY.add("policy JSON: fuzzed documents (Policy.from_dict + validate)", "hypothesis", kind="valid_edge_input")


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=120))
def test_fuzzed_bytes_as_a_policy_file(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(blob)
    with pytest.raises(UserError) as info:
        Policy.load(path).validate(LAYERS)
    assert "\n" not in str(info.value)
    TALLY.add("policy JSON: fuzzed file bytes (Policy.load)", "hypothesis")


# ------------------------------------------------------------------------ real entry points
def _layers(n: int, **entry: Any) -> dict[str, Any]:
    return {"layers": {str(i): {"sparsity": 0.5, "w_bits": 4, **entry} for i in range(n)}}


BAD: dict[str, tuple[str, str]] = {
    # name: (file text, a phrase the one-line error must contain)
    "one layer too few": (json.dumps(_layers(LAYERS - 1)), "layers"),
    "one layer too many": (json.dumps(_layers(LAYERS + 1)), "layers"),
    "bits 1": (json.dumps(_layers(LAYERS, w_bits=1)), "w_bits"),
    "bits 9": (json.dumps(_layers(LAYERS, w_bits=9)), "w_bits"),
    "bits 3.5": (json.dumps(_layers(LAYERS, w_bits=3.5)), "w_bits"),
    "sparsity 1": (json.dumps(_layers(LAYERS, sparsity=1.0)), "sparsity"),
    "sparsity -0.1": (json.dumps(_layers(LAYERS, sparsity=-0.1)), "sparsity"),
    "sparsity NaN": (json.dumps(_layers(LAYERS, sparsity=float("nan"))), "sparsity"),
    "sparsity text": (json.dumps(_layers(LAYERS, sparsity="half")), "sparsity"),
    "pattern 3:4": (json.dumps({**_layers(LAYERS), "pattern": "3:4"}), "pattern"),
    "prune method unknown": (json.dumps({**_layers(LAYERS), "prune": "owl"}), "prune"),
    "group size text": (json.dumps({**_layers(LAYERS), "group_size": "big"}), "group_size"),
    "head bits 12": (json.dumps({**_layers(LAYERS), "head_bits": 12}), "head_bits"),
    "head bits true": (json.dumps({**_layers(LAYERS), "head_bits": True}), "head_bits"),
    "sparsity 1e400 as an integer": ('{"layers": {"0": {"sparsity": 1' + "0" * 400 + ', "w_bits": 4}}}', "sparsity"),
    "5000-digit integer": ('{"layers": {"0": {"sparsity": 0.5, "w_bits": ' + "9" * 5000 + '}}}', "not a policy"),
    "nested 100000 deep": ("[" * 100_000, "not a policy"),
    "a list": ("[1, 2]", "not a policy"),
    "not JSON": ('{"layers": ', "not valid JSON"),
    "empty file": ("", "not valid JSON"),
}
ENTRY_POINTS: dict[str, Callable[[list[str]], int]] = {
    "evaluate": evaluate.main, "tune": tune_cli.main, "trace": trace_cli.main,
}


def _argv(cli: str, policy: Path, out: Path) -> list[str]:
    if cli == "evaluate":
        return ["--model", "tiny", "--policy", str(policy), "--seq-len", "16", "--max-windows", "2", "--mc-items", "2"]
    if cli == "tune":
        return ["--model", "tiny", "--policy", str(policy), "--steps", "1", "--seq-len", "16", "--batch-size", "1",
                "--out", str(out), "--json"]
    return ["--model", "tiny", "--policy", str(policy), "--seq-len", "16", "--batch", "1", "--out", str(out / "t.csv")]


def run(capsys: pytest.CaptureFixture[str], fn: Callable[[list[str]], int], argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = fn(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("cli", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("case", sorted(BAD) + ["missing file"])
def test_bad_policy_files_in_every_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, cli: str, case: str) -> None:
    policy = tmp_path / "policy.json"
    if case != "missing file":
        policy.write_text(BAD[case][0])
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, ENTRY_POINTS[cli], _argv(cli, policy, out_dir))
    assert "Traceback" not in err, err
    assert code == 2 and out == "", (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert (BAD[case][1] if case != "missing file" else "not found") in err, err
    assert not out_dir.exists() or not any(out_dir.iterdir()), "partial output left behind"
    TALLY.add("policy JSON: bad files through the CLIs (evaluate, tune, trace)")
