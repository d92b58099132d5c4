"""The window / activation-bits benchmarks' plumbing (the measurements themselves run for an
hour on the real model): run names carry every setting that changes a result, bad flags are
one-line errors before any work."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_act_bits  # noqa: E402
import bench_window as bw  # noqa: E402


def test_case_names_carry_steps_packing_and_head():
    names = {bw.case_path(c).name for c in [("full", 12, 32, 16, 16), ("full", 12, 33, 16, 16), ("full", 12, 32, 8, 16),
                                            ("full", 12, 32, 6, 16), ("full", 12, 32, 8, 8), ("full", 8, 32, 8, 8)]}
    assert len(names) == 6
    # runs made before packing and the 8-bit head existed keep their names
    assert bw.case_path(("full", 12, 32, 16, 16)).name == f"full-w12-{bw.fidelity(32).key()}.json"


def test_plan_follows_the_case():
    p = bw.plan(12, 6, 8)
    design = p.design("full", 30)
    assert (p.head_bits, design.tuning.act_bits, design.tuning.window) == (8, 6, 12)
    assert p.design("vanilla", 30).tuning.act_bits == 16


@pytest.mark.parametrize("main,argv", [(bw.main, ["--act-bits", "12"]), (bw.main, ["--windows", "0"]),
                                        (bw.main, ["--head-bits", "4"]), (bw.main, ["--case", "turbo", "1", "1", "16", "16"]),
                                        (bench_act_bits.main, ["--bits", "16", "1"]),
                                        (bench_act_bits.main, ["--window", "31"])])
def test_bad_flags_are_refused_before_any_work(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert info.value.code == 2 and "error:" in last
