"""Real measurements (the high fidelity of the search): compress a copy of the model, tune it
briefly with the design's method, and evaluate every exit and voting rule on real text.

The search's cheap accuracy model uses the same routine on the *dense* model once per tuning
configuration (cached on disk), and the Pareto front's members are measured with their
compression applied.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from dse.io import write_json
from dse.space import Tuning
from workloads.evaluate import evaluate
from workloads.luc.policy import Policy
from workloads.models import LoadedModel, cache_dir
from workloads.tuning import actcomp
from workloads.tuning.train import TuneConfig, tune
from workloads.tuning.voting import RULES, ExitVoter, variant_name

__all__ = ["EVAL_SEED", "Fidelity", "MC_EVAL_VERSION", "TuningTable", "compressed_copy", "measure",
           "measure_model", "tune_config", "weights_digest"]


EVAL_SEED = 0  # the held-out evaluation set (multiple-choice items) is the same for every run
# 2: distractors from the same passage, items drawn with EVAL_SEED (1: other passages, the run's seed)
MC_EVAL_VERSION = 2


@dataclass(frozen=True)
class Fidelity:
    """The budget of one real measurement (units in the comments)."""

    steps: int = 8  # optimizer steps of tuning
    batch_size: int = 2  # sequences per step
    seq_len: int = 128  # tokens per sequence (tuning and evaluation)
    lr: float = 2e-3  # AdamW learning rate of the LoRA adapters
    eval_windows: int = 16  # evaluation windows (perplexity over eval_windows * (seq_len - 1) tokens)
    mc_items: int = 0  # multiple-choice items (0: perplexity only)
    split: str = "calibration"  # where the search measures; reports use "eval"
    calib_windows: int = 8  # calibration windows for data-aware compression
    seed: int = 0

    def key(self) -> str:
        """A 12-hex-digit hash of the measurement settings (and of the multiple-choice set's version
        when accuracy is measured): the cache key of the measurements taken at this fidelity.
        """
        fields: dict[str, Any] = asdict(self)
        if self.mc_items > 0:  # the multiple-choice set changed with EVAL_VERSION; perplexity did not
            fields["mc_eval"] = MC_EVAL_VERSION
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


def tune_config(tuning: Tuning, fid: Fidelity) -> TuneConfig:
    """The ``TuneConfig`` of a real measurement of ``tuning`` at fidelity ``fid`` (steps, batch,
    sequence length, learning rate and seed from ``fid``; method, window, exits, schedule and
    activation bits from ``tuning``).
    """
    return TuneConfig(
        method=tuning.method,
        steps=fid.steps,
        batch_size=fid.batch_size,
        seq_len=fid.seq_len,
        lr=fid.lr,
        window=tuning.window,
        num_exits=tuning.exits,
        schedule=tuning.schedule,
        act_bits=tuning.act_bits,
        seed=fid.seed,
    )


def compressed_copy(
    loaded: LoadedModel, policy: Policy | None, fid: Fidelity, *, data: str | None = None, progress: bool = False
) -> LoadedModel:
    """A deep copy of the model, compressed with ``policy`` (calibrated on ``fid.calib_windows``
    windows of the calibration split) when one is given. The caller's model is never modified."""
    work = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.name, loaded.source)
    if policy is not None:
        from workloads import data as data_mod
        from workloads.luc.compress import compress_model

        calib = data_mod.split_windows(
            loaded.tokenizer, "calibration", fid.seq_len, source=data, max_windows=fid.calib_windows
        )
        compress_model(work.model, policy, calib, progress=progress)
    return work


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-1 of every parameter's name, shape, dtype and bytes: two models with the same digest
    compute the same function, so a tuning run of one is a tuning run of the other."""
    h = hashlib.sha1()
    for name, p in sorted(model.state_dict().items()):
        h.update(f"{name}|{tuple(p.shape)}|{p.dtype}".encode())
        h.update(p.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def measure(
    loaded: LoadedModel,
    tuning: Tuning,
    fid: Fidelity,
    *,
    policy: Policy | None = None,
    data: str | None = None,
    progress: bool = False,
    checkpoints: Sequence[int] = (),
) -> dict[str, Any]:
    """Tune (and first compress, with ``policy``) a deep copy of the model and evaluate it.

    Returns ``{"answer", "nll", "perplexity", "top1", "accuracy", "tokens", "variants", "curve",
    "seconds"}`` where the headline numbers are those of the design's voting rule (or its single
    exit) after ``fid.steps`` steps, and ``curve`` lists the same numbers (``steps`` first) at each
    of ``checkpoints`` (step counts up to ``fid.steps``, evaluated along the one run) and at
    ``fid.steps``. The caller's model is never modified.
    """
    work = compressed_copy(loaded, policy, fid, data=data, progress=progress)
    return measure_model(work, tuning, fid, data=data, progress=progress, checkpoints=checkpoints)


def measure_model(
    work: LoadedModel,
    tuning: Tuning,
    fid: Fidelity,
    *,
    data: str | None = None,
    progress: bool = False,
    checkpoints: Sequence[int] = (),
    mc_checkpoints: Collection[int] | None = None,
    on_checkpoint: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """``measure`` on a model copy the caller owns (it is tuned in place). Multiple-choice
    accuracy is scored at ``mc_checkpoints`` only (default: every checkpoint); elsewhere it is None.
    ``on_checkpoint(curve)`` is called with the curve so far after each checkpoint along the run
    (so a caller can keep what a long run measured if it is interrupted)."""
    start = time.perf_counter()
    bad = [c for c in checkpoints if not 1 <= c <= fid.steps]
    if bad:
        raise ValueError(f"checkpoints {bad} outside 1..{fid.steps} steps")
    curve: list[dict[str, Any]] = []
    along = set(checkpoints) - {fid.steps}

    def at(n: int) -> Fidelity:
        return fid if mc_checkpoints is None or n in mc_checkpoints else replace(fid, mc_items=0)

    def after_step(n: int, result: Any) -> None:
        if n in along:
            curve.append({"steps": n, **_evaluate(work, result, tuning, at(n), data)})
            if on_checkpoint is not None:
                on_checkpoint(list(curve))

    config = tune_config(tuning, fid)
    if tuning.translators:
        from workloads.exits.study import fit_translators

        n_layers = int(work.model.config.num_hidden_layers)
        fit_translators(work, [e for e in config.exit_layers(n_layers) if e < n_layers - 1], data=data,
                        seq_len=fid.seq_len, windows=fid.calib_windows, progress=progress)
    result = tune(work, config, data=data, progress=progress, account_tensors=False, after_step=after_step)
    final = _evaluate(work, result, tuning, at(fid.steps), data)
    curve.append({"steps": fid.steps, **final})
    del result
    return {**final, "curve": curve, "seconds": time.perf_counter() - start}


def _evaluate(work: LoadedModel, result: Any, tuning: Tuning, fid: Fidelity, data: str | None) -> dict[str, Any]:
    """Every exit and voting rule on the held-out split; the design's answer first. The
    evaluation set (windows, multiple-choice items) is fixed: it does not follow ``fid.seed``."""
    voter = ExitVoter(result.model, result.exits, rules=RULES)
    scores = {
        variant: evaluate(work, data=data, split=fid.split, seq_len=fid.seq_len, max_windows=fid.eval_windows,
                          mc_items=fid.mc_items, seed=EVAL_SEED, scorer=voter.scorer(variant), progress=False)
        for variant in voter.variants
    }
    del voter
    answer = variant_name(rule=tuning.vote) if len(scores) > 1 and tuning.exits > 1 else variant_name(
        exit_layer=max(int(v.split(":")[1]) for v in scores if v.startswith("exit:"))
    )
    if answer not in scores:  # a single-exit design has no vote
        answer = next(v for v in scores if v.startswith("exit:"))
    keys = ("nll", "perplexity", "top1", "accuracy")
    return {
        "answer": answer,
        **{k: scores[answer][k] for k in keys},
        "tokens": scores[answer]["tokens"],
        "variants": {v: {k: s[k] for k in keys} for v, s in scores.items()},
    }


class TuningTable:
    """Measured loss of the dense model after brief tuning, per tuning configuration: computed
    on first use and kept in a JSON file, so a study (and the next one) pays once per config."""

    def __init__(self, loaded: LoadedModel, fid: Fidelity, *, data: str | None = None, path: Path | None = None):
        self.loaded = loaded
        self.fid = fid
        self.data = data
        tag = hashlib.sha1(f"{loaded.name}|{loaded.source}|{data}".encode()).hexdigest()[:10]
        self.path = path or cache_dir() / "tuning_table" / f"{loaded.name}-{tag}-{fid.key()}.json"
        self._table: dict[str, dict[str, Any]] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    @staticmethod
    def key(tuning: Tuning) -> str:
        """The table's key of ``tuning``: method, window, exits, schedule, packing of the saved
        activations and translators (not the vote, chosen at inference: one measurement serves every
        rule).
        """
        # The vote is chosen at inference, so one measurement serves every rule.
        tag = actcomp.cache_tag(tuning.act_bits)
        packed = f"|{tag}" if tag else ""
        translated = "|tr" if tuning.translators else ""
        return f"{tuning.method}|w{tuning.window}|e{tuning.exits}|{tuning.schedule}{packed}{translated}"

    def has(self, tuning: Tuning) -> bool:
        """Whether ``tuning``'s entry is measured already (``lookup`` will not tune)."""
        return self.key(tuning) in self._table

    def lookup(self, tuning: Tuning) -> dict[str, Any]:
        """The measurement of ``tuning`` (``measure``: a real tuning run and held-out evaluation),
        taken once and then read from the table file, which is merged with other workers' entries
        and rewritten atomically after each new measurement.
        """
        key = self.key(tuning)
        if key not in self._table:
            torch.manual_seed(self.fid.seed)
            self._table[key] = measure(self.loaded, tuning, self.fid, data=self.data)
            # Other workers may have added entries meanwhile: merge before the atomic write.
            on_disk = json.loads(self.path.read_text()) if self.path.is_file() else {}
            self._table = {**on_disk, **self._table}
            write_json(self.path, self._table)
        return self._table[key]

    def nll(self, tuning: Tuning) -> float:
        """Held-out loss (nats/token) of the design's answer after brief dense tuning."""
        entry = self.lookup(tuning)
        variants = entry["variants"]
        want = f"vote:{tuning.vote}"
        if tuning.exits > 1 and want in variants:
            return float(variants[want]["nll"])
        return float(entry["nll"])
