"""Where the headline's operating point comes from: set by hand (``Plan``'s defaults and flags),
or read from a trial of a search study (``python -m dse.reproduce --from-study URL --trial N``).

A trial of ``dse.search`` keeps its design (``user_attrs["design"]``, ``Design.to_dict``) and the
exact per-layer LUC policy it was scored with (``user_attrs["policy"]``); the study keeps the
settings it was made under (``user_attrs["settings"]``, with the search space's version). The
reproduction takes both as they are: the page then shows the front member the search found.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.samplers import RandomSampler
from optuna.trial import FrozenTrial, TrialState

from dse.headline.configs import Plan
from dse.space import SPACE_VERSION
from dse.storage import open_storage
from dse.study import META_KEY, front
from workloads.errors import UserError
from workloads.luc.policy import Policy

__all__ = ["BY_HAND", "Chosen", "from_study"]

BY_HAND = ("by hand: window 12 and 6-bit activations from window.md and act_bits.md, 4-bit layers on the "
           "checkpoint's grid, 8-bit head, one exit, no vote; `--from-study URL --trial N` takes a front "
           "member of a search instead")


@dataclass(frozen=True)
class Chosen:
    """An operating point and how it was chosen.

    ``policy`` is the trial's own LUC policy (None: the trial compressed nothing); ``source``
    is JSON-ready: ``how`` (``by hand`` or ``study``) and, for a study, its URL, name, trial
    number, whether the trial is on the feasible Pareto front, and its objectives."""

    plan: Plan
    policy: Policy | None
    source: dict[str, Any] = field(default_factory=dict)


def from_study(url: str, number: int, *, study_name: str | None = None, model: str,
               base: Plan | None = None) -> Chosen:
    """The operating point of trial ``number`` of a ``dse.search`` study in storage ``url``.

    ``base`` supplies what a trial does not decide (the ablation rows' fixed dataflow).

    Raises:
        UserError: (one line) the storage holds no such study (or several, and no
            ``study_name``), no such trial, a trial that did not complete, a study made by another
            tool or under another search-space version, a trial of another model than ``model``,
            or one that searched hardware knobs (the headline compares on one config).
    """
    _check_exists(url)
    storage = open_storage(url)
    name = _study_name(storage, url, study_name)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=storage, sampler=RandomSampler(seed=0))
    where = f"study '{name}' in {url}"
    settings = study.user_attrs.get(META_KEY)
    if not isinstance(settings, dict):
        raise UserError(f"{where} was not made by dse.search (no search settings); give a study of python -m dse.search")
    if settings.get("space") != SPACE_VERSION:
        raise UserError(f"{where} searched space version {settings.get('space')}, this reproduction reads version "
                        f"{SPACE_VERSION}: run the search again (python -m dse.search) and pick a trial of the new study")
    if settings.get("model") != model:
        raise UserError(f"{where} searched model {settings.get('model')!r}, not {model!r}: pass --model "
                        f"{settings.get('model')} or a study of this model")
    trial = _trial(study, number, where)
    design = trial.user_attrs.get("design")
    if not isinstance(design, dict):
        raise UserError(f"trial {number} of {where} keeps no design; pick a trial dse.search completed")
    if design.get("hw"):
        knobs = ", ".join(f"{k}={v}" for k, v in design["hw"].items())
        raise UserError(f"trial {number} of {where} searched hardware knobs ({knobs}): the headline compares on one "
                        "config; pick a trial of a study without --search-hw")
    policy_dict = trial.user_attrs.get("policy")
    policy = Policy.from_dict(policy_dict, where=f"trial {number}'s policy") if policy_dict else None
    on_front = number in {t.number for t in front(study)}
    source = {"how": "study", "storage": url, "study": name, "trial": number, "on_front": on_front,
              "values": dict(zip(study.metric_names or [], trial.values or [], strict=False)), "design": design}
    return Chosen(plan_of(design, policy, base), policy, source)


def plan_of(design: dict[str, Any], policy: Policy | None, base: Plan | None = None) -> Plan:
    """The ``Plan`` of a stored design (``Design.to_dict``) and its policy: compression, window,
    exits, schedule, vote, activation and head bits, translators and the common dataflow."""
    c, t = design["compression"], design["tuning"]
    extra = {"group_size": policy.group_size, "prune": policy.prune, "quant": policy.quant} if policy else {}
    return Plan(sparsity=float(c["avg_sparsity"]), bits=float(c["avg_bits"]), rule=str(c["rule"]),
                pattern=str(c.get("pattern", "unstructured")), sharpness=float(c.get("sharpness", 1.0)),
                head_bits=int(c.get("head_bits", 16)), window=int(t["window"]), exits=int(t["exits"]),
                vote=str(t["vote"]), schedule=str(t.get("schedule", "sequential")), act_bits=int(t["act_bits"]),
                translators=bool(t.get("translators", False)), dataflow=str(design.get("dataflow", "auto")),
                ablation_df=(base or Plan()).ablation_df, **extra)


def _check_exists(url: str) -> None:
    """Refuse a URL that names no existing study file (opening one would create it)."""
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
    elif url.startswith("journal:"):
        path = Path(url[len("journal:"):].removeprefix("//"))
    elif url.startswith(("postgresql", "mysql")):
        return
    else:
        raise UserError(f"--from-study '{url}' is not a study storage: use sqlite:///FILE.db, journal:FILE.log "
                        "or postgresql://USER@HOST/DB (the --storage the search wrote)")
    if not path.is_file():
        raise UserError(f"--from-study: no study file at {path}; give the --storage URL the search wrote")


def _study_name(storage: optuna.storages.BaseStorage, url: str, name: str | None) -> str:
    names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
    if name is not None:
        if name not in names:
            have = ", ".join(names) or "none"
            raise UserError(f"--study-name: no study '{name}' in {url} (studies there: {have})")
        return name
    if len(names) != 1:
        have = ", ".join(names) or "none"
        raise UserError(f"--from-study: {url} holds {len(names)} studies ({have}); name one with --study-name")
    return names[0]


def _trial(study: optuna.Study, number: int, where: str) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    match = [t for t in trials if t.number == number]
    if not match:
        span = f"0..{len(trials) - 1}" if trials else "none"
        raise UserError(f"--trial {number}: {where} has no such trial (trials: {span})")
    trial = match[0]
    if trial.state != TrialState.COMPLETE:
        raise UserError(f"--trial {number} of {where} is {trial.state.name.lower()}, not complete; pick a complete "
                        "trial (trials.csv of the search lists them)")
    return trial
