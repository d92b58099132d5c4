"""The hardware side of a design: its tuning steps' traces, simulated on the accelerator.

Traces come from real torch steps (``workloads.trace.record_trace``), one per distinct window
(exit layer and size), recorded once and kept on disk; a design's compression only re-annotates
them (``Trace.with_policy``), since shapes do not depend on it. A schedule visits its windows in
equal shares, so a design's latency per step is the mean over its windows, and its memory the
largest of them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sim
from dse.space import Design
from workloads.exits import translator as exit_translator
from workloads.luc.policy import Policy
from workloads.models import LoadedModel, cache_dir
from workloads.trace import RECORDER_VERSION, Trace, record_trace
from workloads.tuning import actcomp
from workloads.tuning.schedule import Window, default_exits, make_windows

__all__ = ["StepCost", "TraceBank", "design_windows", "simulate_design"]


@dataclass(frozen=True)
class StepCost:
    """Simulated cost of one tuning step of a design (mean over its schedule's windows)."""

    latency_s: float
    vector_s: float  # part of latency_s spent on non-matrix work (the vector unit)
    energy_j: float
    dram_bytes: float
    peak_memory_bytes: int  # largest over the windows
    fits: bool  # the peak fits the device's DRAM
    utilization: float
    roofline_ratio: float
    windows: int


def design_windows(design: Design, num_layers: int) -> list[Window]:
    """The tuning windows of ``design`` on a model of ``num_layers`` decoder layers: all layers as
    one window for vanilla tuning, else the adaptive windows ending at the design's exits
    (Edge-LLM's adaptive layer tuning, ``workloads.tuning.schedule``).
    """
    if design.tuning.method == "vanilla":
        return [Window(0, num_layers - 1)]
    exits = default_exits(num_layers, design.tuning.window, design.tuning.exits)
    return make_windows(num_layers, design.tuning.window, exits)


class TraceBank:
    """Real traces per window, recorded on first use and cached under the user cache folder."""

    def __init__(self, loaded: LoadedModel, *, seq_len: int = 256, batch: int = 4, root: Path | None = None):
        self.loaded = loaded
        self.seq_len = seq_len
        self.batch = batch
        tag = hashlib.sha1(f"{loaded.name}|{loaded.source}|{seq_len}|{batch}".encode()).hexdigest()[:10]
        self.root = root or cache_dir() / "traces" / f"{loaded.name}-{tag}"
        self._memo: dict[tuple[str, int, int, int, bool], Trace] = {}

    def _translated(self, window: Window, translators: bool) -> bool:
        """Whether the window's exit reads through a translator: asked for, and below the top."""
        return translators and window.end < int(self.loaded.model.config.num_hidden_layers) - 1

    def _key(self, method: str, window: Window, act_bits: int, translators: bool) -> tuple[str, int, int, int, bool]:
        """The memo key of one trace; its last item says whether the exit is translated."""
        return method, window.start, window.end, act_bits, self._translated(window, translators)

    def path(self, method: str, window: Window, act_bits: int = 16, *, translators: bool = False) -> Path:
        """The cache file of one window's trace (it may not exist yet)."""
        tag = actcomp.cache_tag(act_bits)
        # The recorder's version names the file: traces an older recorder cached are not reused
        # (2.1: the tensor table's lifetimes, without which the peak would be the table's sum).
        name = (f"{method}-{window.start}-{window.end}{'-' + tag if tag else ''}"
                f"{'-tr' if self._translated(window, translators) else ''}")
        return self.root / f"{name}-v{RECORDER_VERSION}.csv"

    def has(self, method: str, window: Window, act_bits: int = 16, *, translators: bool = False) -> bool:
        """Whether the trace is in memory or cached on disk (``get`` will not record it)."""
        key = self._key(method, window, act_bits, translators)
        return key in self._memo or self.path(method, window, act_bits, translators=translators).is_file()

    def get(self, method: str, window: Window, act_bits: int = 16, *, translators: bool = False) -> Trace:
        """The trace of one step of ``method`` on ``window``; with ``translators`` the window's
        exit (when below the top) reads through an exit translator, whose products and weights
        the trace charges (an identity translator: shapes do not depend on its values)."""
        key = self._key(method, window, act_bits, translators)
        translated = key[-1]
        if key in self._memo:
            return self._memo[key]
        path = self.path(method, window, act_bits, translators=translators)
        if path.is_file():
            trace = Trace.load(path)
        else:
            size = window.end - window.start + 1
            if translated:
                d = int(self.loaded.model.config.hidden_size)
                exit_translator.install(self.loaded.model, {window.end: exit_translator.Translator(d)})
            try:
                trace = record_trace(
                    self.loaded, method=method, window=size if method == "adaptive" else None,
                    exit_layer=window.end, seq_len=self.seq_len, batch=self.batch, act_bits=act_bits,
                )
            finally:
                if translated:  # only what this call installed
                    exit_translator.remove(self.loaded.model)
            trace.save(path)
        self._memo[key] = trace
        return trace


def simulate_design(
    design: Design, policy: Policy | None, bank: TraceBank, hw: sim.HwConfig, *, objective: str = "latency"
) -> StepCost:
    """Simulate every window of the design's schedule on ``hw`` (with the design's overrides)."""
    config = sim.apply_overrides(hw, design.hw) if design.hw else hw
    n_layers = int(bank.loaded.model.config.num_hidden_layers)
    windows = design_windows(design, n_layers)
    method = design.tuning.method
    results: list[dict[str, Any]] = []
    for window in windows:
        trace = bank.get(method, window, design.tuning.act_bits,
                         translators=design.tuning.translators).with_policy(policy)
        res = sim.simulate_trace(trace.ops, config, dataflow=design.dataflow, objective=objective, tensors=trace.tensors)
        results.append(res.summary())
    n = len(results)
    return StepCost(
        latency_s=sum(r["latency_s"] for r in results) / n,
        vector_s=sum(r["vector_latency_s"] for r in results) / n,
        energy_j=sum(r["energy_j"] for r in results) / n,
        dram_bytes=sum(r["dram_bytes"] for r in results) / n,
        peak_memory_bytes=max(int(r["peak_memory_bytes"]) for r in results),
        fits=all(bool(r["fits_in_dram"]) for r in results),
        utilization=sum(r["utilization"] for r in results) / n,
        roofline_ratio=sum(r["roofline_ratio"] for r in results) / n,
        windows=n,
    )
