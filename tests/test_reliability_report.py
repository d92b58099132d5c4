"""The tally behind ``docs/results/reliability.md``: how many bad inputs the reliability tests
tried (and saw handled as promised), written to JSON when ``EDGELLM_RELIABILITY_REPORT`` names
a file.

The reliability test modules count each input after its assertions passed, so a count is an
input that was *handled*, not merely generated. Each module merges its own section into the
report under a file lock (one section per pytest-xdist worker), and the report's
``categories`` and ``totals`` sum over all sections::

    rm -f runs/reliability.json
    EDGELLM_RELIABILITY_REPORT=runs/reliability.json /work/venv/bin/pytest \\
        tests/test_reliability_sim.py tests/test_reliability_inputs.py tests/test_reliability_policy.py tests/test_reliability_dse.py -q
"""
from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

REPORT_ENV = "EDGELLM_RELIABILITY_REPORT"
FORMAT = "edgellm-reliability/1"
COMMAND = ("rm -f {path} && " + REPORT_ENV + "={path} /work/venv/bin/pytest "
           "tests/test_reliability_sim.py tests/test_reliability_inputs.py tests/test_reliability_policy.py tests/test_reliability_dse.py -q")


class Tally:
    """Counts of inputs tried by one test module: (kind, category, source) -> n.

    ``kind`` is ``bad_input`` (must be refused in one line), ``valid_edge_input`` (unusual but
    valid, must work) or ``determinism`` (a repeated run compared bit for bit); ``source`` is
    ``hypothesis`` (generated, including ``@example`` cases) or ``explicit`` (a listed case).
    """

    def __init__(self, module: str) -> None:
        self.module = module
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, category: str, source: str = "explicit", *, kind: str = "bad_input") -> None:
        """Count one input; call it after the test's assertions on that input passed."""
        self.counts[(kind, category, source)] += 1

    def section(self) -> dict[str, dict[str, dict[str, int]]]:
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (kind, category, source), n in sorted(self.counts.items()):
            cell = out.setdefault(kind, {}).setdefault(category, {})
            cell[source] = cell.get(source, 0) + n
        return out

    def flush(self, path: str | Path | None = None) -> Path | None:
        """Merge this module's section into the report (``$EDGELLM_RELIABILITY_REPORT``)."""
        path = path or os.environ.get(REPORT_ENV)
        if not path:
            return None
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        name = f"{self.module}[{worker}]" if worker else self.module
        with open(path.with_name(f".{path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                old = json.loads(path.read_text()) if path.is_file() else {}
            except json.JSONDecodeError:
                old = {}
            sections = {**old.get("sections", {}), name: self.section()}
            report = build_report(sections, path)
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(json.dumps(report, indent=2) + "\n")
            os.replace(tmp, path)
        return path


def build_report(sections: dict[str, Any], path: Path) -> dict[str, Any]:
    """The whole report: sections as given, categories and totals summed over them."""
    categories: dict[str, dict[str, dict[str, int]]] = {}
    totals: Counter[str] = Counter()
    for section in sections.values():
        for kind, cells in section.items():
            for category, cell in cells.items():
                merged = categories.setdefault(kind, {}).setdefault(category, {})
                for source, n in cell.items():
                    merged[source] = merged.get(source, 0) + n
                    totals[kind] += n
                    totals[f"{kind}.{source}"] += n
    for cells in categories.values():
        for cell in cells.values():
            cell["total"] = sum(cell.values())
    return {"format": FORMAT, "command": COMMAND.format(path=path),
            "fuzz_scale": float(os.environ.get("EDGELLM_FUZZ_SCALE", "1")),
            "totals": dict(sorted(totals.items())), "categories": categories,
            "sections": sections}


def test_tally_merges_sections_and_sums_categories(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    a, b = Tally("mod_a"), Tally("mod_b")
    for _ in range(3):
        a.add("hw config", "hypothesis")
    a.add("hw config")
    b.add("hw config")
    b.add("twice", kind="determinism")
    a.flush(report)
    b.flush(report)
    a.flush(report)  # a module rerun replaces its own section, it does not add to it
    data = json.loads(report.read_text())
    assert data["format"] == FORMAT and set(data["sections"]) == {"mod_a", "mod_b"}
    assert data["categories"]["bad_input"]["hw config"] == {"hypothesis": 3, "explicit": 2,
                                                           "total": 5}
    assert data["totals"] == {"bad_input": 5, "bad_input.explicit": 2,
                              "bad_input.hypothesis": 3, "determinism": 1,
                              "determinism.explicit": 1}
    assert str(report) in data["command"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".r.json.lock", "r.json"]


def test_no_report_without_the_variable(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv(REPORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    tally = Tally("mod")
    tally.add("x")
    assert tally.flush() is None and list(tmp_path.iterdir()) == []
