"""The exits study: per-exit quality of the plain head and the translated exit, votes over
translated exits, and the early-exit decisions at confidence thresholds, all on cached states.

Data (``workloads.data``): the calibration split's windows are cut in two, the first
``train_windows`` train the translators, the next ``fit_windows`` fit the calibrated votes
(temperatures and mixture weights) and are never trained on; the evaluation split's first
``eval_windows`` windows (the same ones ``workloads.evaluate`` reads) and ``mc_items``
multiple-choice items (seed 0, same-passage distractors) measure everything.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from workloads import data as data_mod
from workloads.errors import UserError
from workloads.exits import distill as distill_mod
from workloads.exits import translator as tr
from workloads.exits.scoring import (
    ALL_RULES,
    TokenStats,
    VoteCalibration,
    fit_mixture_weights,
    fit_temperature,
    score_exit,
    score_votes,
)
from workloads.exits.states import States, collect
from workloads.models import LoadedModel, cache_dir
from workloads.tuning.forward import num_layers

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


REFERENCE_DEPTH = 30  # SmolLM2-135M: the layers the defaults below are written for


def scaled_layers(layers: tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """``layers`` of a ``REFERENCE_DEPTH``-layer model at the same relative depth in an
    ``n_layers`` one (rounded, deduplicated; the top layer stays the top)."""
    top, ref_top = n_layers - 1, REFERENCE_DEPTH - 1
    return tuple(sorted({top if e == ref_top else min(round(e * top / ref_top), top - 1) for e in layers}))


@dataclass(frozen=True)
class StudyConfig:
    """Options of the exits study (units in the comments)."""

    exits: tuple[int, ...] = (5, 11, 17, 20, 21, 22, 23, 24, 25, 26, 27, 28)  # exit layers, 0-based
    votes: tuple[tuple[int, ...], ...] = ((17, 21, 25, 29), (21, 29), (25, 27, 29), (28, 29))
    seq_len: int = 256  # tokens per window
    train_windows: int = 12  # calibration windows that train the translators
    fit_windows: int = 4  # further calibration windows that fit the calibrated votes
    eval_windows: int = 8  # evaluation windows for perplexity and calibration
    mc_items: int = 32  # multiple-choice items for accuracy (0: none)
    init: str = "lstsq"  # translator start: "identity" (the tuned lens) or "lstsq" (a least-squares fit)
    rank: int | None = None  # None: full d x d translators; else low rank
    epochs: int = 0  # KL distillation passes (0: the start alone; KL helps exit 20 at lr 3e-5, docs/results/exits.md, but costs ~5 CPU-min per exit per 112 steps)
    batch_tokens: int = 256  # positions per distillation step
    lr: float = 1e-3  # Adam learning rate of the distillation
    ridge: float = 1e-3  # least-squares ridge toward the identity (relative to the mean Gram diagonal)
    thresholds: tuple[float, ...] = THRESHOLDS  # early-exit confidence thresholds
    # Exit sets of early-exit inference (each also leaves at the final layer); () = all exits.
    early_sets: tuple[tuple[int, ...], ...] = ((24,), (20, 24), (17, 21, 25), ())
    seed: int = 0

    def for_depth(self, n_layers: int) -> "StudyConfig":
        """This configuration's default layer lists (exits, vote groups, early-exit sets) moved to
        the same relative depths of an ``n_layers``-layer model; groups left with fewer than two
        layers are dropped."""
        if n_layers == REFERENCE_DEPTH:
            return self
        exits = tuple(e for e in scaled_layers(self.exits, n_layers) if e < n_layers - 1)
        votes = tuple(dict.fromkeys(g for g in (scaled_layers(g, n_layers) for g in self.votes) if len(g) >= 2))
        early = tuple(scaled_layers(g, n_layers) for g in self.early_sets)
        return replace(self, exits=exits, votes=votes, early_sets=tuple(dict.fromkeys(early)))

    def validate(self, n_layers: int) -> None:
        top = n_layers - 1
        bad = [e for e in self.exits if not 0 <= e < top]
        if bad:
            raise UserError(f"--exits {bad} must lie in 0..{top - 1} (layer {top} is the model's own output)")
        for group in self.votes:
            if len(set(group)) < 2 or any(not 0 <= e <= top for e in group):
                raise UserError(f"--votes group {list(group)} needs 2 or more distinct layers in 0..{top}")
            if any(e != top and e not in self.exits for e in group):
                raise UserError(f"--votes group {list(group)} uses layers without a translator: add them to --exits")
        for group in self.early_sets:
            if any(e not in self.exits for e in group):
                raise UserError(f"early-exit set {list(group)} uses layers without a translator: add them to --exits")
        if self.init not in distill_mod.INITS:
            raise UserError(f"unknown --init '{self.init}': use one of {', '.join(distill_mod.INITS)}")
        if self.rank is not None and self.init == "lstsq":
            raise UserError("--rank needs --init identity (the least-squares start is a full map)")

    def key(self) -> str:
        """Digest of what the translators depend on (not the evaluation options)."""
        keep = {k: v for k, v in asdict(self).items() if k in
                ("exits", "seq_len", "train_windows", "init", "rank", "epochs", "batch_tokens", "lr", "ridge", "seed")}
        return hashlib.sha1(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Inputs:
    """The token windows of the study and their cached states."""

    train: States
    fit: States
    eval: States
    mc: States | None
    mc_labels: torch.Tensor | None
    mc_start: int = 0
    mc_choices: int = 0


def load_inputs(loaded: LoadedModel, config: StudyConfig, *, data: str | None, progress: bool) -> Inputs:
    """Windows of the splits and their hidden states at every exit and vote layer."""
    layers = sorted(set(config.exits) | {e for g in config.votes for e in g})
    tok = loaded.tokenizer
    calib = data_mod.split_windows(tok, "calibration", config.seq_len, source=data)
    need = config.train_windows + config.fit_windows
    if len(calib) < need:
        raise UserError(f"the calibration split has {len(calib)} windows of {config.seq_len} tokens, fewer than "
                        f"--train-windows + --fit-windows = {need}")
    ev = data_mod.split_windows(tok, "eval", config.seq_len, source=data, max_windows=config.eval_windows)
    model = loaded.model
    train = collect(model, calib[: config.train_windows], layers, progress=progress)
    fit = collect(model, calib[config.train_windows : need], layers, progress=progress)
    evs = collect(model, ev, layers, progress=progress)
    if config.mc_items <= 0:
        return Inputs(train, fit, evs, None, None)
    items = data_mod.choice_items(tok, data_mod.load_split("eval", data), n_items=config.mc_items, seed=0)
    seqs = torch.cat([torch.cat([it.context.expand(len(it.choices), -1), it.choices], dim=1) for it in items])
    mc = collect(model, seqs, layers, progress=progress)
    labels = torch.tensor([it.label for it in items])
    return Inputs(train, fit, evs, mc, labels, items[0].context.numel() - 1, items[0].choices.shape[0])


def translators_path(loaded: LoadedModel, config: StudyConfig, train: States) -> Path:
    """Where the translators of this model, configuration and training windows are kept."""
    digest = hashlib.sha1(train.ids.numpy().tobytes()).hexdigest()[:8]
    return cache_dir() / "exits" / f"translators-{loaded.name}-{config.key()}-{digest}.pt"


def train_translators(
    loaded: LoadedModel, config: StudyConfig, train: States, *, progress: bool
) -> tuple[dict[int, tr.Translator], dict[str, Any]]:
    """Translators for every exit (read from the cache when trained before with the same
    options on the same model and windows), with their KL curves."""
    top = num_layers(loaded.model) - 1
    path = translators_path(loaded, config, train)
    if path.is_file():
        return tr.load(path)
    final = train.flat(top)
    out: dict[int, tr.Translator] = {}
    curves: dict[str, Any] = {}
    started = time.perf_counter()
    for e in config.exits:
        x = train.flat(e)
        if config.init == "lstsq":
            t = distill_mod.fit_lstsq(x, final, ridge=config.ridge)
        else:
            t = tr.Translator(x.shape[1], rank=config.rank)
        if config.epochs > 0:
            res = distill_mod.distill(loaded.model, t, x, final, exit_layer=e, epochs=config.epochs,
                                      batch_tokens=config.batch_tokens, lr=config.lr, seed=config.seed,
                                      progress=progress)
            curves[str(e)] = [round(v, 4) for v in res.losses]
        out[e] = t
    meta = {"config": asdict(config), "kl_curves": curves, "train_tokens": int(final.shape[0]),
            "seconds": round(time.perf_counter() - started, 1), "model": loaded.name}
    tr.save(path, out, meta)
    return out, meta


def fit_translators(
    loaded: LoadedModel,
    exits: list[int],
    *,
    data: str | None = None,
    seq_len: int = 256,
    windows: int = 12,
    ridge: float = StudyConfig.ridge,
    epochs: int = 0,
    progress: bool = False,
) -> dict[int, tr.Translator]:
    """Fit translators for ``exits`` on the first ``windows`` calibration windows (least squares,
    then ``epochs`` of KL distillation) and install them on ``loaded.model``; the search uses it
    for designs with translators on. Returns them (``{}`` and nothing installed without exits)."""
    if not exits:
        return {}
    top = num_layers(loaded.model) - 1
    ids = data_mod.split_windows(loaded.tokenizer, "calibration", seq_len, source=data, max_windows=windows)
    states = collect(loaded.model, ids, exits, progress=progress)
    out = {}
    for e in exits:
        out[e] = distill_mod.fit_lstsq(states.flat(e), states.flat(top), ridge=ridge)
        if epochs > 0:
            distill_mod.distill(loaded.model, out[e], states.flat(e), states.flat(top), exit_layer=e,
                                epochs=epochs, progress=progress)
    tr.install(loaded.model, out)
    return out


def _mc_accuracy(stats: TokenStats, inputs: Inputs) -> float | None:
    if inputs.mc_labels is None:
        return None
    per_choice = stats.logprob.view(-1, inputs.mc.ids.shape[1] - 1 - inputs.mc_start).sum(dim=1)
    pick = per_choice.view(-1, inputs.mc_choices).argmax(dim=1)
    return float((pick == inputs.mc_labels).double().mean())


def per_exit(loaded: LoadedModel, config: StudyConfig, inputs: Inputs, translators: dict[int, tr.Translator],
             *, progress: bool) -> tuple[list[dict[str, Any]], dict[int, TokenStats]]:
    """``[{layer, head_perplexity, translated_perplexity, head_ece, translated_ece, ...}]`` on
    the evaluation windows, and each translated exit's per-position stats (for early exits)."""
    model, ev = loaded.model, inputs.eval
    rows, kept = [], {}
    for e in config.exits:
        plain = score_exit(model, ev.flat(e), ev.targets())
        tran = score_exit(model, ev.flat(e), ev.targets(), translator=translators[e])
        kept[e] = tran
        rows.append({"layer": e, "head_perplexity": plain.perplexity, "translated_perplexity": tran.perplexity,
                     "head_ece": plain.ece, "translated_ece": tran.ece, "head_top1": plain.top1,
                     "translated_top1": tran.top1, "head_confidence": float(plain.confidence.mean()),
                     "translated_confidence": float(tran.confidence.mean())})
        if progress:
            print(f"exit {e}: head {plain.perplexity:.4g} -> translated {tran.perplexity:.4g}", flush=True)
    return rows, kept


def calibrations(loaded: LoadedModel, config: StudyConfig, inputs: Inputs,
                 translators: dict[int, tr.Translator]) -> dict[int, tuple[float, torch.Tensor]]:
    """Per vote layer: its temperature and its temperature-scaled log-probability of the true
    token at each held-out calibration position (the fit windows)."""
    fit, out = inputs.fit, {}
    for e in sorted({e for g in config.votes for e in g}):
        t = fit_temperature(loaded.model, fit.flat(e), fit.targets(), translator=translators.get(e))
        lp = score_exit(loaded.model, fit.flat(e), fit.targets(), translator=translators.get(e), temperature=t).logprob
        out[e] = (t, lp)
    return out


def paired_gap(a: TokenStats, b: TokenStats, *, windows: int) -> dict[str, float]:
    """Whether ``a`` beats ``b`` beyond noise: the per-window mean log-loss (nats/token) of
    ``a`` minus ``b`` over the ``windows`` evaluation windows (positions ``[windows * (T - 1)]``
    in window order), its mean, sample std and the two-sided paired t-test p-value
    (``scipy.stats.ttest_1samp`` of the differences). A negative mean: ``a`` is better."""
    from scipy import stats as sps

    diff = (b.logprob.double() - a.logprob.double()).view(windows, -1).mean(dim=1).numpy()
    p = float(sps.ttest_1samp(diff, 0.0).pvalue) if windows > 1 and diff.std() > 0 else float("nan")
    return {"nll_gap_mean": float(diff.mean()), "nll_gap_std": float(diff.std(ddof=1)) if windows > 1 else 0.0,
            "windows": windows, "p_value": p}


def votes(loaded: LoadedModel, config: StudyConfig, inputs: Inputs, translators: dict[int, tr.Translator],
          *, progress: bool) -> list[dict[str, Any]]:
    """Every rule over every vote group against the group's best single (translated) exit."""
    fitted = calibrations(loaded, config, inputs, translators)
    rows = []
    for group in config.votes:
        exits = sorted(group)
        weights = fit_mixture_weights(torch.stack([fitted[e][1] for e in exits]))
        cal = VoteCalibration(tuple(exits), tuple(fitted[e][0] for e in exits), tuple(float(w) for w in weights))
        ev = score_votes(loaded.model, {e: inputs.eval.flat(e) for e in exits}, inputs.eval.targets(),
                         translators=translators, calibration=cal)
        singles = {e: ev[f"exit:{e}"] for e in exits}
        mc = (score_votes(loaded.model, {e: inputs.mc.flat(e, start=inputs.mc_start) for e in exits},
                          inputs.mc.targets(start=inputs.mc_start), translators=translators, calibration=cal)
              if inputs.mc is not None else {})
        mc_single = {e: mc[f"exit:{e}"] for e in exits} if mc else {}
        best = min(exits, key=lambda e: singles[e].perplexity)
        for rule in ALL_RULES:
            rows.append({
                "rule": rule, "exits": exits, "perplexity": ev[rule].perplexity,
                "accuracy": _mc_accuracy(mc[rule], inputs) if mc else None,
                "ece": ev[rule].ece, "top1": ev[rule].top1,
                "best_single_exit": best, "best_single_exit_perplexity": singles[best].perplexity,
                "best_single_exit_accuracy": _mc_accuracy(mc_single[best], inputs) if mc_single else None,
                "temperatures": list(cal.temperatures), "weights": [round(w, 4) for w in cal.weights],
                "against_best_single": paired_gap(ev[rule], singles[best], windows=inputs.eval.ids.shape[0]),
            })
            if progress:
                print(f"vote {rule} {exits}: {ev[rule].perplexity:.4g} (best single {best}: "
                      f"{singles[best].perplexity:.4g})", flush=True)
    return rows


def early_exits(config: StudyConfig, kept: dict[int, TokenStats], final: TokenStats) -> list[dict[str, Any]]:
    """For each exit set of ``config.early_sets`` and each threshold: a position leaves at the
    first (shallowest) translated exit of the set whose confidence reaches the threshold, else
    at the final layer. Quality of the chosen predictions and the share of positions leaving at
    each exit (``-1``: the final layer; the simulator turns these shares into latency)."""
    rows = []
    for group in config.early_sets:
        exits = sorted(group) if group else sorted(kept)
        rows += [{"exits": exits, **r} for r in _early_exit_rows(config.thresholds, {e: kept[e] for e in exits}, final)]
    return rows


def _early_exit_rows(thresholds: tuple[float, ...], kept: dict[int, TokenStats], final: TokenStats) -> list[dict[str, Any]]:
    exits = sorted(kept)
    conf = torch.stack([kept[e].confidence for e in exits] + [torch.ones_like(final.confidence)])
    logp = torch.stack([kept[e].logprob for e in exits] + [final.logprob])
    right = torch.stack([kept[e].correct for e in exits] + [final.correct])
    rows = []
    for tau in thresholds:
        leave = (conf >= tau).int().argmax(dim=0)  # first exit over the threshold; the final one always is
        cols = torch.arange(conf.shape[1])
        chosen = logp[leave, cols]
        counts = torch.bincount(leave, minlength=len(exits) + 1)
        rows.append({
            "threshold": tau,
            "perplexity": float(torch.exp(-chosen.double().mean())),
            "top1": float(right[leave, cols].double().mean()),
            "exit_share": {str(e): float(c) / conf.shape[1] for e, c in zip(exits + [-1], counts.tolist())},
        })
    return rows


def asdict_stats(stats: TokenStats) -> dict[str, torch.Tensor]:
    return {"logprob": stats.logprob, "confidence": stats.confidence, "correct": stats.correct}


def run_study(loaded: LoadedModel, config: StudyConfig, *, data: str | None = None, progress: bool = True,
              partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The whole study; a JSON-ready dict (see docs/results/exits.md for its keys).
    ``partial(result so far)`` is called once the per-exit table is done."""
    top = num_layers(loaded.model) - 1
    config.validate(top + 1)
    for p in loaded.model.parameters():
        p.requires_grad_(False)
    started = time.perf_counter()
    inputs = load_inputs(loaded, config, data=data, progress=progress)
    translators, meta = train_translators(loaded, config, inputs.train, progress=progress)
    final = score_exit(loaded.model, inputs.eval.flat(top), inputs.eval.targets())
    rows, kept = per_exit(loaded, config, inputs, translators, progress=progress)
    out: dict[str, Any] = {
        "model": loaded.name,
        "config": asdict(config),
        "final_layer": top,
        "final_perplexity": final.perplexity,
        "final_ece": final.ece,
        "final_top1": final.top1,
        "eval_tokens": int(inputs.eval.targets().numel()),
        "train_tokens": int(inputs.train.targets().numel()),
        "fit_tokens": int(inputs.fit.targets().numel()),
        "mc_items": 0 if inputs.mc_labels is None else int(len(inputs.mc_labels)),
        "translators_path": str(translators_path(loaded, config, inputs.train)),
        "translator_seconds": meta.get("seconds"),
        "translator_params": {str(e): sum(p.numel() for p in t.parameters()) for e, t in translators.items()},
        "kl_curves": meta.get("kl_curves", {}),
        "per_exit": rows,
    }
    if partial is not None:
        partial(out)
    out["votes"] = votes(loaded, config, inputs, translators, progress=progress)
    out["early_exit"] = early_exits(config, kept, final)
    # Per-position stats of every translated exit and the final layer, for later analysis.
    stats_path = cache_dir() / "exits" / f"tokens-{loaded.name}-{config.key()}-{config.eval_windows}.pt"
    torch.save({str(e): asdict_stats(t) for e, t in [*kept.items(), (top, final)]}, stats_path)
    out["token_stats"] = str(stats_path)
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out
