"""``python -m workloads.luc`` and ``workloads.evaluate --policy`` on the tiny model."""
import json
import subprocess
import sys

import pytest

from workloads.luc.cli import build_parser, main
from workloads.luc.policy import Policy

FAST = ["--model", "tiny", "--seq-len", "32", "--profile-windows", "2", "--calib-windows", "2", "--eval-max-windows", "2"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
    env["TQDM_DISABLE"] = "1"
    env["EDGELLM_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return env


def run(args, env, **kwargs):
    return subprocess.run([sys.executable, "-m", "workloads.luc", *args], capture_output=True, text=True, env=env, **kwargs)


def test_cli_json_policy_and_perplexities(env, tmp_path):
    out = tmp_path / "policy.json"
    res = run([*FAST, "--sparsity", "0.5", "--bits", "4", "--compare", "uniform", "--out", str(out), "--json"], env)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert {"policy", "avg_sparsity", "avg_bits", "perplexity"} <= set(result)
    assert set(result["perplexity"]) == {"dense", "luc", "uniform"}
    assert all(1 < v < 1e4 for v in result["perplexity"].values())
    assert [row["layer"] for row in result["policy"]] == [0, 1, 2, 3]
    assert set(result["policy"][0]) == {"layer", "sparsity", "w_bits"}
    assert result["avg_sparsity"] == pytest.approx(0.5, abs=0.0025) and result["avg_bits"] == pytest.approx(4.0)
    saved = Policy.load(out)
    # The defaults are luc.md's best: allocated by the paper's rule from a Wanda + RTN profile,
    # compressed with SparseGPT + GPTQ on the checkpoint's group of 32.
    assert saved.as_list() == result["policy"] and saved.meta["rule"] == "paper"
    assert (saved.prune, saved.quant, saved.group_size) == ("sparsegpt", "gptq", 32)
    assert result["sensitivity"]["method"] == {"prune": "wanda", "quant": "rtn", "group_size": 128}
    # The saved policy drives the evaluator.
    ev = subprocess.run(
        [sys.executable, "-m", "workloads.evaluate", "--model", "tiny", "--seq-len", "32", "--max-windows", "2",
         "--mc-items", "0", "--calib-windows", "2", "--policy", str(out), "--json"],
        capture_output=True, text=True, env=env,
    )
    assert ev.returncode == 0, ev.stderr
    evaluated = json.loads(ev.stdout)
    assert evaluated["policy"]["avg_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert evaluated["perplexity"] == pytest.approx(result["perplexity"]["luc"], rel=1e-4)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--bits", "9"], "--bits must be 2..8 or 16"),
        (["--sparsity", "0.95"], "average sparsity 0.95 is impossible"),
        (["--pattern", "2:4", "--sparsity", "0.6"], "must lie in 0..0.5"),
        (["--bits", "3.1"], "cannot be met within 0.5%"),
        (["--min-sparsity", "0.6", "--max-sparsity", "0.4"], "above --max-sparsity"),
        (["--data", "/nonexistent/corpus.txt"], "not found"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(env, tmp_path, monkeypatch, capsys, args, needle):
    monkeypatch.setenv("EDGELLM_CACHE", env["EDGELLM_CACHE"])
    out = tmp_path / "policy.json"
    with pytest.raises(SystemExit) as exc:
        main([*FAST, "--no-eval", "--json", "--out", str(out), *args])
    err = capsys.readouterr()
    assert exc.value.code == 2
    assert err.err.startswith("error: ") and needle in err.err, err.err
    assert err.err.count("\n") == 1 and err.out == ""
    assert not out.exists()


def test_cli_error_from_a_subprocess(env, tmp_path):
    res = run([*FAST, "--no-eval", "--bits", "3.1"], env)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_evaluate_rejects_a_bad_policy_file(env, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"layers": {"0": {"sparsity": 1.5, "w_bits": 4}}}')
    res = subprocess.run(
        [sys.executable, "-m", "workloads.evaluate", "--model", "tiny", "--policy", str(bad)],
        capture_output=True, text=True, env=env,
    )
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "sparsity must be in [0, 1)" in res.stderr


def test_help_documents_every_flag():
    for action in build_parser()._actions:
        assert action.help, action.option_strings
