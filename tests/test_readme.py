"""Every ``python -m`` command in README.md (up to its Results section): each parses with its tool's own parser exactly as
written, and the tour's and the commands table's run as written on the tiny model (``--model``
set to ``tiny`` is the only change), in a scratch folder that holds the repository's
``hwconfigs/`` and ``tests/data/`` as the README's relative paths expect."""
from __future__ import annotations

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Tools whose parser lives in another module than the one ``-m`` runs.
PARSERS = {"workloads.luc": "workloads.luc.cli", "workloads.trace": "workloads.trace.__main__",
           "workloads.exits": "workloads.exits.__main__"}
WITH_MODEL = ("workloads.", "dse.")  # tools that take --model
# Commands that need what a test machine lacks, or hours: parsed only. Each reason says where
# the same code runs on the tiny model instead.
PARSE_ONLY = {
    "postgresql://": "a PostgreSQL server on dbhost (tests/test_dse_search.py starts one on loopback)",
    "tcp://HOST": "a Dask cluster at HOST (tests/test_sim_sweep_dask.py uses one on loopback)",
    "dse.reproduce": "an hour on the real model; its windows exceed the tiny model (tests/test_dse_reproduce.py)",
}
# Long on the tiny model too (100 to 400 trials): run with -m slow.
SLOW = ("python -m dse.search", "python -m dse.compare")


def readme_commands() -> list[str]:
    """Every ``python -m`` command of the README, whitespace-normalized, in order, once each:
    inline code spans (also those broken over two lines) and lines of ``sh`` blocks (with their
    backslash continuations joined and comments dropped)."""
    text = README.read_text()
    # The Results section quotes the commands of docs/results pages (each page names its own);
    # the README's commands are those before it.
    text = text.split("\n## Results\n")[0]
    found: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line.startswith("python -m "):
                found.append(line)
    found += [span for span in re.findall(r"`(python -m [^`]+)`", text) if not re.search(r"-m [A-Z]", span)]
    return list(dict.fromkeys(" ".join(c.split()) for c in found))


COMMANDS = readme_commands()


def kind(command: str) -> str:
    if any(key in command for key in PARSE_ONLY):
        return "parse"
    if command.startswith(SLOW):
        return "slow"
    return "run"


def argv(command: str) -> tuple[str, list[str]]:
    """(module, arguments) of a README command, with ``--model tiny``."""
    words = shlex.split(command)
    assert words[:2] == ["python", "-m"], command
    module, args = words[2], words[3:]
    if module.startswith(WITH_MODEL):
        if "--model" in args:
            args[args.index("--model") + 1] = "tiny"
        else:
            args += ["--model", "tiny"]
    return module, args


def test_the_readme_has_the_commands_it_promises():
    modules = {argv(c)[0] for c in COMMANDS}
    assert {"workloads.luc", "workloads.tune", "workloads.trace", "sim.run", "dse.search"} <= modules
    assert not [c for c in COMMANDS if "..." in c], "a README command is written with a literal ..."


@pytest.mark.parametrize("command", COMMANDS)
def test_every_readme_command_parses(command):
    module, _ = argv(command)
    parser = importlib.import_module(PARSERS.get(module, module)).build_parser()
    parser.parse_args(shlex.split(command)[3:])  # exactly as written; a bad flag exits here


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder laid out like the repository for the README's relative paths, and an
    environment with a private user cache."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "hwconfigs").symlink_to(ROOT / "hwconfigs")
    (folder / "tests").mkdir()
    (folder / "tests" / "data").symlink_to(ROOT / "tests" / "data")
    env = dict(os.environ, TQDM_DISABLE="1", EDGELLM_CACHE=str(folder / ".cache"))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return folder, env


def run(command: str, folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    module, args = argv(command)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=3600)


@pytest.mark.slow  # 641 s on 2 loaded cores (190 CPU-s) before its first failure: run with -m slow
def test_readme_commands_run_on_the_tiny_model(scratch):
    """In README order, so that each finds the files the ones before it wrote (policy.json,
    trace.csv); the sweep's a.csv and b.csv are copies of the tour's trace."""
    folder, env = scratch
    order = sorted((c for c in COMMANDS if kind(c) == "run"),
                   key=lambda c: (not c.startswith("python -m workloads."), "sim.sweep" in c))
    for command in order:
        if "a.csv b.csv" in command:
            for name in ("a", "b"):
                (folder / f"{name}.csv").write_bytes((folder / "trace.csv").read_bytes())
                (folder / f"{name}.tensors.csv").write_bytes((folder / "trace.tensors.csv").read_bytes())
        res = run(command, folder, env)
        assert res.returncode == 0, f"{command}\n{res.stderr[-2000:]}"
        assert "Traceback" not in res.stderr, command
    assert (folder / "policy.json").is_file() and (folder / "trace.csv").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in COMMANDS if kind(c) == "slow"])
def test_slow_readme_commands_run_on_the_tiny_model(scratch, command):
    folder, env = scratch
    res = run(command, folder, env)
    assert res.returncode == 0, f"{command}\n{res.stderr[-2000:]}"
