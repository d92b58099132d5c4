"""The search as a pipeline of small stages: set up (model, sensitivities, traces, tuning table),
reference design, trials, real measurement of the front, outputs."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

import sim
from dse import report
from dse.evaluator import Evaluator, Outcome
from dse.hypervolume import PERPLEXITY_BUDGET
from dse.hardware import TraceBank
from dse.measure import Fidelity, measure
from dse.space import PATTERNS, SPACE_VERSION, Compression, Design, Tuning, suggest, vanilla
from dse.storage import WORKER_ATTR, open_storage, worker_id
from dse.study import front, make_sampler, open_study, run_trials
from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.models import LoadedModel, load_model


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
    for key, value in outcome.attrs().items():
        trial.set_user_attr(key, value)
    trial.set_user_attr("design", design.to_dict())
    trial.set_user_attr("policy", policy.to_dict() if policy is not None else None)


def design_from_dict(d: dict[str, Any]) -> Design:
    return Design(Compression(**d["compression"]), Tuning(**d["tuning"]), d["dataflow"], dict(d.get("hw") or {}))


def set_up(settings: SearchSettings, *, progress: bool) -> Search:
    """Load the hardware and model, profile sensitivities (cached), and build the evaluator."""
    hw = sim.load_hw(settings.hw, settings.overrides)
    loaded = load_model(settings.model, seed=settings.seed)
    tables = sensitivity_tables(loaded, settings, progress=progress)
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


def remeasure(search: Search, study: optuna.Study, count: int, *, progress: bool) -> None:
    """Compress, tune and evaluate up to ``count`` front members for real (held-out split),
    spread along the front by predicted perplexity; results go to the study's user attributes."""
    members = front(study)
    if not members or count <= 0:
        return
    picks = [members[round(i * (len(members) - 1) / max(1, count - 1))] for i in range(min(count, len(members)))]
    fid = Fidelity(**{**asdict(search.settings.fidelity), "split": "eval"})
    for trial in {t.number: t for t in picks}.values():
        key = f"{report.REAL_PREFIX}{trial.number}"
        if key in study.user_attrs:
            continue
        design = design_from_dict(trial.user_attrs["design"])
        policy_dict = trial.user_attrs.get("policy")
        policy = Policy.from_dict(policy_dict) if policy_dict else None
        result = measure(search.loaded, design.tuning, fid, policy=policy, data=search.settings.data, progress=progress)
        result["split"] = fid.split
        study.set_user_attr(key, result)


def run_search(
    settings: SearchSettings,
    *,
    progress: bool = True,
    worker_only: bool = False,
    after_trials: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study to ``settings.trials`` complete trials, measure the front for
    real and write the outputs. A ``worker_only`` process just runs trials. On Ctrl-C the
    finished trials stay in the storage and the outputs are written for them before exiting."""
    storage = open_storage(settings.storage)  # a bad URL fails before minutes of set-up
    search = set_up(settings, progress=progress)
    sampler = make_sampler(settings.sampler, seed=settings.seed)
    study = open_study(settings.storage, settings.study_name, sampler, search.settings.identity(search.hw), storage)
    if report.REFERENCE_KEY not in study.user_attrs:
        study.set_user_attr(report.REFERENCE_KEY, search.reference())
    try:
        run_trials(study, search.objective, settings.trials, progress=progress)
    except KeyboardInterrupt:
        if not worker_only:
            report.write_outputs(study, Path(settings.out))
        raise
    if worker_only:
        return {}
    if after_trials is not None:  # e.g. wait for the other workers' last trials
        after_trials()
    remeasure(search, study, settings.remeasure, progress=progress)
    return report.write_outputs(study, Path(settings.out))
