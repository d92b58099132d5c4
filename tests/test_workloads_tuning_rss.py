"""The tuning run's resident-memory peak measures the steps (review of issue 19): memory the
run holds during the steps raises it, and memory held only before the run (model loading,
set-up) does not, where the kernel lets the peak be reset."""
from __future__ import annotations

import gc

import torch

from workloads.models import load_model
from workloads.tuning.train import TuneConfig, tune

SPIKE_BYTES = 96 * 2**20  # far above the tiny model's own step (a few MB)
CONFIG = TuneConfig(method="adaptive", steps=2, seq_len=32, batch_size=2, window=1, exits=[3])


def _spike() -> None:
    """Hold SPIKE_BYTES of written memory for a moment (made resident, then freed)."""
    held = torch.ones(SPIKE_BYTES // 4)
    del held
    gc.collect()


def test_memory_held_during_the_steps_raises_the_peak():
    spiked = tune(load_model("tiny", seed=0), CONFIG, progress=False,
                  after_step=lambda n, _: _spike() if n == 1 else None)
    assert spiked.baseline_rss_bytes > 0
    # The spike sits on top of what the run held when it began (small slack: the kernel's RSS
    # counters lag by a few pages per thread).
    assert spiked.peak_rss_bytes >= spiked.baseline_rss_bytes + 0.9 * SPIKE_BYTES


def test_memory_held_before_the_run_is_not_in_its_peak():
    loaded = load_model("tiny", seed=0)
    _spike()  # the set-up's spike, gone before the run starts
    result = tune(loaded, CONFIG, progress=False)
    if not result.peak_rss_reset:  # a kernel without clear_refs: the peak covers the process
        return
    assert result.setup_peak_rss_bytes >= result.baseline_rss_bytes + 0.8 * SPIKE_BYTES  # seen before the reset
    assert result.peak_rss_bytes < result.baseline_rss_bytes + 0.5 * SPIKE_BYTES
