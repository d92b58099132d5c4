"""The search loop on the tiny model: outputs, resume, failures, workers, faults, determinism."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from dse import search as search_cli
from dse.study import completed
from workloads.errors import UserError
from common.files import output_mode

ROOT = Path(__file__).resolve().parents[1]
# Small but real: the tiny model, two tuning steps per measurement, a 2 x 64-token traced step.
FAST = ["--model", "tiny", "--tune-steps", "2", "--tune-seq-len", "64", "--eval-windows", "2",
        "--trace-seq-len", "64", "--trace-batch", "2", "--remeasure", "1"]


def args(tmp: Path, name: str, trials: int, *extra: str, storage: str | None = None) -> list[str]:
    return [*FAST, "--trials", str(trials), "--storage", storage or f"sqlite:///{tmp}/study.db",
            "--study-name", name, "--out", str(tmp / name), *extra]


def load(tmp: Path, name: str, storage: str | None = None) -> optuna.Study:
    from dse.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage or f"sqlite:///{tmp}/study.db"))


def env(cache: Path, **extra: str) -> dict[str, str]:
    out = dict(os.environ, EDGELLM_CACHE=str(cache), TQDM_DISABLE="1")
    out["PYTHONPATH"] = str(ROOT) + os.pathsep + out.get("PYTHONPATH", "")
    out.update(extra)
    return out


def test_search_writes_every_output(cache, tmp_path, capsys):
    assert search_cli.main(args(tmp_path, "s", 12, "--json")) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    # Every phase is announced, with what was cached, and timed.
    phases = ["model tiny", "sensitivity profiles", "tuning table", "traces", "trials", "real measurement",
              "outputs in"]
    announced = [line for line in captured.err.splitlines() if line.startswith("[")]
    assert len(announced) == len(phases) and all(f"[{i + 1}/{len(phases)}] {name}" in line
                                                 for i, (line, name) in enumerate(zip(announced, phases)))
    assert captured.err.count("      done in ") == len(phases) and "read from the cache" in captured.err
    assert summary["seconds"] > 0
    out = tmp_path / "s"
    for name in ("pareto.csv", "pareto.json", "trials.csv", "pareto.png", "hypervolume.png", "summary.txt"):
        assert (out / name).stat().st_size > 0, name
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["state"] == "COMPLETE").sum() == 12 == summary["trials"]["complete"]
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert front and len(front) == summary["front_size"] == len(pd.read_csv(out / "pareto.csv"))
    ref = summary["reference"]
    assert ref["latency_s"] > 0 and ref["memory_bytes"] > 0 and ref["perplexity"] > 1
    # Every front member is non-dominated among the feasible complete trials.
    done = trials[(trials["state"] == "COMPLETE") & trials["feasible"]]
    objectives = ["perplexity", "latency_s", "memory_bytes"]
    for member in front:
        v = [member["values"][k] for k in objectives]
        dominated = ((done[objectives] <= v).all(axis=1) & (done[objectives] < v).any(axis=1)).any()
        assert not dominated
    # The front's best-ranked member was measured for real on held-out text.
    assert summary["real"] and all(r["split"] == "eval" and r["perplexity"] > 1 for r in summary["real"].values())
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    # Measured members carry their accuracy too; outputs are readable like any other file.
    measured = pd.read_csv(out / "pareto.csv").dropna(subset=["real_perplexity"])
    assert len(measured) and measured["real_accuracy"].between(0, 1).all()
    assert all((out / name).stat().st_mode & 0o777 == output_mode() for name in summary["files"])
    assert "next:" in (out / "summary.txt").read_text()


def test_resume_completes_without_redoing(cache, tmp_path):
    search_cli.main(args(tmp_path, "r", 5))
    first = [(t.number, t.params) for t in load(tmp_path, "r").trials]
    search_cli.main(args(tmp_path, "r", 9))
    study = load(tmp_path, "r")
    assert completed(study) == 9
    assert [(t.number, t.params) for t in study.trials][:5] == first


def test_resume_refuses_other_settings(cache, tmp_path, capsys):
    search_cli.main(args(tmp_path, "m", 2))
    with pytest.raises(SystemExit) as err:
        search_cli.main(args(tmp_path, "m", 3, "--max-sparsity", "0.5"))
    assert err.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: study 'm'") and "max_sparsity" in message


def test_accuracy_budget_is_a_constraint(cache, tmp_path):
    """A design predicted worse than the budget (x vanilla's perplexity) is infeasible, kept
    out of the front, and the budget is part of the study's identity."""
    from dse.report import REFERENCE_KEY
    from dse.study import feasible, front

    search_cli.main(args(tmp_path, "b", 10, "--max-perplexity-ratio", "1.02", "--remeasure", "0"))
    study = load(tmp_path, "b")
    budget = 1.02 * study.user_attrs[REFERENCE_KEY]["perplexity"]
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert {"dram", "perplexity"} <= set(trials[0].constraints)
    for t in trials:
        assert (t.constraints["perplexity"] <= 0) == (t.values[0] <= budget)
    assert any(not feasible(t) for t in trials)  # tiny random model: most designs lose accuracy
    assert all(t.values[0] <= budget for t in front(study))
    with pytest.raises(SystemExit) as err:
        search_cli.main(args(tmp_path, "b", 11, "--remeasure", "0"))  # the default budget: another study
    assert err.value.code == 2


def test_bad_budget_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        search_cli.main(args(tmp_path, "x", 2, "--max-perplexity-ratio", "0"))
    assert err.value.code == 2
    assert "--max-perplexity-ratio" in capsys.readouterr().err.strip().splitlines()[-1]


def test_failing_trial_is_recorded_and_search_goes_on(cache, tmp_path, monkeypatch):
    from dse import evaluator

    real = evaluator.Evaluator.evaluate

    def sometimes_impossible(self, design):
        if design.tuning.window == 2:
            raise UserError("impossible policy for this test")
        return real(self, design)

    monkeypatch.setattr(evaluator.Evaluator, "evaluate", sometimes_impossible)
    search_cli.main(args(tmp_path, "f", 8, "--remeasure", "0"))
    study = load(tmp_path, "f")
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert completed(study) == 8 and failed
    assert all("impossible policy" in t.user_attrs["fail_reason"] for t in failed)
    rows = pd.read_csv(tmp_path / "f" / "trials.csv")
    assert rows.loc[rows["state"] == "FAIL", "fail_reason"].str.contains("impossible policy").all()


@pytest.mark.parametrize("url, needle", [("mongodb://x", "not supported"), ("postgresql://nobody@127.0.0.1:1/x", "cannot open")])
def test_bad_storage_is_one_line(cache, tmp_path, url, needle):
    proc = subprocess.run([sys.executable, "-m", "dse.search", *args(tmp_path, "b", 2, storage=url)],
                          capture_output=True, text=True, env=env(cache), timeout=600)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("error: ") and needle in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_same_seed_same_study(cache, tmp_path):
    for name in ("d1", "d2"):
        search_cli.main(args(tmp_path, name, 6, "--remeasure", "0", "--sampler", "tpe"))
    one, two = load(tmp_path, "d1"), load(tmp_path, "d2")
    assert [t.params for t in one.trials] == [t.params for t in two.trials]
    assert [t.values for t in one.trials] == [t.values for t in two.trials]


def test_two_workers_share_a_journal(cache, tmp_path):
    storage = f"journal:{tmp_path}/study.log"
    proc = subprocess.run([sys.executable, "-m", "dse.search", *args(tmp_path, "w", 10, "--workers", "2", storage=storage)],
                          capture_output=True, text=True, env=env(cache), timeout=900)
    assert proc.returncode == 0 and "workers failed" not in proc.stderr, proc.stderr
    study = load(tmp_path, "w", storage=storage)
    # Exactly 10: a worker starts a trial only while complete + running < 10 (issue 20).
    assert completed(study) == 10
    # (Whether the second worker got a trial depends on how fast it started: not asserted.)
    assert len(pd.read_csv(tmp_path / "w" / "trials.csv")) == len(study.trials)


def _wait_for(predicate, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_sigkill_mid_trial_then_resume(cache, tmp_path):
    """A killed worker leaves a RUNNING trial; the heartbeat marks it failed, it is retried, and
    rerunning the command completes the requested number of trials."""
    fast_heartbeat = env(cache, EDGELLM_HEARTBEAT_S="1", EDGELLM_GRACE_S="2")
    cmd = [sys.executable, "-m", "dse.search", *args(tmp_path, "k", 40, "--remeasure", "0")]
    proc = subprocess.Popen(cmd, env=fast_heartbeat, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (tmp_path / "study.db").exists() and _safe_complete(tmp_path, "k") >= 3, 600)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "k" / "trials.csv").exists()  # killed before writing anything
    time.sleep(3)  # past the grace period
    short = [*args(tmp_path, "k", 12, "--remeasure", "0")]
    done = subprocess.run([sys.executable, "-m", "dse.search", *short], env=fast_heartbeat,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    study = load(tmp_path, "k")
    states = [t.state for t in study.trials]
    assert completed(study) >= 12
    assert optuna.trial.TrialState.RUNNING not in states
    assert pd.read_csv(tmp_path / "k" / "trials.csv")["state"].eq("COMPLETE").sum() == completed(study)


def _safe_complete(tmp: Path, name: str) -> int:
    try:
        return completed(load(tmp, name))
    except Exception:  # the study may not exist yet
        return 0


def test_ctrl_c_keeps_finished_trials(cache, tmp_path):
    # 2000 trials: the run cannot finish before the signal, however fast the machine.
    cmd = [sys.executable, "-m", "dse.search", *args(tmp_path, "c", 2000, "--remeasure", "0")]
    proc = subprocess.Popen(cmd, env=env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: proc.poll() is not None or (
            (tmp_path / "study.db").exists() and _safe_complete(tmp_path, "c") >= 3), 600)
        assert proc.poll() is None, proc.communicate()[1][-3000:]  # the search died: say why
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:  # never leave a 2000-trial search running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    study = load(tmp_path, "c")
    rows = pd.read_csv(tmp_path / "c" / "trials.csv")
    assert rows["state"].eq("COMPLETE").sum() == completed(study) >= 3


def test_two_workers_share_a_postgres_study(cache, tmp_path):
    """Scale-out across machines goes through PostgreSQL: two worker processes, one study."""
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres import pg_bin, postgres_server

    if pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide PostgreSQL (.ci/run installs Debian's package)")
        pytest.skip("PostgreSQL server binaries not installed")
    with postgres_server() as url:
        procs = [
            subprocess.Popen([sys.executable, "-m", "dse.search", *args(tmp_path, "pg", 16, "--remeasure", "0",
                              "--seed", str(seed), *(["--worker-only"] if seed else []), storage=url)],
                             env=env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for seed in (0, 1)
        ]
        errors = [p.communicate(timeout=900)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errors
        study = load(tmp_path, "pg", storage=url)
        assert completed(study) == 16
        numbers = [t.number for t in study.trials]
        assert len(numbers) == len(set(numbers))  # no trial claimed twice
        # Only the non-worker-only process wrote the front, once, with every trial in it.
        assert len(pd.read_csv(tmp_path / "pg" / "trials.csv")) >= 16
        assert (tmp_path / "pg" / "pareto.json").is_file()


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_trial_of_a_worker_killed_while_sampling_is_failed(tmp_path, monkeypatch, kind):
    """A worker killed inside ``study.ask()`` (TPE samples there, before the first heartbeat and
    before the objective names its worker) leaves a RUNNING trial nothing else would ever fail."""
    from dse import storage as storage_mod

    url = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else f"journal:{tmp_path}/s.log"
    study = optuna.create_study(storage=storage_mod.open_storage(url), study_name="s", directions=["minimize"])
    orphan = study.ask()  # RUNNING, unnamed, no heartbeat
    named = study.ask()
    named.set_user_attr(storage_mod.WORKER_ATTR, storage_mod.worker_id())  # this process: alive
    monkeypatch.setattr(storage_mod, "GRACE_S", 3600)
    assert storage_mod.fail_dead_workers(study) == 0  # may still be sampling
    monkeypatch.setattr(storage_mod, "GRACE_S", -1)
    assert storage_mod.fail_dead_workers(study) == 1
    states = {t.number: t for t in study.get_trials()}
    assert states[orphan.number].state == optuna.trial.TrialState.FAIL
    assert "before the trial began" in states[orphan.number].user_attrs["fail_reason"]
    assert states[named.number].state == optuna.trial.TrialState.RUNNING
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))  # nothing sampled, nothing re-queued
