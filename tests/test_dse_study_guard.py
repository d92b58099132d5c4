"""Issue 20, kinds 3-5: a foreign or incompatible study is refused before anything is written;
``--trials`` is exact across workers; a wait for other workers' trials says what it waits for."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from dse import search as search_cli
from dse import storage as storage_mod
from dse.study import OBJECTIVES, check_study, completed, run_trials

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "tiny", "--tune-steps", "2", "--tune-seq-len", "64", "--eval-windows", "2",
        "--trace-seq-len", "64", "--trace-batch", "2", "--remeasure", "0"]


def _snapshot(study: optuna.Study) -> tuple:
    trials = study.get_trials(deepcopy=False)
    system = study._storage.get_study_system_attrs(study._study_id)
    return (study.user_attrs, system, [(t.number, t.state, t.values, t.params) for t in trials])


def _foreign(url: str, name: str, kind: str) -> optuna.Study:
    """A study another tool made under ``name``."""
    storage = storage_mod.open_storage(url)
    if kind == "single_objective":
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize")
        study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=3)
    elif kind == "other_metrics":
        study = optuna.create_study(storage=storage, study_name=name, directions=["minimize", "maximize", "minimize"])
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0, 2.0), n_trials=2)
    elif kind == "other_metric_names":
        study = optuna.create_study(storage=storage, study_name=name, directions=["minimize"] * 3)
        study.set_metric_names(["loss", "latency", "energy"])
    else:  # three minimized objectives, trials, but no settings of ours
        study = optuna.create_study(storage=storage, study_name=name, directions=["minimize"] * 3)
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0, 2.0), n_trials=2)
    return study


@pytest.mark.parametrize("kind", ["single_objective", "other_metrics", "other_metric_names", "same_shape_no_settings"])
def test_foreign_study_is_refused_before_anything_is_written(tmp_path, capsys, kind):
    url = f"sqlite:///{tmp_path}/lab.db"
    before = _snapshot(_foreign(url, "default", kind))
    out = tmp_path / "out"
    for run in (1, 2):  # the second run meets exactly what the first left
        with pytest.raises(SystemExit) as err:
            search_cli.main([*FAST, "--trials", "3", "--storage", url, "--study-name", "default", "--out", str(out)])
        assert err.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: study 'default'"), (run, lines)
        assert "use another --study-name" in lines[0] and "Traceback" not in lines[0]
        assert not out.exists(), run
        after = optuna.load_study(study_name="default", storage=storage_mod.open_storage(url))
        assert _snapshot(after) == before, run  # the other study is left untouched


def test_incompatible_settings_name_the_difference_with_values(tmp_path):
    storage = storage_mod.open_storage(f"sqlite:///{tmp_path}/s.db")
    ours = {"space": 3, "model": "tiny", "data": None}
    study = optuna.create_study(storage=storage, study_name="s", directions=["minimize"] * 3)
    study.set_metric_names(list(OBJECTIVES))
    study.set_user_attr("settings", ours)
    assert check_study(storage, "sqlite:///x", "s", ours) is True
    assert check_study(storage, "sqlite:///x", "absent", ours) is False
    with pytest.raises(Exception, match=r"model: 'tiny' there, 'smollm2-135m' now.*use another --study-name"):
        check_study(storage, "sqlite:///x", "s", {**ours, "model": "smollm2-135m"})
    with pytest.raises(Exception, match="space: 3 there, 4 now"):
        check_study(storage, "sqlite:///x", "s", {**ours, "space": 4})


def _objective(trial: optuna.Trial) -> tuple[float, float, float]:
    x = trial.suggest_float("x", 0, 1)
    return x, 1 - x, 0.5


def _named(study: optuna.Study) -> optuna.Trial:
    """A trial of "another worker" that is alive (named after this process)."""
    trial = study.ask()
    trial.set_user_attr(storage_mod.WORKER_ATTR, storage_mod.worker_id())
    return trial


@pytest.mark.parametrize("outcome", [TrialState.COMPLETE, TrialState.FAIL])
def test_waits_for_other_workers_last_trial_and_says_why(tmp_path, outcome):
    study = optuna.create_study(storage=storage_mod.open_storage(f"journal:{tmp_path}/j.log"), study_name="j",
                                directions=["minimize"] * 3)
    study.optimize(_objective, n_trials=2)
    other = _named(study)  # the study needs 3; 2 are complete and another worker runs the third
    said: list[str] = []

    def finish() -> None:
        time.sleep(1.5)
        if outcome == TrialState.COMPLETE:
            study.tell(other, (0.1, 0.2, 0.3))
        else:
            study.tell(other, state=TrialState.FAIL)

    thread = threading.Thread(target=finish)
    thread.start()
    done = run_trials(study, _objective, 3, progress=False, poll_s=0.2, say=said.append)
    thread.join()
    assert done == completed(study) == 3  # exactly: never a fourth
    assert len(said) == 1 and f"trial {other.number}" in said[0] and "needs 1 more" in said[0]
    assert f"{storage_mod.GRACE_S} s after its last heartbeat" in said[0]
    mine = [t for t in study.get_trials() if t.number > other.number]
    # If the other trial completed, this worker ran nothing; if it failed, exactly one more.
    assert len(mine) == (0 if outcome == TrialState.COMPLETE else 1)


def test_of_two_racing_trials_for_the_last_slot_the_lower_runs(tmp_path):
    """Two workers asked at once when one trial was missing: the higher-numbered one waits and,
    once the lower completes, is failed as surplus, unevaluated, with its reason."""
    study = optuna.create_study(storage=storage_mod.open_storage(f"journal:{tmp_path}/r.log"), study_name="r",
                                directions=["minimize"] * 3)
    study.optimize(_objective, n_trials=1)
    lower = _named(study)  # another worker's, asked just before ours
    evaluated: list[int] = []

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        evaluated.append(trial.number)
        return _objective(trial)

    # Ours is asked inside run_trials: the outer check sees complete 1 + running 1 < 3 and starts one.
    threading.Timer(1.5, lambda: study.tell(lower, (0.1, 0.2, 0.3))).start()
    done = run_trials(study, objective, 3, progress=False, poll_s=0.2, say=lambda _: None)
    assert done == 3 and evaluated == [lower.number + 1]
    # Now a race for the last slot: two trials RUNNING when 1 is missing.
    study2 = optuna.create_study(storage=storage_mod.open_storage(f"journal:{tmp_path}/r2.log"), study_name="r2",
                                 directions=["minimize"] * 3)
    study2.optimize(_objective, n_trials=1)
    lower2 = _named(study2)
    from dse.study import _Waiter

    higher2 = _named(study2)
    waiter = _Waiter(study2, 2, 0.2, lambda _: None)
    threading.Timer(1.0, lambda: study2.tell(lower2, (0.1, 0.2, 0.3))).start()
    assert waiter.wait(threading.Event(), before=higher2.number) is False  # full: surplus
    assert waiter.wait(threading.Event(), before=lower2.number + 100) is False


def test_two_workers_on_one_sqlite_study_finish_with_exactly_the_trials(cache, tmp_path):
    """The issue's case: two workers on one SQLite study used to finish with one trial too many."""
    env = dict(os.environ, EDGELLM_CACHE=str(cache), TQDM_DISABLE="1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    url = f"sqlite:///{tmp_path}/study.db"
    proc = subprocess.run([sys.executable, "-m", "dse.search", *FAST, "--trials", "12", "--storage", url,
                           "--study-name", "w", "--out", str(tmp_path / "w"), "--workers", "2"],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="w", storage=storage_mod.open_storage(url))
    assert completed(study) == 12
    assert not study.get_trials(states=(TrialState.RUNNING,))
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert all(t.user_attrs.get("fail_reason") for t in failed)  # every failure says why
    rows = pd.read_csv(tmp_path / "w" / "trials.csv")
    assert rows["state"].eq("COMPLETE").sum() == 12
