"""The README's main command from a cold start, timed phase by phase; writes docs/results/cold_start.md.

    python benchmarks/bench_cold_start.py                  # run it (about 20 min here), write the page
    python benchmarks/bench_cold_start.py --render         # re-render from docs/results/cold_start.json
    python benchmarks/bench_cold_start.py --adopt DIR      # render a run made by hand with the same command

The run is `python -m dse.search` on its defaults, with only the cache folder (EDGELLM_CACHE), the
study storage and the output folder pointed at a fresh temporary folder, under GNU `time -v`:
the first model conversion, sensitivity profiling, the tuning table, the traces, 100 trials and
the real measurement of the front all happen in it. The phases are read from the command's own
progress lines (`[k/7] ... done in ...`). Run it on a quiet machine: the page records the CPU
share the command got and the load average at its end.

Target (issue 21): a cold `make run` under 4 min on a quiet 2-core machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dse import io  # noqa: E402

DOC = ROOT / "docs" / "results" / "cold_start.md"
STORE = DOC.with_suffix(".json")
PNG = DOC.with_suffix(".png")
RUNS = ROOT / "runs" / "cold_start"
TARGET_S = 4 * 60
COMMAND = "python -m dse.search --storage sqlite:///$TMP/study.db --out $TMP/out"

_PHASE = re.compile(r"^\[(\d+)/(\d+)\] (.*?) \.\.\.$")
_DONE = re.compile(r"^\s+done in ([\d.]+) (s|min): (.*)$")
_TIME = {"wall": re.compile(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)"),
         "cpu": re.compile(r"Percent of CPU this job got: (\d+)%"),
         "rss": re.compile(r"Maximum resident set size \(kbytes\): (\d+)")}


def run(folder: Path) -> None:
    """Run the cold start into ``folder`` (stdout, stderr with GNU time's report, load average)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    if not Path(gnu_time).is_file():
        raise SystemExit("GNU time is missing: install Debian's 'time' package (apt-get install time)")
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "EDGELLM_CACHE": f"{tmp}/cache"}
        cmd = [gnu_time, "-v", sys.executable, "-m", "dse.search", "--storage", f"sqlite:///{tmp}/study.db",
               "--out", f"{tmp}/out"]
        (folder / "load_before").write_text(f"{os.getloadavg()[0]:.2f}\n")
        with open(folder / "stdout", "w") as out, open(folder / "stderr", "w") as err:
            code = subprocess.call(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)
        (folder / "load_after").write_text(f"{os.getloadavg()[0]:.2f}\n")
    if code != 0:
        raise SystemExit(f"the cold start failed (exit {code}): see {folder / 'stderr'}")


def seconds(value: str, unit: str) -> float:
    """``done in`` durations (``20.9 s``, ``2.4 min``) in seconds."""
    return float(value) * (60 if unit == "min" else 1)


def parse(folder: Path) -> dict:
    """The phases, wall time, CPU share and peak memory of the run kept in ``folder``."""
    lines = [part for line in (folder / "stderr").read_text().splitlines() for part in line.split("\r")]
    phases: list[dict] = []
    for line in lines:
        if m := _PHASE.match(line):
            phases.append({"phase": int(m[1]), "of": int(m[2]), "name": m[3]})
        elif (m := _DONE.match(line)) and phases and "seconds" not in phases[-1]:
            phases[-1].update(seconds=seconds(m[1], m[2]), result=m[3])
    text = "\n".join(lines)
    found = {k: p.search(text) for k, p in _TIME.items()}
    if not all(found.values()) or not phases:
        raise SystemExit(f"{folder / 'stderr'} has no GNU time report or no phase lines: not a run of this bench")
    wall = sum(float(x) * 60**i for i, x in enumerate(reversed(found["wall"][1].split(":"))))

    def read(name: str) -> float | None:
        return float((folder / name).read_text()) if (folder / name).is_file() else None

    return {"phases": phases, "wall_s": wall, "cpu_percent": int(found["cpu"][1]),
            "peak_rss_kib": int(found["rss"][1]), "load_before": read("load_before"), "load_after": read("load_after"),
            "summary": [ln for ln in (folder / "stdout").read_text().splitlines() if not ln.startswith("next:")][:12]}


def plot(result: dict) -> None:
    """Seconds per phase, one bar each (longest at the top), the target as a line for scale."""
    phases = sorted(result["phases"], key=lambda p: p["seconds"])
    fig = Figure(figsize=(8, 3.6))
    ax = fig.add_subplot()
    names = [f"[{p['phase']}] {p['name'].split(':')[0].split(' (')[0][:48]}" for p in phases]
    ax.barh(names, [p["seconds"] / 60 for p in phases], color="tab:blue")
    ax.axvline(TARGET_S / 60, color="tab:red", linestyle="--", label=f"whole-run target ({TARGET_S / 60:.0f} min)")
    ax.set_xlabel("minutes (wall)")
    ax.set_title(f"Cold start of `python -m dse.search`: {result['wall_s'] / 60:.1f} min in all", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(PNG, dpi=120)


def render(result: dict) -> str:
    """The page, worded from ``result``."""
    wall = result["wall_s"]
    verdict = "met" if wall < TARGET_S else "not met"
    rows = [f"| [{p['phase']}/{p['of']}] {p['name']} | {p['seconds'] / 60:.2f} | {p['seconds'] / wall:.0%} | "
            f"{p['result']} |" for p in result["phases"]]
    loads = ", ".join(f"{k.split('_')[1]} {result[k]:.2f}" for k in ("load_before", "load_after")
                      if result.get(k) is not None)
    lines = [
        "# Cold start of the main command", "",
        f"Made by `python benchmarks/bench_cold_start.py` ({result['date']}); "
        "`--render` re-renders this page from cold_start.json.", "",
        f"The command, from an empty cache: `EDGELLM_CACHE=$TMP/cache {COMMAND}` under GNU `time -v`"
        + (f" ({result['how']})" if result.get("how") else "") + ".", "",
        "## Against the target", "",
        "| target | measured | |", "|---|---|---|",
        f"| a cold `make run` under {TARGET_S // 60} min on a quiet 2-core machine (issue 21) | "
        f"{wall / 60:.1f} min ({wall / TARGET_S:.1f}x the target) | {verdict} |", "",
        f"Wall {wall / 60:.1f} min on {result['cpus']} cores; the command got {result['cpu_percent']}% CPU "
        f"(200% is both cores); peak resident memory {result['peak_rss_kib'] / 2**20:.2f} GiB"
        + (f"; 1-minute load average {loads}" if loads else "") + ".", "",
    ]
    if result.get("note"):
        lines += [result["note"], ""]
    lines += ["## Where the time goes", "",
              "| phase | minutes | share | what it did |", "|---|---|---|---|", *rows, "",
              "![phases](cold_start.png)", "",
              "The command's summary:", "", "```", *result["summary"], "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--render", action="store_true", help="re-render the page from docs/results/cold_start.json")
    mode.add_argument("--adopt", type=Path, metavar="DIR",
                      help="render a run of the same command made by hand: DIR holds its stdout and its stderr "
                           "with GNU time -v's report (and optionally load_before, load_after)")
    parser.add_argument("--how", default="", help="how the run was made, for the page (default: none)")
    parser.add_argument("--note", default="", help="a paragraph for the page, e.g. what else ran (default: none)")
    args = parser.parse_args()
    if args.render:
        result = json.loads(STORE.read_text())
    else:
        folder = args.adopt or RUNS / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        if not args.adopt:
            run(folder)
        result = {**parse(folder), "cpus": os.cpu_count(), "how": args.how, "note": args.note,
                  "date": dt.datetime.fromtimestamp((folder / "stderr").stat().st_mtime).strftime("%Y-%m-%d")}
        io.write_json(STORE, result)
    plot(result)
    io.write_text(DOC, render(result))
    print(f"wrote {DOC} ({result['wall_s'] / 60:.1f} min, target {TARGET_S / 60:.0f} min)")


if __name__ == "__main__":
    main()
