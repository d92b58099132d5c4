"""Shared fixtures: the tiny model (fast, random, offline) and the real model (marked)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def tiny():
    from workloads.models import load_model

    return load_model("tiny", seed=0)


@pytest.fixture(scope="session")
def smollm2():
    from workloads.models import load_model

    return load_model("smollm2-135m")


@pytest.fixture
def cli_env():
    """Environment for CLI subprocesses: the repo importable, progress bars off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["TQDM_DISABLE"] = "1"
    return env


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One user cache for the module: sensitivities, traces and the tuning table are measured
    once and reused, as they would be across a user's studies."""
    path = tmp_path_factory.mktemp("edgellm-cache")
    old = os.environ.get("EDGELLM_CACHE")
    os.environ["EDGELLM_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("EDGELLM_CACHE", None)
    else:
        os.environ["EDGELLM_CACHE"] = old
