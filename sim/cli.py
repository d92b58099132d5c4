"""Shared plumbing of the ``python -m sim.*`` commands: one-line errors, safe output files,
and the hardware-key help generated from the config schema.

``one_line``, ``cli_main``, ``deferred_warnings`` and ``print_warnings`` have their one home in
``common.errors``, ``write_atomic`` in ``common.files``; the commands import them from here.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from common import files
from common.errors import cli_main, deferred_warnings, one_line, print_error, print_warnings
from sim.config import config_help
from sim.dataflow import DATAFLOWS
from sim.errors import SimError
from sim.scheduler import MAPPING_OBJECTIVES

__all__ = ["CONFIG_EPILOG", "SET_HELP", "OneLineParser", "add_mapping_flags", "check_output",
           "cli_main",
           "deferred_warnings", "one_line", "positive_int", "print_error", "print_warnings",
           "write_atomic"]

SET_HELP = ("override a hardware field before validation, dotted path = YAML value, e.g. "
            "--set pe.rows=16 --set dram.bandwidth_gbps=8 (repeatable; default: none)")

CONFIG_EPILOG = (
    f"hardware keys for --set: {config_help()}. "
    "Use KEY=null to drop a key (e.g. to switch capacity_gib to capacity_mib). "
    "User errors print one line 'error: ...' and exit with code 2.")


def add_mapping_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--dataflow`` and ``--objective``, the per-op mapping search's two choices."""
    parser.add_argument(
        "--dataflow", choices=("auto", *DATAFLOWS), default=None,
        help="auto: per-op best of ws (weight-), os (output-), is (input-stationary); or one "
             "dataflow for every op; a SCALE-Sim .cfg given as --hw brings its own Dataflow "
             "unless this flag is given (default: auto)")
    parser.add_argument(
        "--objective", choices=MAPPING_OBJECTIVES, default="latency",
        help="what the per-op mapping search minimizes: latency (cycles), energy (joules) or "
             "edp (cycles x joules) (default: latency)")


class OneLineParser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line ``error: ...`` and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected an integer > 0, got {value}")
    return value


def check_output(path: str | Path) -> Path:
    """Refuse an output file path that cannot be written, before any work is done.

    Raises:
        SimError: the path is a folder, or its folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise SimError(f"{path}: is a folder; give a file path")
    if not path.parent.is_dir():
        raise SimError(f"{path}: output folder {path.parent} does not exist")
    return path


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``common.files.write_atomic`` after ``check_output``: a folder or a missing folder is a
    one-line ``SimError`` before anything is written."""
    return files.write_atomic(check_output(path), write)
