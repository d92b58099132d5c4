"""The headline experiment end to end on the tiny model: every configuration under one scheduler,
seeds, learning curves, time to quality, shared runs, and the written page."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dse import reproduce
from dse.headline import quality as hq

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "tiny", "--steps", "2", "--curve-steps", "1", "2", "4", "--batch", "2", "--seq-len", "32",
        "--eval-windows", "2", "--mc-items", "4", "--window", "2", "--act-bits", "16", "--seeds", "0", "1", "2"]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("headline")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGELLM_CACHE", str(tmp / "cache"))
    md = tmp / "headline.md"
    argv = [*TINY, "--sparsity", "0.3", "--all-hw", str(ROOT / "hwconfigs" / "*.yaml"), "--md", str(md), "--json"]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert reproduce.main(argv) == 0
    mp.undo()
    return json.loads(out.getvalue()), md


def test_every_configuration_runs_under_the_same_dataflow(tiny_run):
    result, _ = tiny_run
    rows = [r for r in result["hardware"] if not r["ablation"]]
    assert {r["dataflow"] for r in rows} == {"auto"}
    assert {r["config"] for r in rows} == set(reproduce.CONFIGS)
    ablation = [r for r in result["hardware"] if r["ablation"]]
    assert {r["config"] for r in ablation} == {"full, ws only", "vanilla, ws only"}
    assert {r["dataflow"] for r in ablation} == {"ws"}
    assert all(r["vector_ms"] > 0 for r in result["hardware"])  # the non-matrix work is charged


def test_quality_is_a_distribution_over_seeds(tiny_run):
    result, md = tiny_run
    for name, q in result["quality"].items():
        ppl = q["at_steps"]["perplexity"]
        assert len(ppl["per_seed"]) == 3 and ppl["std"] >= 0 and ppl["mean"] > 1, name
        assert q["at_steps"]["top1"]["mean"] is not None, name
    full = result["quality"]["full"]
    assert full["equal_time_steps"] >= 2 and full["equal_time"]["perplexity"]["mean"] > 1
    ttq = result["time_to_quality"]
    assert set(ttq) >= {"threshold_perplexity", "vanilla_s", "method_s", "speedup"}
    assert {c for c in result["curves"]} == {"vanilla", "qlora", "full"}
    assert [p["steps"] for p in result["curves"]["vanilla"]] == [1, 2, 4]
    page = md.read_text()
    assert "## Targets" in page and "## Time to quality" in page and "python -m dse.reproduce" in page
    assert md.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert (md.parent / "headline_curves.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads(md.with_suffix(".json").read_text())
    assert saved["quality"] == result["quality"]


def test_identical_computations_share_one_run(tiny_run):
    """top-W LoRA and adaptive with one exit are the same computation: one run serves both."""
    result, _ = tiny_run
    q = result["quality"]
    assert q["top-w"]["runs"] == q["adaptive"]["runs"]
    assert q["top-w"]["at_steps"]["perplexity"] == q["adaptive"]["at_steps"]["perplexity"]
    assert q["vanilla"]["runs"] != q["adaptive"]["runs"]
    assert any("top-w" in n and "adaptive" in n for n in result["notes"])


def test_left_out_work_is_named_with_its_size(tiny_run):
    """The page names what the simulator does not charge, each with a size; the LoRA count is the
    tiny model's own (rank 8 on the seven linears of every layer for vanilla, the window for adaptive)."""
    from workloads.models import load_model

    result, md = tiny_run
    u = result["uncharged"]
    model = load_model("tiny", seed=0).model
    cfg = model.config
    kv = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    h, f = cfg.hidden_size, cfg.intermediate_size
    per_layer = 8 * (2 * (h + h) + 2 * (h + kv) + 3 * (h + f))
    assert u["lora_params"]["vanilla"] == per_layer * cfg.num_hidden_layers
    assert u["lora_params"]["adaptive"] == per_layer * 2  # --window 2
    assert u["optimizer_init_mb"] == pytest.approx(8 * per_layer * cfg.num_hidden_layers / 1e6)
    assert 0 < u["optimizer_init_share_of_step"] < 1
    page = md.read_text()
    assert "Left out, with its size" in page and "MB once per run" in page and "causal mask" in page


@pytest.mark.parametrize("value", ["0", "-1e-3", "nan", "fast"])
def test_reproduce_refuses_bad_learning_rate(value, capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main(["--lr", value])
    assert info.value.code == 2 and "--lr" in capsys.readouterr().err


def test_equal_time_steps_spend_the_speed_up():
    assert reproduce.equal_time_steps(32, 523.0, 146.2) == 114  # headline_w4: 3.58x faster
    assert reproduce.equal_time_steps(32, 100.0, 200.0) == 16 and reproduce.equal_time_steps(1, 1.0, 5.0) == 1


@pytest.mark.parametrize("configs,word", [("vanilla,turbo", "turbo"), ("luc,full", "vanilla")])
def test_reproduce_refuses_unknown_config(cache, tmp_path, capsys, configs, word):
    with pytest.raises(SystemExit) as info:
        reproduce.main(["--model", "tiny", "--configs", configs, "--md", str(tmp_path / "h.md")])
    assert info.value.code == 2 and not (tmp_path / "h.md").exists()
    assert word in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--head-bits", "9"), ("--act-bits", "12"), ("--act-bits", "1"),
                                        ("--seeds", "1 1")])
def test_reproduce_refuses_bad_values(flag, value, capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main([flag, *value.split()])
    assert info.value.code == 2 and flag in capsys.readouterr().err


def test_time_to_quality_interpolates_and_bounds():
    van = [[{"steps": 32, "perplexity": 10.0}]] * 2
    method = [[{"steps": 32, "perplexity": 12.0}, {"steps": 64, "perplexity": 11.0}, {"steps": 128, "perplexity": 9.0}]]
    ttq = hq.time_to_quality(van, method, steps=32, vanilla_step_s=1.0, method_step_s=0.25)
    # log-linear between 64 (11) and 128 (9): ln 11 -> ln 9 crosses ln 10 at 64 + 64 * 0.4749
    assert ttq["reached"] and ttq["method_steps"] == pytest.approx(64 + 64 * 0.47490, rel=1e-4)
    assert ttq["speedup"] == pytest.approx(32 / (ttq["method_steps"] * 0.25))
    never = hq.time_to_quality(van, [method[0][:2]], steps=32, vanilla_step_s=1.0, method_step_s=0.25)
    assert not never["reached"] and never["speedup"] is None and never["speedup_upper_bound"] == pytest.approx(2.0)


def test_paired_comparison_over_seeds():
    same = hq.compare([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same["p"] is None and not same["beyond_noise"]
    shifted = hq.compare([1.5, 2.6, 3.4], [1.0, 2.0, 3.0])
    assert shifted["beyond_noise"] and shifted["diff"] == pytest.approx(0.5)
    noisy = hq.compare([1.5, 1.4, 3.6], [1.0, 2.0, 3.0])
    assert not noisy["beyond_noise"]


def test_separation_needs_more_than_sampling_noise():
    untuned = {"perplexity": 20.0, "top1": 0.40, "accuracy": 0.50, "tokens": 20_000}
    tuned = {"perplexity": [12.0, 12.2, 12.1], "top1": [0.45, 0.451, 0.452], "accuracy": [0.52, 0.50, 0.51]}
    rows = {r["metric"]: r for r in hq.separation(untuned, tuned, items=200)}
    assert rows["perplexity"]["separates"] and rows["top1"]["separates"]
    assert not rows["accuracy"]["separates"]  # 1 point on 200 items is inside the sampling error


def test_an_interrupted_run_keeps_the_checkpoints_it_reached(cache, tmp_path, monkeypatch):
    """A long tuning run saves its curve at each checkpoint: killed after two of three, the two
    are on disk (marked partial), and a request for them alone is served without tuning again."""
    from dse import measure
    from dse.headline.quality import QualityRuns, RunRequest
    from dse.space import Tuning
    from workloads.models import load_model

    loaded = load_model("tiny", seed=0)
    fid = measure.Fidelity(steps=4, batch_size=2, seq_len=32, eval_windows=2, split="eval", calib_windows=2)
    runs = QualityRuns(loaded, fid, data=None, root=tmp_path / "runs")
    layers = int(loaded.model.config.num_hidden_layers)
    req = RunRequest("vanilla", Tuning("vanilla", window=layers, exits=1), None, 0, (1, 2, 4))
    real, calls = measure._evaluate, []

    def killed_at_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(measure, "_evaluate", killed_at_third)
    with pytest.raises(KeyboardInterrupt):
        runs.run(req)
    stored = runs.stored(req)
    assert stored["partial"] and [p["steps"] for p in stored["curve"]] == [1, 2]
    monkeypatch.setattr(measure, "_evaluate", lambda *a, **k: pytest.fail("tuned again"))
    served = runs.run(dataclasses.replace(req, checkpoints=(1, 2)))
    assert [p["steps"] for p in served["curve"]] == [1, 2]


def test_an_accuracy_target_is_judged_only_with_a_metric_that_moves():
    """The accuracy rows of the targets table say "not judged" when the metric does not separate
    untuned from tuned, whatever the gap; a metric that moves is judged against 2 points."""
    import pandas as pd

    from dse.headline.page import targets

    def point(ppl, top1, acc):
        return {"perplexity": {"mean": ppl}, "top1": {"mean": top1}, "accuracy": {"mean": acc}}

    main = pd.DataFrame([{"config": "full", "speedup": 2.0, "memory_saving": 4.1}])
    quality = {"full": {"at_steps": point(13.0, 0.465, 0.872)}, "vanilla": {"at_steps": point(12.0, 0.480, 0.867)}}
    ttq = {"reached": False, "speedup_upper_bound": 1.9, "method_longest_steps": 32}
    sep = [{"metric": "top1", "separates": True}, {"metric": "accuracy", "separates": False}]
    rows = {r["target"]: r for r in targets(main, quality, ttq, sep)}
    assert rows["equal steps: next-token top-1 within 2 points"]["met"] is True  # -1.5 points
    assert str(rows["equal steps: multiple-choice accuracy within 2 points"]["met"]).startswith("not judged")
    assert rows["memory >= 4x lower"]["met"] and not rows["per-step speed-up >= 2.92x"]["met"]


# --- the operating point from a search study (--from-study URL --trial N) ---------------------

def _tiny_study(tmp_path: Path, *, space: int | None = None, model: str = "tiny") -> tuple[str, dict, dict]:
    """A study as dse.search leaves it: its settings, and one complete trial whose design comes
    from the search space's own ``suggest`` and whose policy is a per-layer LUC policy."""
    import optuna

    from dse.space import SPACE_VERSION, suggest
    from dse.study import make_sampler, open_study
    from workloads.luc.policy import Policy

    url = f"sqlite:///{tmp_path / 'study.db'}"
    settings = {"space": SPACE_VERSION if space is None else space, "model": model}
    study = open_study(url, "tiny", make_sampler("random", seed=0), settings)
    params = {"pattern": "unstructured", "avg_sparsity": 0.3, "avg_bits": 3.0, "rule": "paper", "sharpness": 1.0,
              "head_bits": 8, "window": 2, "exits": 2, "act_bits": 8, "translators": True, "vote": "entropy",
              "dataflow": "os"}
    design = suggest(optuna.trial.FixedTrial(params), num_layers=4).to_dict()
    policy = Policy({0: Policy.uniform(1, 0.0, 4).layers[0], 1: Policy.uniform(1, 0.2, 3).layers[0],
                     2: Policy.uniform(1, 0.4, 3).layers[0], 3: Policy.uniform(1, 0.6, 2).layers[0]},
                    group_size=16, head_bits=8).to_dict()
    failed = optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL, params={}, distributions={})
    study.add_trial(optuna.trial.create_trial(values=[20.0, 0.1, 1e6], user_attrs={"design": design, "policy": policy}))
    study.add_trial(failed)
    return url, design, policy


def test_reproduce_takes_its_point_from_a_study_trial(cache, tmp_path):
    """Every knob of the trial reaches the experiment: compression (its own per-layer policy),
    window, exits, vote, activation and head bits, translators and the one common dataflow;
    the page says which trial of which study it is."""
    import contextlib
    import io

    url, design, policy = _tiny_study(tmp_path)
    md = tmp_path / "h.md"
    argv = ["--model", "tiny", "--steps", "2", "--curve-steps", "1", "2", "--batch", "2", "--seq-len", "32",
            "--eval-windows", "2", "--mc-items", "0", "--seeds", "0", "1", "2", "--configs", "vanilla,full",
            "--all-hw", str(ROOT / "hwconfigs" / "edge_llm.yaml"), "--hw", str(ROOT / "hwconfigs" / "edge_llm.yaml"),
            "--from-study", url, "--trial", "0", "--md", str(md), "--json", "--skip-equal-time"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert reproduce.main(argv) == 0
    result = json.loads(out.getvalue())
    plan, tuning, comp = result["plan"], design["tuning"], design["compression"]
    assert (plan["window"], plan["exits"], plan["vote"], plan["act_bits"], plan["translators"]) == (
        tuning["window"], tuning["exits"], tuning["vote"], tuning["act_bits"], tuning["translators"]) == (
        2, 2, "entropy", 8, True)
    assert (plan["sparsity"], plan["bits"], plan["rule"], plan["head_bits"]) == (0.3, 3.0, "paper", 8) == (
        comp["avg_sparsity"], comp["avg_bits"], comp["rule"], comp["head_bits"])
    assert result["policy"]["layers"] == policy["layers"] and result["policy"]["group_size"] == 16
    assert {r["dataflow"] for r in result["hardware"] if not r["ablation"]} == {"os"}  # one scheduler for all
    assert result["point"]["how"] == "study" and result["point"]["trial"] == 0 and result["point"]["on_front"]
    assert "trial 0 of the search study `tiny`" in md.read_text()


def test_a_hand_set_point_says_so_and_names_the_study_option(tiny_run):
    _, md = tiny_run
    page = md.read_text()
    assert "chosen by hand" in page and "--from-study URL --trial N" in page


@pytest.mark.parametrize("case,word", [
    ("no-file", "no study file"), ("no-trial", "no such trial"), ("failed", "not complete"),
    ("space", "space version 2"), ("model", "searched model"), ("conflict", "--window conflicts"),
    ("no-trial-flag", "needs --trial"), ("trial-alone", "add --from-study"), ("name", "no study 'other'"),
])
def test_from_study_refuses_in_one_line(cache, tmp_path, capsys, case, word):
    """A missing study or trial, a failed trial, a study of another search-space version or model,
    and flags that would fight the trial: one line, nothing written, no storage file created."""
    url, _, _ = _tiny_study(tmp_path, space=2 if case == "space" else None,
                            model="smollm2-135m" if case == "model" else "tiny")
    md = tmp_path / "h.md"
    argv = {"no-file": ["--from-study", f"sqlite:///{tmp_path / 'none.db'}", "--trial", "0"],
            "no-trial": ["--from-study", url, "--trial", "7"],
            "failed": ["--from-study", url, "--trial", "1"],
            "space": ["--from-study", url, "--trial", "0"],
            "model": ["--from-study", url, "--trial", "0"],
            "conflict": ["--from-study", url, "--trial", "0", "--window", "4"],
            "no-trial-flag": ["--from-study", url],
            "trial-alone": ["--trial", "0"],
            "name": ["--from-study", url, "--trial", "0", "--study-name", "other"]}[case]
    with pytest.raises(SystemExit) as info:
        reproduce.main(["--model", "tiny", "--md", str(md), *argv])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and word in err and len(err.splitlines()) == 1, err
    assert not md.exists() and not (tmp_path / "none.db").exists()
