"""Exits that work (issue 18): per-exit perplexity and ECE of the plain head against the
tuned-lens translated exit, votes over translated exits against their best single exit, early
exit by confidence with its simulated latency, and what the translators cost in a traced step.
Writes docs/results/exits.md, exits.json, exits.png and exits_early.png.

    python -m workloads.exits --model smollm2-135m --threads 1 --mc-items 24 --epochs 0 \\
        --out runs/bench_exits/exits.json
    python benchmarks/bench_exits.py --study runs/bench_exits/exits.json

The study (first command) does the model work: hidden states once, translators trained on
them, every exit and vote scored. This script adds the device side: real traces of an
inference pass with heads at the exits and of one adaptive tuning step with and without a
translator, simulated on the hardware config, and renders the page from both.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sim  # noqa: E402
from dse import io  # noqa: E402
from workloads.exits import translator as tr  # noqa: E402
from workloads.jsonfile import read_json  # noqa: E402
from workloads.models import load_model  # noqa: E402
from workloads.trace.record import record_trace  # noqa: E402

DOC = ROOT / "docs" / "results" / "exits.md"
TARGET_RATIO = 1.5  # issue 18: every exit at layer >= 20 within 1.5x of the final perplexity, translated
TARGET_LAYER = 20


def token_costs(res: sim.SimResult, n_exits: int, seq_len: int) -> dict[str, Any]:
    """Per-token simulated cycles of the parts of an inference pass (batch 1, ``seq_len``
    tokens, heads and translators at ``n_exits`` exits below the top, plus the model's own
    head): ``once`` (embedding and other work outside layers and heads), ``depth[e]`` (decoder
    layers 0..e), ``check`` (one exit's head and translator), ``lm_head``. Per token = the
    pass's cycles / ``seq_len``."""
    ops = res.ops
    layer_cycles = ops[ops["layer"] >= 0].groupby("layer")["cycles"].sum().sort_index()
    head = ops[ops["layer"] < 0]
    exit_head = float(head.loc[head["module"] == "exit_head", "cycles"].sum()) / n_exits
    translator = float(head.loc[head["module"] == "exit_translator", "cycles"].sum()) / n_exits
    return {
        "once": float(head.loc[~head["module"].isin(["exit_head", "exit_translator", "lm_head"]), "cycles"].sum()) / seq_len,
        "depth": {int(e): float(c) / seq_len for e, c in layer_cycles.cumsum().items()},
        "head": exit_head / seq_len,
        "translator": translator / seq_len,
        "lm_head": float(head.loc[head["module"] == "lm_head", "cycles"].sum()) / seq_len,
    }


def early_exit_cycles(costs: dict[str, Any], exits: list[int], shares: dict[str, float], top: int) -> float:
    """Mean per-token cycles when a share ``shares[str(e)]`` of tokens leaves at exit ``e`` (``-1``:
    the final layer): the layers up to the exit, one check (head + translator) per exit passed
    including its own, and for the final layer every check plus the model's head."""
    check = costs["head"] + costs["translator"]
    total = 0.0
    for k, e in enumerate(sorted(exits), start=1):
        total += shares[str(e)] * (costs["once"] + costs["depth"][e] + k * check)
    total += shares["-1"] * (costs["once"] + costs["depth"][top] + len(exits) * check + costs["lm_head"])
    return total


def device_side(study: dict[str, Any], hw_path: str, *, seq_len: int) -> dict[str, Any]:
    """Traces of the real model with the study's translators, simulated on ``hw_path``."""
    hw = sim.load_hw(hw_path)
    clock_hz = hw.clock_mhz * 1e6
    loaded = load_model(study["model"])
    top = int(study["final_layer"])
    translators, _ = tr.load(study["translators_path"])
    widest = sorted({e for r in study["early_exit"] for e in r["exits"]})
    tr.install(loaded.model, {e: translators[e] for e in widest})
    inference = record_trace(loaded, method="inference", exits=widest + [top], seq_len=seq_len, batch=1)
    costs = token_costs(sim.simulate_trace(inference.ops, hw, tensors=inference.tensors), len(widest), seq_len)
    no_exit = costs["once"] + costs["depth"][top] + costs["lm_head"]
    curves = [{"exits": r["exits"], "threshold": r["threshold"], "perplexity": r["perplexity"], "top1": r["top1"],
               "latency_s_per_token": early_exit_cycles(costs, r["exits"], r["exit_share"], top) / clock_hz}
              for r in study["early_exit"]]
    charge = []
    exit_layer = max(e for e in widest if e < top)
    for with_translator in (False, True):
        tr.remove(loaded.model)
        if with_translator:
            tr.install(loaded.model, {exit_layer: translators[exit_layer]})
        trace = record_trace(loaded, method="adaptive", window=min(4, exit_layer + 1), exit_layer=exit_layer,
                             seq_len=seq_len, batch=1)
        res = sim.simulate_trace(trace.ops, hw, tensors=trace.tensors)
        rows = trace.ops[(trace.ops["module"] == "exit_translator") & (trace.ops["kind"] == "matmul")]
        charge.append({
            "translator": with_translator, "exit_layer": exit_layer,
            "macs": int(trace.macs()), "translator_macs": int((rows["M"] * rows["N"] * rows["K"] * rows["count"]).sum()),
            "memory_bytes": int(trace.memory_bytes()),
            "translator_bytes": int(trace.tensors.loc[trace.tensors["name"].str.contains(tr.ATTRIBUTE), "bytes"].sum()),
            "latency_s": res.latency_s,
        })
    tr.remove(loaded.model)
    return {"hw": hw.name, "seq_len": seq_len, "no_exit_latency_s_per_token": no_exit / clock_hz,
            "head_latency_s_per_token": costs["head"] / clock_hz,
            "translator_latency_s_per_token": costs["translator"] / clock_hz,
            "layer_latency_s_per_token": costs["depth"][top] / (top + 1) / clock_hz,
            "early_exit": curves, "charge": charge}


def plot_exits(study: dict[str, Any], path: Path) -> None:
    df = pd.DataFrame(study["per_exit"])
    fig = Figure(figsize=(10, 4))
    ax, bx = fig.subplots(1, 2)
    ax.semilogy(df["layer"], df["head_perplexity"], "o-", label="plain head (final norm + tied head)")
    ax.semilogy(df["layer"], df["translated_perplexity"], "s-", label="translated (tuned lens)")
    ax.axhline(study["final_perplexity"], color="k", lw=1, label=f"final layer ({study['final_perplexity']:.1f})")
    ax.axhline(TARGET_RATIO * study["final_perplexity"], color="k", lw=1, ls="--", label=f"{TARGET_RATIO}x final")
    ax.axvline(TARGET_LAYER - 0.5, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("exit layer (0-based)")
    ax.set_ylabel("held-out perplexity (log)")
    ax.legend(fontsize=7)
    bx.plot(df["layer"], df["head_ece"], "o-", label="plain head")
    bx.plot(df["layer"], df["translated_ece"], "s-", label="translated")
    bx.axhline(study["final_ece"], color="k", lw=1, label="final layer")
    bx.set_xlabel("exit layer (0-based)")
    bx.set_ylabel(f"expected calibration error ({15} bins)")
    bx.legend(fontsize=7)
    fig.tight_layout()
    io.save_figure(path, fig)


def plot_early(device: dict[str, Any], study: dict[str, Any], path: Path) -> None:
    df = pd.DataFrame(device["early_exit"])
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for exits, part in df.groupby(df["exits"].map(tuple)):
        ax.plot(part["latency_s_per_token"] * 1e6, part["perplexity"], "o-", ms=3, label=f"exits {list(exits)}")
    ax.plot([device["no_exit_latency_s_per_token"] * 1e6], [study["final_perplexity"]], "k*", ms=10,
            label="no early exit")
    ax.set_xlabel(f"simulated latency per token (us, {device['hw']})")
    ax.set_ylabel("held-out perplexity (log)")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    io.save_figure(path, fig)


def ridge_section(ridge: dict[str, Any] | None, *studies: dict[str, Any] | None) -> list[str]:
    """The ridge sweep beside its own baseline: the study (of ``studies``) fitted on the same
    training and evaluation windows; without one, the sweep is not shown."""
    same = [s for s in studies if s is not None and s["config"]["train_windows"] == ridge.get("train_windows")
            and s["config"]["eval_windows"] == ridge.get("eval_windows")] if ridge is not None else []
    if not same:
        return []
    study = same[0]
    base = {r["layer"]: r["translated_perplexity"] for r in study["per_exit"]}
    rows = pd.DataFrame(ridge["rows"])
    rows = pd.concat([pd.DataFrame([{"layer": e, "ridge": study["config"]["ridge"], "translated_perplexity": base[e]}
                                    for e in sorted(set(rows["layer"]))]), rows]).sort_values(["layer", "ridge"])
    return [
        "## Is the least-squares start over-fitted?",
        "",
        f"`{ridge['command']}`: {ridge['train_windows']} training windows and {ridge['eval_windows']} evaluation "
        "windows (the earlier, smaller study, whose ridge-0.001 rows these are), a stronger pull toward the "
        "(rescaled) identity.",
        "",
        io.markdown_table(rows, digits=4),
        "",
    ]


def kl_section(kl: dict[str, Any] | None) -> list[str]:
    if kl is None:
        return []
    rows = pd.DataFrame([{"start": r["init"], "Adam lr": r["lr"], "steps": len(r["kl"]), "KL first step": r["kl"][0],
                          "KL last step": r["kl"][-1], "held-out perplexity before": r.get("perplexity_before"),
                          "after": r.get("perplexity_after"), "seconds": r["seconds"]}
                         for r in kl["runs"]])
    final = kl.get("final_perplexity")
    return [
        "## KL distillation (the tuned lens's objective) within this machine's budget",
        "",
        f"`{kl['command']}`: exit {kl['exit']}, {kl['positions']} training positions in steps of "
        f"{kl['batch_tokens']}; KL(final || exit) per token on each training batch (nats), and the exit's "
        "held-out perplexity before and after"
        + (f" (final layer {final:.2f}, {kl['eval_tokens']} evaluation tokens)" if final else "")
        + ". Each step runs the 49,152-word head forward and backward, about 8 decoder layers of work.",
        "",
        io.markdown_table(rows, digits=4),
        "",
        kl_verdict(kl),
        "",
    ]


def kl_verdict(kl: dict[str, Any]) -> str:
    """What the best run reached against the least-squares start and the 1.5x target."""
    runs = [r for r in kl["runs"] if r.get("perplexity_after") is not None]
    if not runs:
        return "Held-out perplexity was not measured in this probe (training-batch KL only)."
    best = min(runs, key=lambda r: r["perplexity_after"])
    final = kl.get("final_perplexity")
    ratio = f", {best['perplexity_after'] / final:.2f}x the final layer" if final else ""
    return (f"Held-out, the best run ({best['init']} start, lr {best['lr']:g}, {best['steps']} steps) takes exit "
            f"{kl['exit']} from {best['perplexity_before']:.1f} to {best['perplexity_after']:.1f}{ratio}: KL "
            f"distillation does improve on the least-squares fit, and was still improving when it stopped, but "
            f"within these steps it does not bring exit {kl['exit']} within {TARGET_RATIO}x. The study's translators "
            "are the least-squares fit alone (`--epochs 0`); `--epochs N` distils every exit.")


def scaling_section(study: dict[str, Any], compare: dict[str, Any] | None, compare_path: str | None) -> list[str]:
    """The same exits fitted on fewer calibration positions (an earlier study): does more data help?"""
    if compare is None:
        return []
    mine = {r["layer"]: r["translated_perplexity"] / study["final_perplexity"] for r in study["per_exit"]}
    other = {r["layer"]: r["translated_perplexity"] / compare["final_perplexity"] for r in compare["per_exit"]}
    layers = sorted(set(mine) & set(other))
    rows = pd.DataFrame([{"layer": e, f"{compare['train_tokens']} positions": other[e],
                          f"{study['train_tokens']} positions": mine[e]} for e in layers])
    return [
        "## Does more calibration data close the gap?",
        "",
        f"Translated / final perplexity of the same exits fitted on {compare['train_tokens']} calibration positions "
        f"(`{compare_path}`: {compare['eval_tokens']} evaluation tokens) and on {study['train_tokens']} (this page, "
        f"{study['eval_tokens']} evaluation tokens): each ratio is against its own run's final layer.",
        "",
        io.markdown_table(rows, digits=3),
        "",
    ]


def study_command(study: dict[str, Any], out: str) -> str:
    """The ``python -m workloads.exits`` command that wrote ``study`` (from its own config)."""
    c = study["config"]
    groups = ";".join(",".join(map(str, g)) for g in c["votes"])
    early = ";".join(",".join(map(str, g)) if g else "all" for g in c["early_sets"])
    return (f"python -m workloads.exits --model {study['model']} --threads 1 --train-windows {c['train_windows']} "
            f"--fit-windows {c['fit_windows']} --eval-windows {c['eval_windows']} --mc-items {c['mc_items']} "
            f"--exits {','.join(map(str, c['exits']))} --votes '{groups}' --early-sets '{early}' "
            f"--init {c['init']} --epochs {c['epochs']} --out {out}")


def render(study: dict[str, Any], device: dict[str, Any], study_path: str, kl: dict[str, Any] | None = None,
           ridge: dict[str, Any] | None = None, compare: dict[str, Any] | None = None,
           compare_path: str | None = None) -> str:
    final = study["final_perplexity"]
    c = study["config"]
    per = pd.DataFrame(study["per_exit"])
    per["translated / final"] = per["translated_perplexity"] / final
    hit = per[per["layer"] >= TARGET_LAYER]
    worst = hit.loc[hit["translated / final"].idxmax()] if len(hit) else None
    params = next(iter(study["translator_params"].values()))
    d = int(round((-1 + (1 + 4 * params) ** 0.5) / 2))  # a full translator has d*d + d parameters
    lines = [
        "# Exits that work: tuned-lens translators, votes, early exit (SmolLM2-135M)",
        "",
        "Produced by:",
        "",
        "```sh",
        study_command(study, study_path),
        f"python benchmarks/bench_exits.py --study {study_path}"
        + (f" --compare {compare_path}" if compare_path else ""),
        "```",
        "",
        "## Fidelity (read this first)",
        "",
        f"- Translators: full affine {d}x{d} maps (`--init {c['init']}`"
        + (f", then {c['epochs']} epoch(s) of KL distillation to the final layer, Adam lr {c['lr']}, "
           f"{c['batch_tokens']} positions per step)" if c["epochs"] else ", no KL steps: see the KL section)")
        + " fitted on "
        f"{study['train_tokens']} positions ({c['train_windows']} calibration windows of {c['seq_len']} tokens); "
        f"the base model frozen, states cached once, nothing back-propagated through the decoder.",
        f"- Calibrated votes fitted on {study['fit_tokens']} further calibration positions ({c['fit_windows']} windows).",
        f"- Everything measured on the first {c['eval_windows']} eval-split windows of {c['seq_len']} tokens "
        f"({study['eval_tokens']} predicted tokens) and {study['mc_items']} multiple-choice items: a small sample, "
        "chosen to fit this session's share of two CPU cores; single seed (translators and least squares are "
        "deterministic given the windows).",
        "",
        "## Per exit: plain head against translated exit",
        "",
        f"Final layer ({study['final_layer']}): perplexity {final:.3f}, ECE {study['final_ece']:.3f}.",
        "",
        io.markdown_table(per[["layer", "head_perplexity", "translated_perplexity", "translated / final",
                               "head_ece", "translated_ece", "head_top1", "translated_top1"]], digits=4),
        "",
        "![per-exit perplexity and ECE](exits.png)",
        "",
    ]
    if worst is not None:
        ok = bool((hit["translated / final"] <= TARGET_RATIO).all())
        lines += [f"Target (every exit at layer >= {TARGET_LAYER} within {TARGET_RATIO}x of the final perplexity, "
                  f"translated): {'met' if ok else 'not met'}; worst exit {int(worst['layer'])} at "
                  f"{worst['translated / final']:.2f}x.", ""]
    lines += scaling_section(study, compare, compare_path)
    lines += votes_section(study)
    lines += ridge_section(ridge, study, compare)
    lines += kl_section(kl)
    lines += device_section(device, study) if device is not None else [
        "## Early exit and the translators' device cost", "",
        "Not measured this session: the study's vote and early-exit stage and the traced passes did not get "
        "CPU time before the session ended (the machine was shared with a long experiment of higher priority). "
        "The trace charges translators (module `exit_translator`, `fwd` and `bwd_input` rows, 16-bit weights in "
        "the tensor table): `tests/test_workloads_exits.py::test_trace_charges_the_translators` and "
        "`tests/test_dse_space.py::test_trace_bank_charges_translators_below_the_top` check it on the tiny model.",
        ""]
    lines += not_measured()
    return "\n".join(lines) + "\n"


def votes_section(study: dict[str, Any]) -> list[str]:
    if not study.get("votes"):
        return ["## Votes over translated exits", "",
                "Not measured this session (the study stopped after the per-exit table; its JSON says "
                "`\"partial\": true`).", ""]
    votes = pd.DataFrame(study["votes"])
    votes["beats best single"] = votes["perplexity"] < votes["best_single_exit_perplexity"]
    paired = pd.DataFrame(list(votes.pop("against_best_single"))) if "against_best_single" in votes else None
    if paired is not None:
        votes["nll gap (nats/token)"] = paired["nll_gap_mean"]
        votes["p"] = paired["p_value"]
        votes["beyond noise"] = (paired["p_value"] < 0.05).to_numpy()
    else:
        votes["nll gap (nats/token)"] = votes["p"] = votes["beyond noise"] = None
    beats = votes["beats best single"] & votes["beyond noise"].fillna(False).astype(bool)
    return [
        "## Votes over translated exits",
        "",
        "Rules: `max_conf` (the paper's), `mean`, `entropy` (weights softmax(-H)), `max_conf_calibrated` (max "
        "confidence after per-exit temperature scaling), `weighted` (mixture weights fitted by likelihood on the "
        "fit windows, temperature-scaled exits). Compared with the group's best single exit on the same positions "
        "(equal inference cost for the group: every rule runs the same heads).",
        "",
        "The gap is the vote's mean log-loss minus the best single exit's per evaluation window (negative: the "
        "vote is better), with the paired t-test over windows; \"beyond noise\" means p < 0.05.",
        "",
        io.markdown_table(votes[["exits", "rule", "perplexity", "best_single_exit", "best_single_exit_perplexity",
                                 "beats best single", "nll gap (nats/token)", "p", "beyond noise", "accuracy",
                                 "best_single_exit_accuracy", "ece"]]
                          .assign(exits=votes["exits"].map(lambda e: ",".join(map(str, e)))), digits=4),
        "",
        f"Target (a group of 2 or more exits with a vote that beats its best single exit): {vote_verdict(votes, beats)}.",
        "",
    ]


def _named(rows: pd.DataFrame) -> str:
    """``rule over e1,e2, ...`` for each vote row, sorted."""
    return ", ".join(sorted({f"{r['rule']} over {','.join(map(str, r['exits']))}" for _, r in rows.iterrows()}))


def vote_verdict(votes: pd.DataFrame, beats: pd.Series) -> str:
    """``met (...)`` when a vote beats its best single exit beyond noise, else ``not met`` with
    the rules that are lower without significance, if any."""
    if beats.any():
        return f"met ({_named(votes[beats])}, beyond noise)"
    lower = votes[votes["beats best single"]]
    return "not met" + (f" beyond noise; lower perplexity without significance: {_named(lower)}" if len(lower) else "")


def not_measured() -> list[str]:
    return [
        "## Not measured here",
        "",
        "- The translators' KL distillation was run on one exit (20, the section above) for up to 112 steps; "
        "the study's translators are the least-squares fit.",
        "- Adaptive tuning through translated exits (sequential and round-robin schedules over windows below the "
        "top, then voting) needs real tuning runs per schedule and seed; the code path is in place "
        "(`python -m workloads.tune --translators FILE`, and `translators` in the search space, which fits "
        "least-squares translators on the calibration split of the compressed copy before tuning) but no run "
        "was made.",
        "- The time-to-quality target with compression beyond the checkpoint's grid: bounded, not tuned "
        "([ttq_bound.md](ttq_bound.md)).",
        "- Votes inside adaptive tuning: `workloads.tune --vote` offers max_conf, mean and entropy; the fitted "
        "mixture (`weighted`), the only rule that beats its best single exit here, lives in the exits study only.",
        "",
    ]


def early_verdict(device: dict[str, Any], study: dict[str, Any]) -> str:
    """Whether any threshold beats running the whole model, in latency at no worse perplexity."""
    early = pd.DataFrame(device["early_exit"])
    base = device["no_exit_latency_s_per_token"]
    faster = early[early["latency_s_per_token"] < base]
    check = device["head_latency_s_per_token"] + device["translator_latency_s_per_token"]
    layers = check / device["layer_latency_s_per_token"]
    if len(faster) == 0:
        return (f"No threshold of any exit set is faster than the whole model ({base * 1e6:.1f} us per token): one "
                f"exit check ({check * 1e6:.1f} us, the {layers:.1f} decoder layers' worth of the 49,152-word head "
                "and its translator) costs more than the layers a token can skip above the exits that are good "
                "enough to leave from. Early exit does not pay on this model and accelerator.")
    best = faster.loc[faster["perplexity"].idxmin()]
    return (f"Faster than the whole model ({base * 1e6:.1f} us per token): {len(faster)} setting(s); the best, "
            f"exits {list(best['exits'])} at threshold {best['threshold']}, {best['latency_s_per_token'] * 1e6:.1f} us "
            f"at perplexity {best['perplexity']:.2f} (whole model {study['final_perplexity']:.2f}).")


def device_section(device: dict[str, Any], study: dict[str, Any]) -> list[str]:
    us = 1e6
    early = pd.DataFrame(device["early_exit"])
    early["exits"] = early["exits"].map(lambda e: ",".join(map(str, e)))
    early["latency_us_per_token"] = early["latency_s_per_token"] * us
    charge = pd.DataFrame(device["charge"])
    return [
        "## Early exit by confidence",
        "",
        f"A position leaves at the first exit of the set whose translated confidence (top probability) reaches "
        f"the threshold, else at the final layer. Latency per token is simulated on {device['hw']} from a real "
        f"inference trace (batch 1 x {device['seq_len']} tokens, heads and translators at the exits): a decoder "
        f"layer {device['layer_latency_s_per_token'] * us:.3f} us, an exit check (vocabulary head) "
        f"{device['head_latency_s_per_token'] * us:.3f} us plus its translator "
        f"{device['translator_latency_s_per_token'] * us:.3f} us, the whole model without exits "
        f"{device['no_exit_latency_s_per_token'] * us:.3f} us (perplexity {study['final_perplexity']:.3f}). "
        "Per-token idealization: a token that leaves skips the layers above it (their KV entries are not computed).",
        "",
        io.markdown_table(early[["exits", "threshold", "perplexity", "top1", "latency_us_per_token"]], digits=4),
        "",
        "![early exit: quality against simulated latency](exits_early.png)",
        "",
        early_verdict(device, study),
        "",
        "## What a translator costs in a tuning step",
        "",
        f"One adaptive step (window of 4 ending at exit {int(charge['exit_layer'].iloc[0])}, batch 1 x "
        f"{device['seq_len']} tokens) traced on the real model with and without its translator, simulated on "
        f"{device['hw']}: the translator's forward and input-gradient products and its 16-bit weights are in the "
        "trace and the tensor table.",
        "",
        io.markdown_table(charge, digits=6),
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--study", default="runs/bench_exits/exits.json", help="JSON of `python -m workloads.exits --out`")
    p.add_argument("--hw", default="hwconfigs/edge_llm.yaml", help="hardware config (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=256, help="tokens of the traced passes (default: %(default)s)")
    p.add_argument("--out-dir", type=Path, default=DOC.parent, help="where the page goes (default: %(default)s)")
    p.add_argument("--compare", default=None,
                   help="an earlier study JSON fitted on fewer calibration positions, for the data-scaling table")
    p.add_argument("--no-device", action="store_true",
                   help="skip the traced passes (early-exit latency, the translators' charge)")
    p.add_argument("--render-only", action="store_true",
                   help="re-render the page from the device side already in OUT_DIR/exits.json (no traces)")
    args = p.parse_args(argv)
    study = read_json(args.study, "study file", "exits study")
    if args.no_device:
        device = None
    elif args.render_only:
        device = read_json(args.out_dir / "exits.json", "exits page data", "exits page")["device"]
    else:
        device = device_side(study, args.hw, seq_len=args.seq_len)
    out_dir = args.out_dir
    plot_exits(study, out_dir / "exits.png")
    if device is not None:
        plot_early(device, study, out_dir / "exits_early.png")
    doc = {
        "per_exit": [{k: r[k] for k in ("layer", "head_perplexity", "translated_perplexity", "head_ece",
                                         "translated_ece")} for r in study["per_exit"]],
        "final_perplexity": study["final_perplexity"],
        "votes": [{k: v[k] for k in ("rule", "exits", "perplexity", "accuracy", "best_single_exit_perplexity")}
                  for v in study.get("votes", [])],
        "study": {k: v for k, v in study.items() if k not in ("per_exit", "votes", "kl_curves")},
        "votes_detail": study.get("votes", []),
        "per_exit_detail": study["per_exit"],
        "kl_curves": study.get("kl_curves", {}),
        "device": device,
    }
    io.write_json(out_dir / "exits.json", doc)
    kl_path = out_dir / "exits_kl.json"
    kl = read_json(kl_path, "KL probe", "KL probe") if kl_path.is_file() else None
    ridge_path = out_dir / "exits_ridge.json"
    ridge = read_json(ridge_path, "ridge sweep", "ridge sweep") if ridge_path.is_file() else None
    compare = read_json(args.compare, "study file", "exits study") if args.compare else None
    io.write_text(out_dir / DOC.name, render(study, device, args.study, kl, ridge, compare, args.compare))
    print(f"wrote {out_dir / DOC.name}, exits.json, exits.png, exits_early.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
