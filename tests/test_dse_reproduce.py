"""The headline experiment end to end on the tiny model: every configuration tuned, evaluated
and simulated, the equal-time row, and the written page."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dse import reproduce

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLM_CACHE", str(tmp_path / "cache"))


def test_reproduce_tiny_writes_the_page(cache, tmp_path, capsys):
    md = tmp_path / "headline.md"
    argv = ["--model", "tiny", "--steps", "2", "--batch", "2", "--seq-len", "32", "--eval-windows", "2",
            "--mc-items", "4", "--window", "1", "--sparsity", "0.3", "--bits", "4", "--adaptive-lr", "0.005",
            "--all-hw", str(ROOT / "hwconfigs" / "*.yaml"), "--md", str(md), "--json"]
    assert reproduce.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    quality = {r["config"]: r for r in result["quality"]}
    assert set(quality) == set(reproduce.CONFIGS) | {reproduce.EQUAL_TIME}
    assert quality["vanilla"]["lr"] == 0.002 and quality["adaptive"]["lr"] == quality["full"]["lr"] == 0.005
    # The full method is faster, so it gets more steps in vanilla's simulated time.
    hw = [r for r in result["hardware"] if r["hw"] == "edge_llm"]
    lat = {r["config"]: r["latency_ms"] for r in hw}
    assert lat["full"] < lat["vanilla"]
    assert quality[reproduce.EQUAL_TIME]["steps"] == int(2 * lat["vanilla"] / lat["full"]) > 2
    assert all(r["perplexity"] > 1 and 0 <= r["accuracy"] <= 1 for r in result["quality"])
    # Every hardware config has every configuration; vanilla is the unit of speed-up.
    n_hw = len(list((ROOT / "hwconfigs").glob("*.yaml")))
    assert len(result["hardware"]) == n_hw * len(reproduce.CONFIGS)
    assert all(r["speedup"] == pytest.approx(1.0) for r in result["hardware"] if r["config"] == "vanilla")
    page = md.read_text()
    assert "## At equal simulated tuning time on edge_llm" in page and "python -m dse.reproduce" in page
    assert md.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads(md.with_suffix(".json").read_text())["quality"] == result["quality"]


def test_reproduce_without_accuracy_items(cache, tmp_path, capsys):
    md = tmp_path / "h.md"
    argv = ["--model", "tiny", "--steps", "1", "--batch", "1", "--seq-len", "32", "--eval-windows", "1",
            "--mc-items", "0", "--window", "1", "--configs", "vanilla,full", "--all-hw",
            str(ROOT / "hwconfigs" / "edge_llm.yaml"), "--md", str(md), "--equal-time-lr", "0.001", "--json"]
    assert reproduce.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["config"] for r in result["quality"]] == ["vanilla", "full", reproduce.EQUAL_TIME]
    assert [r["lr"] for r in result["quality"]] == [0.002, 0.002, 0.001]  # the longer run's own rate
    page = md.read_text()
    assert "## At equal simulated tuning time" in page and "accuracy +" not in page


@pytest.mark.parametrize("flag", ["--lr", "--adaptive-lr", "--equal-time-lr"])
@pytest.mark.parametrize("value", ["0", "-1e-3", "nan", "fast"])
def test_reproduce_refuses_bad_learning_rate(flag, value, capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main([flag, value])
    assert info.value.code == 2 and flag in capsys.readouterr().err


def test_equal_time_lr_needs_the_equal_time_run(cache, tmp_path, capsys):
    for extra in (["--no-equal-time"], ["--configs", "vanilla,luc"]):
        with pytest.raises(SystemExit) as info:
            reproduce.main(["--model", "tiny", "--equal-time-lr", "0.001", "--md", str(tmp_path / "h.md"), *extra])
        assert info.value.code == 2 and "--equal-time-lr" in capsys.readouterr().err


def test_equal_time_steps_spend_the_speed_up():
    assert reproduce.equal_time_steps(32, 523.0, 146.2) == 114  # headline_w4: 3.58x faster
    assert reproduce.equal_time_steps(32, 100.0, 200.0) == 16 and reproduce.equal_time_steps(1, 1.0, 5.0) == 1


def test_reproduce_refuses_unknown_config(cache, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main(["--model", "tiny", "--configs", "vanilla,turbo", "--md", str(tmp_path / "h.md")])
    assert info.value.code == 2 and not (tmp_path / "h.md").exists()
    assert "turbo" in capsys.readouterr().err


def test_luc_equal_to_vanilla_is_explained_only_when_it_is():
    import pandas as pd

    same = pd.DataFrame({"config": ["vanilla", "luc"], "perplexity": [12.5, 12.5]})
    other = pd.DataFrame({"config": ["vanilla", "luc"], "perplexity": [12.5, 13.1]})
    dense_4bit = reproduce.Plan(sparsity=0.0, bits=4.0)
    assert "Q4_1" in " ".join(reproduce.same_as_vanilla(same, dense_4bit))
    assert reproduce.same_as_vanilla(other, dense_4bit) == []
    assert reproduce.same_as_vanilla(same, reproduce.Plan(sparsity=0.3)) == []


def test_packed_activations_and_8_bit_head_shrink_the_full_methods_step(cache, tmp_path, capsys, monkeypatch):
    from workloads.tuning import actcomp

    monkeypatch.setattr(actcomp, "MIN_NUMEL", 1)  # the tiny model's activations are small
    memory, latency = {}, {}
    for head, act in ((16, 16), (8, 16), (8, 4)):
        argv = ["--model", "tiny", "--steps", "1", "--batch", "1", "--seq-len", "32", "--eval-windows", "1",
                "--mc-items", "0", "--window", "2", "--sparsity", "0", "--configs", "vanilla,full", "--no-equal-time",
                "--all-hw", str(ROOT / "hwconfigs" / "edge_llm.yaml"), "--md", str(tmp_path / "h.md"),
                "--head-bits", str(head), "--act-bits", str(act), "--json"]
        assert reproduce.main(argv) == 0
        result = json.loads(capsys.readouterr().out)
        full = next(r for r in result["hardware"] if r["config"] == "full")
        memory[head, act], latency[head, act] = full["memory_mib"], full["latency_ms"]
        assert result["policy"].get("head_bits", 16) == head
    assert memory[8, 16] < memory[16, 16] and latency[8, 16] < latency[16, 16]  # the head's bytes and products
    # Packing saves memory and costs time: the trace charges its packing and unpacking (format 2).
    assert memory[8, 4] < memory[8, 16] and latency[8, 4] > latency[8, 16]
    assert "activations for backward at 4 bits" in (tmp_path / "h.md").read_text()


@pytest.mark.parametrize("flag,value", [("--head-bits", "9"), ("--act-bits", "12"), ("--act-bits", "1")])
def test_reproduce_refuses_bad_bits(flag, value, capsys):
    with pytest.raises(SystemExit) as info:
        reproduce.main([flag, value])
    assert info.value.code == 2 and flag in capsys.readouterr().err
