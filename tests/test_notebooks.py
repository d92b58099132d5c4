"""The notebooks run top to bottom (on tiny inputs) and are saved without stale outputs."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture
def tiny_trace(tmp_path):
    from workloads.models import load_model
    from workloads.trace import record_trace

    path = tmp_path / "tiny_trace.csv"
    record_trace(load_model("tiny"), method="adaptive", window=2, seq_len=64, batch=2).save(path)
    return path


def _run(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    old = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_saved_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name} has stale outputs"


def test_trace_roofline_notebook(tiny_trace):
    nb = _run(ROOT / "notebooks" / "trace_roofline.ipynb", {"EDGELLM_TRACE": str(tiny_trace)})
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, "the roofline image should be displayed"
    assert (tiny_trace.with_suffix(".roofline.png")).is_file()


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_sensitivity_policy_notebook(tmp_path):
    nb = _run(ROOT / "notebooks" / "sensitivity_policy.ipynb",
              {"EDGELLM_MODEL": "tiny", "EDGELLM_CACHE": str(tmp_path / "cache")})
    assert _images(nb) == 2


def test_study_pareto_notebook(tmp_path):
    from dse import search

    env = {"EDGELLM_CACHE": str(tmp_path / "cache")}
    old = dict(os.environ)
    os.environ.update(env)
    try:
        search.main(["--model", "tiny", "--trials", "6", "--tune-steps", "1", "--tune-seq-len", "64",
                     "--eval-windows", "1", "--trace-seq-len", "32", "--trace-batch", "1", "--remeasure", "0",
                     "--storage", f"sqlite:///{tmp_path}/s.db", "--study-name", "nb", "--out", str(tmp_path / "out")])
    finally:
        os.environ.clear()
        os.environ.update(old)
    nb = _run(ROOT / "notebooks" / "study_pareto.ipynb",
              {**env, "EDGELLM_STORAGE": f"sqlite:///{tmp_path}/s.db", "EDGELLM_STUDY": "nb"})
    assert _images(nb) == 2
