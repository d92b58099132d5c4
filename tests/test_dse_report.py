"""What a study leaves behind, on a hand-made study: each front design listed once with the
trials that found it, real measurements with their accuracy, files readable like any output,
and a summary that says what predicted means and what to run next."""
from __future__ import annotations

import json

import optuna
import pandas as pd

from dse import report
from dse.study import META_KEY
from common.files import output_mode

optuna.logging.set_verbosity(optuna.logging.ERROR)


def make_study() -> optuna.Study:
    """Trials 0 and 2 are one design (same values); trial 1 is another; trial 3 is dominated."""
    study = optuna.create_study(directions=["minimize"] * 3, study_name="hand")
    study.set_user_attr(META_KEY, {"max_perplexity_ratio": 3.0})
    study.set_user_attr(report.REFERENCE_KEY, {"perplexity": 20.0, "latency_s": 0.05, "memory_bytes": 4e8,
                                               "energy_j": 1.0})
    rows = [({"w": 4}, [25.0, 0.02, 1e8]), ({"w": 8}, [22.0, 0.03, 2e8]), ({"w": 4}, [25.0, 0.02, 1e8]),
            ({"w": 2}, [40.0, 0.04, 3e8])]
    for design, values in rows:
        trial = study.ask()
        trial.set_user_attr("design", design)
        trial.set_constraint("dram", -0.5)
        study.tell(trial, values)
    study.set_user_attr(f"{report.REAL_PREFIX}0", {"perplexity": 27.5, "accuracy": 0.61, "split": "eval",
                                                    "tokens": 1000})
    return study


def test_front_lists_each_design_once_with_its_trials(tmp_path):
    study = make_study()
    assert [(t.number, numbers) for t, numbers in report.distinct_front(study)] == [(1, [1]), (0, [0, 2])]
    summary = report.write_outputs(study, tmp_path, storage="sqlite:///x.db")
    csv = pd.read_csv(tmp_path / "pareto.csv")
    assert list(csv["number"]) == [1, 0] and list(csv["trials"].astype(str)) == ["1", "0 2"]
    assert summary["front_size"] == 2
    front = json.loads((tmp_path / "pareto.json").read_text())["front"]
    assert [m["trials"] for m in front] == [[1], [0, 2]]
    measured = csv.set_index("number").loc[0]
    assert measured["real_perplexity"] == 27.5 and measured["real_accuracy"] == 0.61
    assert summary["budget_perplexity"] == 60.0


def test_outputs_are_readable_like_any_other_file(tmp_path):
    report.write_outputs(make_study(), tmp_path)
    for name in report.OUTPUT_FILES:
        assert (tmp_path / name).stat().st_mode & 0o777 == output_mode(), name
    assert output_mode() & 0o044 == 0o044  # group and others can read under the usual umask


def test_summary_says_what_predicted_means_and_what_to_run_next(tmp_path):
    report.write_outputs(make_study(), tmp_path, storage="journal:runs/s.log")
    text = (tmp_path / "summary.txt").read_text()
    assert "predicted = exp(" in text
    assert "measured #0: perplexity 27.50 (predicted 25.00), accuracy 0.610" in text
    assert f"files in {tmp_path}: summary.txt, pareto.png" in text
    nxt = text.split("next:\n")[1]
    assert "EDGELLM_STORAGE=journal:runs/s.log EDGELLM_STUDY=hand" in nxt and "study_pareto.ipynb" in nxt
    assert "optuna-dashboard runs/s.log" in nxt
    assert "--remeasure 4" in nxt and "python -m dse.reproduce" in nxt
