import json
import math
import subprocess
import sys

import torch

from workloads import data
from workloads.evaluate import build_parser, evaluate
from workloads.metrics import choice_accuracy, model_scorer, perplexity


def test_uniform_scorer_has_perplexity_equal_to_vocab():
    vocab = 37
    scorer = lambda ids, start: torch.full((ids.shape[0], ids.shape[1] - 1 - start), -math.log(vocab))
    res = perplexity(scorer, torch.zeros(5, 16, dtype=torch.long), batch_size=2, progress=False)
    assert math.isclose(res.perplexity, vocab, rel_tol=1e-6)
    assert res.tokens == 5 * 15 and res.windows == 5 and res.seq_len == 16


def test_scorer_matches_full_logits(tiny):
    ids = torch.randint(0, len(tiny.tokenizer), (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logp = torch.log_softmax(tiny.model(ids).logits, -1)[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        assert torch.allclose(model_scorer(tiny.model)(ids, 0).logprob, logp, atol=1e-5)
        assert torch.allclose(model_scorer(tiny.model)(ids, 7).logprob, logp[:, 7:], atol=1e-5)
        top1 = tiny.model(ids).logits[:, :-1].argmax(-1) == ids[:, 1:]
        assert torch.equal(model_scorer(tiny.model)(ids, 0).top1, top1)


def test_oracle_and_adversary_accuracy(tiny):
    items = data.choice_items(tiny.tokenizer, data.load_split("eval"), n_items=40, seed=1)
    truth = {(tuple(it.context.tolist()), tuple(it.choices[it.label].tolist())) for it in items}

    def scorer(sign):
        def score(ids, start):
            good = [(tuple(s[: start + 1].tolist()), tuple(s[start + 1 :].tolist())) in truth for s in ids]
            return sign * torch.tensor(good, dtype=torch.float)[:, None].expand(-1, ids.shape[1] - 1 - start)

        return score

    assert choice_accuracy(scorer(1.0), items, progress=False).accuracy == 1.0
    assert choice_accuracy(scorer(-1.0), items, progress=False).accuracy == 0.0


def test_evaluate_tiny(tiny):
    res = evaluate(tiny, seq_len=64, max_windows=6, mc_items=12, progress=False)
    assert res["tokens"] == 6 * 63 and res["windows"] == 6
    assert 1 < res["perplexity"] < 10 * len(tiny.tokenizer)
    assert 0 <= res["accuracy"] <= 1 and res["mc_items"] == 12


def test_cli_json(cli_env):
    out = subprocess.run(
        [sys.executable, "-m", "workloads.evaluate", "--model", "tiny", "--seq-len", "32", "--max-windows", "4",
         "--mc-items", "8", "--json"],
        capture_output=True, text=True, env=cli_env, check=True,
    )
    result = json.loads(out.stdout)
    for key in ("model", "split", "seq_len", "tokens", "perplexity", "accuracy", "seconds"):
        assert key in result
    assert result["model"] == "tiny" and result["seq_len"] == 32 and result["tokens"] == 4 * 31


def test_cli_bad_input_is_one_line(cli_env, tmp_path):
    for args, needle in [
        (["--data", str(tmp_path / "missing.txt")], "not found"),
        (["--model", str(tmp_path)], "no config.json"),
    ]:
        out = subprocess.run(
            [sys.executable, "-m", "workloads.evaluate", "--model", "tiny", *args],
            capture_output=True, text=True, env=cli_env,
        )
        assert out.returncode == 2
        assert out.stderr.startswith("error: ") and needle in out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr and out.stdout == ""


def test_help_documents_every_flag():
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings
