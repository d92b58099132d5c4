"""Sensitivity profiling: how much the model degrades when only one decoder layer is pruned or
quantized, for every layer and a ladder of sparsities and bit-widths.

The degradation is the divergence of the whole model's next-token predictions from the dense
model's on calibration text (``metric="kl"``, the default: KL(dense || compressed), never
negative and low-noise) or the increase of the calibration cross-entropy (``metric="loss"``),
in nats per token. Both are normalized by construction: they are what the output sees, not a
layer's raw output MSE, which grows with depth along the residual stream.

Cost is kept low by computing every layer's dense inputs once: a measurement compresses one
layer (from statistics of its dense inputs, shared by all settings of that layer), runs that
layer and only the layers above it, and the head. The table is cached in the user cache
folder (``workloads.models.cache_dir()/sensitivity``) under a key made of the model (name,
source and a fingerprint of its weights), the exact calibration tokens (so data, tokenizer,
``seq_len`` and window count), the method and the measured ladder; a second run loads it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from workloads import data as data_mod
from workloads.errors import UserError
from workloads.luc.calibration import LayerInputs, capture_layer_inputs, collect_stats, run_layer
from workloads.luc.compress import compress_weight
from workloads.luc.divergence import divergence, reference
from workloads.luc.layers import (
    decoder_layers,
    final_head,
    input_groups,
    layer_param_count,
    linear_modules,
)
from workloads.luc.obs import HessianInverse, hessian_inverse
from workloads.luc.outliers import OUTLIER_M, outlier_ratio
from workloads.luc.policy import DENSE_BITS, MAX_BITS, MIN_BITS
from workloads.luc.prune import PRUNE_METHODS, pattern_sparsity
from workloads.luc.quantize import QUANT_METHODS
from workloads.luc.table import SensitivityTable
from workloads.models import LoadedModel, cache_dir

__all__ = ["DEFAULT_BITS", "DEFAULT_SPARSITIES", "DEFAULT_WINDOWS", "METRICS", "VERSION",
           "cache_path", "profile_sensitivity", "weights_fingerprint"]

VERSION = 1  # bump when the measurement changes, so old cache entries are not reused
# Below 0.2 a layer's loss is negligible (about 1e-4 nats on SmolLM2), so interpolating from 0
# costs nothing; wider bit-widths are extrapolated (x1/4 per bit, measured x3..x4 from 4 to 5).
DEFAULT_SPARSITIES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_BITS = (2, 3, 4)
# 2 x 256 tokens keep the whole SmolLM2 profile near 10 minutes on 2 cores; layer rankings
# agree with a 4-window profile at Spearman 0.8..0.9 (docs/results/luc.md).
DEFAULT_WINDOWS = 2
METRICS = ("kl", "loss")


def profile_sensitivity(
    loaded: LoadedModel,
    *,
    data: str | None = None,
    prune: str = "wanda",
    quant: str = "rtn",
    pattern: str = "unstructured",
    group_size: int = 128,
    seq_len: int = 256,
    windows: int = DEFAULT_WINDOWS,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    bits: Sequence[int] = DEFAULT_BITS,
    joint: Sequence[tuple[float, int]] = (),
    metric: str = "kl",
    batch_size: int = 8,
    seed: int = 0,
    use_cache: bool = True,
    progress: bool = True,
) -> SensitivityTable:
    """Measure (or load from the cache) the per-layer sensitivity table of ``loaded``.

    ``windows`` calibration windows of ``seq_len`` tokens drawn (with ``seed``) from the
    calibration split of ``data``; each layer alone is pruned with ``prune`` at each of ``sparsities`` (weights
    unquantized) and quantized with ``quant`` at each of ``bits`` (dense); ``joint`` lists
    extra ``(sparsity, bits)`` cells measured with both (each from the two ladders). With an
    N:M ``pattern`` the sparsity ladder is the pattern's single sparsity.

    Example::

        table = profile_sensitivity(load_model("smollm2-135m"))   # minutes once, then instant
        table.degradation(layer=3, s=0.5, b=4)                    # nats/token
    """
    sparsities, bits = _check_args(prune, quant, pattern, group_size, sparsities, bits, joint, metric, windows)
    model = loaded.model
    # Shuffled: windows from across the calibration split, not the first passages only.
    calib = data_mod.split_windows(
        loaded.tokenizer, "calibration", seq_len, source=data, max_windows=windows, shuffle=True, seed=seed
    )
    key = _cache_key(loaded, calib, data=data, seq_len=seq_len, prune=prune, quant=quant, pattern=pattern,
                     group_size=group_size, sparsities=sparsities, bits=bits, joint=joint, metric=metric)
    path = cache_path(key)
    cached = _cached(path, key) if use_cache else None
    if cached is not None:
        return cached
    table = _measure(model, calib, key, sparsities, bits, joint, metric, batch_size, progress)
    if use_cache:
        with contextlib.suppress(OSError):  # caching is an optimization, never fatal
            table.save(path)
    return table


def _cache_key(loaded: LoadedModel, calib: torch.Tensor, *, data: str | None, seq_len: int, prune: str,
               quant: str, pattern: str, group_size: int, sparsities: list[float], bits: list[int],
               joint: Sequence[tuple[float, int]], metric: str) -> dict[str, Any]:
    """What a sensitivity table depends on: the model (name, source, weights fingerprint), the
    exact calibration tokens (``calib``, ``[windows, seq_len]``), the method and the ladder."""
    return {
        "version": VERSION,
        "model": loaded.name,
        "source": loaded.source,
        "weights": weights_fingerprint(loaded.model),
        "data": data or data_mod.BUILTIN,
        "tokens": hashlib.sha1(calib.numpy().tobytes()).hexdigest()[:16],
        "seq_len": seq_len,
        "windows": int(calib.shape[0]),
        "prune": prune,
        "quant": quant,
        "pattern": pattern,
        "group_size": group_size,
        "sparsities": list(sparsities),
        "bits": list(bits),
        "joint": [list(c) for c in joint],
        "metric": metric,
    }


def _cached(path: Path, key: dict[str, Any]) -> SensitivityTable | None:
    """The table cached at ``path`` if it was measured for ``key``; ``None`` when there is none,
    it is damaged (it is then measured again and overwritten) or its key differs."""
    if not path.is_file():
        return None
    try:
        table = SensitivityTable.load(path)
    except UserError:
        return None
    if table.key != key:
        return None
    table.cache_file = str(path)
    return table


def cache_path(key: dict[str, Any]) -> Path:
    """Where the table for ``key`` is cached."""
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key["model"]))
    return cache_dir() / "sensitivity" / f"{name}-{key['prune']}-{key['quant']}-{digest}.json"


def weights_fingerprint(model: nn.Module) -> str:
    """A hash of a strided sample of every decoder weight: changes when the weights do (e.g. a
    model that was already compressed), costs milliseconds."""
    h = hashlib.sha1()
    for layer in decoder_layers(model):
        for mod in linear_modules(layer).values():
            h.update(mod.weight.detach().reshape(-1)[::997].float().numpy().tobytes())
    return h.hexdigest()[:16]


def _check_args(
    prune: str,
    quant: str,
    pattern: str,
    group_size: int,
    sparsities: Sequence[float],
    bits: Sequence[int],
    joint: Sequence[tuple[float, int]],
    metric: str,
    windows: int,
) -> tuple[list[float], list[int]]:
    if prune not in PRUNE_METHODS:
        raise UserError(f"prune method must be one of {', '.join(PRUNE_METHODS)} (got {prune!r})")
    if quant not in QUANT_METHODS:
        raise UserError(f"quant method must be one of {', '.join(QUANT_METHODS)} (got {quant!r})")
    if metric not in METRICS:
        raise UserError(f"metric must be one of {', '.join(METRICS)} (got {metric!r})")
    if group_size <= 0 or windows <= 0:
        raise UserError("group size and calibration windows must be positive")
    implied = pattern_sparsity(pattern) if pattern != "unstructured" else None
    if pattern != "unstructured" and implied is None:
        raise UserError(f"pattern must be unstructured or N:M such as 2:4 (got {pattern!r})")
    s_levels = [implied] if implied is not None else sorted({round(float(s), 6) for s in sparsities})
    b_levels = sorted({int(b) for b in bits})
    if not s_levels or not all(0 < s < 1 for s in s_levels):
        raise UserError(f"sparsity levels must lie in (0, 1) (got {list(sparsities)})")
    if not b_levels or not all(MIN_BITS <= b <= MAX_BITS for b in b_levels):
        raise UserError(f"bit-widths must be {MIN_BITS}..{MAX_BITS} (got {list(bits)})")
    for s, b in joint:
        if round(float(s), 6) not in s_levels or int(b) not in b_levels:
            raise UserError(f"joint cell ({s}, {b}) must combine a measured sparsity and bit-width")
    return s_levels, b_levels


@torch.inference_mode()
def _measure(model: nn.Module, calib: torch.Tensor, key: dict[str, Any], sparsities: list[float],
             bits: list[int], joint: Sequence[tuple[float, int]], metric: str, batch_size: int,
             progress: bool) -> SensitivityTable:
    """Measure the table: every layer alone compressed at every setting, the dense layers above
    it and the head run on the result (``calib``: ``[windows, seq_len]`` token ids)."""
    start = time.perf_counter()
    layers = decoder_layers(model)
    head = final_head(model)
    first = capture_layer_inputs(model, calib)
    # Dense hidden states entering every layer (and leaving the last): windows x T x H each.
    hidden = [first.hidden]
    for layer in layers:
        hidden.append(run_layer(layer, LayerInputs(hidden[-1], first.kwargs), batch_size=batch_size))
    ref = reference(head, hidden[-1], calib)

    configs = [(s, DENSE_BITS) for s in sparsities] + [(0.0, b) for b in bits]
    configs += [(round(float(s), 6), int(b)) for s, b in joint]
    n = len(layers)
    kl = torch.full((n, len(configs)), float("nan"), dtype=torch.float64)
    loss = torch.full_like(kl, float("nan"))
    ratios = []
    bar = tqdm(total=n * len(configs), desc=f"sensitivity {key['prune']}/{key['quant']}", disable=not progress or None, leave=False)
    for i, layer in enumerate(layers):
        inputs = LayerInputs(hidden[i], first.kwargs)
        outs, ratio = _compressed_outputs(layer, inputs, configs, key, batch_size)
        ratios.append(ratio)
        # All settings go through the dense layers above together: one forward on
        # settings x windows is about twice as fast as one small forward per setting.
        h = torch.cat(outs)
        for upper in layers[i + 1 :]:
            h = run_layer(upper, LayerInputs(h, first.kwargs), batch_size=batch_size)
        w = calib.shape[0]
        for c in range(len(configs)):
            kl[i, c], loss[i, c] = divergence(head, h[c * w : (c + 1) * w], calib, ref)
            bar.update()
    bar.close()
    primary, other = (kl, loss) if metric == "kl" else (loss, kl)
    return SensitivityTable(
        key=key,
        sparsities=sparsities,
        bits=bits,
        prune=primary[:, : len(sparsities)].numpy(),
        quant=primary[:, len(sparsities) : len(sparsities) + len(bits)].numpy(),
        joint=_joint_grid(primary, configs, sparsities, bits) if joint else None,
        layer_params=[layer_param_count(layer) for layer in layers],
        outlier_ratio=ratios,
        outlier_m=OUTLIER_M,
        base_loss=ref.loss,
        seconds=time.perf_counter() - start,
        meta={
            "other_metric": "loss" if metric == "kl" else "kl",
            "other": {"configs": [list(c) for c in configs], "values": other.tolist()},
            "primary_all": primary.tolist(),
        },
    )


def _compressed_outputs(layer: nn.Module, inputs: LayerInputs, configs: list[tuple[float, int]],
                        key: dict[str, Any], batch_size: int) -> tuple[list[torch.Tensor], float]:
    """The layer's output (``[windows, T, H]``) with its weights compressed at each ``(sparsity,
    bits)`` of ``configs`` (method and pattern from ``key``), and its outlier ratio. Statistics
    (and, for SparseGPT/GPTQ, the inverse Hessians) come from the dense inputs once; the dense
    weights are put back afterwards, also on error."""
    modules = linear_modules(layer)
    groups = input_groups(layer, inputs.hidden, inputs.kwargs)
    hessian = key["prune"] == "sparsegpt" or key["quant"] == "gptq"
    stats = collect_stats(layer, inputs, modules, groups, hessian=hessian, batch_size=batch_size)
    ratio = outlier_ratio(modules, stats, m=OUTLIER_M)
    hinv: dict[int, HessianInverse] = {}
    if hessian:
        for st in {id(v): v for v in stats.values()}.values():
            hinv[id(st)] = hessian_inverse(st.hessian)  # shared by every setting of this layer
    original = {name: mod.weight.detach().clone() for name, mod in modules.items()}
    outs = []
    try:
        for s, b in configs:
            for name, mod in modules.items():
                new, _ = compress_weight(
                    original[name],
                    stats[name],
                    sparsity=s,
                    w_bits=b,
                    prune=key["prune"],
                    quant=key["quant"],
                    pattern=key["pattern"],
                    group_size=key["group_size"],
                    hinv=hinv.get(id(stats[name])),
                )
                mod.weight.copy_(new.to(mod.weight.dtype))
            outs.append(run_layer(layer, inputs, batch_size=batch_size))
    finally:
        for name, mod in modules.items():
            mod.weight.copy_(original[name])
    return outs, ratio


def _joint_grid(primary: torch.Tensor, configs: list[tuple[float, int]], sparsities: list[float],
                bits: list[int]) -> Any:
    """The joint cells of ``primary`` (``[layers, settings]``, joint settings after the two
    ladders) as a ``[layers, len(sparsities), len(bits)]`` array, NaN where not measured."""
    ns, nb = len(sparsities), len(bits)
    grid = torch.full((primary.shape[0], ns, nb), float("nan"), dtype=torch.float64)
    for c, (s, b) in enumerate(configs[ns + nb :], start=ns + nb):
        grid[:, sparsities.index(s), bits.index(b)] = primary[:, c]
    return grid.numpy()
