"""Apply a policy: prune and fake-quantize every decoder layer's linear weights in place.

Methods (``policy.prune`` x ``policy.quant``):

=============  =====================================================================
magnitude      drop the smallest ``|W|`` of each matrix (no data needed)
wanda          drop the smallest ``|W| * ||X||`` of each output row (Sun et al. 2023)
sparsegpt      OBS pruning with weight reconstruction (Frantar & Alistarh 2023)
rtn            group-wise asymmetric round-to-nearest (no data needed)
gptq           OBS rounding with error compensation (Frantar et al. 2022)
=============  =====================================================================

``sparsegpt + gptq`` prunes and quantizes jointly in one OBS pass. ``magnitude/wanda + gptq``
keeps the magnitude/Wanda mask and lets GPTQ's compensation absorb pruning and rounding error
together (the objective is the dense layer's output). ``sparsegpt + rtn`` rounds the
reconstructed weights afterwards.

Data-aware methods go layer by layer: layer ``i`` is calibrated on the outputs of the already
compressed layers ``0..i-1``, and inside a layer module groups are compressed in execution
order (q/k/v, then o, then gate/up, then down), each calibrated on inputs produced by the
compressed groups before it.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from tqdm.auto import tqdm

from workloads.errors import UserError
from workloads.luc.calibration import (
    InputStats,
    LayerInputs,
    capture_layer_inputs,
    collect_stats,
    run_layer,
)
from workloads.luc.layers import decoder_layers, input_groups, linear_modules
from workloads.luc.obs import HessianInverse, hessian_inverse, obs_compress
from workloads.luc.policy import DENSE_BITS, HEAD_GROUP, LayerPolicy, Policy
from workloads.luc.prune import (
    PRUNE_METHODS,
    keep_mask,
    magnitude_scores,
    parse_nm,
    pattern_sparsity,
    wanda_scores,
)
from workloads.luc.quantize import QUANT_METHODS, absmax_quantize, rtn_quantize
from workloads.luc.report import CompressionReport, LayerReport, ModuleReport

__all__ = ["DAMP", "check_policy", "compress_head", "compress_layer", "compress_model",
           "compress_weight", "needs_calibration"]

DAMP = 0.01  # OBS damping, as a fraction of the Hessian's mean diagonal (GPTQ's default)


def check_policy(policy: Policy, model: nn.Module) -> None:
    """Raise a one-line ``UserError`` if ``policy`` cannot be applied to ``model``."""
    layers = decoder_layers(model)
    policy.validate(len(layers))
    if policy.prune not in PRUNE_METHODS:
        raise UserError(f"policy: prune must be one of {', '.join(PRUNE_METHODS)} (got {policy.prune!r})")
    if policy.quant not in QUANT_METHODS:
        raise UserError(f"policy: quant must be one of {', '.join(QUANT_METHODS)} (got {policy.quant!r})")
    implied = pattern_sparsity(policy.pattern)
    if implied is not None:
        m = parse_nm(policy.pattern)[1]  # type: ignore[index]
        for i, lp in policy.layers.items():
            if lp.sparsity > 0 and abs(lp.sparsity - implied) > 1e-6:
                raise UserError(
                    f"policy: layer {i}: pattern {policy.pattern} fixes sparsity at {implied:g} "
                    f"(got {lp.sparsity:g}); use {implied:g} or 0 (dense)"
                )
        widths = {mod.in_features for layer in layers for mod in linear_modules(layer).values()}
        if any(w % m for w in widths):
            raise UserError(f"policy: pattern {policy.pattern} needs input widths divisible by {m} (model has {sorted(widths)})")


def needs_calibration(policy: Policy) -> bool:
    """Whether any layer's method reads activations (Wanda, SparseGPT, GPTQ)."""
    return any(_needs_data(policy, lp) for lp in policy.layers.values())


def compress_model(
    model: nn.Module,
    policy: Policy,
    calib: torch.Tensor | None = None,
    *,
    progress: bool = True,
    batch_size: int = 8,
    damp: float = DAMP,
    true_sequential: bool = True,
) -> CompressionReport:
    """Prune and fake-quantize the decoder layers' linear weights of ``model`` in place.

    ``calib`` holds calibration token windows ``[n, seq_len]`` (needed by ``wanda``,
    ``sparsegpt`` and ``gptq``; magnitude + RTN need none). ``batch_size`` windows go
    through a layer at a time. The tied embedding / LM head is quantized (symmetric, groups of
    ``HEAD_GROUP``) when ``policy.head_bits`` < 16, else left alone. Per layer, the
    sparsity and bits come from ``policy.layers[i]``; ``w_bits == 16`` leaves weights
    unquantized; pruned weights stay exact zeros after quantization.

    Example::

        policy = Policy.uniform(30, 0.5, 4, prune="wanda", quant="gptq")
        report = compress_model(model, policy, calib_windows)
        report.avg_sparsity  # 0.5
    """
    start = time.perf_counter()
    check_policy(policy, model)
    layers = decoder_layers(model)
    data_needed = needs_calibration(policy)
    if data_needed and (calib is None or calib.numel() == 0):
        raise UserError(
            f"policy uses {policy.prune}/{policy.quant}, which need calibration windows; pass calib token ids "
            "(or use prune=magnitude, quant=rtn)"
        )
    inputs = capture_layer_inputs(model, calib) if data_needed and calib is not None else None
    reports = []
    bar = tqdm(range(len(layers)), desc=f"compress {policy.prune}/{policy.quant}", disable=not progress or None, leave=False)
    for i in bar:
        t0 = time.perf_counter()
        lp = policy.layers[i]
        modules = compress_layer(layers[i], lp, policy, inputs, batch_size=batch_size, damp=damp, true_sequential=true_sequential)
        reports.append(LayerReport(i, lp.sparsity, lp.w_bits, modules, time.perf_counter() - t0))
        if inputs is not None and i + 1 < len(layers):
            # The next layer calibrates on what this compressed layer now outputs.
            inputs = LayerInputs(run_layer(layers[i], inputs, batch_size=batch_size), inputs.kwargs)
    if policy.head_bits < DENSE_BITS:
        compress_head(model, policy.head_bits)
    return CompressionReport(
        reports,
        policy.prune,
        policy.quant,
        policy.pattern,
        policy.group_size,
        calib_tokens=0 if calib is None or not data_needed else calib.numel(),
        seconds=time.perf_counter() - start,
    )


def compress_head(model: nn.Module, bits: int) -> None:
    """Quantize the embedding and the LM head (once when tied) in place, after the layers: the
    layers' calibration runs on the model's own embedding either way."""
    weights = {id(m.weight): m.weight for m in (model.get_input_embeddings(), model.get_output_embeddings())
               if m is not None}
    with torch.no_grad():
        for w in weights.values():
            w.copy_(absmax_quantize(w, bits, HEAD_GROUP).to(w.dtype))


def compress_layer(
    layer: nn.Module,
    lp: LayerPolicy,
    policy: Policy,
    inputs: LayerInputs | None,
    *,
    batch_size: int = 8,
    damp: float = DAMP,
    true_sequential: bool = True,
) -> list[ModuleReport]:
    """Compress one decoder layer in place (inputs are the layer's calibration inputs, needed
    only by data-aware methods). Returns one report per linear module."""
    modules = linear_modules(layer)
    results: dict[str, ModuleReport] = {}
    if not _needs_data(policy, lp) or inputs is None:
        for name, mod in modules.items():
            results[name] = _apply(name, mod, None, lp, policy, {}, damp)
        return [results[n] for n in modules]
    groups = input_groups(layer, inputs.hidden, inputs.kwargs)
    hessian = _needs_hessian(policy, lp)
    stages = [[g] for g in groups] if true_sequential else [groups]
    for stage in stages:
        stats = collect_stats(layer, inputs, modules, stage, hessian=hessian, batch_size=batch_size)
        cache: dict[int, HessianInverse] = {}
        for group in stage:
            for name in group:
                results[name] = _apply(name, modules[name], stats[name], lp, policy, cache, damp)
    return [results[n] for n in modules]


def compress_weight(
    weight: torch.Tensor,
    stats: InputStats | None,
    *,
    sparsity: float,
    w_bits: int,
    prune: str = "wanda",
    quant: str = "rtn",
    pattern: str = "unstructured",
    group_size: int = 128,
    damp: float = DAMP,
    hinv: HessianInverse | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Compress one weight matrix ``[out, in]``; returns (new float32 weight, keep mask).

    ``stats`` are the calibration statistics of its input (None for magnitude + RTN);
    ``hinv`` reuses a Hessian inverse already computed for a module with the same input.
    """
    w = weight.detach().float()
    prune_on = sparsity > 0
    keep: torch.Tensor | None = None
    if prune_on and prune == "magnitude":
        keep = keep_mask(magnitude_scores(w), sparsity, pattern, per_row=False)
    elif prune_on and prune == "wanda":
        if stats is None:
            raise ValueError("wanda needs input statistics")
        keep = keep_mask(wanda_scores(w, stats.sq_norm), sparsity, pattern, per_row=True)
    quant_on = w_bits < DENSE_BITS
    obs_prune = prune_on and prune == "sparsegpt"
    obs_quant = quant_on and quant == "gptq"
    if obs_prune or obs_quant:
        if stats is None or stats.hessian is None:
            raise ValueError("sparsegpt/gptq need the input Hessian")
        hinv = hinv or hessian_inverse(stats.hessian, damp=damp)
        w, keep = obs_compress(
            w,
            hinv,
            sparsity=sparsity if obs_prune else 0.0,
            pattern=pattern,
            bits=w_bits if obs_quant else DENSE_BITS,
            group_size=group_size,
            keep=keep,
        )
    elif keep is not None:
        w = w * keep
    if quant_on and not obs_quant:
        w = rtn_quantize(w, w_bits, group_size, keep)
    if keep is None:
        keep = torch.ones_like(w, dtype=torch.bool)
    return w, keep


def _apply(
    name: str,
    mod: nn.Linear,
    stats: InputStats | None,
    lp: LayerPolicy,
    policy: Policy,
    hinv_cache: dict[int, HessianInverse],
    damp: float,
) -> ModuleReport:
    hinv = None
    if stats is not None and stats.hessian is not None:
        # Modules of one input group share the stats object, hence one inverse.
        key = id(stats)
        if key not in hinv_cache:
            hinv_cache[key] = hessian_inverse(stats.hessian, damp=damp)
        hinv = hinv_cache[key]
    new, keep = compress_weight(
        mod.weight,
        stats,
        sparsity=lp.sparsity,
        w_bits=lp.w_bits,
        prune=policy.prune,
        quant=policy.quant,
        pattern=policy.pattern,
        group_size=policy.group_size,
        damp=damp,
        hinv=hinv,
    )
    with torch.no_grad():
        mod.weight.copy_(new.to(mod.weight.dtype))
    pruned = int((~keep).sum())
    return ModuleReport(name, mod.weight.numel(), pruned, int((mod.weight == 0).sum()), lp.w_bits)


def _needs_data(policy: Policy, lp: LayerPolicy) -> bool:
    return (lp.sparsity > 0 and policy.prune in ("wanda", "sparsegpt")) or (
        lp.w_bits < DENSE_BITS and policy.quant == "gptq"
    )


def _needs_hessian(policy: Policy, lp: LayerPolicy) -> bool:
    return (lp.sparsity > 0 and policy.prune == "sparsegpt") or (lp.w_bits < DENSE_BITS and policy.quant == "gptq")
