"""Measured quality of the headline's configurations: several seeds, learning curves along each
run, statistics over seeds, and the time a configuration needs to reach vanilla's quality.

A run is identified by what determines it: the weights it starts from (a digest of the compressed
copy), its tuning configuration, the fidelity and the seed. Two configurations that start from
bit-identical weights with the same tuning (LUC at sparsity 0 on the checkpoint's own 4-bit grid
and vanilla, say) are the same computation, so one run serves both; the page says so. Runs are
kept on disk (``cache_dir()/headline``) with the longest curve measured so far, so a rerun only
re-simulates.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from dse.io import write_json
from dse.measure import Fidelity, compressed_copy, measure_model, weights_digest
from dse.space import Tuning
from workloads.luc.policy import Policy
from workloads.models import LoadedModel, cache_dir

__all__ = ["METRICS", "QualityRuns", "compare", "seed_stats", "separation", "time_to_quality"]

# Held-out metrics: perplexity (lower is better), next-token top-1 and multiple-choice accuracy.
METRICS = ("perplexity", "top1", "accuracy")
NOISE_P = 0.05  # a gap is beyond noise when a two-sided paired t-test over seeds gives p below this
EQUAL_TIME_SLACK = 0.05  # equal-time quality may be read at a measured checkpoint up to 5% fewer steps


@dataclass(frozen=True)
class RunRequest:
    """One tuning run: where it starts, how it tunes, with which seed, evaluated at which steps."""

    config: str
    tuning: Tuning
    policy: Policy | None
    seed: int
    checkpoints: tuple[int, ...]
    mc_checkpoints: tuple[int, ...] = ()  # where multiple-choice accuracy is scored too


class QualityRuns:
    """Runs tuning + evaluation once per distinct computation and caches the curves on disk."""

    def __init__(self, loaded: LoadedModel, fid: Fidelity, *, data: str | None, root: Path | None = None,
                 progress: bool = False) -> None:
        self.loaded, self.fid, self.data, self.progress = loaded, fid, data, progress
        self.root = root or cache_dir() / "headline"
        self._start: dict[int, tuple[LoadedModel, str]] = {}  # id(policy) -> (compressed copy, digest)
        self.shared: dict[str, list[str]] = {}  # run key -> configurations it served

    def start(self, policy: Policy | None) -> tuple[LoadedModel, str]:
        """The compressed starting model of ``policy`` and its weights digest (built once)."""
        if id(policy) not in self._start:
            work = compressed_copy(self.loaded, policy, self.fid, data=self.data, progress=self.progress)
            self._start[id(policy)] = (work, weights_digest(work.model))
        return self._start[id(policy)]

    def key(self, req: RunRequest) -> str:
        _, digest = self.start(req.policy)
        fid = asdict(replace(self.fid, steps=0, seed=req.seed))
        tuning = asdict(req.tuning)
        if not tuning.get("translators"):  # added with exit translators: runs without them keep their keys
            tuning.pop("translators", None)
        what = {"model": self.loaded.name, "data": self.data, "weights": digest, "tuning": tuning,
                "fidelity": fid, "mc_eval": self.fid.key()}
        return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def stored(self, req: RunRequest) -> dict[str, Any] | None:
        """The finished run of ``req``'s computation, whatever its checkpoints (None if none)."""
        path = self.root / f"{self.key(req)}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def measured_near(self, reqs: Sequence[RunRequest], steps: int, *, slack: float = EQUAL_TIME_SLACK) -> int | None:
        """The largest checkpoint within ``slack`` (a fraction) at or below ``steps`` that every
        run of ``reqs`` has already measured with multiple-choice accuracy, if any: a simulator
        change that moves the equal-time step count by a step or two must not force new runs."""
        stored = [self.stored(r) for r in reqs]
        if not stored or any(s is None for s in stored):
            return None
        common = set.intersection(*({p["steps"] for p in s["curve"] if p["accuracy"] is not None} for s in stored))
        near = [c for c in common if steps * (1 - slack) <= c <= steps]
        return max(near) if near else None

    def run(self, req: RunRequest) -> dict[str, Any]:
        """``{"curve": [{steps, perplexity, top1, accuracy, nll, ...}], "key", "seconds"}`` with
        at least the requested checkpoints (served from the cache when a run went that far)."""
        key = self.key(req)
        self.shared.setdefault(key, [])
        if req.config not in self.shared[key]:
            self.shared[key].append(req.config)
        path = self.root / f"{key}.json"
        cached = json.loads(path.read_text()) if path.is_file() else None
        if cached is not None and _covers(cached["curve"], req):
            return cached
        steps = max(req.checkpoints)
        work, _ = self.start(req.policy)
        copy = LoadedModel(_deepcopy(work.model), work.tokenizer, work.name, work.source)
        fid = replace(self.fid, steps=steps, seed=req.seed)

        def keep(curve: list[dict[str, Any]]) -> None:
            # An interrupted run keeps the checkpoints it reached (never over a longer stored curve).
            if cached is None or len(curve) > len(cached["curve"]):
                write_json(path, {"key": key, "config": req.config, "seed": req.seed, "curve": curve,
                                  "seconds": None, "partial": True})

        result = measure_model(copy, req.tuning, fid, data=self.data, progress=self.progress,
                               checkpoints=req.checkpoints, mc_checkpoints=set(req.mc_checkpoints), on_checkpoint=keep)
        del copy
        entry = {"key": key, "config": req.config, "seed": req.seed, "curve": result["curve"],
                 "seconds": result["seconds"]}
        write_json(path, entry)
        return entry


def _covers(curve: list[dict[str, Any]], req: RunRequest) -> bool:
    """Whether a stored curve has every requested checkpoint (with accuracy where asked for)."""
    points = {p["steps"]: p for p in curve}
    return set(req.checkpoints) <= set(points) and all(
        s in points and points[s]["accuracy"] is not None for s in req.mc_checkpoints)


def _deepcopy(model: Any) -> Any:
    import copy

    return copy.deepcopy(model)


def at_steps(curve: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """The curve's point at ``steps``."""
    for point in curve:
        if point["steps"] == steps:
            return point
    raise KeyError(f"no checkpoint at {steps} steps")


def seed_stats(values: Sequence[float | None]) -> dict[str, Any]:
    """``{"per_seed", "mean", "std"}`` (sample std, ddof 1; None where a metric was not measured)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"per_seed": list(values), "mean": None, "std": None}
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return {"per_seed": list(values), "mean": float(np.mean(vals)), "std": std}


def compare(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, Any]:
    """Paired comparison over seeds (the seed sets data order and LoRA init for both):
    ``{"diff", "diff_std", "p", "beyond_noise"}``; identical runs give ``p = None``."""
    a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    d = a - b
    if len(d) < 2 or not np.any(d != d[0]) and d[0] == 0:
        return {"diff": float(d.mean()) if len(d) else None, "diff_std": 0.0, "p": None, "beyond_noise": False}
    if np.all(d == d[0]):  # a constant non-zero gap: no spread, certainly not noise
        return {"diff": float(d[0]), "diff_std": 0.0, "p": 0.0, "beyond_noise": True}
    p = float(sps.ttest_rel(a, b).pvalue)
    return {"diff": float(d.mean()), "diff_std": float(d.std(ddof=1)), "p": p, "beyond_noise": p < NOISE_P}


def separation(untuned: dict[str, Any], tuned: dict[str, list[float]], items: int) -> list[dict[str, Any]]:
    """Which metrics tell the untuned model from vanilla-tuned ones: a one-sample t-test of the
    tuned seeds against the untuned value (the evaluation set is fixed), and for the accuracies
    also the gap against their sampling error over the ``items`` scored (binomial standard error
    of the untuned value: a metric separates only if the gap exceeds twice it too)."""
    rows = []
    for metric in METRICS:
        base, vals = untuned.get(metric), [v for v in tuned.get(metric, []) if v is not None]
        if base is None or not vals:
            continue
        n = items if metric == "accuracy" else untuned["tokens"]
        se = math.sqrt(base * (1 - base) / n) if metric != "perplexity" else None
        gap = float(np.mean(vals)) - base
        p = float(sps.ttest_1samp(vals, base).pvalue) if len(vals) > 1 and np.std(vals) > 0 else None
        beyond_se = se is None or abs(gap) > 2 * se
        rows.append({"metric": metric, "untuned": base, "tuned_mean": float(np.mean(vals)),
                     "tuned_std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "gap": gap,
                     "sampling_se": se, "p": p, "separates": bool(p is not None and p < NOISE_P and beyond_se)})
    return rows


def mean_curve(curves: Sequence[list[dict[str, Any]]], metric: str = "perplexity") -> pd.DataFrame:
    """Mean and std over seeds of ``metric`` at every checkpoint all the curves share."""
    frames = [pd.DataFrame(c)[["steps", metric]].set_index("steps")[metric] for c in curves]
    table = pd.concat(frames, axis=1).dropna()
    return pd.DataFrame({"steps": table.index, "mean": table.mean(axis=1),
                         "std": table.std(axis=1, ddof=1) if table.shape[1] > 1 else 0.0}).reset_index(drop=True)


def steps_to_reach(curve: pd.DataFrame, threshold: float) -> float | None:
    """First step count at which a mean perplexity curve reaches ``threshold``, interpolating
    log-perplexity linearly between the two checkpoints around the crossing; None if never."""
    steps, ppl = curve["steps"].to_numpy(float), curve["mean"].to_numpy(float)
    hit = np.flatnonzero(ppl <= threshold)
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(steps[0])
    y0, y1 = math.log(ppl[i - 1]), math.log(ppl[i])
    frac = (y0 - math.log(threshold)) / (y0 - y1)
    return float(steps[i - 1] + frac * (steps[i] - steps[i - 1]))


def time_to_quality(vanilla: Sequence[list[dict[str, Any]]], method: Sequence[list[dict[str, Any]]], *,
                    steps: int, vanilla_step_s: float, method_step_s: float) -> dict[str, Any]:
    """Time-to-quality speed-up: the perplexity vanilla reaches in ``steps`` steps (mean over
    seeds) is the threshold; the simulated tuning time vanilla needs for it, divided by the time
    the method needs (from the method's mean curve). If the method's curve never gets there, its
    time is unknown and the speed-up is below ``vanilla_s / (longest run's time)``."""
    threshold = float(np.mean([at_steps(c, steps)["perplexity"] for c in vanilla]))
    curve = mean_curve(method)
    reach = steps_to_reach(curve, threshold)
    vanilla_s = steps * vanilla_step_s
    longest = float(curve["steps"].max())
    method_s = None if reach is None else reach * method_step_s
    return {"threshold_perplexity": threshold, "vanilla_steps": steps, "vanilla_s": vanilla_s,
            "method_steps": reach, "method_s": method_s,
            "speedup": None if method_s is None else vanilla_s / method_s, "reached": reach is not None,
            "speedup_upper_bound": None if reach is not None else vanilla_s / (longest * method_step_s),
            "method_longest_steps": int(longest)}
