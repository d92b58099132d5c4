"""Optuna study plumbing: samplers, opening or resuming a study, running until the requested
number of trials is complete (across restarts and workers), and reading the feasible front."""
from __future__ import annotations

import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from dse import storage as storage_mod
from dse.storage import WORKER_ATTR, fail_dead_workers, open_storage, worker_id
from workloads.errors import UserError

__all__ = ["META_KEY", "OBJECTIVES", "SAMPLERS", "SurplusTrialError", "check_study", "completed",
           "feasible", "front", "make_sampler", "open_study", "run_trials", "stop_on_ctrl_c"]

SAMPLERS = ("nsga2", "tpe", "random")
OBJECTIVES = ("perplexity", "latency_s", "memory_bytes")  # all minimized
META_KEY = "settings"  # study user attribute: what the study was created with


def make_sampler(name: str, *, seed: int, population: int = 20, startup: int = 20) -> BaseSampler:
    """``nsga2`` (population ``population``), multivariate ``tpe`` (``startup`` random trials
    first) or ``random``, seeded."""
    if name == "nsga2":
        return NSGAIISampler(population_size=population, seed=seed)
    if name == "tpe":
        with warnings.catch_warnings():  # `group` is experimental in Optuna; the user can do nothing about it
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=startup, constant_liar=True)
    if name == "random":
        return RandomSampler(seed=seed)
    raise UserError(f"unknown sampler '{name}': use one of {', '.join(SAMPLERS)}")


def check_study(storage: optuna.storages.BaseStorage, storage_url: str, name: str,
                settings: dict[str, Any]) -> bool:
    """Refuse, before anything is written, a study of this name that this search cannot
    continue; returns whether it exists. Only reads the storage.

    A study made by another tool (other directions or metric names, or trials but no
    ``settings`` of this tool) or by this tool under other ``settings`` (space version, model,
    data, hardware, fidelity, ...) is a one-line ``UserError`` naming the difference; the
    other study is left untouched.
    """
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=RandomSampler(seed=0))
    except KeyError:
        return False
    where = f"study '{name}' in {storage_url}"
    fix = "use another --study-name (or another --storage)"
    want = [optuna.study.StudyDirection.MINIMIZE] * len(OBJECTIVES)
    if list(study.directions) != want:
        got = ", ".join(d.name.lower() for d in study.directions)
        raise UserError(f"{where} was made by another tool: it has {len(study.directions)} objective(s) ({got}), "
                        f"this search minimizes {len(OBJECTIVES)} ({', '.join(OBJECTIVES)}); {fix}")
    names = study.metric_names
    if names is not None and list(names) != list(OBJECTIVES):
        raise UserError(f"{where} was made by another tool: its objectives are {', '.join(names)}, not "
                        f"{', '.join(OBJECTIVES)}; {fix}")
    stored = study.user_attrs.get(META_KEY)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise UserError(f"{where} was made by another tool: it holds {len(study.get_trials(deepcopy=False))} "
                            f"trial(s) but no search settings; {fix}")
        return True  # created by a search that died before naming its settings: adopted
    if not isinstance(stored, dict) or stored != settings:
        stored = stored if isinstance(stored, dict) else {}
        diff = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        shown = "; ".join(f"{k}: {_short(stored.get(k))} there, {_short(settings.get(k))} now" for k in diff[:3])
        more = f" (and {len(diff) - 3} more)" if len(diff) > 3 else ""
        raise UserError(f"{where} was created with other settings ({shown}{more}): {fix}, or the same flags")
    return True


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_study(storage_url: str, name: str, sampler: BaseSampler, settings: dict[str, Any],
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study, or resume it if it exists with the same ``settings`` (a study's
    trials are only comparable under one model, hardware and fidelity). ``storage``: the
    already opened ``storage_url``, if the caller has it.

    Raises:
        UserError: the study exists and cannot be continued (``check_study``); nothing written.
    """
    storage = storage if storage is not None else open_storage(storage_url)
    # Failed trials are reported in trials.csv and the summary, not as tracebacks on stderr.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    check_study(storage, storage_url, name, settings)
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, directions=["minimize"] * len(OBJECTIVES),
        load_if_exists=True,
    )
    if study.user_attrs.get(META_KEY) is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(OBJECTIVES))
        study.set_user_attr(META_KEY, settings)
    return study


def completed(study: optuna.Study) -> int:
    """The number of complete trials in ``study`` (of every worker and earlier run)."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


class SurplusTrialError(Exception):
    """A trial started by a race with another worker when the study needed no more (failed with
    this reason, never evaluated)."""


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Sequence[float]],
    n_trials: int,
    *,
    catch: tuple[type[Exception], ...] = (UserError,),
    progress: bool = True,
    max_attempts: int | None = None,
    poll_s: float = 1.0,
    say: Callable[[str], None] | None = None,
) -> int:
    """Run trials until the study holds exactly ``n_trials`` complete ones (counting those of
    earlier runs and of other workers, on any storage). Trials that raise one of ``catch`` are
    stored as failed with their reason and the search goes on. Returns the number of complete
    trials.

    Exactness: a worker starts a trial only while ``complete + running < n_trials``; and a trial
    runs only if fewer than ``n_trials - complete`` lower-numbered trials are running (so of
    two workers that asked at once for the last slot, the lower number runs; the other waits,
    and is failed as ``SurplusTrialError``, unevaluated, once the study is full). While it waits for
    other workers' running trials, it says so through ``say`` (default: stderr), with how long
    a dead worker's trial can hold it (the heartbeat grace period).
    """
    say = say or (lambda text: tqdm.write(text, file=sys.stderr))
    fail_dead_workers(study)
    attempts_left = max_attempts if max_attempts is not None else 2 * n_trials + 10
    done = completed(study)
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc="trials", unit="trial",
               disable=not progress or None)
    waiter = _Waiter(study, n_trials, poll_s, say)

    with stop_on_ctrl_c() as interrupted:
        gated = _gated(objective, waiter, interrupted)

        def tick(study: optuna.Study, trial: FrozenTrial) -> None:
            bar.n = min(completed(study), n_trials)
            bar.refresh()
            if interrupted.is_set():
                study.stop()

        try:
            while attempts_left > 0 and not interrupted.is_set():
                if not waiter.wait(interrupted):  # full, or interrupted
                    break
                study.optimize(gated, n_trials=1, catch=(*catch, SurplusTrialError), callbacks=[tick],
                               gc_after_trial=False)
                attempts_left -= 1
            done = completed(study)
        finally:
            bar.close()
    if interrupted.is_set():
        raise KeyboardInterrupt
    return done


def _gated(objective: Callable[[optuna.Trial], Sequence[float]], waiter: _Waiter,
           interrupted: threading.Event) -> Callable[[optuna.Trial], Sequence[float]]:
    """``objective`` behind the exactness gate of ``run_trials``: a trial first names its worker,
    then waits for room; one that finds the study full (or is interrupted) is failed as
    ``SurplusTrialError`` with its reason, unevaluated.

    Raises:
        SurplusTrialError: (from the returned function) no room for the trial.
    """

    def gated(trial: optuna.Trial) -> Sequence[float]:
        trial.set_user_attr(WORKER_ATTR, worker_id())  # name it first: others check its pid
        if not waiter.wait(interrupted, before=trial.number):
            reason = ("interrupted before it began" if interrupted.is_set()
                      else "surplus: the study already held its trials (not evaluated)")
            trial.set_user_attr("fail_reason", reason)
            raise SurplusTrialError(reason)
        return objective(trial)

    return gated


class _Waiter:
    """Waits until the study has room for one more trial (``wait`` -> True) or is full (False)."""

    def __init__(self, study: optuna.Study, n_trials: int, poll_s: float, say: Callable[[str], None]):
        self.study, self.n_trials, self.poll_s, self.say = study, n_trials, poll_s, say
        self._said: set[int] = set()

    def wait(self, interrupted: threading.Event, *, before: int | None = None) -> bool:
        """``before``: the caller's own running trial; only lower-numbered running trials count."""
        while not interrupted.is_set():
            trials = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            running = [t for t in trials if t.state == TrialState.RUNNING
                       and (before is None or t.number < before)]
            if complete >= self.n_trials:
                return False
            if complete + len(running) < self.n_trials:
                return True
            self._announce(running, self.n_trials - complete)
            time.sleep(self.poll_s)
            fail_dead_workers(self.study)
        return False

    def _announce(self, running: list[FrozenTrial], needed: int) -> None:
        numbers = sorted(t.number for t in running)
        if set(numbers) <= self._said:
            return
        self._said |= set(numbers)
        listed = ", ".join(map(str, numbers[:5])) + (" ..." if len(numbers) > 5 else "")
        grace, beat = storage_mod.GRACE_S, storage_mod.HEARTBEAT_S
        self.say(f"waiting for {len(numbers)} running trial(s) of other workers (trial {listed}) before starting "
                 f"another: the study needs {needed} more complete. If a worker died, its trial is failed and "
                 f"retried {grace} s after its last heartbeat (sent every {beat} s), so a dead worker holds "
                 f"this wait at most about {grace + beat} s; a live one, until its trial ends")


@contextmanager
def stop_on_ctrl_c() -> Iterator[threading.Event]:
    """The first Ctrl-C only sets the returned event: the running trial finishes and is stored,
    then the caller stops. A KeyboardInterrupt raised at a random point can land inside
    Optuna's bookkeeping (a half-told trial) or in a finalizer, where Python drops it and the
    search runs on. A second Ctrl-C interrupts at once."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event  # signal handlers belong to the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def feasible(trial: FrozenTrial) -> bool:
    """Whether ``trial`` satisfies every constraint (Optuna's convention: a constraint value <= 0 is
    satisfied).
    """
    return all(c <= 0.0 for c in trial.constraints.values())


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible Pareto front, ordered by perplexity."""
    return sorted(study.best_trials, key=lambda t: tuple(t.values))
