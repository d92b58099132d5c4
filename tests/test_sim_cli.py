"""The command-line tools, run as a user would (subprocesses)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim import gemm as sim_gemm
from sim import run as sim_run

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "tests" / "data" / "tiny_step.csv"
HW = ROOT / "hwconfigs" / "edge_llm.yaml"


def _run(cli_env: dict, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          env=cli_env, cwd=cwd, timeout=120)


def _in_process(capsys: pytest.CaptureFixture[str], tool: str, *args: str
                ) -> subprocess.CompletedProcess:
    """Run a CLI's main() in this process (same code path, no interpreter start-up)."""
    main = {"sim.run": sim_run.main, "sim.gemm": sim_gemm.main}[tool]
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess([tool, *args], code, out, err)


def _assert_one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert "Traceback" not in proc.stderr


def test_run_json_has_the_promised_keys(cli_env: dict, tmp_path: Path) -> None:
    ops_csv = tmp_path / "ops.csv"
    png = tmp_path / "roof.png"
    proc = _run(cli_env, "sim.run", "--hw", str(HW), "--trace", str(TRACE), "--json",
                "--ops-csv", str(ops_csv), "--roofline-png", str(png))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("total_cycles", "latency_s", "dram_bytes", "energy_j", "peak_memory_bytes",
                "fits_in_dram", "roofline_cycles", "ops", "per_phase"):
        assert key in out, key
    assert out["ops"] == 43 and out["fits_in_dram"] is True
    assert out["total_cycles"] >= out["roofline_cycles"]
    assert set(out["per_phase"]) == {"fwd", "bwd_input", "bwd_weight"}
    assert sum(p["cycles"] for p in out["per_phase"].values()) == pytest.approx(
        out["total_cycles"], abs=3)
    header = ops_csv.read_text().splitlines()[0].split(",")
    for col in ("cycles", "compute_cycles", "stall_cycles", "utilization", "dram_bytes",
                "energy_j", "roofline_cycles", "roofline_ratio", "bound", "dataflow", "tile_m"):
        assert col in header
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_run_set_and_fixed_dataflow(capsys: pytest.CaptureFixture[str]) -> None:
    base = json.loads(_in_process(capsys, "sim.run", "--hw", str(HW), "--trace", str(TRACE),
                                  "--json").stdout)
    slow = json.loads(_in_process(capsys, "sim.run", "--hw", str(HW), "--trace", str(TRACE),
                                  "--json", "--set", "dram.bandwidth_gbps=1", "--dataflow",
                                  "ws").stdout)
    assert slow["dataflow"] == "ws" and set(slow["dataflow_mix"]) == {"ws"}
    assert slow["total_cycles"] > base["total_cycles"]


def test_run_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    proc = _in_process(capsys, "sim.run", "--hw", str(HW), "--trace", str(TRACE))
    assert proc.returncode == 0
    assert "total" in proc.stdout and "fits" in proc.stdout and "bwd_weight" in proc.stdout


def test_gemm_json(cli_env: dict) -> None:
    proc = _run(cli_env, "sim.gemm", "--hw", str(HW), "--M", "128", "--N", "576", "--K", "576",
                "--dataflow", "ws", "--rows", "16", "--cols", "16", "--sparsity", "0.5",
                "--w-bits", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for key in ("cycles", "compute_cycles", "stall_cycles", "utilization", "dram_bytes",
                "roofline_cycles", "energy_j", "dataflow"):
        assert key in out
    assert out["dataflow"] == "ws" and (out["rows"], out["cols"]) == (16, 16)
    assert out["w_bits"] == 4 and out["sparsity_pattern"] == "unstructured"
    assert out["cycles"] >= out["roofline_cycles"]


@pytest.mark.parametrize("tool", ["sim.run", "sim.gemm"])
def test_help_explains_flags_with_defaults(cli_env: dict, tool: str) -> None:
    proc = _run(cli_env, tool, "--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "--set KEY=VALUE" in text and "pe.rows=16" in text and "default" in text
    assert "--dataflow" in text and "(default: auto)" in text


def test_user_errors_are_one_line_and_write_nothing(cli_env: dict, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    out_csv = tmp_path / "ops.csv"
    bad_hw = tmp_path / "bad.yaml"
    bad_hw.write_text(HW.read_text().replace("rows: 32", "rows: -4"))
    typo_hw = tmp_path / "typo.yaml"
    typo_hw.write_text(HW.read_text().replace("clock_mhz:", "clock_mhz_:"))
    broken_yaml = tmp_path / "broken.yaml"
    broken_yaml.write_text("pe: {rows: 3\n")
    no_cols = tmp_path / "nocols.csv"
    no_cols.write_text(TRACE.read_text().replace(",count", ",repeat"))
    negative = tmp_path / "neg.csv"
    lines = TRACE.read_text().splitlines()
    lines[2] = lines[2].replace(",32,64,64,", ",-32,64,64,")
    negative.write_text("\n".join(lines) + "\n")

    cases = [
        (("--hw", str(bad_hw)), "pe.rows: must be > 0 (got -4)"),
        (("--hw", str(typo_hw)), "clock_mhz_: unknown field"),
        (("--hw", str(broken_yaml)), "invalid YAML"),
        (("--hw", str(tmp_path / "none.yaml")), "hardware config not found"),
        (("--hw", str(HW), "--set", "pe.cols=zero"), "pe.cols: "),
        (("--hw", str(HW), "--set", "nonsense"), "expected key=value"),
    ]
    # The first case of each kind goes through a real interpreter, the rest run in-process.
    for i, (args, expected) in enumerate(cases):
        argv = ("sim.run", *args, "--trace", str(TRACE), "--ops-csv", str(out_csv))
        proc = _run(cli_env, *argv) if i == 0 else _in_process(capsys, *argv)
        _assert_one_line_error(proc, expected)
    for i, (trace, expected) in enumerate([
            (negative, "row 1: column M must be an integer > 0 (got -32)"),
            (no_cols, "missing column(s) count"),
            (tmp_path / "none.csv", "trace file not found")]):
        argv = ("sim.run", "--hw", str(HW), "--trace", str(trace), "--ops-csv", str(out_csv))
        proc = _run(cli_env, *argv) if i == 0 else _in_process(capsys, *argv)
        _assert_one_line_error(proc, expected)
    proc = _in_process(capsys, "sim.run", "--hw", str(HW), "--trace", str(TRACE), "--ops-csv",
                       str(tmp_path / "no_such_dir" / "ops.csv"))
    _assert_one_line_error(proc, "does not exist")
    assert not out_csv.exists()
    assert list(tmp_path.glob(".*")) == []  # no temporary leftovers


@pytest.mark.parametrize(("args", "expected"), [
    (("--M", "-3", "--N", "8", "--K", "8"), "argument --M: expected an integer > 0"),
    (("--M", "8", "--N", "8"), "the following arguments are required: --K"),
    (("--M", "8", "--N", "8", "--K", "8", "--sparsity", "1.5"), "expected a number in [0, 1)"),
    (("--M", "8", "--N", "8", "--K", "8", "--dataflow", "rs"), "invalid choice: 'rs'"),
    (("--M", "8", "--N", "8", "--K", "8", "--pattern", "3:2"), "sparsity_pattern must be"),
    (("--M", "8", "--N", "8", "--K", "8", "--w-bits", "40"), "expected bits in 1..32"),
])
def test_gemm_argument_errors(cli_env: dict, capsys: pytest.CaptureFixture[str],
                             args: tuple[str, ...], expected: str) -> None:
    argv = ("sim.gemm", "--hw", str(HW), *args)
    first = args[1] == "-3"  # one case through a real interpreter, the rest in-process
    _assert_one_line_error(_run(cli_env, *argv) if first else _in_process(capsys, *argv),
                           expected)
