"""Shared plumbing of the ``python -m sim.*`` commands: one-line errors, safe output files."""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TextIO, TypeVar, cast

from sim.errors import SimError, SimWarning

__all__ = ["CONFIG_EPILOG", "OneLineParser", "check_output", "cli_main", "deferred_warnings",
           "one_line", "positive_int", "print_warnings", "write_atomic"]

SET_HELP = ("override a hardware field before validation, dotted path = YAML value, e.g. "
            "--set pe.rows=16 --set dram.bandwidth_gbps=8 (repeatable; default: none)")


CONFIG_EPILOG = (
    "hardware keys for --set (units): pe.rows, pe.cols (PEs), pe.macs_per_pe_per_cycle, "
    "pe.accum_bits (bits), clock_mhz (MHz), precision.model (scalable|bit_serial|fixed), "
    "precision.base_bits, precision.min_bits, precision.operands (weight|both), "
    "sparsity.support (none|nm|unstructured), sparsity.nm_patterns, sparsity.efficiency "
    "(0..1), sparsity.metadata_bits (bits per non-zero), sparsity.compressed_storage, "
    "sram.input_kib, sram.weight_kib, sram.output_kib or sram.unified_kib (KiB), sram.banks, "
    "sram.bank_width_bits, sram.double_buffering, dram.bandwidth_gbps (GB/s), "
    "dram.capacity_gib or dram.capacity_mib, dram.energy_pj_per_bit, energy.mac_pj (pJ per "
    "MAC at base_bits), energy.sram_pj_per_byte or energy.sram_pj_per_bit, energy.static_mw "
    "(mW), area.pe_um2 (um^2 per PE), area.sram_um2_per_kib (um^2 per KiB); the optional "
    "vector unit: vector.lanes (default: pe.cols), vector.elements_per_cycle.add, "
    "vector.elements_per_cycle.exp, vector.elements_per_cycle.rsqrt, "
    "vector.elements_per_cycle.reduce, vector.elements_per_cycle.move (elements per lane per "
    "cycle; default 1, 0.25, 0.25, 1, 1), vector.pj_per_element.add, vector.pj_per_element.exp, "
    "vector.pj_per_element.rsqrt, vector.pj_per_element.reduce, vector.pj_per_element.move "
    "(pJ per element, all or none; default 0.27, 2, 2, 0.27, 0.27 x energy.mac_pj), "
    "vector.fusion (none|elementwise; default none). "
    "Use KEY=null to drop a key (e.g. to switch capacity_gib to capacity_mib). "
    "User errors print one line 'error: ...' and exit with code 2.")


MainFunc = TypeVar("MainFunc", bound=Callable[..., int])


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


def one_line(text: object) -> str:
    """``text`` on one line: line breaks (e.g. inside a user's file name) are escaped."""
    return str(text).replace("\r", "\\r").replace("\n", "\\n")


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


@contextlib.contextmanager
def deferred_warnings() -> Iterator[list[str]]:
    """Collect the simulator's warnings (``SimWarning``) raised inside the block.

    Yields the list they are appended to (each message once, in order); other warnings go
    through Python's usual display. A command prints the list with ``print_warnings`` after it
    succeeded, so a run that fails prints its one-line error alone.
    """
    messages: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", SimWarning)  # every trace read once, dedupe here
        show = warnings.showwarning

        def collect(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
            if issubclass(category, SimWarning):
                if str(message) not in messages:
                    messages.append(str(message))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = collect
        yield messages


def print_warnings(messages: list[str]) -> None:
    """Each collected warning as one line ``warning: ...`` on stderr."""
    for message in messages:
        print(f"warning: {one_line(message)}", file=sys.stderr)


def cli_main(func: MainFunc) -> MainFunc:
    """Turn a ``SimError`` (or an unwritable output path) into ``error: ...`` and exit 2;
    after a successful run, print the simulator's warnings as ``warning: ...`` lines."""

    @functools.wraps(func)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            with deferred_warnings() as messages:
                code = func(argv)
        except SimError as exc:
            print(f"error: {one_line(exc)}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"error: {one_line(where)}{one_line(exc.strerror or exc)}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        print_warnings(messages)
        return code

    return cast(MainFunc, wrapper)


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """Write a file through a temporary sibling and rename it, so a failure leaves nothing."""
    path = check_output(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    os.close(fd)
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp leaves 0600; an output reads like any other file
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
