"""The search space covers the headline's knobs (issue 18): windows up to all layers, act_bits,
head_bits, exit translators; the evaluator and the trace bank honour them."""
from __future__ import annotations

import optuna
import pytest

from dse.space import ACT_BITS, HEAD_BITS, Compression, Design, Tuning, suggest, window_choices


def test_the_searched_rules_and_votes_are_the_libraries_own():
    from dse.space import ALLOCATION_RULES, VOTES
    from workloads.luc import allocate
    from workloads.tuning import voting

    assert set(ALLOCATION_RULES) <= set(allocate.ALLOCATION_RULES)
    assert set(VOTES) <= set(voting.RULES)


def test_window_choices_reach_all_layers_and_the_headline_window():
    assert window_choices(30) == [2, 4, 8, 12, 15, 20, 30]
    assert window_choices(4) == [2, 4]


def test_sampled_designs_cover_every_knob():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen: dict[str, set] = {"window": set(), "act_bits": set(), "head_bits": set(), "translators": set()}
    for _ in range(200):
        trial = study.ask()
        design = suggest(trial, num_layers=30)
        seen["window"].add(design.tuning.window)
        seen["act_bits"].add(design.tuning.act_bits)
        seen["head_bits"].add(design.compression.head_bits)
        seen["translators"].add(design.tuning.translators)
        if design.tuning.exits == 1:
            assert not design.tuning.translators  # one exit is the top: nothing to translate
        study.tell(trial, 0.0)
    assert seen["window"] == set(window_choices(30))
    assert seen["act_bits"] == set(ACT_BITS) and seen["head_bits"] == set(HEAD_BITS)
    assert seen["translators"] == {False, True}


def test_evaluator_policy_takes_the_head_bits(tiny):
    from dse.evaluator import Evaluator

    ev = Evaluator.__new__(Evaluator)  # only the policy logic: no tables or traces needed
    ev.num_layers = tiny.num_layers
    dense = Design(Compression(0.0, 16.0, head_bits=8), Tuning())
    assert ev.policy(dense).head_bits == 8 and all(lp.w_bits == 16 for lp in ev.policy(dense).layers.values())
    assert ev.policy(Design(Compression(0.0, 16.0), Tuning())) is None


def test_trace_bank_charges_translators_below_the_top(tiny, tmp_path):
    from dse.hardware import TraceBank
    from workloads.exits import translator
    from workloads.tuning.schedule import Window

    bank = TraceBank(tiny, seq_len=8, batch=1, root=tmp_path)
    plain = bank.get("adaptive", Window(1, 2))
    translated = bank.get("adaptive", Window(1, 2), translators=True)
    assert not (plain.ops["module"] == "exit_translator").any()
    rows = translated.ops[(translated.ops["module"] == "exit_translator") & (translated.ops["kind"] == "matmul")]
    assert sorted(rows["phase"]) == ["bwd_input", "fwd"]
    assert translated.memory_bytes() > plain.memory_bytes()
    top = bank.get("adaptive", Window(2, 3), translators=True)  # the model's own output: no translator
    assert not (top.ops["module"] == "exit_translator").any()
    assert translator.installed(tiny.model) == {}  # the bank leaves the model as it was
    assert sorted(p.name for p in tmp_path.glob("adaptive-1-2-tr-*.csv"))


@pytest.mark.parametrize("translators", [False, True])
def test_tuning_table_key_separates_translators(translators):
    from dse.measure import TuningTable

    key = TuningTable.key(Tuning(window=2, exits=2, translators=translators))
    assert key.endswith("|tr") == translators


def test_measure_with_translators_fits_them_on_the_copy(tiny, tmp_path, monkeypatch):
    from dse.measure import Fidelity, measure
    from workloads.exits import translator

    monkeypatch.setenv("EDGELLM_CACHE", str(tmp_path))
    fid = Fidelity(steps=1, batch_size=1, seq_len=32, eval_windows=1, calib_windows=8)
    plain = measure(tiny, Tuning(window=2, exits=2), fid)
    translated = measure(tiny, Tuning(window=2, exits=2, translators=True), fid)
    assert translator.installed(tiny.model) == {}  # the caller's model is untouched
    assert plain["variants"]["exit:1"]["nll"] != translated["variants"]["exit:1"]["nll"]
