"""A finished study opens in optuna-dashboard: its trials and the objectives' names are there.

The study is created by ``dse.study.open_study`` (as ``python -m dse.search`` creates its
studies) and finished with a few cheap trials; the dashboard is optuna-dashboard's own WSGI
application (``optuna_dashboard.wsgi``, what ``optuna-dashboard STORAGE_URL``
serves), called in process through its JSON API.
"""
from __future__ import annotations

import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

optuna_dashboard = pytest.importorskip("optuna_dashboard",
                                       reason="optuna-dashboard is not installed")

from dse.study import OBJECTIVES, completed, make_sampler, open_study  # noqa: E402

TRIALS = 6


def _get(app: Any, path: str) -> tuple[str, Any]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET",
                               "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], json.loads(body)


def _objectives(trial: Any) -> tuple[float, float, float]:
    """Three numbers from the trial's parameters (the dashboard only reads what is stored)."""
    x = trial.suggest_float("sparsity", 0.0, 0.7)
    bits = trial.suggest_int("bits", 2, 8)
    return 10.0 + 5 * x**2 + 8.0 / bits, (1 - x) * bits * 1e-3, (1 - x) * bits * 1e6


@pytest.fixture(scope="module", params=["sqlite", "journal"])
def finished_study(request, tmp_path_factory):
    """A finished study, created the way ``dse.search`` creates its studies
    (``dse.study.open_study``: directions, settings and objective names), in a SQLite file or
    a journal file; returns (our storage URL, what ``optuna-dashboard`` is given)."""
    tmp = tmp_path_factory.mktemp("study")
    if request.param == "sqlite":
        url = dashboard_arg = f"sqlite:///{tmp}/study.db"
    else:
        url, dashboard_arg = f"journal:{tmp}/study.log", str(tmp / "study.log")
    study = open_study(url, "dash", make_sampler("random", seed=0), {"test": "dashboard"})
    study.optimize(_objectives, n_trials=TRIALS)
    return url, dashboard_arg


def test_dashboard_sees_trials_and_objective_names(finished_study):
    import optuna

    from dse.storage import open_storage

    url, dashboard_arg = finished_study
    study = optuna.load_study(study_name="dash", storage=open_storage(url))
    assert completed(study) == TRIALS
    # What `optuna-dashboard ARG` serves: the app for the storage named as its CLI takes it.
    app = optuna_dashboard.wsgi(dashboard_arg)
    status, studies = _get(app, "/api/studies")
    assert status.startswith("200")
    (summary,) = [s for s in studies["study_summaries"] if s["study_name"] == "dash"]
    status, detail = _get(app, f"/api/studies/{summary['study_id']}")
    assert status.startswith("200")
    assert detail["objective_names"] == list(OBJECTIVES)
    assert detail["directions"] == ["minimize"] * len(OBJECTIVES)
    assert len(detail["trials"]) == len(study.trials)
    done = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(done) == completed(study)
    by_number = {t.number: t for t in study.trials}
    for trial in done:
        assert trial["values"] == pytest.approx(by_number[trial["number"]].values)
    assert detail["best_trials"], "a finished multi-objective study has a Pareto front"
