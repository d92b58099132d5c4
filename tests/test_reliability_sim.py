"""Reliability of the simulator's inputs: bad hardware YAML, ``--set`` overrides, traces and
paths given to ``python -m sim.run``, ``sim.gemm`` and ``sim.sweep``, and bit-exact determinism.

The contract (DESIGN.md, "Conventions"): an error a user can cause ends in exactly one stderr
line ``error: ...`` naming the problem, exit code 2, no traceback and no output file written.
At the library level, ``load_hw``/``hw_from_dict`` raise ``ConfigError`` and ``read_trace`` /
``validate_ops`` raise ``TraceError`` with a one-line message naming the field (or row and
column); whatever they accept, the simulator runs to finite numbers (or a one-line
``MappingError``).

Most cases call a CLI's ``main(argv)`` in this process (same code path as the command, no
interpreter start-up); a few run the real ``python -m`` entry points. Every bad input that was
handled as promised is counted; with ``EDGELLM_RELIABILITY_REPORT=PATH`` the counts are written
to that JSON file (``tests/test_reliability_report.py``)::

    rm -f runs/reliability.json && EDGELLM_RELIABILITY_REPORT=runs/reliability.json \\
        /work/venv/bin/pytest tests/test_reliability_sim.py tests/test_reliability_inputs.py -q

Hypothesis runs derandomized (same examples on every run, so the counts are reproducible);
``EDGELLM_FUZZ_SCALE=10`` multiplies every example budget for a deeper run.
"""
from __future__ import annotations

import copy
import io
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import sim
from sim import ConfigError, HwConfig, MappingError, SimError, TraceError
from sim import gemm as sim_gemm
from sim import run as sim_run
from sim import sweep as sim_sweep
from sim.trace import OPS_COLUMNS, PHASES, TENSOR_COLUMNS, TENSOR_KINDS, V1_COLUMNS
from test_reliability_report import Tally

ROOT = Path(__file__).resolve().parents[1]
HW = ROOT / "hwconfigs" / "edge_llm.yaml"
TRACE = ROOT / "tests" / "data" / "tiny_step.csv"
TENSORS = ROOT / "tests" / "data" / "tiny_step.tensors.csv"
BASE_TREE: dict[str, Any] = yaml.safe_load(HW.read_text())
BASE_HW = sim.load_hw(HW)
TRACE_LINES = TRACE.read_text().splitlines()
HEADER_LINE, COLUMN_LINE, ROW_LINES = TRACE_LINES[0], TRACE_LINES[1], TRACE_LINES[2:]
TRACE_OPS = sim.read_trace(TRACE).ops

# ----------------------------------------------------------------------------- counting

SCALE = float(os.environ.get("EDGELLM_FUZZ_SCALE", "1"))
TALLY = Tally(Path(__file__).stem)
tried = TALLY.add


def fuzzed(category: str, *, accepted: bool) -> None:
    """Count a generated input: refused ones are bad inputs, accepted ones valid edge cases."""
    tried(category, "hypothesis", kind="valid_edge_input" if accepted else "bad_input")


@pytest.fixture(scope="module", autouse=True)
def _reliability_report() -> Iterator[None]:
    yield
    TALLY.flush()


def fuzz(examples: int) -> settings:
    """Hypothesis settings: reproducible examples, no deadline, scaled budget."""
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None,
                    derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.filter_too_much,
                                           HealthCheck.data_too_large])


# ----------------------------------------------------------------------------- helpers

MAINS: dict[str, Callable[[list[str] | None], int]] = {
    "sim.run": sim_run.main, "sim.gemm": sim_gemm.main, "sim.sweep": sim_sweep.main}


def cli(capsys: pytest.CaptureFixture[str], tool: str, *argv: str | Path
        ) -> tuple[int, str, str]:
    """Run a CLI's ``main`` in-process; any exception other than SystemExit fails the test."""
    capsys.readouterr()
    try:
        code = MAINS[tool]([str(a) for a in argv])
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 1
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    """Exit 2, nothing on stdout, one stderr line ``error: ...`` containing the needles."""
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert out == "", out
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("error: "), err
    line = err.rstrip("\n")
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def assert_one_line(exc: BaseException, prefix: str = "") -> str:
    """A library error message: one line, bounded, starting with ``prefix``."""
    msg = str(exc)
    assert "\n" not in msg and "\r" not in msg, repr(msg)
    assert msg.startswith(prefix), (prefix, msg)
    assert 0 < len(msg) < 600, msg
    return msg


def run_outputs(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "ops.csv", folder / "roof.png"


def assert_nothing_written(folder: Path) -> None:
    """No output and no temporary sibling left in ``folder``."""
    assert not folder.exists() or list(folder.iterdir()) == [], list(folder.iterdir())


def leaves(tree: Any) -> Iterator[Any]:
    if isinstance(tree, dict):
        for value in tree.values():
            yield from leaves(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from leaves(value)
    else:
        yield tree


def check_simulates(hw: HwConfig) -> None:
    """A config the validator accepted runs to finite numbers, or fails in one line."""
    for value in leaves(hw.model_dump()):
        if isinstance(value, float):
            assert math.isfinite(value), hw
    for shape in ((48, 40, 72, 16, 0.0, "dense"), (96, 64, 128, 4, 0.5, "2:4"),
                  (33, 17, 200, 3, 0.7, "unstructured")):
        m, n, k, bits, sparsity, pattern = shape
        try:
            res = sim.simulate_gemm(hw, m, n, k, w_bits=bits, weight_sparsity=sparsity,
                                    sparsity_pattern=pattern)
        except MappingError as exc:
            assert_one_line(exc)
            continue
        for name in ("cycles", "compute_cycles", "dram_bytes", "energy_j", "roofline_cycles"):
            value = getattr(res, name)
            assert math.isfinite(value) and value >= 0, (name, value, hw)
        # stall = cycles - compute_cycles: float rounding relative to the cycles only.
        assert res.stall_cycles >= -1e-9 * res.cycles, (res, hw)
        assert res.cycles >= res.roofline_cycles * (1 - 1e-9)


# ----------------------------------------------------------------------------- strategies

def _section_model(annotation: Any) -> type[BaseModel] | None:
    for cand in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _schema_paths(model: type[BaseModel] = HwConfig, prefix: tuple[str, ...] = ()
                  ) -> Iterator[tuple[tuple[str, ...], type[BaseModel] | None]]:
    for name, field in model.model_fields.items():
        sub = _section_model(field.annotation)
        yield (*prefix, name), sub
        if sub is not None:
            yield from _schema_paths(sub, (*prefix, name))


SCHEMA = dict(_schema_paths())
FIELD_PATHS = sorted(SCHEMA)
SECTIONS: list[tuple[str, ...]] = [(), *sorted(p for p, sub in SCHEMA.items() if sub)]


def _fields_of(section: tuple[str, ...]) -> set[str]:
    model = HwConfig if not section else SCHEMA[section]
    assert model is not None
    return set(model.model_fields)


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), text,
    st.sampled_from([0, -1, -4, 0.0, -0.5, 1e-300, 5e-324, 1e-10, 1e13, 1e308, 10**400,
                     -10**400, "", "16", "2:4", "yes", "1e3", "1e300", ".inf", "null", [], {},
                     124, "unstructured", "nm", "scalable"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(text, inner, max_size=3), max_leaves=6)


@st.composite
def mutation(draw: st.DrawFn) -> tuple[str, tuple[str, ...], Any]:
    """One change to a valid config tree: set a field, delete it, or add an unknown key."""
    kind = draw(st.sampled_from(["set", "set", "delete", "unknown"]))
    if kind == "unknown":
        section = draw(st.sampled_from(SECTIONS))
        key = draw(text)
        assume(key not in _fields_of(section))
        return "set", (*section, key), draw(values)
    path = draw(st.sampled_from(FIELD_PATHS))
    return kind, path, draw(values) if kind == "set" else None


def apply_mutation(tree: dict[str, Any], change: tuple[str, tuple[str, ...], Any]) -> None:
    kind, path, value = change
    node = tree
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    if kind == "delete":
        node.pop(path[-1], None)
    else:
        node[path[-1]] = copy.deepcopy(value)


def names_a_field(msg: str, paths: list[tuple[str, ...]]) -> bool:
    """The message names the top-level key of at least one changed path."""
    return any(p[0] in msg or repr(p[0]) in msg for p in paths)


# ============================================================================ hardware config

@fuzz(300)
@given(changes=st.lists(mutation(), min_size=1, max_size=3))
@example(changes=[("set", ("pe", "rows"), True)])
@example(changes=[("set", ("clock_mhz",), float("inf"))])
@example(changes=[("set", ("sram", "input_kib"), float("nan"))])
@example(changes=[("set", ("a\nb",), 1)])
@example(changes=[("set", ("sparsity",), {"support": "nm", "nm_patterns": [124]})])
@example(changes=[("set", ("clock_mhz",), 1e308)])
@example(changes=[("set", ("energy", "mac_pj"), "1e300")])
@example(changes=[("set", ("pe", "macs_per_pe_per_cycle"), 1e-300)])
@example(changes=[("set", ("pe", "rows"), 10**400)])
def test_hw_from_dict_fuzzed_fields_fail_in_one_line_naming_the_field(changes: list) -> None:
    tree = copy.deepcopy(BASE_TREE)
    for change in changes:
        apply_mutation(tree, change)
    accepted = False
    try:
        hw = sim.hw_from_dict(tree, source="fuzz.yaml")
    except ConfigError as exc:
        msg = assert_one_line(exc, "fuzz.yaml: ")
        assert names_a_field(msg, [c[1] for c in changes]), (msg, changes)
        event("rejected")
    else:
        accepted = True
        check_simulates(hw)
        event("accepted (and simulated)")
    fuzzed("hw config: fuzzed fields (hw_from_dict)", accepted=accepted)


def _annotation(path: tuple[str, ...]) -> Any:
    model = HwConfig if len(path) == 1 else SCHEMA[path[:-1]]
    assert model is not None
    return model.model_fields[path[-1]].annotation


NUMBER_PATHS = [p for p in FIELD_PATHS if SCHEMA[p] is None
                and {int, float} & {_annotation(p), *getattr(_annotation(p), "__args__", ())}]
lo_exp, hi_exp = (round(math.log10(x)) for x in sim.config.NUMBER_RANGE)
in_range = st.one_of(st.floats(lo_exp, hi_exp).map(lambda e: 10.0**e),
                     st.integers(1, 10**hi_exp), st.sampled_from([0, 1, 10**hi_exp, 10.0**lo_exp]))


@fuzz(120)
@given(numbers=st.dictionaries(st.sampled_from(NUMBER_PATHS), in_range, min_size=1, max_size=8))
@example(numbers={("clock_mhz",): 1e12, ("dram", "bandwidth_gbps"): 1e-9,
                  ("energy", "mac_pj"): 1e12, ("dram", "energy_pj_per_bit"): 1e12})
@example(numbers={("clock_mhz",): 1e-9, ("pe", "macs_per_pe_per_cycle"): 1e-9,
                  ("energy", "static_mw"): 1e12})
@example(numbers={("pe", "rows"): 10**12, ("pe", "cols"): 10**12, ("sram", "banks"): 10**12})
def test_extreme_in_range_numbers_simulate_to_finite_numbers(numbers: dict) -> None:
    """Any accepted magnitude keeps cycles, bytes and joules finite (no inf, NaN, < 0)."""
    tree = copy.deepcopy(BASE_TREE)
    for path, value in numbers.items():
        apply_mutation(tree, ("set", path, value))
    accepted = False
    try:
        hw = sim.hw_from_dict(tree, source="range.yaml")
    except ConfigError as exc:  # e.g. accum_bits > 64 or min_bits > base_bits
        assert names_a_field(assert_one_line(exc, "range.yaml: "), list(numbers))
        event("rejected")
    else:
        accepted = True
        check_simulates(hw)
        event("accepted (and simulated)")
    fuzzed("hw config: extreme in-range numbers (accepted configs simulate)", accepted=accepted)


@fuzz(60)
@given(data=values)
def test_hw_from_dict_arbitrary_documents_fail_in_one_line(data: Any) -> None:
    with pytest.raises(ConfigError) as info:
        sim.hw_from_dict(data, source="doc.yaml")
    assert_one_line(info.value, "doc.yaml: ")
    tried("hw config: arbitrary documents (hw_from_dict)", "hypothesis")


@fuzz(100)
@given(changes=st.lists(mutation(), min_size=1, max_size=2))
def test_load_hw_of_fuzzed_yaml_matches_hw_from_dict(tmp_path: Path, changes: list) -> None:
    tree = copy.deepcopy(BASE_TREE)
    for change in changes:
        apply_mutation(tree, change)
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    outcomes = []
    for load in (lambda: sim.load_hw(path), lambda: sim.hw_from_dict(tree, source=str(path))):
        try:
            outcomes.append(load().model_dump())
        except ConfigError as exc:
            outcomes.append(assert_one_line(exc, f"{path}: "))
    if isinstance(outcomes[0], str) or isinstance(outcomes[1], str):
        assert outcomes[0] == outcomes[1]
    fuzzed("hw config: fuzzed YAML files (load_hw)", accepted=not isinstance(outcomes[0], str))


YAML_CHARS = list(":{}[]-#&*!|>'\"\t\n %@,?\\") + ["\x00", "\x85", "\ufeff", "é", "1", "a"]


@fuzz(150)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["ins", "del", "rep"]),
                                 st.sampled_from(YAML_CHARS)), min_size=1, max_size=4))
def test_load_hw_of_corrupted_yaml_text(tmp_path: Path, edits: list) -> None:
    body = HW.read_text()
    for pos, op, char in edits:
        pos %= len(body) + 1
        if op == "ins":
            body = body[:pos] + char + body[pos:]
        elif op == "del":
            body = body[:pos] + body[pos + 1:]
        else:
            body = body[:pos] + char + body[pos + 1:]
    path = tmp_path / "corrupt.yaml"
    path.write_text(body, encoding="utf-8")
    accepted = False
    try:
        hw = sim.load_hw(path)
    except ConfigError as exc:
        assert_one_line(exc, f"{path}: ")
    else:
        accepted = True
        check_simulates(hw)
    fuzzed("hw config: corrupted YAML text (load_hw)", accepted=accepted)


@fuzz(60)
@given(blob=st.binary(max_size=300))
@example(blob=b"\xff\xfe" + "name: x\n".encode("utf-16-le"))
@example(blob=b"\x00\x01\x02\x89PNG\r\n\x1a\n")
def test_load_hw_of_binary_garbage(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "garbage.yaml"
    path.write_bytes(blob)
    with pytest.raises(ConfigError) as info:
        sim.load_hw(path)
    assert_one_line(info.value, f"{path}: ")
    tried("hw config: binary garbage files (load_hw)", "hypothesis")


def _hw_text(**replace: str) -> str:
    body = HW.read_text()
    for old, new in replace.items():
        assert old in body, old
        body = body.replace(old, new)
    return body


def _without_section(name: str) -> str:
    out, skip = [], False
    for line in HW.read_text().splitlines():
        if line.startswith(f"{name}:"):
            skip = True
            continue
        if skip and line.startswith("  "):
            continue
        skip = False
        out.append(line)
    return "\n".join(out) + "\n"


# Six levels of eight aliases: 10 * 8**5 strings if expanded (the message must not expand it).
ALIAS_BOMB = ("[&a [x, x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a], "
              "&c [*b, *b, *b, *b, *b, *b, *b, *b], &d [*c, *c, *c, *c, *c, *c, *c, *c], "
              "&e [*d, *d, *d, *d, *d, *d, *d, *d], &f [*e, *e, *e, *e, *e, *e, *e, *e]]")

# (id, file content, words the error line must contain); a None content means "no such file"
# and "DIR" a folder where the file should be.
BAD_HW_FILES: list[tuple[str, str | bytes | None, tuple[str, ...]]] = [
    ("empty", "", ("file is empty",)),
    ("comment_only", "# nothing here\n\n", ("file is empty",)),
    ("binary", b"\x00\xff\xfe\x89garbage\x00\x01", ("a binary file (NUL byte at offset 0)",)),
    ("latin1", HW.read_text().replace("edge_llm", "edge_llm \u00e9").encode("latin-1"),
     ("not UTF-8 text: byte 0xe9 at offset",)),
    ("utf16_no_bom", HW.read_text().encode("utf-16-le"), ("UTF-16LE text without a byte-order mark",)),
    ("list", "- pe\n- sram\n", ("top level must be a mapping",)),
    ("scalar", "42\n", ("top level must be a mapping",)),
    ("unclosed_flow", "pe: {rows: 3\n", ("invalid YAML at line 2",)),
    ("tab_indent", "pe:\n\trows: 3\n", ("invalid YAML",)),
    ("python_tag", "!!python/object/apply:os.system [ls]\n", ("invalid YAML",)),
    ("nul_char", _hw_text(**{"edge_llm": "edge\x00llm"}), ("a binary file (NUL byte at offset",)),
    ("deep_nesting", "[" * 3000 + "]" * 3000, ("nested too deeply",)),
    ("alias_bomb", _hw_text(**{"rows: 32": f"rows: {ALIAS_BOMB}"}), ("pe.rows:",)),
    ("unknown_key", _hw_text(clock_mhz="clock_mhzz"), ("clock_mhzz: unknown field",)),
    ("unknown_nested_key", _hw_text(**{"  rows:": "  rowz:"}), ("pe.rowz: unknown field",)),
    ("missing_section", _without_section("dram"), ("dram: missing required field",)),
    ("missing_field", _hw_text(**{"  cols: 32\n": ""}), ("pe.cols: missing required field",)),
    ("negative_size", _hw_text(**{"rows: 32": "rows: -4"}), ("pe.rows: must be > 0 (got -4)",)),
    ("zero_size", _hw_text(**{"input_kib: 256": "input_kib: 0"}), ("sram.input_kib: must be > 0",)),
    ("zero_clock", _hw_text(**{"clock_mhz: 1000": "clock_mhz: 0"}), ("clock_mhz: must be > 0",)),
    ("wrong_type", _hw_text(**{"rows: 32": "rows: many"}), ("pe.rows:", "'many'")),
    ("float_for_int", _hw_text(**{"rows: 32": "rows: 3.5"}), ("pe.rows:",)),
    ("bool_for_int", _hw_text(**{"rows: 32": "rows: yes"}), ("pe.rows: expected a number",)),
    ("list_for_number", _hw_text(**{"rows: 32": "rows: [32]"}), ("pe.rows:",)),
    ("inf_bandwidth", _hw_text(**{"bandwidth_gbps: 25.6": "bandwidth_gbps: .inf"}),
     ("dram.bandwidth_gbps:", "finite")),
    ("nan_clock", _hw_text(**{"clock_mhz: 1000": "clock_mhz: .nan"}), ("clock_mhz:",)),
    ("overflowing_clock", _hw_text(**{"clock_mhz: 1000": "clock_mhz: 1e308"}),
     ("clock_mhz: out of range",)),
    ("vanishing_macs", _hw_text(**{"macs_per_pe_per_cycle: 1": "macs_per_pe_per_cycle: 1e-300"}),
     ("pe.macs_per_pe_per_cycle: out of range",)),
    ("huge_int", _hw_text(**{"rows: 32": "rows: 1" + "0" * 400}), ("pe.rows: out of range",)),
    ("bad_enum", _hw_text(**{"model: scalable": "model: quantum"}), ("precision.model:",)),
    ("unquoted_nm", _hw_text(**{"support: unstructured": "support: nm\n  nm_patterns: [2:4]"}),
     ("sparsity.nm_patterns:", "quote each N:M pattern")),
    ("section_scalar", _hw_text(**{"pe:\n  rows: 32\n  cols: 32\n  macs_per_pe_per_cycle: 1\n"
                                   "  accum_bits: 32\n": "pe: 32\n"}), ("pe:",)),
    ("both_capacities", _hw_text(**{"capacity_gib: 4": "capacity_gib: 4\n  capacity_mib: 9"}),
     ("dram:", "exactly one of capacity_gib or capacity_mib")),
    ("min_above_base", _hw_text(**{"min_bits: 2": "min_bits: 20"}), ("precision:", "min_bits")),
    ("newline_in_key", '"a\\nb": 1\n' + HW.read_text(), ("unknown field",)),
    ("mapping_then_list", "name: x\n- 3\n", ("invalid YAML",)),
    ("missing_file", None, ("hardware config not found",)),
    ("folder", "DIR", ("hardware config is a folder, not a file",)),
]


@pytest.mark.parametrize("tool", ["sim.run", "sim.gemm", "sim.sweep"])
@pytest.mark.parametrize(("case", "content", "needles"), BAD_HW_FILES,
                         ids=[c[0] for c in BAD_HW_FILES])
def test_bad_hw_files_in_every_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   tool: str, case: str, content: str | bytes | None,
                                   needles: tuple[str, ...]) -> None:
    path = tmp_path / "hw.yaml"
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    if tool == "sim.run":
        ops, png = run_outputs(out)
        res = cli(capsys, tool, "--hw", path, "--trace", TRACE, "--ops-csv", ops,
                  "--roofline-png", png)
    elif tool == "sim.gemm":
        res = cli(capsys, tool, "--hw", path, "--M", "64", "--N", "64", "--K", "64", "--json")
    else:
        res = cli(capsys, tool, "--hw", path, "--trace", TRACE, "--out", out, "--no-plots")
    # Every tool says what is actually wrong (a folder is not "not found"), the path named.
    line = assert_one_line_error(*res, str(path), *needles)
    assert len(line) < 400, line
    assert_nothing_written(out)
    tried(f"hw config: bad files ({tool})")


# ============================================================================ --set overrides

keys = st.one_of(
    st.sampled_from([".".join(p) for p in FIELD_PATHS]),
    st.builds(lambda p, k: ".".join((*p, k)), st.sampled_from(SECTIONS), text),
    st.text(st.sampled_from(list("pe.rows=_ ")), max_size=10),
)
raw_values = st.one_of(text, st.sampled_from(["", "-1", "0", "abc", ".inf", ".nan", "null",
                                              "true", "[2:4]", "{a: 1}", "[", "3.5", "1e999",
                                              "'16'", "~", "[[1]]", "2:4"]))


@fuzz(200)
@given(key=keys, raw=raw_values, sep=st.sampled_from(["=", "=", ":", ""]))
def test_set_overrides_fuzzed_fail_in_one_line(key: str, raw: str, sep: str) -> None:
    item = f"{key}{sep}{raw}"
    accepted = False
    try:
        hw = sim.hw_from_dict(BASE_TREE, [item], source="hw.yaml")
    except ConfigError as exc:
        msg = assert_one_line(exc)
        assert msg.startswith("hw.yaml: ") or msg.startswith("--set "), msg
    else:
        accepted = True
        check_simulates(hw)
    fuzzed("--set overrides: fuzzed key=value (hw_from_dict)", accepted=accepted)


BAD_SET = [
    ("pe.rowz=4", "pe.rowz"), ("foo=1", "foo: unknown field"), ("pe..rows=1", "bad --set key"),
    ("pe.rows.x=1", "pe.rows is not a section"), ("name.x=1", "name is not a section"),
    ("=3", "expected key=value"), ("pe.rows", "expected key=value"), (".=1", "bad --set key"),
    ("pe.rows=-4", "pe.rows: must be > 0"), ("pe.rows=0", "pe.rows: must be > 0"),
    ("pe.rows=abc", "pe.rows:"), ("pe.rows=3.5", "pe.rows:"), ("pe.rows=true", "pe.rows:"),
    ("pe.rows=", "pe.rows:"), ("clock_mhz=.inf", "clock_mhz:"), ("clock_mhz=.nan", "clock_mhz:"),
    ("dram.bandwidth_gbps=-1", "dram.bandwidth_gbps:"), ("sram=null", "sram:"), ("pe=3", "pe:"),
    ("precision.model=quantum", "precision.model:"), ("sparsity.support=nm", "sparsity:"),
    ("sparsity.nm_patterns=[2:4]", "quote each N:M pattern"), ("pe.rows=" + "[" * 3000, "pe.rows"),
    ("sparsity.efficiency=1.5", "sparsity.efficiency:"), ("precision.base_bits=64", "base_bits"),
    ("clock_mhz=1e308", "clock_mhz: out of range"), ("energy.mac_pj=1e300", "energy.mac_pj:"),
    ("dram.bandwidth_gbps=1e-300", "dram.bandwidth_gbps:"), ("pe.cols=1" + "0" * 400, "pe.cols:"),
]


@pytest.mark.parametrize("tool", ["sim.run", "sim.gemm", "sim.sweep"])
@pytest.mark.parametrize(("item", "needle"), BAD_SET, ids=[c[0][:30] for c in BAD_SET])
def test_bad_set_in_every_cli(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch, tool: str, item: str,
                              needle: str) -> None:
    out = tmp_path / "out"
    if tool == "sim.run":
        ops, png = run_outputs(out)
        res = cli(capsys, tool, "--hw", HW, "--trace", TRACE, "--set", item, "--ops-csv", ops,
                  "--roofline-png", png)
    elif tool == "sim.gemm":
        res = cli(capsys, tool, "--hw", HW, "--M", "8", "--N", "8", "--K", "8", "--set", item)
    else:
        monkeypatch.setenv("TQDM_DISABLE", "1")
        res = cli(capsys, tool, "--hw", HW, "--trace", TRACE, "--out", out, "--no-plots",
                  "--json", "--set", item)
        if res[0] == 0:
            # By design a sweep point whose overrides are invalid is a failed row with its
            # one-line reason, not a user error (sim/sweep/plan.py); bad keys are user errors.
            table = pd.read_csv(out / "sweep.csv")
            assert list(table["status"]) == ["error"], table
            reason = str(table["reason"].iloc[0])
            assert "\n" not in reason and needle.split(":")[0].split(" ")[0] in reason, reason
            assert "Traceback" not in res[2]
            tried("--set overrides: sweep bad value -> error row")
            return
    assert_one_line_error(*res, needle if tool != "sim.sweep" else "")
    assert_nothing_written(out)
    tried(f"--set overrides: bad keys/values ({tool})")


# ============================================================================ traces

cells = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70),
    st.floats(allow_nan=True, allow_infinity=True), text,
    st.sampled_from([0, -1, 1.5, "", " ", "fwd", "bwd", "2:4", "4:2", "0:4", "1:1", "dense",
                     "unstructured", "true", "maybe", "nan", "inf", "-inf", "1e3", "2**53",
                     2**53, 2**53 + 2, 10**30, "q_proj", -1, 32, 33, 0.999, 1.0]),
)
edit = st.tuples(st.integers(0, 2), st.sampled_from(OPS_COLUMNS), cells)


def _small_ops() -> pd.DataFrame:
    """Three fixture rows (dense, unstructured, 2:4) as plain object columns."""
    picks = [TRACE_OPS.index[TRACE_OPS["sparsity_pattern"] == p][0]
             for p in ("dense", "unstructured", "2:4")]
    return TRACE_OPS.loc[picks, list(OPS_COLUMNS)].reset_index(drop=True).astype(object)


def check_valid_ops(ops: pd.DataFrame) -> None:
    """What validate_ops promises about an accepted table, and that it simulates."""
    for col in ("M", "N", "K", "count"):
        assert ops[col].dtype == np.int64 and (ops[col] >= 1).all() and (ops[col] <= 2**53).all()
    for col in ("w_bits", "a_bits"):
        assert ops[col].between(1, 32).all()
    assert np.isfinite(ops["weight_sparsity"]).all()
    assert ((ops["weight_sparsity"] >= 0) & (ops["weight_sparsity"] < 1)).all()
    assert ops["phase"].isin(PHASES).all()
    try:
        res = sim.simulate_trace(ops, BASE_HW)
    except MappingError as exc:
        assert_one_line(exc)
        return
    for col in ("cycles", "dram_bytes", "energy_j", "roofline_cycles"):
        assert np.isfinite(res.ops[col]).all() and (res.ops[col] >= 0).all(), col
    assert (res.ops["cycles"] >= res.ops["roofline_cycles"] * (1 - 1e-9)).all()


@fuzz(250)
@given(edits=st.lists(edit, min_size=1, max_size=3))
@example(edits=[(0, "M", 10**30)])
@example(edits=[(1, "count", 2**64)])
@example(edits=[(2, "weight_sparsity", float("nan"))])
@example(edits=[(0, "sparsity_pattern", "3:2")])
@example(edits=[(1, "phase", "fwdx")])
def test_validate_ops_fuzzed_cells_fail_in_one_line_naming_row_and_column(edits: list) -> None:
    df = _small_ops()
    for row, col, value in edits:
        df.at[row, col] = value
    accepted = False
    try:
        ops = sim.validate_ops(df, "ops")
    except TraceError as exc:
        msg = assert_one_line(exc, "ops: row ")
        assert any(f"row {r + 1}:" in msg and c in msg for r, c, _ in edits) or (
            "sparsity_pattern" in msg and "weight_sparsity" in msg), (msg, edits)
    else:
        accepted = True
        check_valid_ops(ops)
    fuzzed("trace: fuzzed cells (validate_ops)", accepted=accepted)


def _csv_text(df: pd.DataFrame, header: str = HEADER_LINE) -> str:
    return header + "\n" + df.to_csv(index=False)


@fuzz(120)
@given(edits=st.lists(edit, min_size=1, max_size=3))
def test_read_trace_fuzzed_cells_in_a_file(tmp_path: Path, edits: list) -> None:
    df = _small_ops()
    for row, col, value in edits:
        df.at[row, col] = value
    path = tmp_path / "fuzz.csv"
    path.write_text(_csv_text(df), encoding="utf-8")
    accepted = False
    try:
        trace = sim.read_trace(path)
    except TraceError as exc:
        assert_one_line(exc, f"{path}: ")
    else:
        accepted = True
        check_valid_ops(trace.ops)
    fuzzed("trace: fuzzed cells in a CSV file (read_trace)", accepted=accepted)


CSV_CHARS = list(',"#\n\r-.:e ') + ["\x00", "\ufeff", "9", "0", "x", "nan"]


@fuzz(150)
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["ins", "del", "rep"]),
                                 st.sampled_from(CSV_CHARS)), min_size=1, max_size=4))
def test_read_trace_of_corrupted_text(tmp_path: Path, edits: list) -> None:
    body = "\n".join([HEADER_LINE, COLUMN_LINE, *ROW_LINES[:6]]) + "\n"
    for pos, op, char in edits:
        pos %= len(body) + 1
        if op == "ins":
            body = body[:pos] + char + body[pos:]
        elif op == "del":
            body = body[:pos] + body[pos + 1:]
        else:
            body = body[:pos] + char + body[pos + 1:]
    path = tmp_path / "corrupt.csv"
    path.write_text(body, encoding="utf-8")
    accepted = False
    try:
        trace = sim.read_trace(path)
    except TraceError as exc:
        assert_one_line(exc, f"{path}: ")
    else:
        accepted = True
        check_valid_ops(trace.ops)
    fuzzed("trace: corrupted CSV text (read_trace)", accepted=accepted)


@fuzz(60)
@given(blob=st.binary(max_size=300))
@example(blob=TRACE.read_text().encode("utf-16-le"))  # no byte-order mark: refused
def test_read_trace_of_binary_garbage(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(blob)
    with pytest.raises(TraceError) as info:
        sim.read_trace(path)
    assert_one_line(info.value, f"{path}: ")
    tried("trace: binary garbage files (read_trace)", "hypothesis")


header_values = st.one_of(values, st.dictionaries(
    st.sampled_from(["format", "model", "method", "seq_len", "batch", "x"]),
    st.one_of(values, st.just("edgellm-trace/1")), max_size=6))


@fuzz(80)
@given(header=st.one_of(header_values.map(lambda v: "# " + json.dumps(v)), text.map(
    lambda t: "#" + t.replace("\n", " ").replace("\r", " ")), text.map(lambda t: t.split("\n")[0])))
def test_read_trace_fuzzed_header_line(tmp_path: Path, header: str) -> None:
    path = tmp_path / "header.csv"
    path.write_text("\n".join([header, COLUMN_LINE, *ROW_LINES[:3]]) + "\n", encoding="utf-8")
    accepted = False
    try:
        trace = sim.read_trace(path)
    except TraceError as exc:
        assert_one_line(exc, f"{path}: ")
    else:
        accepted = True
        assert trace.header["format"] == "edgellm-trace/1"
    fuzzed("trace: fuzzed header line (read_trace)", accepted=accepted)


@fuzz(60)
@given(drop=st.sets(st.sampled_from(V1_COLUMNS), min_size=1),
       order=st.permutations(range(len(V1_COLUMNS))))
def test_missing_columns_are_listed_and_column_order_does_not_matter(
        tmp_path: Path, drop: set[str], order: list[int]) -> None:
    # The file carries the fixture's format-1 header, whose columns are V1_COLUMNS.
    columns = [V1_COLUMNS[i] for i in order]
    full = TRACE_OPS[columns].head(8)
    kept = [c for c in columns if c not in drop]
    path = tmp_path / "cols.csv"
    path.write_text(_csv_text(full[kept]) if kept else HEADER_LINE + "\n", encoding="utf-8")
    with pytest.raises(TraceError) as info:
        sim.read_trace(path)
    msg = assert_one_line(info.value, f"{path}: ")
    if kept:
        listed = msg.split("missing column(s) ")[1].split(" (")[0].split(", ")
        assert set(listed) == drop, (msg, drop)
    # The same rows in a shuffled column order simulate exactly like the original order.
    path.write_text(_csv_text(full), encoding="utf-8")
    shuffled = sim.simulate_trace(path, BASE_HW).ops[list(OPS_COLUMNS) + ["cycles", "energy_j"]]
    original = sim.simulate_trace(TRACE_OPS.head(8), BASE_HW).ops[list(OPS_COLUMNS)
                                                                  + ["cycles", "energy_j"]]
    pd.testing.assert_frame_equal(shuffled, original, check_exact=True, check_dtype=False)
    tried("trace: missing columns / shuffled column order", "hypothesis")


tensor_edit = st.tuples(st.integers(0, 2), st.sampled_from(TENSOR_COLUMNS), cells)


@fuzz(100)
@given(edits=st.lists(tensor_edit, min_size=1, max_size=3))
def test_validate_tensors_fuzzed_cells(edits: list) -> None:
    df = pd.read_csv(TENSORS).head(3).astype(object)
    for row, col, value in edits:
        df.at[row, col] = value
    accepted = False
    try:
        table = sim.validate_tensors(df, "tensors")
    except TraceError as exc:
        msg = assert_one_line(exc, "tensors: row ")
        assert any(f"row {r + 1}:" in msg and c in msg for r, c, _ in edits), (msg, edits)
    else:
        accepted = True
        assert table["kind"].isin(TENSOR_KINDS).all()
        for col in ("numel", "bytes"):
            assert (table[col] >= 0).all() and (table[col] <= 2**53).all()
        fp = sim.simulate_trace(TRACE_OPS.head(2), BASE_HW, tensors=table).footprint
        assert fp is not None and fp.peak_memory_bytes >= 0
    fuzzed("trace: fuzzed tensor table cells (validate_tensors)", accepted=accepted)


def _trace_body(*, header: str = HEADER_LINE, columns: str = COLUMN_LINE,
                rows: list[str] | None = None, **cell: Any) -> str:
    rows = list(ROW_LINES[:4] if rows is None else rows)
    if cell:
        names = columns.split(",")
        first = dict(zip(names, rows[0].split(","), strict=True))
        first.update({k: str(v) for k, v in cell.items()})
        rows[0] = ",".join(first[n] for n in names)
    return "\n".join([header, columns, *rows]) + "\n"


BAD_TRACES: list[tuple[str, str | bytes, tuple[str, ...]]] = [
    ("empty_file", "", ("first line must be",)),
    ("header_only", HEADER_LINE + "\n", ("file has no table",)),
    ("no_rows", HEADER_LINE + "\n" + COLUMN_LINE + "\n", ("the ops table has no rows",)),
    ("no_header_line", "\n".join([COLUMN_LINE, *ROW_LINES[:3]]) + "\n", ("first line must be",)),
    ("wrong_header_json", _trace_body(header="# {oops"), ("header line is not valid JSON",)),
    ("header_not_object", _trace_body(header="# [1, 2]"), ("header must be a JSON object",)),
    ("header_missing_keys", _trace_body(header='# {"format": "edgellm-trace/1"}'),
     ("header is missing key(s) model, method, seq_len, batch",)),
    ("header_wrong_format", _trace_body(header=HEADER_LINE.replace("edgellm-trace/1", "v2")),
     ("header format must be",)),
    ("missing_column", _trace_body(columns=COLUMN_LINE.replace(",count", ",repeat")),
     ("missing column(s) count",)),
    ("missing_columns", _trace_body(columns=COLUMN_LINE.replace("M,N,K", "m,n,k")),
     ("missing column(s) M, N, K",)),
    ("more_fields_than_header", _trace_body(rows=[r + ",7" for r in ROW_LINES[:3]]),
     ("more fields than the column header",)),
    ("short_row", _trace_body(rows=["0,q_proj,fwd"]), ("row 1: column M",)),
    ("ragged_row", _trace_body(rows=[*ROW_LINES[:2], ROW_LINES[2] + ",1,2"]),
     ("not a readable CSV",)),
    ("unterminated_quote", _trace_body(rows=['"' + ROW_LINES[0]]), ("not a readable CSV",)),
    ("M_zero", _trace_body(M=0), ("row 1: column M must be an integer > 0 (got 0)",)),
    ("M_negative", _trace_body(M=-32), ("row 1: column M must be an integer > 0 (got -32)",)),
    ("N_negative", _trace_body(N=-1), ("row 1: column N",)),
    ("K_zero", _trace_body(K=0), ("row 1: column K",)),
    ("M_nan", _trace_body(M="nan"), ("row 1: column M", "nan")),
    ("M_inf", _trace_body(M="inf"), ("row 1: column M", "inf")),
    ("M_fraction", _trace_body(M=3.5), ("row 1: column M", "3.5")),
    ("M_text", _trace_body(M="big"), ("row 1: column M", "'big'")),
    ("M_empty", _trace_body(M=""), ("row 1: column M",)),
    ("M_beyond_int64", _trace_body(M=10**30), ("row 1: column M", "at most 2**53")),
    ("count_beyond_int64", _trace_body(count=2**64), ("row 1: column count", "at most 2**53")),
    ("count_zero", _trace_body(count=0), ("row 1: column count must be an integer >= 1",)),
    ("layer_below_minus_one", _trace_body(layer=-2), ("row 1: column layer",)),
    ("sparsity_nan", _trace_body(weight_sparsity="nan"), ("row 1: column weight_sparsity",)),
    ("sparsity_inf", _trace_body(weight_sparsity="inf"), ("row 1: column weight_sparsity",)),
    ("sparsity_one", _trace_body(weight_sparsity=1.0), ("must be in [0, 1)",)),
    ("sparsity_negative", _trace_body(weight_sparsity=-0.1), ("must be in [0, 1)",)),
    ("sparse_but_dense", _trace_body(weight_sparsity=0.5), ("needs sparsity_pattern",)),
    ("phase_typo", _trace_body(phase="fwdx"), ("row 1: column phase must be one of", "'fwdx'")),
    ("phase_empty", _trace_body(phase=""), ("row 1: column phase",)),
    ("pattern_typo", _trace_body(sparsity_pattern="dens"), ("column sparsity_pattern",)),
    ("pattern_n_ge_m", _trace_body(sparsity_pattern="4:2"), ("0 < N < M",)),
    ("pattern_zero_n", _trace_body(sparsity_pattern="0:4"), ("0 < N < M",)),
    ("w_bits_zero", _trace_body(w_bits=0), ("row 1: column w_bits must be an integer in 1..32",)),
    ("a_bits_33", _trace_body(a_bits=33), ("row 1: column a_bits",)),
    ("trainable_maybe", _trace_body(trainable="maybe"), ("row 1: column trainable",)),
    ("module_empty", _trace_body(module=""), ("row 1: column module is empty",)),
    ("binary", b"\x00\xff\xfe\x89garbage", ("a binary file (NUL byte at offset 0)",)),
    ("utf16_no_bom", TRACE.read_text().encode("utf-16-le"), ("UTF-16LE text without a byte-order mark",)),
]


@pytest.mark.parametrize(("case", "content", "needles"), BAD_TRACES,
                         ids=[c[0] for c in BAD_TRACES])
def test_bad_traces_in_run_and_sweep(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                     case: str, content: str | bytes,
                                     needles: tuple[str, ...]) -> None:
    path = tmp_path / "bad.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    ops, png = run_outputs(out)
    res = cli(capsys, "sim.run", "--hw", HW, "--trace", path, "--ops-csv", ops,
              "--roofline-png", png, "--json")
    assert_one_line_error(*res, str(path), *needles)
    assert_nothing_written(out)
    tried("trace: bad files (sim.run)")
    res = cli(capsys, "sim.sweep", "--hw", HW, "--trace", path, "--out", out / "sweep",
              "--no-plots")
    assert_one_line_error(*res, str(path), *needles)
    assert_nothing_written(out)
    tried("trace: bad files (sim.sweep)")


BAD_TENSORS: list[tuple[str, str | bytes, str]] = [
    ("empty", "", "file has no table"),
    ("missing_columns", "name,kind\nx,weight\n", "missing column(s) layer, numel, bits, bytes"),
    ("negative_numel", ",".join(TENSOR_COLUMNS) + "\nx,weight,0,-1,8,8\n", "column numel"),
    ("nan_bytes", ",".join(TENSOR_COLUMNS) + "\nx,weight,0,1,8,nan\n", "column bytes"),
    ("huge_bytes", ",".join(TENSOR_COLUMNS) + "\nx,weight,0,1,8,1e300\n", "at most 2**53"),
    ("bad_kind", ",".join(TENSOR_COLUMNS) + "\nx,cache,0,1,8,8\n", "column kind"),
    ("bits_zero", ",".join(TENSOR_COLUMNS) + "\nx,weight,0,1,0,8\n", "column bits"),
    ("binary", b"\x00\x01\x02garbage", "a binary file (NUL byte at offset 0)"),
    ("utf16_bom_header_only", "\ufeffname".encode("utf-16-le"), "missing column(s)"),
]


@pytest.mark.parametrize(("case", "content", "needle"), BAD_TENSORS,
                         ids=[c[0] for c in BAD_TENSORS])
def test_bad_tensor_tables(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str,
                           content: str | bytes, needle: str) -> None:
    path = tmp_path / "bad.tensors.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    out = tmp_path / "out"
    ops, png = run_outputs(out)
    res = cli(capsys, "sim.run", "--hw", HW, "--trace", TRACE, "--tensors", path,
              "--ops-csv", ops, "--roofline-png", png)
    assert_one_line_error(*res, str(path), needle)
    assert_nothing_written(out)
    tried("trace: bad tensor tables (sim.run --tensors)")
    # The same table found next to its trace (NAME.tensors.csv) is read by sim.sweep too.
    (tmp_path / "bad.csv").write_text(TRACE.read_text())
    res = cli(capsys, "sim.sweep", "--hw", HW, "--trace", tmp_path / "bad.csv", "--out",
              out / "sweep", "--no-plots")
    assert_one_line_error(*res, str(path), needle)
    assert_nothing_written(out)
    tried("trace: bad tensor tables (sim.sweep)")


# ============================================================================ paths

def _paths(tmp: Path) -> dict[str, Path]:
    folder = tmp / "a_folder"
    folder.mkdir(exist_ok=True)
    a_file = tmp / "a_file"
    a_file.write_text("x")
    return {"missing": tmp / "missing.yaml", "folder": folder, "file": a_file}


PATH_CASES: list[tuple[str, Callable[[dict[str, Path], Path], list[str | Path]], str]] = [
    ("run --hw missing", lambda p, o: ["sim.run", "--hw", p["missing"], "--trace", TRACE],
     "hardware config not found"),
    ("run --hw folder", lambda p, o: ["sim.run", "--hw", p["folder"], "--trace", TRACE],
     "hardware config is a folder, not a file"),
    ("run --trace missing", lambda p, o: ["sim.run", "--hw", HW, "--trace", p["missing"]],
     "trace file not found"),
    ("run --trace folder", lambda p, o: ["sim.run", "--hw", HW, "--trace", p["folder"]],
     "trace file is a folder, not a file"),
    ("run --tensors missing", lambda p, o: ["sim.run", "--hw", HW, "--trace", TRACE,
                                            "--tensors", p["missing"]],
     "tensor table not found"),
    ("run --tensors folder", lambda p, o: ["sim.run", "--hw", HW, "--trace", TRACE,
                                           "--tensors", p["folder"]],
     "tensor table is a folder, not a file"),
    ("run --ops-csv in missing folder", lambda p, o: [
        "sim.run", "--hw", HW, "--trace", TRACE, "--ops-csv", o / "nope" / "ops.csv"],
     "does not exist"),
    ("run --ops-csv is a folder", lambda p, o: [
        "sim.run", "--hw", HW, "--trace", TRACE, "--ops-csv", p["folder"]], "is a folder"),
    ("run --ops-csv under a file", lambda p, o: [
        "sim.run", "--hw", HW, "--trace", TRACE, "--ops-csv", p["file"] / "ops.csv"],
     "does not exist"),
    ("run --ops-csv empty", lambda p, o: [
        "sim.run", "--hw", HW, "--trace", TRACE, "--ops-csv", ""], "is a folder"),
    # The ops CSV is fine, the plot's folder is not: neither may be written.
    ("run --roofline-png in missing folder", lambda p, o: [
        "sim.run", "--hw", HW, "--trace", TRACE, "--ops-csv", o / "ops.csv",
        "--roofline-png", o / "nope" / "roof.png"], "does not exist"),
    ("run --roofline-png is a folder", lambda p, o: [
        "sim.run", "--hw", HW, "--trace", TRACE, "--ops-csv", o / "ops.csv",
        "--roofline-png", p["folder"]], "is a folder"),
    ("gemm --hw missing", lambda p, o: ["sim.gemm", "--hw", p["missing"], "--M", "8", "--N",
                                        "8", "--K", "8"], "hardware config not found"),
    ("gemm --hw folder", lambda p, o: ["sim.gemm", "--hw", p["folder"], "--M", "8", "--N", "8",
                                       "--K", "8"], "hardware config is a folder, not a file"),
    ("sweep --hw missing", lambda p, o: ["sim.sweep", "--hw", p["missing"], "--trace", TRACE,
                                         "--out", o / "s"], "hardware config not found"),
    ("sweep --hw folder", lambda p, o: ["sim.sweep", "--hw", p["folder"], "--trace", TRACE,
                                        "--out", o / "s"], "hardware config is a folder, not a file"),
    ("sweep --hw glob matches nothing", lambda p, o: [
        "sim.sweep", "--hw", str(p["folder"] / "*.yaml"), "--trace", TRACE, "--out", o / "s"],
     "no config file matches"),
    ("sweep --trace missing", lambda p, o: ["sim.sweep", "--hw", HW, "--trace", p["missing"],
                                            "--out", o / "s"], "trace file not found"),
    ("sweep --trace folder", lambda p, o: ["sim.sweep", "--hw", HW, "--trace", p["folder"],
                                           "--out", o / "s"], "trace file is a folder, not a file"),
    ("sweep --out is a file", lambda p, o: ["sim.sweep", "--hw", HW, "--trace", TRACE, "--out",
                                            p["file"]], "exists and is not a folder"),
    ("sweep --out under a file", lambda p, o: ["sim.sweep", "--hw", HW, "--trace", TRACE,
                                               "--out", p["file"] / "s"], "a_file"),
]


@pytest.mark.parametrize(("case", "argv", "needle"), PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_bad_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, case: str,
                   argv: Callable[[dict[str, Path], Path], list[str | Path]],
                   needle: str) -> None:
    monkeypatch.setenv("TQDM_DISABLE", "1")
    out = tmp_path / "out"
    out.mkdir()
    tool, *args = argv(_paths(tmp_path), out)
    assert_one_line_error(*cli(capsys, str(tool), *args), needle)
    assert_nothing_written(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "a_folder", "out"]
    assert list((tmp_path / "a_folder").iterdir()) == []
    tried("paths: missing, folders, unwritable outputs")


# ============================================================================ sim.gemm flags

flag_values = st.one_of(
    st.integers(-5, 2**40).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "x", "0", "-1", "1e3", "0x10", "1_000", " 8", "nan", "2:4", "3:2",
                     "dense", "unstructured", "ws", "os", "is", "auto", "latency", "edp", "33",
                     "0.5", "1.0", "9" * 30]), text)
GEMM_FLAGS = ["--M", "--N", "--K", "--sparsity", "--pattern", "--w-bits", "--a-bits", "--rows",
              "--cols", "--dataflow", "--objective"]


@fuzz(120)
@given(flags=st.dictionaries(st.sampled_from(GEMM_FLAGS), flag_values, min_size=1, max_size=4))
def test_gemm_fuzzed_flags(capsys: pytest.CaptureFixture[str], flags: dict[str, str]) -> None:
    given_flags = {"--M": "64", "--N": "64", "--K": "64", **flags}
    argv = ["--hw", str(HW), "--json", *(f"{k}={v}" for k, v in given_flags.items())]
    code, out, err = cli(capsys, "sim.gemm", *argv)
    if code == 0:
        res = json.loads(out)
        assert math.isfinite(res["cycles"]) and res["cycles"] >= res["roofline_cycles"] * (
            1 - 1e-9)
        assert err == ""
    else:
        assert_one_line_error(code, out, err)
    fuzzed("sim.gemm: fuzzed flags", accepted=code == 0)


BAD_GEMM = [
    ("--M", "0"), ("--M", "-3"), ("--M", "x"), ("--M", "3.5"), ("--N", ""), ("--K", "1e3"),
    ("--sparsity", "nan"), ("--sparsity", "inf"), ("--sparsity", "1"), ("--sparsity", "-0.1"),
    ("--pattern", "bogus"), ("--pattern", "3:2"), ("--pattern", "0:4"), ("--w-bits", "0"),
    ("--a-bits", "33"), ("--rows", "0"), ("--cols", "-1"), ("--dataflow", "rs"),
    ("--objective", "power"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_GEMM, ids=[f"{f}={v}" for f, v in BAD_GEMM])
def test_bad_gemm_flags(capsys: pytest.CaptureFixture[str], flag: str, value: str) -> None:
    argv = {"--M": "64", "--N": "64", "--K": "64", flag: value}
    extra = ["--sparsity=0.5"] if flag == "--pattern" else []
    res = cli(capsys, "sim.gemm", "--hw", HW, *extra, *(f"{k}={v}" for k, v in argv.items()))
    assert_one_line_error(*res, flag.lstrip("-").replace("-", "_")
                          if flag == "--pattern" else flag)
    tried("sim.gemm: bad flags")


def test_sparse_flag_with_dense_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    res = cli(capsys, "sim.gemm", "--hw", HW, "--M", "8", "--N", "8", "--K", "8",
              "--sparsity", "0.5", "--pattern", "dense")
    assert_one_line_error(*res, "needs sparsity_pattern")
    tried("sim.gemm: bad flags")


# ============================================================================ real entry points

def _python_m(env: dict, *argv: str | Path, **extra_env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *map(str, argv)], capture_output=True,
                          text=True, env={**env, **extra_env}, cwd=ROOT, timeout=120)


def test_real_entry_points_fail_in_one_line(cli_env: dict, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.yaml"
    garbage.write_bytes(b"\x00\xff\xfe\x89garbage")
    huge = tmp_path / "huge.csv"
    huge.write_text(_trace_body(M=10**30))
    out = tmp_path / "out"
    out.mkdir()
    runs = [
        (("sim.run", "--hw", garbage, "--trace", TRACE, "--ops-csv", out / "ops.csv"),
         "a binary file"),
        (("sim.gemm", "--hw", HW, "--M", "0", "--N", "8", "--K", "8"), "--M"),
        (("sim.sweep", "--hw", HW, "--trace", huge, "--out", out / "s"), "at most 2**53"),
    ]
    for argv, needle in runs:
        proc = _python_m(cli_env, *argv)
        assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, needle)
        assert_nothing_written(out)
        tried("real entry points (python -m, subprocess)")


# ============================================================================ determinism

def _frame_bytes(df: pd.DataFrame) -> bytes:
    buf = io.StringIO()
    df.to_csv(buf, index=False)
    return buf.getvalue().encode()


@pytest.mark.parametrize("dataflow", ["auto", "ws", "os", "is"])
@pytest.mark.parametrize("objective", ["latency", "energy", "edp"])
def test_simulation_is_bit_exact_in_process(dataflow: str, objective: str) -> None:
    runs = [sim.simulate_trace(TRACE, HW, dataflow=dataflow, objective=objective)
            for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0].ops, runs[1].ops, check_exact=True)
    assert _frame_bytes(runs[0].ops) == _frame_bytes(runs[1].ops)
    assert json.dumps(runs[0].summary(), sort_keys=True) == json.dumps(runs[1].summary(),
                                                                        sort_keys=True)
    tried("simulate_trace twice in one process", kind="determinism")


@fuzz(25)
@given(seed=st.integers(0, 2**32 - 1))
def test_per_op_results_do_not_depend_on_row_order(seed: int) -> None:
    order = np.random.default_rng(seed).permutation(len(TRACE_OPS))
    shuffled = TRACE_OPS.iloc[order].reset_index(drop=True)
    base = sim.simulate_trace(TRACE_OPS, BASE_HW).ops
    again = sim.simulate_trace(shuffled, BASE_HW).ops
    back = again.iloc[np.argsort(order)].reset_index(drop=True)
    pd.testing.assert_frame_equal(base, back, check_exact=True)
    tried("row order of the trace (shuffled)", "hypothesis", kind="determinism")


def test_simulation_is_bit_exact_across_processes(cli_env: dict, tmp_path: Path) -> None:
    outs = []
    for i, hash_seed in enumerate(["0", "4242"]):
        ops = tmp_path / f"ops{i}.csv"
        proc = _python_m(cli_env, "sim.run", "--hw", HW, "--trace", TRACE, "--json",
                         "--ops-csv", ops, PYTHONHASHSEED=hash_seed)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        outs.append((ops.read_bytes(), json.dumps(summary, sort_keys=True)))
        tried("sim.run in separate processes (PYTHONHASHSEED varied)", kind="determinism")
    assert outs[0] == outs[1]
    # And equal to this process's numbers, written the same way.
    here = sim.simulate_trace(TRACE, HW)
    expected = tmp_path / "here.csv"
    here.ops.to_csv(expected, index=False)
    assert expected.read_bytes() == outs[0][0]


SWEEP_TIMING = ["run_id", "point_seconds"]  # wall-clock bookkeeping, not results


def test_sweep_rows_are_identical_for_the_same_inputs(cli_env: dict, tmp_path: Path) -> None:
    grid = ["pe.rows=8,32", "dram.bandwidth_gbps=4,25.6"]
    tables = []
    for i in range(2):
        table = sim_sweep.run_sweep([HW, ROOT / "hwconfigs" / "eyeriss.yaml"], [TRACE], grid,
                                    out=tmp_path / f"s{i}", plots=False)
        assert len(table) == 8 and (table["status"] == "ok").all()
        tables.append(pd.read_csv(tmp_path / f"s{i}" / "sweep.csv").drop(columns=SWEEP_TIMING))
        tried("sim.sweep run twice in one process", kind="determinism")
    proc = _python_m(cli_env, "sim.sweep", "--hw", HW, ROOT / "hwconfigs" / "eyeriss.yaml",
                     "--trace", TRACE, *(a for g in grid for a in ("--grid", g)), "--out",
                     tmp_path / "s2", "--no-plots", "--json", PYTHONHASHSEED="77")
    assert proc.returncode == 0, proc.stderr
    tables.append(pd.read_csv(tmp_path / "s2" / "sweep.csv").drop(columns=SWEEP_TIMING))
    tried("sim.sweep in a separate process (PYTHONHASHSEED varied)", kind="determinism")
    for other in tables[1:]:
        pd.testing.assert_frame_equal(tables[0], other, check_exact=True)
    # Bit-exact down to the bytes of every metric cell.
    assert _frame_bytes(tables[0]) == _frame_bytes(tables[2])


def test_library_errors_are_sim_errors() -> None:
    """Every user error class the CLIs catch derives from SimError (nothing else is caught)."""
    for cls in (ConfigError, TraceError, MappingError, sim_sweep.SweepError):
        assert issubclass(cls, SimError)
