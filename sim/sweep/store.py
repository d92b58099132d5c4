"""Durable storage of sweep points: an append-only JSONL log plus atomically rewritten tables.

Every finished point is one JSON line in ``points.jsonl``, flushed and fsynced before the
sweep moves on, so a Ctrl-C or a SIGKILL loses at most the points that were still running.
A kill in the middle of a write leaves a truncated last line; the reader skips it and the
writer starts its next record on a fresh line. Tables (CSV, Parquet) are derived views,
always written through a temporary file and ``os.replace``: readers never see half a table.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

import pandas as pd

from common.files import write_atomic
from sim.errors import SweepError

__all__ = ["PointStore", "has_pyarrow", "write_tables"]


def has_pyarrow() -> bool:
    """Whether Parquet output is possible (pyarrow importable)."""
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


class PointStore:
    """The ``points.jsonl`` log of one output folder, held under an exclusive lock.

    Use as a context manager; a second sweep on the same folder fails with ``SweepError``
    instead of interleaving its lines with ours.
    """

    def __init__(self, folder: Path, name: str = "points.jsonl") -> None:
        self.folder = folder
        self.path = folder / name
        self._lock_path = folder / ".sweep.lock"
        self._lock: IO[str] | None = None
        self._fh: IO[str] | None = None
        self.skipped_lines = 0  # unreadable lines seen by the last load()

    def __enter__(self) -> PointStore:
        self._lock = self._lock_path.open("w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise SweepError(f"{self.folder}: another sweep is writing to this folder "
                             f"(wait for it or choose another --out)") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Records by point key (a later line for the same key wins)."""
        records: dict[str, dict[str, Any]] = {}
        self.skipped_lines = 0
        if not self.path.is_file():
            return records
        with self.path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.skipped_lines += 1  # a line cut short by a kill mid-write
                    continue
                if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                    records[rec["key"]] = rec
                else:
                    self.skipped_lines += 1
        return records

    def _open(self) -> IO[str]:
        if self._fh is None:
            needs_newline = False
            if self.path.is_file() and self.path.stat().st_size > 0:
                with self.path.open("rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    needs_newline = fh.read(1) != b"\n"
            self._fh = self.path.open("a", encoding="utf-8")
            if needs_newline:
                self._fh.write("\n")
        return self._fh

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records durably (one line each, flushed and fsynced before returning)."""
        fh = self._open()
        text = "".join(json.dumps(dict(r), sort_keys=True, default=_json_default) + "\n"
                       for r in records)
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _json_default(value: Any) -> Any:
    """numpy scalars and paths in records become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _parquet_ready(table: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing value types (a grid of ``8,x``) as strings: Parquet needs one type."""
    out = table.copy()
    for col in out.columns:
        if out[col].dtype == object:
            kinds = {type(v) for v in out[col] if v is not None and v == v}
            if len(kinds) > 1 and not kinds <= {int, float}:
                out[col] = [None if v is None or v != v else str(v) for v in out[col]]
    return out


def write_tables(table: pd.DataFrame, csv_path: Path, parquet_path: Path | None) -> None:
    """Write the sweep table as CSV and, if asked, Parquet; both atomically."""
    write_atomic(csv_path, lambda tmp: table.to_csv(tmp, index=False))
    if parquet_path is not None:
        ready = _parquet_ready(table)
        write_atomic(parquet_path, lambda tmp: ready.to_parquet(tmp, index=False))

