"""Optuna study plumbing: samplers, opening or resuming a study, running until the requested
number of trials is complete (across restarts and workers), and reading the feasible front."""
from __future__ import annotations

import signal
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
from optuna.samplers import BaseSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.study import MaxTrialsCallback
from optuna.trial import FrozenTrial, TrialState
from tqdm.auto import tqdm

from dse.storage import fail_dead_workers, open_storage
from workloads.errors import UserError

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


def open_study(storage_url: str, name: str, sampler: BaseSampler, settings: dict[str, Any],
               storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """Create the study, or resume it if it exists with the same ``settings`` (a study's
    trials are only comparable under one model, hardware and fidelity). ``storage``: the
    already opened ``storage_url``, if the caller has it."""
    storage = storage if storage is not None else open_storage(storage_url)
    # Failed trials are reported in trials.csv and the summary, not as tracebacks on stderr.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        storage=storage, study_name=name, sampler=sampler, directions=["minimize"] * len(OBJECTIVES),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(META_KEY)
    if stored is None:
        study.set_user_attr(META_KEY, settings)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(OBJECTIVES))
    elif stored != settings:
        diff = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
        raise UserError(
            f"study '{name}' in {storage_url} was created with other settings ({', '.join(diff)}): "
            "use another --study-name or the same flags"
        )
    return study


def completed(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Sequence[float]],
    n_trials: int,
    *,
    catch: tuple[type[Exception], ...] = (UserError,),
    progress: bool = True,
    max_attempts: int | None = None,
) -> int:
    """Run trials until the study holds ``n_trials`` complete ones (counting those of earlier
    runs and of other workers). Trials that raise one of ``catch`` are stored as failed with
    their reason and the search goes on. Returns the number of complete trials."""
    fail_dead_workers(study)
    attempts_left = max_attempts if max_attempts is not None else 2 * n_trials + 10
    done = completed(study)
    bar = tqdm(total=n_trials, initial=min(done, n_trials), desc="trials", unit="trial",
               disable=not progress or None)

    with stop_on_ctrl_c() as interrupted:

        def tick(study: optuna.Study, trial: FrozenTrial) -> None:
            bar.n = min(completed(study), n_trials)
            bar.refresh()
            if interrupted.is_set():
                study.stop()

        try:
            while done < n_trials and attempts_left > 0 and not interrupted.is_set():
                batch = min(n_trials - done, attempts_left)
                study.optimize(
                    objective,
                    n_trials=batch,
                    catch=catch,
                    callbacks=[MaxTrialsCallback(n_trials, states=(TrialState.COMPLETE,)), tick],
                    gc_after_trial=False,
                )
                attempts_left -= batch
                done = completed(study)
        finally:
            bar.close()
    if interrupted.is_set():
        raise KeyboardInterrupt
    return done


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
    return all(c <= 0.0 for c in trial.constraints.values())


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The feasible Pareto front, ordered by perplexity."""
    return sorted(study.best_trials, key=lambda t: tuple(t.values))
