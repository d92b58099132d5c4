"""What a study leaves behind: trials.csv, pareto.csv / pareto.json, pareto.png,
hypervolume.png and summary.txt, each written atomically."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from dse import io
from dse.hypervolume import REFERENCE_POINT, hypervolume, hypervolume_history
from dse.plots import front_figure, hypervolume_figure
from dse.study import META_KEY, OBJECTIVES, feasible, front

__all__ = ["OUTPUT_FILES", "REAL_PREFIX", "REFERENCE_KEY", "budget_perplexity", "distinct_front",
           "hv_history", "next_steps", "normalized", "real_results", "study_hypervolume",
           "summary_text", "trial_rows", "write_outputs"]

REFERENCE_KEY = "reference"  # study user attribute: the vanilla design's objectives
REAL_PREFIX = "real:"  # study user attribute per re-measured trial: "real:<number>"


def normalized(values: np.ndarray, reference: dict[str, float]) -> np.ndarray:
    """Objectives divided by the vanilla design's (perplexity, latency, memory)."""
    scale = np.array([reference[k] for k in OBJECTIVES], dtype=float)
    return np.asarray(values, dtype=float) / scale


def study_hypervolume(study: optuna.Study, *, upto: int | None = None) -> float:
    """Hypervolume of the feasible complete trials (the first ``upto`` by number)."""
    reference = study.user_attrs.get(REFERENCE_KEY)
    if not reference:
        return 0.0
    trials = [t for t in _complete(study) if feasible(t) and (upto is None or t.number < upto)]
    if not trials:
        return 0.0
    return hypervolume(normalized(np.array([t.values for t in trials]), reference))


def hv_history(study: optuna.Study) -> np.ndarray:
    """Hypervolume after each complete trial, in completion order by trial number."""
    reference = study.user_attrs.get(REFERENCE_KEY)
    trials = _complete(study)
    if not reference or not trials:
        return np.zeros(len(trials))
    pts = normalized(np.array([t.values for t in trials]), reference)
    ok = np.array([feasible(t) for t in trials])
    pts[~ok] = np.inf  # infeasible points add nothing
    return hypervolume_history(pts, REFERENCE_POINT)


def _complete(study: optuna.Study) -> list[FrozenTrial]:
    return sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number)


def distinct_front(study: optuna.Study) -> list[tuple[FrozenTrial, list[int]]]:
    """The feasible front with each design once: ``(first trial, numbers of every trial that
    found it)``, ordered like ``front``. A sampler can propose one design twice; both trials
    then sit on the front with the same values."""
    groups: dict[str, list[FrozenTrial]] = {}
    for t in front(study):
        design = t.user_attrs.get("design", t.params)
        groups.setdefault(json.dumps(design, sort_keys=True, default=str), []).append(t)
    return [(min(ts, key=lambda t: t.number), sorted(t.number for t in ts)) for ts in groups.values()]


def budget_perplexity(study: optuna.Study) -> float | None:
    """The study's accuracy budget in perplexity (None before the reference is known)."""
    reference = study.user_attrs.get(REFERENCE_KEY)
    ratio = (study.user_attrs.get(META_KEY) or {}).get("max_perplexity_ratio")
    return reference["perplexity"] * ratio if reference and ratio else None


def real_results(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Re-measured members: trial number (as a string) -> ``dse.measure.measure``'s result."""
    return {k[len(REAL_PREFIX):]: v for k, v in study.user_attrs.items() if k.startswith(REAL_PREFIX)}


def trial_rows(study: optuna.Study, trials: list[FrozenTrial],
               found_by: dict[int, list[int]] | None = None) -> pd.DataFrame:
    """One flat row per trial: number, state, objectives, parameters, attributes, real
    measurement; with ``found_by`` (number -> numbers of every trial that found the same
    design) a ``trials`` column lists them, separated by spaces."""
    real = real_results(study)
    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        if found_by is not None:
            row["trials"] = " ".join(map(str, found_by.get(t.number, [t.number])))
        if t.values:
            row.update(dict(zip(OBJECTIVES, t.values, strict=True)))
        row["feasible"] = feasible(t) if t.state == TrialState.COMPLETE else None
        row.update({f"param_{k}": v for k, v in t.params.items()})
        row.update({k: v for k, v in t.user_attrs.items() if not isinstance(v, (dict, list))})
        if t.state == TrialState.FAIL:
            row["fail_reason"] = t.user_attrs.get("fail_reason", t.system_attrs.get("fail_reason", "worker died or was interrupted"))
        measured = real.get(str(t.number))
        if measured:
            row["real_perplexity"] = measured.get("perplexity")
            row["real_accuracy"] = measured.get("accuracy")
            row["real_split"] = measured.get("split")
        rows.append(row)
    return pd.DataFrame(rows)


OUTPUT_FILES = ("summary.txt", "pareto.png", "pareto.csv", "pareto.json", "trials.csv", "hypervolume.png")


def next_steps(study_name: str, storage: str | None, out: Path, measured: int) -> list[str]:
    """Commands worth running after a study, one line each."""
    env = "" if storage in (None, "sqlite:///runs/study.db") and study_name == "default" else \
        f"EDGELLM_STORAGE={storage} EDGELLM_STUDY={study_name} "
    dashboard = storage[len("journal:"):] if storage and storage.startswith("journal:") else storage
    return [
        f"look at the front: {out / 'pareto.png'} (predicted perplexity; real ones for measured members)",
        f"open the study in a notebook: {env}jupyter lab notebooks/study_pareto.ipynb (pip install jupyterlab)",
        f"or live in a browser: optuna-dashboard {dashboard}",
        f"measure more front members for real: rerun the same command with --remeasure {measured + 3} "
        "(the study resumes; no trial is redone)",
        "reproduce the headline (about an hour): python -m dse.reproduce --sparsity 0 --bits 4 --window 12 "
        "--act-bits 6 --lr 0.005 --md runs/headline/headline_w12.md",
    ]


def write_outputs(study: optuna.Study, out: Path, *, storage: str | None = None) -> dict[str, Any]:
    """Write every output file (``OUTPUT_FILES``) and return the summary dict (also printed by
    the CLI); ``storage`` (the study's URL) names it in the next steps."""
    out.mkdir(parents=True, exist_ok=True)
    all_trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    distinct = distinct_front(study)
    pareto = [t for t, _ in distinct]
    found_by = {t.number: numbers for t, numbers in distinct}
    io.write_csv(out / "trials.csv", trial_rows(study, all_trials))
    io.write_csv(out / "pareto.csv", trial_rows(study, pareto, found_by))
    reference = study.user_attrs.get(REFERENCE_KEY, {})
    by_number = {t.number: t for t in all_trials}
    real = {n: {**r, "predicted_perplexity": by_number[int(n)].values[0]} if int(n) in by_number else r
            for n, r in real_results(study).items()}
    io.write_json(
        out / "pareto.json",
        {
            "study": study.study_name,
            "objectives": list(OBJECTIVES),
            "reference": reference,
            "front": [
                {
                    "number": t.number,
                    "trials": found_by[t.number],
                    "values": dict(zip(OBJECTIVES, t.values, strict=True)),
                    "params": t.params,
                    "attrs": t.user_attrs,
                    "real": real.get(str(t.number)),
                }
                for t in pareto
            ],
        },
    )
    history = hv_history(study)
    fig = front_figure(_complete(study), {t.number for t in pareto}, reference, budget=budget_perplexity(study),
                       real={int(n): r["perplexity"] for n, r in real.items()}, title=f"study {study.study_name}")
    io.save_figure(out / "pareto.png", fig)
    io.save_figure(out / "hypervolume.png", hypervolume_figure(history))
    counts = {s.name.lower(): sum(t.state == s for t in all_trials) for s in TrialState}
    summary = {
        "study": study.study_name,
        "trials": counts,
        "front_size": len(pareto),
        "budget_perplexity": budget_perplexity(study),
        "hypervolume": float(history[-1]) if len(history) else 0.0,
        "reference": reference,
        "best": _best_rows(pareto, reference),
        "real": real,
        "out": str(out),
        "files": list(OUTPUT_FILES),
        "next": next_steps(study.study_name, storage, out, len(real)),
    }
    io.write_text(out / "summary.txt", summary_text(summary))
    return summary


def _best_rows(pareto: list[FrozenTrial], reference: dict[str, float]) -> list[dict[str, Any]]:
    """A few front members worth reading: the most accurate, the fastest, the smallest."""
    if not pareto:
        return []
    picks = {
        "most accurate": min(pareto, key=lambda t: t.values[0]),
        "fastest": min(pareto, key=lambda t: t.values[1]),
        "smallest": min(pareto, key=lambda t: t.values[2]),
    }
    rows = []
    for label, t in picks.items():
        row = {"pick": label, "number": t.number, **dict(zip(OBJECTIVES, t.values, strict=True))}
        if reference:
            row["speedup_vs_vanilla"] = reference["latency_s"] / t.values[1]
            row["memory_saving_vs_vanilla"] = reference["memory_bytes"] / t.values[2]
        row["params"] = t.params
        rows.append(row)
    return rows


def summary_text(summary: dict[str, Any]) -> str:
    """The readable ``summary.txt`` of a study's ``summary`` (``summarize``): trial counts, front
    size, hypervolume, the vanilla reference (perplexity, ms per step, MiB) and the picked
    designs.
    """
    ref = summary["reference"]
    lines = [
        f"study {summary['study']}: {summary['trials'].get('complete', 0)} complete, "
        f"{summary['trials'].get('fail', 0)} failed; front of {summary['front_size']}; "
        f"hypervolume {summary['hypervolume']:.4f} (normalized by vanilla tuning)",
    ]
    if ref:
        lines.append(
            f"vanilla tuning: perplexity {ref['perplexity']:.2f}, {ref['latency_s'] * 1e3:.2f} ms/step, "
            f"{ref['memory_bytes'] / 2**20:.1f} MiB"
        )
    for row in summary["best"]:
        extra = ""
        if "speedup_vs_vanilla" in row:
            extra = f" ({row['speedup_vs_vanilla']:.2f}x faster, {row['memory_saving_vs_vanilla']:.2f}x less memory)"
        lines.append(
            f"{row['pick']:>13}: #{row['number']} perplexity {row['perplexity']:.2f}, "
            f"{row['latency_s'] * 1e3:.2f} ms/step, {row['memory_bytes'] / 2**20:.1f} MiB{extra}"
        )
    if summary["best"]:
        lines.append("   (perplexity above: predicted = exp(the dense model's loss measured after brief tuning "
                     "+ compression loss predicted from per-layer sensitivities))")
    for number, real in sorted(summary["real"].items(), key=lambda kv: int(kv[0])):
        acc = real.get("accuracy")
        pred = f" (predicted {real['predicted_perplexity']:.2f})" if "predicted_perplexity" in real else ""
        lines.append(
            f"   measured #{number}: perplexity {real['perplexity']:.2f}{pred}"
            + (f", accuracy {acc:.3f}" if acc is not None else "")
            + f" on {real.get('split', 'eval')} ({real.get('tokens', '?')} tokens)"
        )
    if summary.get("files"):
        lines.append(f"files in {summary['out']}: {', '.join(summary['files'])}")
    if summary.get("next"):
        lines.append("next:")
        lines += [f"  - {step}" for step in summary["next"]]
    return "\n".join(lines) + "\n"
