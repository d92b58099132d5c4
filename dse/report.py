"""What a study leaves behind: trials.csv, pareto.csv / pareto.json, pareto.png,
hypervolume.png and summary.txt, each written atomically."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from dse import io  # noqa: E402
from dse.hypervolume import REFERENCE_POINT, hypervolume, hypervolume_history  # noqa: E402
from dse.study import OBJECTIVES, feasible, front  # noqa: E402

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


def trial_rows(study: optuna.Study, trials: list[FrozenTrial]) -> pd.DataFrame:
    """One flat row per trial: number, state, objectives, parameters, attributes, real measurement."""
    real = {k[len(REAL_PREFIX):]: v for k, v in study.user_attrs.items() if k.startswith(REAL_PREFIX)}
    rows = []
    for t in trials:
        row: dict[str, Any] = {"number": t.number, "state": t.state.name}
        if t.values:
            row.update(dict(zip(OBJECTIVES, t.values)))
        row["feasible"] = feasible(t) if t.state == TrialState.COMPLETE else None
        row.update({f"param_{k}": v for k, v in t.params.items()})
        row.update({k: v for k, v in t.user_attrs.items() if not isinstance(v, (dict, list))})
        if t.state == TrialState.FAIL:
            row["fail_reason"] = t.user_attrs.get("fail_reason", t.system_attrs.get("fail_reason", "worker died or was interrupted"))
        measured = real.get(str(t.number))
        if measured:
            row["real_perplexity"] = measured.get("perplexity")
            row["real_accuracy"] = measured.get("accuracy")
        rows.append(row)
    return pd.DataFrame(rows)


def write_outputs(study: optuna.Study, out: Path) -> dict[str, Any]:
    """Write every output file and return the summary dict (also printed by the CLI)."""
    out.mkdir(parents=True, exist_ok=True)
    all_trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    pareto = front(study)
    io.write_csv(out / "trials.csv", trial_rows(study, all_trials))
    pareto_df = trial_rows(study, pareto)
    io.write_csv(out / "pareto.csv", pareto_df)
    reference = study.user_attrs.get(REFERENCE_KEY, {})
    real = {k[len(REAL_PREFIX):]: v for k, v in study.user_attrs.items() if k.startswith(REAL_PREFIX)}
    io.write_json(
        out / "pareto.json",
        {
            "study": study.study_name,
            "objectives": list(OBJECTIVES),
            "reference": reference,
            "front": [
                {
                    "number": t.number,
                    "values": dict(zip(OBJECTIVES, t.values)),
                    "params": t.params,
                    "attrs": t.user_attrs,
                    "real": real.get(str(t.number)),
                }
                for t in pareto
            ],
        },
    )
    history = hv_history(study)
    _plot_front(study, pareto, reference, out / "pareto.png")
    _plot_hypervolume(history, out / "hypervolume.png")
    counts = {s.name.lower(): sum(t.state == s for t in all_trials) for s in TrialState}
    summary = {
        "study": study.study_name,
        "trials": counts,
        "front_size": len(pareto),
        "hypervolume": float(history[-1]) if len(history) else 0.0,
        "reference": reference,
        "best": _best_rows(pareto, reference),
        "real": real,
        "out": str(out),
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
        row = {"pick": label, "number": t.number, **dict(zip(OBJECTIVES, t.values))}
        if reference:
            row["speedup_vs_vanilla"] = reference["latency_s"] / t.values[1]
            row["memory_saving_vs_vanilla"] = reference["memory_bytes"] / t.values[2]
        row["params"] = t.params
        rows.append(row)
    return rows


def summary_text(summary: dict[str, Any]) -> str:
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
    for number, real in sorted(summary["real"].items(), key=lambda kv: int(kv[0])):
        acc = real.get("accuracy")
        lines.append(
            f"   measured #{number}: perplexity {real['perplexity']:.2f}"
            + (f", accuracy {acc:.3f}" if acc is not None else "")
            + f" on {real.get('split', 'eval')} ({real.get('tokens', '?')} tokens)"
        )
    return "\n".join(lines) + "\n"


def _plot_front(study: optuna.Study, pareto: list[FrozenTrial], reference: dict[str, float], path: Path) -> None:
    trials = [t for t in _complete(study)]
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    if trials:
        vals = np.array([t.values for t in trials])
        ok = np.array([feasible(t) for t in trials])
        on_front = np.array([t.number in {p.number for p in pareto} for t in trials])
        mem_mib = vals[:, 2] / 2**20
        for ax, (x, xlabel) in zip(axes, [(vals[:, 1] * 1e3, "simulated latency per tuning step (ms)"),
                                          (mem_mib, "peak memory of a tuning step (MiB)")]):
            sc = ax.scatter(x[ok], vals[ok, 0], c=mem_mib[ok] if xlabel.startswith("sim") else vals[ok, 1] * 1e3,
                            s=14, cmap="viridis", alpha=0.7, label="trials")
            ax.scatter(x[~ok], vals[~ok, 0], marker="x", c="grey", s=14, label="infeasible (DRAM)")
            ax.scatter(x[on_front], vals[on_front, 0], facecolors="none", edgecolors="red", s=60, label="Pareto front")
            fig.colorbar(sc, ax=ax, label="memory (MiB)" if xlabel.startswith("sim") else "latency (ms)")
            if reference:
                rx = reference["latency_s"] * 1e3 if xlabel.startswith("sim") else reference["memory_bytes"] / 2**20
                ax.scatter([rx], [reference["perplexity"]], marker="*", s=160, c="black", label="vanilla tuning")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("perplexity (predicted)")
        axes[0].legend(fontsize=8)
    fig.suptitle(f"study {study.study_name}: perplexity vs simulated cost")
    io.save_figure(path, fig)


def _plot_hypervolume(history: np.ndarray, path: Path) -> None:
    fig = Figure(figsize=(5.5, 3.6))
    ax = fig.subplots()
    ax.plot(np.arange(1, len(history) + 1), history)
    ax.set_xlabel("complete trials")
    ax.set_ylabel("hypervolume (normalized by vanilla)")
    ax.set_title("hypervolume history")
    ax.grid(alpha=0.3)
    io.save_figure(path, fig)
