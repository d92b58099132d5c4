"""Output files of the search are written atomically: a kill leaves the old file or the new one.

The kill test is real: a child process rewrites a large CSV and a JSON file in a loop and is
SIGKILLed at random moments; every time, both files must parse and be internally consistent
(one version only, all rows), and a temp file left by the kill is hidden (a dot name).
"""
from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from dse import io
from test_reliability_report import Tally

TALLY = Tally(Path(__file__).stem)
ROWS = 20_000

CHILD = f"""
import sys, itertools
import pandas as pd
from dse import io
out = sys.argv[1]
for version in itertools.count(1):
    df = pd.DataFrame({{"version": [version] * {ROWS}, "row": range({ROWS})}})
    io.write_csv(out + "/trials.csv", df)
    io.write_json(out + "/pareto.json", {{"version": version, "rows": list(range({ROWS // 10}))}})
    print(version, flush=True)
"""


@pytest.fixture(scope="module", autouse=True)
def _reliability_report():
    yield
    TALLY.flush()


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "pareto.csv"
    io.write_csv(path, pd.DataFrame({"a": [1, 2]}))

    class Boom(RuntimeError):
        pass

    def half_then_fail(tmp: Path) -> None:
        tmp.write_text("a\n1\n")
        raise Boom

    with pytest.raises(Boom):
        io._atomic(path, half_then_fail)
    assert pd.read_csv(path)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["pareto.csv"]


def test_sigkill_during_writes_never_leaves_half_a_file(tmp_path: Path, cli_env: dict) -> None:
    rng = random.Random(0)
    for attempt in range(8):
        out = tmp_path / f"run{attempt}"
        out.mkdir()
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], env=cli_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # at least one complete version exists
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        df = pd.read_csv(out / "trials.csv")
        assert len(df) == ROWS and df["version"].nunique() == 1 and df["row"].tolist() == list(range(ROWS))
        doc = json.loads((out / "pareto.json").read_text())
        assert doc["rows"] == list(range(ROWS // 10))
        # A temp file may survive the kill, but never under an output's name (it starts with ".").
        assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {"trials.csv", "pareto.json"}
        TALLY.add("search outputs: SIGKILL while writing trials.csv / pareto.json", kind="fault")
