"""Exit translators (tuned lens) on the tiny model: identity start, the least-squares fit against
torch's own solver, KL distillation that lowers the KL, the translated exit in the tuning heads,
voting and the trace, ECE, calibrated votes and early-exit decisions."""
from __future__ import annotations

import math

import pytest
import torch

from workloads.errors import UserError
from workloads.exits import translator as tr
from workloads.exits.distill import distill, fit_lstsq, unit_rms
from workloads.exits.scoring import (
    ALL_RULES,
    TokenStats,
    VoteCalibration,
    expected_calibration_error,
    score_exit,
    score_votes,
)
from workloads.exits.states import collect
from workloads.exits.study import StudyConfig, early_exits, run_study
from workloads.models import load_model
from workloads.trace.record import record_trace
from workloads.tuning.forward import run_layers
from workloads.tuning.head import exit_loss, exit_stats
from workloads.tuning.voting import ExitVoter

IDS = torch.randint(0, 250, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def fresh():
    """A tiny model of its own (translators are installed on it)."""
    return load_model("tiny", seed=0)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLM_CACHE", str(tmp_path / "cache"))


def _random_translator(d: int, seed: int = 1) -> tr.Translator:
    t = tr.Translator(d)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        t.linear.weight.add_(torch.randn(d, d, generator=gen) * 0.2)
        t.linear.bias.copy_(torch.randn(d, generator=gen) * 0.2)
    return t


@pytest.mark.parametrize("rank", [None, 4])
def test_untrained_translator_is_the_identity(rank):
    h = torch.randn(3, 5, 64)
    assert torch.equal(tr.Translator(64, rank=rank)(h), h)


def test_translator_rejects_a_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        tr.Translator(64, rank=64)


def test_installed_translator_changes_only_its_exit(fresh):
    hidden = run_layers(fresh.model, IDS, capture=[1, 2])
    before = {e: exit_stats(fresh.model, hidden[e], IDS, exit_layer=e).target_logprob for e in (1, 2)}
    tr.install(fresh.model, {1: _random_translator(64)})
    after = {e: exit_stats(fresh.model, hidden[e], IDS, exit_layer=e).target_logprob for e in (1, 2)}
    assert not torch.allclose(before[1], after[1])
    assert torch.equal(before[2], after[2])
    tr.install(fresh.model, {1: tr.Translator(64)})  # identity: the plain exit again
    assert torch.allclose(exit_stats(fresh.model, hidden[1], IDS, exit_layer=1).target_logprob, before[1], atol=1e-5)


def test_translators_are_frozen_and_saved(fresh, tmp_path):
    t = _random_translator(64)
    tr.install(fresh.model, {2: t})
    assert not any(p.requires_grad for p in tr.installed(fresh.model)[2].parameters())
    tr.save(tmp_path / "t.pt", {2: t}, {"why": "test"})
    loaded, meta = tr.load(tmp_path / "t.pt")
    assert meta == {"why": "test"} and torch.equal(loaded[2].linear.weight, t.linear.weight)
    with pytest.raises(UserError, match="hidden size"):
        tr.install(fresh.model, {2: tr.Translator(32)})
    with pytest.raises(UserError, match="not found"):
        tr.load(tmp_path / "missing.pt")


def test_exit_loss_backpropagates_through_a_frozen_translator(fresh):
    for p in fresh.model.parameters():
        p.requires_grad_(False)
    tr.install(fresh.model, {1: _random_translator(64)})
    hidden = run_layers(fresh.model, IDS, capture=[1])[1].clone().requires_grad_(True)
    loss = exit_loss(fresh.model, hidden, IDS, exit_layer=1)
    loss.backward()
    ref = hidden.detach().clone().requires_grad_(True)
    t = tr.installed(fresh.model)[1]
    logits = fresh.model.model.norm(t(ref[:, :-1])) @ fresh.model.lm_head.weight.T
    torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), IDS[:, 1:].reshape(-1)).backward()
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                                  IDS[:, 1:].reshape(-1)), atol=1e-5)
    assert torch.allclose(hidden.grad, ref.grad, atol=1e-6)


def test_fit_lstsq_matches_torch_lstsq_without_ridge():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 16, generator=gen)
    y = torch.randn(400, 16, generator=gen) + x @ torch.randn(16, 16, generator=gen)
    t = fit_lstsq(x, y, ridge=0.0)
    aug = torch.cat([x.double(), torch.ones(400, 1, dtype=torch.float64)], dim=1)
    sol = torch.linalg.lstsq(aug, unit_rms(y.double())).solution  # [17, 16]
    assert torch.allclose(t.linear.weight.double(), sol[:16].T, atol=1e-4)
    assert torch.allclose(t.linear.bias.double(), sol[16], atol=1e-4)
    with pytest.raises(ValueError, match="more tokens"):
        fit_lstsq(x[:10], y[:10])


def test_distillation_lowers_the_kl_to_the_final_layer(fresh):
    ids = torch.randint(0, 250, (8, 32), generator=torch.Generator().manual_seed(2))
    states = collect(fresh.model, ids, [1], progress=False)
    x, final = states.flat(1), states.flat(3)
    t = tr.Translator(64)
    res = distill(fresh.model, t, x, final, exit_layer=1, epochs=6, batch_tokens=64, lr=1e-2, progress=False)
    assert res.losses[-1] < 0.8 * res.losses[0]
    assert not any(p.requires_grad for p in t.parameters())
    assert all(p.requires_grad for p in fresh.model.parameters())  # the model's flags are restored


def test_states_are_cached_on_disk(fresh, tmp_path):
    first = collect(fresh.model, IDS, [1], progress=False)
    again = collect(fresh.model, IDS, [1], progress=False)
    assert torch.equal(first.hidden[1], again.hidden[1])
    assert list((tmp_path / "cache" / "exits").glob("states-*.pt"))
    assert first.flat(1).shape == (2 * 23, 64) and first.targets().shape == (46,)


def test_ece_of_known_cases():
    # Two bins used: confidence 0.9 (accuracy 0.5) and 0.3 (accuracy 0.5): (2*0.4 + 2*0.2) / 4.
    conf = torch.tensor([0.9, 0.9, 0.3, 0.3])
    right = torch.tensor([True, False, True, False])
    assert expected_calibration_error(conf, right) == pytest.approx(0.3)
    assert expected_calibration_error(torch.tensor([1.0, 1.0]), torch.tensor([True, True])) == 0.0
    with pytest.raises(ValueError):
        expected_calibration_error(torch.tensor([]), torch.tensor([]))


def test_translated_scores_match_the_voter_and_the_calibrated_rules_reduce(fresh):
    translators = {1: _random_translator(64), 2: _random_translator(64, seed=2)}
    tr.install(fresh.model, translators)
    states = collect(fresh.model, IDS, [1, 2], progress=False)
    voter = ExitVoter(fresh.model, [1, 2, 3], rules=("mean",))
    live = voter.compute(IDS)
    mine = score_exit(fresh.model, states.flat(1), states.targets(), translator=translators[1])
    assert torch.allclose(live["exit:1"].logprob.reshape(-1), mine.logprob, atol=1e-5)
    hs = {e: states.flat(e) for e in (1, 2, 3)}
    # All weight on exit 2 at temperature 1: the "weighted" vote is exit 2 alone.
    cal = VoteCalibration((1, 2, 3), (1.0, 1.0, 1.0), (0.0, 1.0, 0.0))
    out = score_votes(fresh.model, hs, states.targets(), translators=translators, calibration=cal)
    assert set(ALL_RULES) <= set(out)
    assert torch.allclose(out["weighted"].logprob, out["exit:2"].logprob, atol=1e-5)
    assert torch.allclose(out["mean"].logprob.reshape(-1), live["vote:mean"].logprob.reshape(-1), atol=1e-5)
    with pytest.raises(ValueError, match="calibrat"):
        score_votes(fresh.model, hs, states.targets(), translators=translators)


def test_early_exit_shares_and_extremes():
    n = 50
    gen = torch.Generator().manual_seed(0)

    def stats(conf: torch.Tensor, lp: float) -> TokenStats:
        return TokenStats(torch.full((n,), lp), conf, torch.ones(n, dtype=torch.bool), torch.zeros(n))

    kept = {5: stats(torch.rand(n, generator=gen), -3.0)}
    final = stats(torch.ones(n), -1.0)
    rows = early_exits(StudyConfig(thresholds=(0.0, 0.5, 1.0), early_sets=((),)), kept, final)
    assert [sum(r["exit_share"].values()) for r in rows] == pytest.approx([1.0, 1.0, 1.0])
    assert rows[0]["exit_share"]["5"] == 1.0 and rows[0]["perplexity"] == pytest.approx(math.exp(3.0))
    assert rows[2]["exit_share"]["-1"] == 1.0 and rows[2]["perplexity"] == pytest.approx(math.exp(1.0))


def test_trace_charges_the_translators(fresh):
    tr.install(fresh.model, {1: _random_translator(64)})
    tuning = record_trace(fresh, method="adaptive", window=2, exit_layer=1, seq_len=16, batch=2)
    rows = tuning.ops[tuning.ops["module"] == "exit_translator"]
    products = rows[rows["kind"] == "matmul"]
    assert sorted(products["phase"]) == ["bwd_input", "fwd"]  # frozen: no weight gradient
    assert set(zip(products["M"], products["N"], products["K"])) == {(2 * 15, 64, 64)}
    assert (products["w_bits"] == 16).all()
    tensors = tuning.tensors
    weights = tensors[tensors["name"].str.contains("exit_translators") & (tensors["kind"] == "weight")]
    assert weights["bytes"].sum() == (64 * 64 + 64) * 2  # its output is a temporary of its own
    assert tuning.header["translators"] == [1]
    inference = record_trace(fresh, method="inference", exits=[1, 3], seq_len=16, batch=2)
    fwd = inference.ops[(inference.ops["module"] == "exit_translator") & (inference.ops["kind"] == "matmul")]
    assert list(fwd["phase"]) == ["fwd"]  # the top exit (the model's output) has none
    tr.remove(fresh.model)
    plain = record_trace(fresh, method="inference", exits=[1, 3], seq_len=16, batch=2)
    assert not (plain.ops["module"] == "exit_translator").any()


def test_study_on_the_tiny_model(fresh):
    config = StudyConfig(exits=(1, 2), votes=((2, 3),), seq_len=32, train_windows=24, fit_windows=4,
                         eval_windows=2, mc_items=4, epochs=1, thresholds=(0.5,), early_sets=((2,), ()))
    out = run_study(fresh, config, progress=False)
    assert [r["layer"] for r in out["per_exit"]] == [1, 2]
    assert {"layer", "head_perplexity", "translated_perplexity", "head_ece", "translated_ece"} <= set(out["per_exit"][0])
    assert {v["rule"] for v in out["votes"]} == set(ALL_RULES)
    assert {"rule", "exits", "perplexity", "accuracy", "best_single_exit_perplexity"} <= set(out["votes"][0])
    assert out["final_perplexity"] > 0 and [r["exits"] for r in out["early_exit"]] == [[2], [1, 2]]
    with pytest.raises(UserError, match="without a translator"):
        StudyConfig(exits=(1,), votes=((2, 3),)).validate(4)
