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
