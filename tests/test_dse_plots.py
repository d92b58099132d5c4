"""The study's figures, checked on the returned Figure objects: log axes where the values span
more than two decades, the perplexity axis clipped above the budget with the outliers kept on
its edge, the budget drawn, real measurements beside predictions, each constraint named."""
from __future__ import annotations

import numpy as np
import optuna
import pytest

from dse.plots import CLIP_OVER_BUDGET, broken, front_figure, hypervolume_figure, wants_log
from dse.study import front

optuna.logging.set_verbosity(optuna.logging.ERROR)
REFERENCE = {"perplexity": 20.0, "latency_s": 0.05, "memory_bytes": 400 * 2**20}
BUDGET = 60.0


def study_with(perplexities: list[float], *, dram_mib: float = 350.0) -> optuna.Study:
    """Trials with the given perplexities, latencies 10-50 ms and memory 80-400 MiB (those past
    ``dram_mib`` overflow DRAM), constrained as dse.pipeline constrains them."""
    rng = np.random.default_rng(0)
    study = optuna.create_study(directions=["minimize"] * 3)
    for ppl in perplexities:
        trial = study.ask()
        mem = float(rng.uniform(80, 400)) * 2**20
        trial.set_constraint("dram", mem / (dram_mib * 2**20) - 1)
        trial.set_constraint("perplexity", ppl / BUDGET - 1)
        study.tell(trial, [ppl, float(rng.uniform(0.01, 0.05)), mem])
    return study


def figure(study: optuna.Study, real: dict[int, float] | None = None):
    members = {t.number for t in front(study)}
    return front_figure(study.trials, members, REFERENCE, budget=BUDGET, real=real, title="t")


def test_wants_log_only_past_two_decades():
    assert wants_log([20, 3.5e8]) and wants_log([1, 101])
    assert not wants_log([20, 1999]) and not wants_log([5.0]) and not wants_log([])


def test_wide_perplexities_get_a_log_axis_clipped_above_the_budget():
    ppl = [22, 25, 30, 41, 55, 80, 150, 3e3, 3.5e8]
    fig = figure(study_with(ppl))
    axes = [a for a in fig.axes if a.get_xlabel()]  # the two panels, not their colorbars
    assert len(axes) == 2
    for ax in axes:
        assert ax.get_yscale() == "log"
        top = ax.get_ylim()[1]
        assert CLIP_OVER_BUDGET * BUDGET <= top < 3 * CLIP_OVER_BUDGET * BUDGET  # not 3.5e8
        # The budget is a drawn line at its value.
        assert any(list(line.get_ydata()) == [BUDGET, BUDGET] for line in ax.get_lines())
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("3 trials above 120" in label and "3.5e+08" in label for label in labels), labels
    assert any("accuracy budget: perplexity 60" in label for label in labels)


def test_narrow_perplexities_stay_linear_and_say_where_the_budget_is():
    fig = figure(study_with([21, 22, 25, 28]))
    axes = [a for a in fig.axes if a.get_xlabel()]
    assert {a.get_yscale() for a in axes} == {"linear"}
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("accuracy budget: perplexity 60 (above every trial)" in label for label in labels)


def test_each_point_names_the_constraint_it_breaks():
    study = study_with([30, 70, 25, 90, 33], dram_mib=200.0)
    names = {broken(t) for t in study.trials}
    assert {"over the accuracy budget", "overflows DRAM", "overflows DRAM and over the accuracy budget"} <= names
    labels = [t.get_text() for t in figure(study).legends[0].get_texts()]
    assert not any("infeasible (DRAM)" in label for label in labels)
    assert all(label.startswith("infeasible: ") for label in labels if "infeasible" in label)


def test_real_measurements_sit_beside_their_prediction():
    study = study_with([22, 25, 30, 41])
    member = front(study)[0]
    fig = figure(study, real={member.number: 33.0})
    axes = [a for a in fig.axes if a.get_xlabel()]
    for ax in axes:
        joins = [line for line in ax.get_lines() if list(line.get_ydata()) == [member.values[0], 33.0]]
        assert len(joins) == 1
        assert any(t.get_text() == f"#{member.number}" for t in ax.texts)
    assert "predicted perplexity = exp(" in fig._suptitle.get_text()
    assert "measured = compressed, tuned and evaluated for real" in fig._suptitle.get_text()


@pytest.mark.parametrize("history", [np.array([]), np.array([0.0, 0.5, 1.2])])
def test_hypervolume_figure(history):
    ax = hypervolume_figure(history).axes[0]
    assert ax.get_xlabel() == "complete trials" and len(ax.get_lines()[0].get_xdata()) == len(history)
