"""Run the reliability tests and write docs/results/reliability.md from what they did.

    python benchmarks/bench_reliability.py                # everything (long)
    python benchmarks/bench_reliability.py --field-only   # only the faults-from-the-field section

Runs, in one pytest session, the bad-input modules (which count every input they tried after
its assertions passed, see tests/test_reliability_report.py) and the fault-injection tests
(SIGKILL, Ctrl-C, SIGTERM, failing trials, concurrent workers, torn writes). The page lists
the counts per category and each fault test with its outcome, so every number on it comes
from this command. Exits non-zero, and leaves the page alone, if any test failed.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402

DOC = ROOT / "docs" / "results" / "reliability.md"
INPUT_MODULES = ["tests/test_reliability_sim.py", "tests/test_reliability_inputs.py", "tests/test_reliability_policy.py",
                 "tests/test_reliability_dse.py"]
# Fault tests: (pytest node, what is injected, what must hold afterwards).
FAULTS = [
    ("tests/test_dse_search.py::test_sigkill_mid_trial_then_resume",
     "SIGKILL of a search worker mid-trial",
     "no output written by the dead run; after the heartbeat grace period the rerun completes the requested trials, no trial is left RUNNING, trials.csv matches the study"),
    ("tests/test_dse_search.py::test_ctrl_c_keeps_finished_trials",
     "Ctrl-C (SIGINT) during a search",
     "exit 130, no traceback; every finished trial is in the study and in trials.csv"),
    ("tests/test_dse_search.py::test_failing_trial_is_recorded_and_search_goes_on",
     "a trial that raises (impossible policy)",
     "recorded FAILED with its reason in user_attrs; the study reaches its trial count"),
    ("tests/test_dse_search.py::test_resume_completes_without_redoing",
     "the same command run twice",
     "the second run adds no trials that were already done"),
    ("tests/test_dse_search.py::test_resume_refuses_other_settings",
     "resuming a study with different settings",
     "one-line error, exit 2"),
    ("tests/test_dse_search.py::test_two_workers_share_a_journal",
     "two worker processes on one journal file",
     "the trial count adds up; outputs are written"),
    ("tests/test_dse_search.py::test_two_workers_share_a_postgres_study",
     "two workers on one PostgreSQL study (real server on loopback)",
     "trial counts add up; the front is written once"),
    ("tests/test_dse_search.py::test_same_seed_same_study",
     "the same seed twice",
     "identical trials (parameters and objectives)"),
    ("tests/test_dse_io.py::test_sigkill_during_writes_never_leaves_half_a_file",
     "SIGKILL while trials.csv / pareto.json are being rewritten (8 random moments)",
     "each file parses and holds exactly one complete version"),
    ("tests/test_dse_io.py::test_failed_write_keeps_the_old_file_and_no_temp",
     "an exception half-way through writing an output",
     "the old file is intact, no temp file left"),
    ("tests/test_sim_sweep.py::test_sigkill_mid_sweep_loses_nothing_done",
     "SIGKILL of a hardware sweep",
     "every finished point kept; the rerun computes only the rest"),
    ("tests/test_sim_sweep.py::test_ctrl_c_keeps_finished_points_and_resume_completes",
     "KeyboardInterrupt (as from Ctrl-C) raised inside a sweep",
     "finished points kept, outputs written, resume completes"),
    ("tests/test_sim_sweep.py::test_sigterm_saves_like_ctrl_c",
     "SIGTERM during a sweep",
     "same as Ctrl-C"),
    ("tests/test_sim_sweep.py::test_point_store_skips_torn_line_and_appends_on_new_line",
     "a torn last line in the sweep's point store (kill mid-append)",
     "the torn line is skipped and recomputed, later lines start on a new line"),
    ("tests/test_sim_sweep.py::test_internal_errors_are_recorded_and_retried",
     "an internal error in one sweep point",
     "recorded as a row with its reason, retried on the next run"),
]

# Faults from the field (issue 20): inputs built from public bug reports of the field's tools
# (SCALE-Sim, ZigZag, Wanda, GPTQ, AutoGPTQ, peft, Optuna, transformers), each fixed as a kind.
# (pytest node, kind of fault, what must hold).
FIELD = [
    ("tests/test_shared_textfile.py::test_same_corpus_in_every_encoding_gives_identical_tokens_and_perplexity",
     "text encodings: a corpus written as UTF-16LE with a BOM and CRLF (PowerShell's `>`), and as UTF-8, UTF-8 with "
     "a BOM, UTF-16BE and UTF-32 with BOMs, each with LF and CRLF",
     "identical documents, token count and perplexity in all 12 files (it was read as garbage, exit 0)"),
    ("tests/test_shared_textfile.py::test_hw_yaml_and_traces_in_every_encoding_read_the_same",
     "text encodings: hardware YAML, trace and tensor-table CSV in every BOM'd encoding with CRLF",
     "the same config and trace as the UTF-8 files (sim and workloads readers)"),
    ("tests/test_shared_textfile.py::test_policy_json_in_every_encoding_loads_the_same_policy",
     "text encodings: policy JSON in every BOM'd encoding with CRLF", "the same policy"),
    ("tests/test_shared_textfile.py::test_undecodable_bytes_are_one_line_naming_file_and_offset",
     "text encodings: Latin-1 bytes, UTF-16 without a BOM, a PNG, a truncated UTF-16 file",
     "one line naming the file and the byte offset (UTF-16 without a BOM named as such); binaries refused"),
    ("tests/test_workloads_luc_pack.py::test_trace_bytes_equal_the_packed_compressed_weights",
     "storage bytes: 7 policies (magnitude/Wanda/SparseGPT x RTN/GPTQ; unstructured, 2:4, 4:8; 2-8 and 16 bits; "
     "groups 32, 48, 64, 100, 128 and per-channel; quantized head)",
     "the trace's bytes for every weight equal the packed real compressed weight, byte for byte"),
    ("tests/test_dse_study_guard.py::test_foreign_study_is_refused_before_anything_is_written",
     "a study of the same name made by another tool (single-objective with trials, other directions, other "
     "metric names, no settings), run twice",
     "one-line error naming the difference and \"use another --study-name\"; the other study and --out untouched"),
    ("tests/test_dse_study_guard.py::test_two_workers_on_one_sqlite_study_finish_with_exactly_the_trials",
     "two workers on one SQLite study",
     "exactly --trials complete trials (was one too many); every failed trial has its reason"),
    ("tests/test_dse_search.py::test_two_workers_share_a_journal",
     "two workers on one journal file", "exactly --trials complete trials"),
    ("tests/test_dse_study_guard.py::test_of_two_racing_trials_for_the_last_slot_the_lower_runs",
     "two workers asking for the last trial at once", "the lower-numbered trial runs; the other is not evaluated"),
    ("tests/test_dse_study_guard.py::test_waits_for_other_workers_last_trial_and_says_why",
     "resuming while another worker's trial runs (it completes, or fails)",
     "the wait is announced with the trials it waits for and the longest a dead worker can hold it; the count "
     "stays exact"),
    ("tests/test_workloads_models.py::test_a_file_is_named_as_a_file_not_as_missing",
     "--model given a file that exists", "says it is a file and to pass its folder (was \"not found\")"),
    ("tests/test_workloads_models.py::test_a_broken_gguf_file_says_it_cannot_be_loaded",
     "--model given a .gguf file", "loaded directly (the real one: test_the_real_gguf_file_loads_directly); a "
     "broken one is one line saying it cannot be loaded"),
]


def run_tests(report: Path, junit: Path, *, field_only: bool = False) -> int:
    env = {**os.environ, "EDGELLM_RELIABILITY_REPORT": str(report), "TQDM_DISABLE": "1"}
    field = sorted({f[0] for f in FIELD})
    nodes = field if field_only else (INPUT_MODULES + ["tests/test_dse_io.py"]
                                      + sorted({f[0] for f in FAULTS if "test_dse_io" not in f[0]} | set(field)))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *nodes]
    return subprocess.call(cmd, cwd=ROOT, env=env)


def outcomes(junit: Path) -> dict[str, tuple[str, float]]:
    """pytest node id (without parameters) -> (worst outcome, total seconds)."""
    out: dict[str, tuple[str, float]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        node = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "").split("[")[0]
        state = "failed" if case.find("failure") is not None or case.find("error") is not None else (
            "skipped" if case.find("skipped") is not None else "passed")
        old_state, old_t = out.get(node, ("passed", 0.0))
        worst = max(old_state, state, key=["passed", "skipped", "failed"].index)
        out[node] = (worst, old_t + float(case.get("time", 0)))
    return out


def render(report: dict, results: dict[str, tuple[str, float]], command: str) -> str:
    totals = report["totals"]
    lines = [
        "# Reliability: faults, bad input, determinism",
        "",
        f"Made by `{command}` (runs the tests below and writes this page).",
        "",
        "## Faults injected",
        "",
        "| fault | must hold afterwards | test | outcome |",
        "|---|---|---|---|",
    ]
    for node, fault, holds in FAULTS:
        state, secs = results.get(node, ("not run", 0.0))
        lines.append(f"| {fault} | {holds} | `{node.split('::')[1]}` | {state} ({secs:.0f} s) |")
    states = [results.get(n, ("not run",))[0] for n, *_ in FAULTS]
    lost = ("nothing" if all(st == "passed" for st in states) else
            "see the failed rows" if "failed" in states else "nothing in the rows that ran; see the skipped rows")
    lines += ["", f"What was lost: **{lost}** (a passed row means its check of lost or corrupt state held).", ""]
    lines += render_field(results, command)
    bad = report["categories"].get("bad_input", {})
    lines += [
        "## Bad inputs tried",
        "",
        f"**{totals.get('bad_input', 0)}** bad inputs tried (test cases, counted after their assertions passed): "
        f"{totals.get('bad_input.hypothesis', 0)} generated by hypothesis (fuzz scale {report.get('fuzz_scale', 1)}), "
        f"{totals.get('bad_input.explicit', 0)} listed by hand. Through a command line (categories naming a CLI), "
        "each ended in one `error: ...` line (or argparse's usage error), a non-zero exit and no partial output; "
        "at the library level (categories naming a function), each raised one single-line user error and nothing "
        f"else. A further {totals.get('valid_edge_input', 0)} unusual inputs were accepted as valid (and checked "
        f"where the test says so), and {totals.get('determinism', 0)} repeated runs were compared bit for bit.",
        "",
        "| category | generated | listed | total |",
        "|---|---|---|---|",
    ]
    for category, cell in sorted(bad.items()):
        lines.append(f"| {category} | {cell.get('hypothesis', 0)} | {cell.get('explicit', 0)} | {cell['total']} |")
    det = report["categories"].get("determinism", {})
    if det:
        lines += ["", "## Determinism", "", "| check | runs compared |", "|---|---|"]
        lines += [f"| {c} | {cell['total']} |" for c, cell in sorted(det.items())]
    lines += ["", "Raw counts: `runs/reliability.json` (written by this command through "
              "`EDGELLM_RELIABILITY_REPORT`).", ""]
    return "\n".join(lines)


def render_field(results: dict[str, tuple[str, float]], command: str) -> list[str]:
    """The "faults from the field" section, between markers so that ``--field-only`` can
    re-render it alone."""
    lines = [FIELD_BEGIN, "## Faults from the field, each fixed as a kind", "",
             "Inputs built from public bug reports in the field (SCALE-Sim, ZigZag, Wanda, GPTQ, AutoGPTQ, peft, "
             "Optuna, transformers); each failing one was fixed for its whole kind (issue 20). "
             f"This section made by `{command}`.", "",
             "| input | must hold | test | outcome |", "|---|---|---|---|"]
    for node, fault, holds in FIELD:
        state, secs = results.get(node, ("not run", 0.0))
        lines.append(f"| {fault} | {holds} | `{node.split('::')[1]}` | {state} ({secs:.0f} s) |")
    return lines + ["", FIELD_END, ""]


FIELD_BEGIN, FIELD_END = "<!-- field faults: begin -->", "<!-- field faults: end -->"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", default=str(ROOT / "runs" / "reliability.json"),
                        help="where the raw counts go (default: runs/reliability.json)")
    parser.add_argument("--field-only", action="store_true",
                        help="run only the faults-from-the-field tests and re-render only their section "
                        "(the rest of the page stays as the last full run wrote it)")
    args = parser.parse_args()
    if args.field_only:
        return field_only()
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    report.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        code = run_tests(report, junit)
        if code != 0:
            print(f"tests failed (pytest exit {code}); {DOC} left as it was", file=sys.stderr)
            return 1
        results = outcomes(junit)
    io.write_text(DOC, render(json.loads(report.read_text()), results, "python benchmarks/bench_reliability.py"))
    print(f"wrote {DOC}")
    return 0


def field_only() -> int:
    page = DOC.read_text() if DOC.is_file() else ""
    with tempfile.TemporaryDirectory() as tmp:
        code = run_tests(Path(tmp) / "report.json", Path(tmp) / "junit.xml", field_only=True)
        if code != 0:
            print(f"tests failed (pytest exit {code}); {DOC} left as it was", file=sys.stderr)
            return 1
        section = "\n".join(render_field(outcomes(Path(tmp) / "junit.xml"),
                                          "python benchmarks/bench_reliability.py --field-only"))
    if FIELD_BEGIN in page:
        head, rest = page.split(FIELD_BEGIN, 1)
        page = head + section + rest.split(FIELD_END, 1)[1].lstrip("\n")
    else:
        marker = "## Bad inputs tried"
        page = page.replace(marker, section + "\n" + marker, 1) if marker in page else page + "\n" + section
    io.write_text(DOC, page)
    print(f"wrote {DOC} (faults-from-the-field section only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
