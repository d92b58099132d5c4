"""dse.compare on the tiny model, and the joint-vs-sequential measure on hand-made fronts."""
from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest

from dse import compare
from dse.sequential import latency_gain, pareto_mask
from tests.test_dse_search import FAST  # the user-cache fixture `cache` is in conftest.py


def joint_member(number: int, perplexity: float, latency: float) -> optuna.trial.FrozenTrial:
    trial = optuna.trial.create_trial(values=[perplexity, latency, 1.0])
    trial.number = number
    return trial


def test_latency_gain_compares_at_equal_or_better_accuracy():
    seq = pd.DataFrame({"perplexity": [20.0, 30.0, 1000.0], "latency_s": [1.0, 0.5, 0.1]})
    joint = [joint_member(0, 25.0, 0.8),  # only the 20-perplexity point is as accurate: 20% faster
             joint_member(1, 30.0, 0.45),  # vs 0.5 s: 10%
             joint_member(2, 5000.0, 0.01),  # useless model: left out by max_perplexity
             joint_member(3, 10.0, 0.1)]  # more accurate than anything sequential: no comparison
    gain = latency_gain(joint, seq, max_perplexity=100.0)
    assert gain["max_gain"] == pytest.approx(0.2)
    assert gain["at"]["trial"] == 0 and gain["at"]["sequential_latency_s"] == 1.0
    assert sorted(p["trial"] for p in gain["points"]) == [0, 1]
    # Without the cap the useless fast model would win: 1 - 0.01 / 0.1.
    assert latency_gain(joint, seq)["max_gain"] == pytest.approx(0.9)
    assert latency_gain(joint, seq.iloc[:0])["max_gain"] is None


def test_pareto_mask():
    import numpy as np

    pts = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 3.0], [1.0, 3.0]])
    assert pareto_mask(pts).tolist() == [True, True, False, True]


def test_compare_reports_every_sampler_and_the_sequential_flow(cache, tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = [*FAST, "--trials", "8", "--samplers", "nsga2,random", "--seeds", "0,1", "--out", str(out), "--json"]
    assert compare.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    table = pd.read_csv(out / "compare.csv")
    assert sorted(zip(table["sampler"], table["seed"])) == [("nsga2", 0), ("nsga2", 1), ("random", 0), ("random", 1)]
    assert (table[["hv@2", "hv@4", "hv@8"]].diff(axis=1).iloc[:, 1:] >= 0).all().all()  # hypervolume never drops
    verdict = result["samplers"]
    assert verdict["random_hv_at_full"] == pytest.approx(table[table["sampler"] == "random"]["hv@8"].mean())
    assert verdict["nsga2_beats_random"] == (verdict["nsga2_hv_at_half"] >= verdict["random_hv_at_full"])
    seq = pd.read_csv(out / "sequential.csv")
    assert len(seq) > 0 and seq["on_front"].any()
    jvs = result["joint_vs_sequential"]
    assert jvs["max_perplexity"] > 1
    assert all(p["perplexity"] <= jvs["max_perplexity"] for p in jvs.get("points", []))
    for name in ("compare.md", "compare.png", "compare.json"):
        assert (out / name).stat().st_size > 0
    # Run again: the studies resume complete, nothing is redone.
    assert compare.main(argv) == 0
    capsys.readouterr()
    assert len(pd.read_csv(out / "compare.csv")) == 4


def test_compare_refuses_unknown_sampler(cache, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare.main([*FAST, "--samplers", "nsga2,annealing", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 2 and not (tmp_path / "x").exists()
    err = capsys.readouterr().err.strip()
    assert "annealing" in err and len(err.splitlines()) == 1


def test_nm_budget_below_its_sparsity_mixes_dense_and_nm_layers(cache):
    from dse.measure import Fidelity, measure
    from dse.pipeline import set_up
    from dse.search import build_parser, settings_from_args
    from dse.sequential import compressions
    from dse.space import Compression, Design, Tuning

    search = set_up(settings_from_args(build_parser().parse_args(FAST)), progress=False)
    n = search.num_layers
    design = Design(Compression(0.25, 4.0, "2:4"), Tuning(window=1, exits=1))
    outcome, policy = search.evaluator.evaluate(design)
    sparsities = [policy.layers[i].sparsity for i in range(n)]
    assert set(sparsities) == {0.0, 0.5} and sum(sparsities) / n == pytest.approx(0.25, abs=0.5 / n)
    full = search.evaluator.evaluate(Design(Compression(0.5, 4.0, "2:4"), Tuning(window=1, exits=1)))[0]
    assert outcome.perplexity <= full.perplexity  # fewer pruned layers, less predicted damage
    # The mixed policy compresses and tunes for real (dense layers skip pruning).
    real = measure(search.loaded, design.tuning, Fidelity(steps=1, batch_size=1, seq_len=32, eval_windows=1),
                   policy=policy)
    assert real["perplexity"] > 1
    # The sequential flow enumerates the mixed N:M budgets too, never above 1 - N/M.
    nm = [c for c in compressions(0.7) if c.pattern == "2:4"]
    assert {c.avg_sparsity for c in nm} == {0.1, 0.2, 0.3, 0.4, 0.5}
