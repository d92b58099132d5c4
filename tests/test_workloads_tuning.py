"""Adaptive layer tuning and voting on the tiny model: the forward is the model's own, exits and
cuts are real, gradients are exact, voting rules give proper distributions."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from workloads.errors import UserError
from workloads.evaluate import evaluate
from workloads.metrics import model_scorer
from workloads.models import load_model
from workloads.tuning import lora
from workloads.tuning.forward import decoder, run_layers
from workloads.tuning.head import exit_loss, exit_stats
from workloads.tuning.schedule import Window, default_exits, make_windows, schedule
from workloads.tuning.step import StepPlan, step_loss
from workloads.tuning.train import TuneConfig, tune
from workloads.tuning.voting import ExitVoter, vote_logprobs

IDS = torch.randint(0, 250, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def fresh():
    """A tiny model of its own (tuning wraps the model in place)."""
    return load_model("tiny", seed=0)


def _perturbed_lora(model, layers):
    peft_model = lora.attach_lora(model, layers, rank=4)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in lora.lora_parameters(peft_model).values():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)  # non-zero B, so adapters matter
    return peft_model


def test_layerwise_forward_is_the_models_forward(tiny):
    with torch.no_grad():
        ref = tiny.model.model(input_ids=IDS).last_hidden_state
        mine = decoder(tiny.model).norm(run_layers(tiny.model, IDS)[3])
    assert torch.equal(ref, mine)


def test_cut_runs_no_layer_above_the_exit_and_no_autograd_below_the_window(tiny):
    ran: list[int] = []
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
               for i, layer in enumerate(decoder(tiny.model).layers)]
    try:
        out = run_layers(tiny.model, IDS, last_layer=2, grad_from=2, capture=[1])
    finally:
        for h in handles:
            h.remove()
    assert ran == [0, 1, 2]
    assert out[1].grad_fn is None and out[2].grad_fn is not None


def test_chunked_exit_loss_matches_hf_loss_and_gradients(fresh):
    model = _perturbed_lora(fresh.model, range(4))
    loss = exit_loss(model, run_layers(model, IDS, grad_from=0)[3], IDS, exit_layer=3, chunk=7)
    loss.backward()
    mine = {n: p.grad.clone() for n, p in lora.lora_parameters(model).items()}
    model.zero_grad()
    ref = model(input_ids=IDS, labels=IDS).loss
    ref.backward()
    assert math.isclose(loss.item(), ref.item(), rel_tol=1e-5)
    for name, p in lora.lora_parameters(model).items():
        assert torch.allclose(p.grad, mine[name], atol=1e-6), name


def test_adaptive_step_trains_only_the_window(fresh):
    model = _perturbed_lora(fresh.model, range(4))
    lora.set_trainable_layers(model, [1, 2])
    step_loss(model, IDS, StepPlan.adaptive(Window(1, 2))).backward()
    for name, p in lora.lora_parameters(model).items():
        in_window = lora.layer_of(name) in (1, 2)
        assert (p.grad is not None) == in_window, name
    assert all(p.grad is None for n, p in model.named_parameters() if ".lora_" not in n)


def test_windows_and_schedules():
    assert default_exits(30, 4) == [17, 21, 25, 29]
    assert default_exits(4, 1, 2) == [2, 3]
    wins = make_windows(30, 4, [17, 29])
    assert wins == [Window(14, 17), Window(26, 29)]
    seq = schedule(wins, 5, "sequential")
    assert seq == [wins[0]] * 3 + [wins[1]] * 2  # shallow to deep, equal blocks
    assert schedule(wins, 4, "round_robin") == wins * 2
    rnd = schedule(wins, 50, "random", seed=3)
    assert rnd == schedule(wins, 50, "random", seed=3) and set(rnd) == set(wins)
    with pytest.raises(UserError, match="outside 0..29"):
        make_windows(30, 4, [30])
    with pytest.raises(UserError, match="larger than"):
        make_windows(4, 5, [3])


@pytest.mark.parametrize("lr", [0.0, -1e-3, float("nan"), float("inf")])
def test_config_refuses_a_learning_rate_torch_would_not_take(lr):
    with pytest.raises(UserError, match="--lr must be a positive number"):
        TuneConfig(lr=lr).validate(4)


def test_voting_rules_are_proper_distributions():
    """Each rule's voted distribution sums to 1 per position; max_conf takes, per position, the
    exit with the highest top probability; mean is the average of the exits' probabilities."""
    logp = torch.log_softmax(torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(0)) * 3, dim=-1)
    for rule in ("max_conf", "mean", "entropy"):
        total = vote_logprobs(logp, rule).exp().sum(-1)
        assert torch.allclose(total, torch.ones(5), atol=1e-5), rule
    best = logp.amax(-1).argmax(0)
    assert torch.equal(vote_logprobs(logp, "max_conf"), logp[best, torch.arange(5)])
    assert torch.allclose(vote_logprobs(logp, "mean").exp(), logp.exp().mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="unknown voting rule"):
        vote_logprobs(logp, "median")


def test_voter_top1_is_the_argmax_of_each_variant(fresh):
    """Top-1 of an exit and of a vote is whether the target is the arg-max of its distribution."""
    model = _perturbed_lora(fresh.model, range(4))
    voter = ExitVoter(model, [1, 3])
    with torch.no_grad():
        hidden = run_layers(model, IDS, capture=[1, 3])
        logp = torch.stack([torch.log_softmax(model.get_base_model().lm_head(
            model.get_base_model().model.norm(hidden[e][:, 2:-1])).float(), -1) for e in (1, 3)])
    targets = IDS[:, 3:]
    for variant, dist in [("exit:1", logp[0]), ("exit:3", logp[1]),
                          ("vote:mean", vote_logprobs(logp.flatten(1, 2), "mean").view_as(logp[0]))]:
        got = voter.scorer(variant)(IDS, 2)
        assert torch.equal(got.top1, dist.argmax(-1) == targets), variant
        assert torch.allclose(got.logprob, dist.gather(-1, targets[..., None])[..., 0], atol=1e-5), variant


def test_voter_final_exit_is_the_model_scorer(tiny):
    voter = ExitVoter(tiny.model, [1, 3])
    with torch.no_grad():
        ref = model_scorer(tiny.model)(IDS, 5)
    assert torch.allclose(voter.scorer("exit:3")(IDS, 5).logprob, ref.logprob, atol=1e-5)
    assert torch.equal(voter.scorer("exit:3")(IDS, 5).top1, ref.top1)
    res = evaluate(tiny, seq_len=32, max_windows=3, mc_items=8, progress=False, scorer=voter.scorer("vote:mean"))
    assert math.isfinite(res["perplexity"]) and 0 <= res["accuracy"] <= 1


def test_tune_adaptive_lowers_the_loss_and_keeps_other_adapters_at_zero(fresh):
    cfg = TuneConfig(method="adaptive", steps=12, seq_len=32, batch_size=2, window=1, exits=[3], lr=1e-2)
    result = tune(fresh, cfg, progress=False)
    assert result.windows == [Window(3, 3)] and result.exits == [3]
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    lora_layers = {lora.layer_of(n) for n in lora.lora_parameters(result.model)}
    assert lora_layers == {3}
    assert result.baseline_rss_bytes > 0  # what the peak measures: tests/test_workloads_tuning_rss.py
    assert result.saved_tensor_bytes > 0 and result.optimizer_bytes > 0


def test_tune_cli_json_and_peft_adapters(tmp_path, cli_env):
    out = tmp_path / "adapters"
    proc = subprocess.run(
        [sys.executable, "-m", "workloads.tune", "--model", "tiny", "--method", "adaptive", "--steps", "2",
         "--seq-len", "32", "--batch-size", "2", "--window", "1", "--num-exits", "2", "--eval-max-windows", "2",
         "--mc-items", "4", "--threads", "1", "--out", str(out), "--json"],
        capture_output=True, text=True, env=cli_env, check=True,
    )
    res = json.loads(proc.stdout)
    for key in ("method", "steps", "step_seconds", "peak_memory_bytes", "trainable_params", "eval"):
        assert key in res
    assert set(res["eval"]) >= {"perplexity", "accuracy", "per_exit", "vote"}
    assert set(res["eval"]["per_exit"]) == {"2", "3"} and set(res["eval"]["vote"]) == {"max_conf", "mean", "entropy"}
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    meta = json.loads((out / "tuning.json").read_text())
    assert meta["exits"] == [2, 3]
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_model("tiny").model, out)
    assert {lora.layer_of(n) for n in lora.lora_parameters(model)} == {2, 3}


def test_tune_cli_help_and_errors(cli_env):
    helptext = subprocess.run([sys.executable, "-m", "workloads.tune", "--help"], capture_output=True, text=True,
                              env=cli_env, check=True).stdout
    for flag in ("--method", "--steps", "--window", "--exits", "--schedule", "--policy", "--out", "--lr", "--rank"):
        assert flag in helptext
    bad = subprocess.run([sys.executable, "-m", "workloads.tune", "--model", "tiny", "--window", "9", "--json"],
                         capture_output=True, text=True, env=cli_env)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error:") and "\n" not in bad.stderr.strip()


def test_tune_on_a_compressed_model_keeps_adapters_full_precision(tmp_path, fresh):
    from workloads.luc.policy import Policy
    from workloads.tuning.compression import compress

    policy = Policy.uniform(4, 0.5, 4, prune="magnitude", quant="rtn", group_size=32)
    compress(fresh, policy, progress=False)
    q = fresh.model.model.layers[2].self_attn.q_proj.weight
    zeros = float((q == 0).float().mean())
    assert 0.45 < zeros < 0.6
    result = tune(fresh, TuneConfig(method="adaptive", steps=3, seq_len=32, batch_size=2, window=1, exits=[2, 3]),
                  progress=False)
    assert all(p.dtype == torch.float32 for p in lora.lora_parameters(result.model).values())
    base_q = result.model.get_base_model().model.layers[2].self_attn.q_proj.base_layer.weight
    assert float((base_q == 0).float().mean()) == zeros  # tuning never touches the compressed weights
    assert all(math.isfinite(x) for x in result.losses)


def test_voting_scorer_matches_the_voter(tiny):
    from workloads.tuning.voting import voting_scorer

    voter = ExitVoter(tiny.model, [1, 3])
    for rule in ("max_conf", "mean", "entropy"):
        assert torch.equal(voting_scorer(tiny.model, [1, 3], rule)(IDS, 2).logprob,
                           voter.scorer(f"vote:{rule}")(IDS, 2).logprob)
    # One exit: nothing to vote on, the scorer is that exit's.
    assert torch.equal(voting_scorer(tiny.model, [3])(IDS, 0).logprob, voter.scorer("exit:3")(IDS, 0).logprob)


def test_tune_cli_defaults_are_the_best_documented_and_compared_with_untuned(cli_env):
    """The defaults: the top 12 layers (all 4 of the tiny model) through one exit, no vote,
    lr 0.005; the untuned model is measured on the same windows."""
    proc = subprocess.run(
        [sys.executable, "-m", "workloads.tune", "--model", "tiny", "--steps", "2", "--seq-len", "32",
         "--batch-size", "2", "--eval-max-windows", "2", "--mc-items", "4", "--threads", "1", "--json"],
        capture_output=True, text=True, env=cli_env, check=True,
    )
    res = json.loads(proc.stdout)
    assert res["method"] == "adaptive" and res["config"]["lr"] == 0.005 and res["exits"] == [3]
    assert res["windows"] == [[0, 3]]
    ev = res["eval"]
    assert list(ev["per_exit"]) == ["3"] and ev["vote"] == {} and ev["answer"] == "exit:3"
    assert ev["untuned"]["perplexity"] > 1 and ev["worse_than_untuned"] == [
        name for name in ["exit 3"] if ev["per_exit"]["3"]["perplexity"] > ev["untuned"]["perplexity"]]


def test_tune_cli_warns_when_tuning_made_the_model_worse(cli_env):
    # A learning rate of 100 without clipping wrecks the adapters in 3 steps.
    proc = subprocess.run(
        [sys.executable, "-m", "workloads.tune", "--model", "tiny", "--window", "2", "--steps", "3", "--lr", "100",
         "--max-grad-norm", "0", "--seq-len", "32", "--eval-max-windows", "2", "--mc-items", "0", "--threads", "1"],
        capture_output=True, text=True, env=cli_env, check=True,
    )
    assert "untuned: perplexity" in proc.stdout and "x untuned)" in proc.stdout
    assert "warning: exit 3 has a higher held-out perplexity than the untuned model" in proc.stderr


def test_worse_than_untuned_names_every_exit_and_vote_above_it():
    from workloads.tune import worse_than_untuned

    ev = {"untuned": {"perplexity": 54.9}, "per_exit": {"17": {"perplexity": 1.3e8}, "29": {"perplexity": 40.0}},
          "vote": {"max_conf": {"perplexity": 52391.0}, "mean": {"perplexity": 50.0},
                   "entropy": {"perplexity": float("nan")}}}
    assert worse_than_untuned(ev) == ["exit 17", "vote max_conf", "vote entropy"]
