"""The search as a pipeline of small stages: set up (model, sensitivities, traces, tuning table),
reference design, trials, real measurement of the front, outputs."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from tqdm.auto import tqdm

import sim
from dse import report
from dse.evaluator import Evaluator, Outcome
from dse.hardware import TraceBank, design_windows
from dse.hypervolume import PERPLEXITY_BUDGET
from dse.measure import Fidelity, measure
from dse.progress import Phases
from dse.space import (
    PATTERNS,
    SPACE_VERSION,
    Compression,
    Design,
    Tuning,
    suggest,
    tunings,
    vanilla,
)
from dse.storage import WORKER_ATTR, open_storage, worker_id
from dse.study import make_sampler, open_study, run_trials
from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.models import LoadedModel, cache_dir, load_model

__all__ = ["PHASES", "REMEASURE_MC_ITEMS", "Search", "SearchSettings", "design_from_dict", "record",
           "remeasure", "run_search", "sensitivity_tables", "set_up", "warm_up"]


# The phases run_search announces: model, sensitivity profiles, tuning table, traces, trials,
# real measurement, outputs.
PHASES = 7
REMEASURE_MC_ITEMS = 100  # multiple-choice items of each real measurement (accuracy)


@dataclass(frozen=True)
class SearchSettings:
    """Everything a study depends on (units in the comments)."""

    hw: str = "hwconfigs/edge_llm.yaml"
    overrides: tuple[str, ...] = ()
    model: str = "smollm2-135m"
    data: str | None = None
    trials: int = 100
    sampler: str = "tpe"  # beats NSGA-II and random at 100 trials (docs/results/dse.md)
    storage: str = "sqlite:///runs/study.db"
    study_name: str = "default"
    out: str = "runs/default"
    seed: int = 0
    search_hw: bool = False
    search_schedule: bool = False
    max_sparsity: float = 0.7  # largest average sparsity searched
    max_perplexity_ratio: float = PERPLEXITY_BUDGET  # accuracy budget, x vanilla tuning's predicted perplexity
    remeasure: int = 3  # front members measured for real
    fidelity: Fidelity = field(default_factory=Fidelity)
    trace_seq_len: int = 256  # tokens per sequence of the simulated step
    trace_batch: int = 4  # sequences per simulated step
    workers: int = 1
    sensitivity_seq_len: int = 128  # tokens per calibration window of the sensitivity profile
    sensitivity_windows: int = 2  # calibration windows of the sensitivity profile
    sensitivity_sparsities: tuple[float, ...] = (0.25, 0.5, 0.75)
    sensitivity_bits: tuple[int, ...] = (2, 3, 4, 6)

    def identity(self, hw: sim.HwConfig) -> dict[str, Any]:
        """What makes two runs' trials comparable: a study refuses to resume under others."""
        hw_digest = hashlib.sha1(json.dumps(hw.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]
        return {
            "space": SPACE_VERSION,
            "model": self.model,
            "data": self.data,
            "hw": hw.name,
            "hw_digest": hw_digest,
            "search_hw": self.search_hw,
            "search_schedule": self.search_schedule,
            "max_sparsity": self.max_sparsity,
            "max_perplexity_ratio": self.max_perplexity_ratio,
            "fidelity": self.fidelity.key(),
            "trace": [self.trace_seq_len, self.trace_batch],
            "sensitivity": [self.sensitivity_seq_len, self.sensitivity_windows, list(self.sensitivity_sparsities),
                            list(self.sensitivity_bits)],
        }


class Search:
    """One study's state: the evaluator and how trials become designs and values."""

    def __init__(self, settings: SearchSettings, loaded: LoadedModel, hw: sim.HwConfig, evaluator: Evaluator):
        self.settings = settings
        self.loaded = loaded
        self.hw = hw
        self.evaluator = evaluator
        self.num_layers = int(loaded.model.config.num_hidden_layers)
        self.area_cap = hw.area_proxy()["area_mm2"]
        self._reference: dict[str, float] | None = None

    def reference(self) -> dict[str, float]:
        """The vanilla design's objectives: the scale of the hypervolume, of every speed-up and of
        the accuracy budget."""
        if self._reference is None:
            outcome, _ = self.evaluator.evaluate(vanilla(self.num_layers))
            self._reference = {"perplexity": outcome.perplexity, "latency_s": outcome.latency_s,
                               "memory_bytes": float(outcome.memory_bytes), "energy_j": outcome.energy_j}
        return self._reference

    def design(self, trial: optuna.Trial) -> Design:
        """The design ``trial`` samples from the search space (``dse.space.suggest``) under this
        search's settings and hardware (SRAM in KiB, DRAM bandwidth in GB/s).
        """
        s = self.settings
        design = suggest(
            trial,
            num_layers=self.num_layers,
            max_sparsity=s.max_sparsity,
            search_hw=s.search_hw,
            search_schedule=s.search_schedule,
            sram_kib=self.hw.sram.total_bytes / 1024,
            bandwidth_gbps=self.hw.dram.bandwidth_gbps,
        )
        return design

    def objective(self, trial: optuna.Trial) -> tuple[float, float, float]:
        """The Optuna objective: sample a design, evaluate it, record it on the trial, set the DRAM
        and accuracy-budget constraints (feasible at <= 0, each the relative excess over its limit)
        and return (perplexity, seconds per tuning step, peak bytes).

        Raises:
            UserError: the design cannot be evaluated (impossible budget, unmappable op); the reason is
                kept on the failed trial and the study goes on.
        """
        trial.set_user_attr(WORKER_ATTR, worker_id())
        design = self.design(trial)
        try:
            outcome, policy = self.evaluator.evaluate(design)
        except (UserError, sim.SimError) as exc:  # an impossible budget, an op no tiling can map
            # Kept with the failed trial (trials.csv shows it); the study goes on.
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}")
            raise UserError(str(exc)) from None
        record(trial, design, outcome, policy)
        # Feasible at <= 0; each is the relative excess over its limit, so that the samplers'
        # summed violation weighs them alike.
        trial.set_constraint("dram", outcome.memory_bytes / self.hw.dram.capacity_bytes - 1)
        # The accuracy budget: designs past it are not worth a trial's successors (the hypervolume
        # ignores them too), and the constrained samplers stop breeding from them.
        budget = self.settings.max_perplexity_ratio * self.reference()["perplexity"]
        trial.set_constraint("perplexity", outcome.perplexity / budget - 1)
        if self.settings.search_hw and self.area_cap is not None and outcome.area_mm2 is not None:
            trial.set_constraint("area", outcome.area_mm2 / self.area_cap - 1)
        return outcome.values()


def record(trial: optuna.Trial, design: Design, outcome: Outcome, policy: Policy | None) -> None:
    """Store ``outcome``'s fields, the design and the policy (or ``None``) as ``trial``'s user
    attributes, so trials.csv and the front can be rebuilt from the study alone.
    """
    for key, value in outcome.attrs().items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("design", design.to_dict())
    trial.set_user_attr("policy", policy.to_dict() if policy is not None else None)


def design_from_dict(d: dict[str, Any]) -> Design:
    """The ``Design`` a trial recorded with ``record`` (the inverse of ``Design.to_dict``).

    Raises:
        KeyError, TypeError: ``d`` is not a recorded design.
    """
    return Design(Compression(**d["compression"]), Tuning(**d["tuning"]), d["dataflow"], dict(d.get("hw") or {}))


def set_up(settings: SearchSettings, *, progress: bool, phases: Phases | None = None) -> Search:
    """Load the hardware and model, profile sensitivities (cached), and build the evaluator.
    With ``phases`` each step is announced (and what was cached is said)."""
    phases = phases or Phases(0, stream=None)
    hw = sim.load_hw(settings.hw, settings.overrides)
    with phases.phase(f"model {settings.model}") as note:
        loaded = load_model(settings.model, seed=settings.seed)
        note.result = f"{loaded.model.config.num_hidden_layers} layers; converted weights cached under {cache_dir()}"
    with phases.phase(f"sensitivity profiles of {len(PATTERNS)} pruning patterns ({', '.join(PATTERNS)})") as note:
        tables = sensitivity_tables(loaded, settings, progress=progress)
        hits = sum(t.cache_file is not None for t in tables.values())
        note.result = (f"{hits} read from the cache, {len(tables) - hits} measured and cached for the next run "
                       f"({cache_dir() / 'sensitivity'})")
    bank = TraceBank(loaded, seq_len=settings.trace_seq_len, batch=settings.trace_batch)
    evaluator = Evaluator(loaded, hw, sensitivity=tables, fidelity=settings.fidelity, bank=bank, data=settings.data)
    return Search(settings, loaded, hw, evaluator)


def sensitivity_tables(loaded: LoadedModel, settings: SearchSettings, *, progress: bool) -> dict[str, Any]:
    """One measured table per pruning pattern (cached by workloads.luc after the first run).
    The search's ladder is coarser than ``python -m workloads.luc``'s default to keep the first
    study short; the allocator interpolates between its points."""
    from workloads.luc.sensitivity import profile_sensitivity

    return {
        pattern: profile_sensitivity(
            loaded,
            data=settings.data,
            pattern=pattern,
            seq_len=settings.sensitivity_seq_len,
            windows=settings.sensitivity_windows,
            sparsities=settings.sensitivity_sparsities,
            bits=settings.sensitivity_bits,
            progress=progress,
        )
        for pattern in PATTERNS
    }


def warm_up(search: Search, *, progress: bool, phases: Phases) -> None:
    """Measure, before the trials, the real tuning runs and traces of vanilla and of every window
    and exit count (16-bit saved activations, no translators), so that the trials' bar moves
    evenly and its ETA holds. The variants with packed activations or exit translators (about
    four times as many) are measured when a trial first asks for one: measuring them all here
    would multiply a cold start's set-up. Everything is cached on disk: the next study reads it."""
    s = search.settings
    every = tunings(num_layers=search.num_layers, search_schedule=s.search_schedule)
    configs = [vanilla(search.num_layers).tuning, *(t for t in every if t.act_bits == 16 and not t.translators)]
    later = len(every) + 1 - len(configs)
    table = search.evaluator.tuning
    with phases.phase(f"tuning table: brief real tuning of the dense model, {len(configs)} configurations "
                      f"({later} variants with packed activations or translators when a trial asks)") as note:
        todo = [t for t in configs if not table.has(t)]
        for tuning in tqdm(todo, desc="tuning runs", unit="run", disable=not progress or None, leave=False):
            table.lookup(tuning)
        note.result = f"{len(configs) - len(todo)} read from the cache, {len(todo)} measured and cached ({table.path})"
    bank = search.evaluator.bank
    windows = sorted({(t.method, w, t.act_bits, t.translators) for t in configs
                      for w in design_windows(Design(Compression(0.0, 16.0), t), search.num_layers)},
                     key=lambda k: (k[0], k[1].start, k[1].end, k[2], k[3]))
    with phases.phase(f"traces: one real tuning step recorded per window, {len(windows)} windows") as note:
        todo_w = [k for k in windows if not bank.has(k[0], k[1], k[2], translators=k[3])]
        for method, window, act_bits, translators in tqdm(todo_w, desc="traces", unit="trace",
                                                          disable=not progress or None, leave=False):
            bank.get(method, window, act_bits, translators=translators)
        note.result = f"{len(windows) - len(todo_w)} read from the cache, {len(todo_w)} recorded and cached ({bank.root})"


def remeasure(search: Search, study: optuna.Study, count: int, *, progress: bool) -> int:
    """Compress, tune and evaluate up to ``count`` distinct front members for real (held-out
    split, perplexity and multiple-choice accuracy), spread along the front by predicted
    perplexity; results go to the study's user attributes. Returns how many were measured now
    (the others were measured by an earlier run)."""
    members = [t for t, _ in report.distinct_front(study)]
    if not members or count <= 0:
        return 0
    picks = [members[round(i * (len(members) - 1) / max(1, count - 1))] for i in range(min(count, len(members)))]
    fid = Fidelity(**{**asdict(search.settings.fidelity), "split": "eval", "mc_items": REMEASURE_MC_ITEMS})
    todo = [t for t in {t.number: t for t in picks}.values() if f"{report.REAL_PREFIX}{t.number}" not in study.user_attrs]
    for trial in tqdm(todo, desc="real measurements", unit="member", disable=not progress or None, leave=False):
        design = design_from_dict(trial.user_attrs["design"])
        policy_dict = trial.user_attrs.get("policy")
        policy = Policy.from_dict(policy_dict) if policy_dict else None
        result = measure(search.loaded, design.tuning, fid, policy=policy, data=search.settings.data, progress=False)
        result["split"] = fid.split
        study.set_user_attr(f"{report.REAL_PREFIX}{trial.number}", result)
    return len(todo)


def run_search(
    settings: SearchSettings,
    *,
    progress: bool = True,
    worker_only: bool = False,
    after_trials: Callable[[], None] | None = None,
    phases: Phases | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study to ``settings.trials`` complete trials, measure the front for
    real and write the outputs. A ``worker_only`` process just runs trials. On Ctrl-C the
    finished trials stay in the storage and the outputs are written for them before exiting.
    ``phases`` announces each of the ``PHASES`` steps (None: silent)."""
    phases = phases or Phases(0, stream=None)
    storage = open_storage(settings.storage)  # a bad URL fails before minutes of set-up
    search = set_up(settings, progress=progress, phases=phases)
    sampler = make_sampler(settings.sampler, seed=settings.seed)
    study = open_study(settings.storage, settings.study_name, sampler, search.settings.identity(search.hw), storage)
    if not worker_only:  # the other workers' trials find everything measured
        warm_up(search, progress=progress, phases=phases)
    if report.REFERENCE_KEY not in study.user_attrs:
        study.set_user_attr(report.REFERENCE_KEY, search.reference())
    try:
        with phases.phase(f"trials: {settings.sampler} sampler, {settings.trials} complete trials wanted "
                          "(finished ones are kept in the study and not redone)") as note:
            done = run_trials(study, search.objective, settings.trials, progress=progress)
            note.result = f"{done} complete trials in the study {settings.study_name} ({settings.storage})"
    except KeyboardInterrupt:
        if not worker_only:
            report.write_outputs(study, Path(settings.out), storage=settings.storage)
        raise
    if worker_only:
        return {}
    if after_trials is not None:  # e.g. wait for the other workers' last trials
        after_trials()
    with phases.phase(f"real measurement of up to {settings.remeasure} front members: compress, tune, evaluate "
                      "on the held-out split") as note:
        fresh = remeasure(search, study, settings.remeasure, progress=progress)
        measured = sum(k.startswith(report.REAL_PREFIX) for k in study.user_attrs)
        note.result = f"{fresh} measured now, {measured} in the study (kept in the study for the next run)"
    with phases.phase(f"outputs in {settings.out}") as note:
        summary = report.write_outputs(study, Path(settings.out), storage=settings.storage)
        note.result = ", ".join(summary["files"])
    return summary
