"""Bad input to ``python -m dse.search``: storage URLs, flags, hardware, model paths.

Each case runs the real ``main`` in this process and must end in one ``error: ...`` line (or
argparse's usage error), exit code 2, nothing on stdout, and no output folder left behind. Counts go to ``$EDGELLM_RELIABILITY_REPORT`` (tests/test_reliability_report.py).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dse import search as search_cli
from test_reliability_report import Tally

TALLY = Tally(Path(__file__).stem)
FAST = ["--model", "tiny", "--trials", "2", "--remeasure", "0"]


@pytest.fixture(scope="module", autouse=True)
def _reliability_report() -> Iterator[None]:
    yield
    TALLY.flush()


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = search_cli.main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def check_refused(code: int, out: str, err: str, needle: str = "") -> None:
    assert "Traceback" not in err, err
    assert code == 2 and out == "", (code, out, err)
    last = err.rstrip("\n").splitlines()[-1]
    assert last.startswith(("error: ", "python -m dse.search: error: ")), err
    if not last.startswith("python -m dse.search"):  # the tool's own errors are exactly one line
        assert err.count("\n") == 1, err
    assert needle in err, (needle, err)


STORAGES = {
    "mongodb://host/db": "not supported",
    "": "not supported",
    "sqlite:/relative.db": "not supported",
    "http://example.org/study": "not supported",
    "postgresql://nobody@127.0.0.1:1/x": "cannot open",
    "mysql://nobody@127.0.0.1:1/x": "storage",
    "journal:/proc/no/such/dir/study.log": "storage",
    "sqlite:////proc/no/such/dir/study.db": "storage",
    "journal:": "storage",
    "sqlite:///": "names no database file",
    "journal:NOTJOURNAL": "not an Optuna journal",
}


@pytest.mark.parametrize("url", sorted(STORAGES))
def test_bad_storage_urls(capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str) -> None:
    given = url
    if url == "journal:NOTJOURNAL":  # an existing file that is not a journal (here: binary bytes)
        (tmp_path / "not-a-journal.log").write_bytes(b"\x80\x81 not json\n")
        given = f"journal:{tmp_path}/not-a-journal.log"
    code, out, err = run(capsys, [*FAST, "--storage", given, "--out", str(tmp_path / "out")])
    check_refused(code, out, err, STORAGES[url])
    assert not (tmp_path / "out").exists()
    TALLY.add("dse.search --storage: bad URLs")


FLAGS = {
    "--trials 0": (["--trials", "0"], "--trials"),
    "--trials -5": (["--trials", "-5"], "--trials"),
    "--trials x": (["--trials", "x"], "--trials"),
    "--sampler grid": (["--sampler", "grid"], "--sampler"),
    "--max-sparsity 1.5": (["--max-sparsity", "1.5"], "sparsity"),
    "--max-sparsity -0.1": (["--max-sparsity", "-0.1"], "sparsity"),
    "--workers 0": (["--workers", "0"], "--workers"),
    "--remeasure -1": (["--remeasure", "-1"], "--remeasure"),
    "--tune-steps 0": (["--tune-steps", "0"], "--tune-steps"),
    "--hw missing": (["--hw", "no/such.yaml"], "not found"),
    "--set unknown key": (["--set", "pe.nonsense=3"], "pe.nonsense"),
    "--set negative bandwidth": (["--set", "dram.bandwidth_gbps=-1"], "bandwidth"),
    "--set without =": (["--set", "dram.bandwidth_gbps"], "key=value"),
    "--model missing folder": (["--model", "/no/such/model"], "model"),
    "--data missing file": (["--data", "/no/such/text.txt"], "data"),
    "--model a file": (["--model", __file__], "is a file, not a model folder"),
    "--data not text": (["--data", str(Path(__file__).parent / "data" / "README.md")], "unsupported file type"),
}


@pytest.mark.parametrize("case", sorted(FLAGS))
def test_bad_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path, case: str) -> None:
    extra, needle = FLAGS[case]
    code, out, err = run(capsys, [*FAST, "--storage", f"sqlite:///{tmp_path}/s.db", "--out", str(tmp_path / "out"),
                                  *extra])
    check_refused(code, out, err, needle)
    assert not (tmp_path / "out").exists()
    # Every check that can refuse runs before anything is written (issue 20): no study file either.
    assert not (tmp_path / "s.db").exists(), "a refused run left a study file"
    TALLY.add("dse.search: bad flags, hardware, model and data paths")


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=st.one_of(st.text(max_size=30), st.builds(lambda s, t: s + t, st.sampled_from(
    # No postgresql:// prefixes: a random host name would be a DNS lookup (explicit cases above).
    ["sqlite://", "journal", "mysql+x://", "file:", "http://", "oracle://"]), st.text(max_size=12))))
def test_fuzzed_storage_urls_fail_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, url: str) -> None:
    if url.startswith(("sqlite:///", "journal:")):
        return  # these name local files; a random one may be valid and would create it
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, [*FAST, "--storage", url, "--out", str(out_dir)])
    check_refused(code, out, err, "storage")
    assert not out_dir.exists()
    TALLY.add("dse.search --storage: fuzzed URLs", "hypothesis")


def test_table_creation_race_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes opening a fresh SQLite study at once (a search starting while a notebook or
    a test polls it): the one that loses the race to create the tables gets SQLite's unique-key
    error, and must retry instead of ending the search."""
    from sqlalchemy.exc import IntegrityError

    from dse import storage

    real, calls = storage.RDBStorage, []

    def loses_once(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO alembic_version", {}, Exception("UNIQUE constraint failed: "
                                                                              "alembic_version.version_num"))
        return real(*args, **kwargs)

    monkeypatch.setattr(storage, "RDBStorage", loses_once)
    monkeypatch.setattr(storage.time, "sleep", lambda s: None)
    assert isinstance(storage.open_storage(f"sqlite:///{tmp_path}/study.db"), real)
    assert len(calls) == 2
