"""The helpers every package shares (common/): one-line errors, atomic writes, the Pareto mask,
and the hardware-key help generated from the config schema."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
import workloads.errors
from common.errors import UserError, cli_main, one_line
from common.files import write_atomic
from common.pareto import pareto_mask
from sim.cli import CONFIG_EPILOG
from sim.config import check_key, config_keys


def test_one_line_escapes_every_line_break() -> None:
    text = "a\nb\rc\vd\fe\x1cf\x85g\u2028h\u2029i"
    assert len(text.splitlines()) == 9
    assert len(one_line(text).splitlines()) == 1


def test_sim_and_workloads_share_one_user_error_and_one_wrapper() -> None:
    assert issubclass(sim.SimError, UserError)
    assert workloads.errors.UserError is UserError
    assert workloads.errors.cli_main is cli_main


def test_cli_main_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    @cli_main
    def main(argv: list[str] | None = None) -> int:
        raise sim.ConfigError("hw.yaml\nx: pe.rows: must be > 0 (got -4)")

    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: hw.yaml\\nx: pe.rows") and err.count("\n") == 1


def test_write_atomic_leaves_nothing_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.csv"]
    write_atomic(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.csv"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)),
                min_size=1, max_size=20))
def test_pareto_mask_matches_brute_force_in_three_objectives(points: list[tuple[int, ...]]
                                                             ) -> None:
    values = np.array(points, dtype=float)
    mask = pareto_mask(values)
    for i, p in enumerate(values):
        dominated = any((q <= p).all() and (q < p).any() for q in values)
        assert mask[i] == (not dominated)
    # The same objectives given as one array per objective.
    assert (pareto_mask(*values.T) == mask).all()


def test_pareto_mask_leaves_out_non_finite_points() -> None:
    mask = pareto_mask([1.0, np.nan, 0.5, np.inf], [1.0, 0.0, 2.0, 0.0])
    assert mask.tolist() == [True, False, True, False]


def test_config_help_lists_every_key_of_the_schema() -> None:
    keys = [key for key, _ in config_keys()]
    assert "area.pe_um2" in keys and "vector.pj_per_element.exp" in keys
    for key in keys:
        assert key in CONFIG_EPILOG
        check_key(key)  # every listed key is accepted by --set and --grid
    with pytest.raises(sim.ConfigError, match="unknown field 'rowz' in pe"):
        check_key("pe.rowz")
