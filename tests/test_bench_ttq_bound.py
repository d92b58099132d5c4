"""The time-to-quality bound's plumbing on the tiny model (the benchmark itself simulates the
real model's traces): the Amdahl remainder is what compression cannot touch, and no
compression's simulated step is ever faster than it."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_ttq_bound as tb  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import sim
    from dse.hardware import TraceBank
    from workloads.models import load_model

    mp = pytest.MonkeyPatch()
    mp.setenv("EDGELLM_CACHE", str(tmp_path_factory.mktemp("cache")))
    loaded = load_model("tiny", seed=0)
    bank = TraceBank(loaded, seq_len=32, batch=2)
    yield bank, sim.load_hw(ROOT / "hwconfigs" / "edge_llm.yaml"), int(loaded.model.config.num_hidden_layers)
    mp.undo()


@pytest.mark.parametrize("window,act", [(2, 16), (2, 6), (4, 8)])
def test_no_compression_beats_the_amdahl_remainder(tiny, window, act):
    """Policies from mild to the extreme: each simulated step costs at least the incompressible
    rows' time, and its peak at least the incompressible tensors' bytes."""
    from dse.hardware import simulate_design
    from dse.headline.configs import Plan
    from workloads.luc.policy import LayerPolicy, Policy

    bank, hw, n = tiny
    fixed = tb.incompressible(bank, hw, n, window, act)
    assert 0 < fixed["fixed_ms"] < fixed["step_ms"] and fixed["fixed_vector_ms"] > 0
    design = replace(Plan(), window=window, act_bits=act).design("full", n)
    rng = np.random.default_rng(0)
    policies = [Policy.uniform(n, 0.0, 4, head_bits=8), Policy.uniform(n, 0.9, 2, head_bits=2),
                Policy({i: LayerPolicy(float(rng.choice([0.0, 0.5, 0.7])), int(rng.choice([2, 3, 4])))
                        for i in range(n)}, head_bits=8)]
    split = tb.SplitStep(bank, hw, n, window, act)
    for policy in policies:
        cost = simulate_design(design, policy, bank, hw)
        assert cost.latency_s * 1e3 >= fixed["fixed_ms"] - 1e-9
        assert cost.peak_memory_bytes / 2**20 >= fixed["fixed_mib"] - 1e-9
        # the benchmark's split step is the headline's simulate_design, to rounding
        fast = split.step(policy)
        assert fast["latency_ms"] == pytest.approx(cost.latency_s * 1e3, rel=1e-9)
        assert fast["vector_ms"] == pytest.approx(cost.vector_s * 1e3, rel=1e-9)
        assert fast["memory_mib"] == pytest.approx(cost.peak_memory_bytes / 2**20, rel=1e-12)


def test_the_compressible_rows_are_the_frozen_weights_products(tiny):
    """What the bound zeroes: products reading a base weight (decoder linears, the tied head),
    never vector work, attention's activation-activation products or LoRA."""
    from dse.hardware import design_windows
    from dse.headline.configs import Plan
    from workloads.luc.policy import Policy

    bank, _, n = tiny
    design = replace(Plan(), window=2, act_bits=16).design("full", n)
    (win,) = design_windows(design, n)
    trace = bank.get("adaptive", win, 16)
    plain, squeezed = trace.with_policy(None), trace.with_policy(Policy.uniform(n, 0.95, 2, head_bits=2))
    cols = ["w_bits", "weight_sparsity", "sparsity_pattern"]
    moved = plain.ops[(plain.ops[cols] != squeezed.ops[cols]).any(axis=1)]
    assert set(moved["kind"]) == {"matmul"} and not moved["trainable"].any()
    assert not moved["module"].str.contains("lora|attn_qk|attn_pv").any()
    assert {"q_proj", "down_proj", "lm_head"} <= set(moved["module"])
