"""Reading and validating traces (the contract in docs/trace.md).

A trace is ``NAME.csv`` (ops, first line ``# {json header}``) and optionally
``NAME.tensors.csv`` (tensors live during the step). Every problem a user can cause ends in a
``TraceError`` whose one-line message names the file, the row (1-based, as in the data rows)
and the column.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import TraceError

__all__ = ["OPS_COLUMNS", "PHASES", "TENSOR_COLUMNS", "TENSOR_KINDS", "Trace", "read_trace",
           "tensors_path_for", "validate_ops", "validate_tensors"]

FORMAT = "edgellm-trace/1"
HEADER_KEYS = ("format", "model", "method", "seq_len", "batch")
OPS_COLUMNS = ("layer", "module", "phase", "M", "N", "K", "weight_sparsity", "sparsity_pattern",
               "w_bits", "a_bits", "trainable", "count")
PHASES = ("fwd", "bwd_input", "bwd_weight")
TENSOR_COLUMNS = ("name", "kind", "layer", "numel", "bits", "bytes")
TENSOR_KINDS = ("weight", "lora_weight", "activation", "gradient", "optimizer", "kv_cache")
_PATTERN = re.compile(r"^(dense|unstructured|(\d+):(\d+))$")
# Largest integer a cell may hold: float64 (which the columns are parsed through) is exact up
# to 2**53, and an int64 cast of anything beyond 2**63 silently wraps to a negative number.
MAX_INT = 2**53


@dataclass(frozen=True)
class Trace:
    """A validated trace: provenance header, ops table and (optional) tensor table."""

    ops: pd.DataFrame
    header: dict[str, Any] = field(default_factory=dict)
    tensors: pd.DataFrame | None = None
    path: Path | None = None


def tensors_path_for(ops_path: Path) -> Path:
    """``NAME.tensors.csv`` next to ``NAME.csv``."""
    name = ops_path.name[:-4] if ops_path.name.endswith(".csv") else ops_path.name
    return ops_path.with_name(f"{name}.tensors.csv")


def _where(source: str, idx: int) -> str:
    return f"{source}: row {idx + 1}"


def _show(value: Any) -> str:
    """A cell value as the user typed it (numpy scalars without their type wrapper)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_INT:
        value = int(value)
    return repr(value)


def _int_column(df: pd.DataFrame, col: str, source: str, lo: int | None = None,
                hi: int | None = None, what: str = "") -> np.ndarray:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values != np.round(values))
    if lo is not None:
        bad |= values < lo
    if hi is not None:
        bad |= values > hi
    huge = np.abs(values) > MAX_INT
    if (bad | huge).any():
        i = int(np.flatnonzero(bad | huge)[0])
        limit = "" if bad[i] else " and at most 2**53"
        raise TraceError(f"{_where(source, i)}: column {col} must be {what}{limit} "
                         f"(got {_show(df[col].iloc[i])})")
    return values.astype(np.int64)


def _bool_column(df: pd.DataFrame, col: str, source: str) -> np.ndarray:
    mapping = {"true": True, "false": False, "1": True, "0": False, "1.0": True, "0.0": False}
    text = df[col].astype(str).str.strip().str.lower()
    bad = ~text.isin(list(mapping))
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceError(f"{_where(source, i)}: column {col} must be true or false "
                         f"(got {_show(df[col].iloc[i])})")
    return text.map(mapping).to_numpy(dtype=bool)


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise TraceError(f"{source}: missing column(s) {', '.join(missing)} "
                         f"(see docs/trace.md)")


def validate_ops(df: pd.DataFrame, source: str = "<ops>") -> pd.DataFrame:
    """Check and normalize an ops table; returns a new DataFrame with clean dtypes.

    Raises:
        TraceError: a missing column or an out-of-range value (one line naming row and column).
    """
    _require_columns(df, OPS_COLUMNS, source)
    if df.empty:
        raise TraceError(f"{source}: the ops table has no rows")
    out = df.copy()
    out["layer"] = _int_column(df, "layer", source, lo=-1, what="an integer >= -1")
    for col in ("M", "N", "K"):
        out[col] = _int_column(df, col, source, lo=1, what="an integer > 0")
    for col in ("w_bits", "a_bits"):
        out[col] = _int_column(df, col, source, lo=1, hi=32, what="an integer in 1..32")
    out["count"] = _int_column(df, "count", source, lo=1, what="an integer >= 1")
    out["trainable"] = _bool_column(df, "trainable", source)

    sparsity = pd.to_numeric(df["weight_sparsity"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(sparsity) | (sparsity < 0) | (sparsity >= 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(f"{_where(source, i)}: column weight_sparsity must be in [0, 1) "
                         f"(got {_show(df['weight_sparsity'].iloc[i])})")
    out["weight_sparsity"] = sparsity

    out["module"] = df["module"].astype(str).str.strip()
    empty = (out["module"] == "") | df["module"].isna()
    if empty.any():
        raise TraceError(f"{_where(source, int(np.flatnonzero(empty.to_numpy())[0]))}: "
                         f"column module is empty")
    out["phase"] = df["phase"].astype(str).str.strip()
    bad_phase = ~out["phase"].isin(PHASES)
    if bad_phase.any():
        i = int(np.flatnonzero(bad_phase.to_numpy())[0])
        raise TraceError(f"{_where(source, i)}: column phase must be one of "
                         f"{', '.join(PHASES)} (got {_show(df['phase'].iloc[i])})")

    # pandas' string dtype keeps a missing cell missing through astype(str): make it "".
    patterns = df["sparsity_pattern"].fillna("").astype(str).str.strip().str.lower()
    for i, pattern in enumerate(patterns):
        match = _PATTERN.match(pattern)
        if match is None or (match.group(2) and not 0 < int(match.group(2)) < int(match.group(3))):
            raise TraceError(f"{_where(source, i)}: column sparsity_pattern must be dense, "
                             f"unstructured or N:M with 0 < N < M (got {pattern!r})")
        if pattern == "dense" and sparsity[i] > 0:
            raise TraceError(f"{_where(source, i)}: weight_sparsity {sparsity[i]} > 0 needs "
                             f"sparsity_pattern unstructured or N:M (got dense)")
    out["sparsity_pattern"] = patterns.to_numpy()
    return out.reset_index(drop=True)


def validate_tensors(df: pd.DataFrame, source: str = "<tensors>") -> pd.DataFrame:
    """Check and normalize a tensor table (name, kind, layer, numel, bits, bytes)."""
    _require_columns(df, TENSOR_COLUMNS, source)
    out = df.copy()
    out["layer"] = _int_column(df, "layer", source, lo=-1, what="an integer >= -1")
    out["numel"] = _int_column(df, "numel", source, lo=0, what="an integer >= 0")
    out["bits"] = _int_column(df, "bits", source, lo=1, hi=64, what="an integer in 1..64")
    out["bytes"] = _int_column(df, "bytes", source, lo=0, what="an integer >= 0")
    out["kind"] = df["kind"].astype(str).str.strip()
    bad = ~out["kind"].isin(TENSOR_KINDS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceError(f"{_where(source, i)}: column kind must be one of "
                         f"{', '.join(TENSOR_KINDS)} (got {_show(df['kind'].iloc[i])})")
    return out.reset_index(drop=True)


def _read_header(path: Path) -> dict[str, Any]:
    try:
        # utf-8-sig: a byte-order mark (spreadsheet exports) is not part of the '#'.
        with path.open(encoding="utf-8-sig") as fh:
            first = fh.readline().strip()
    except UnicodeDecodeError as exc:
        raise TraceError(f"{path}: not a UTF-8 text file (byte {exc.start}); expected a "
                         f"trace CSV (docs/trace.md)") from None
    if not first.startswith("#"):
        raise TraceError(f"{path}: first line must be '# {{json header}}' "
                         f"(format {FORMAT}, see docs/trace.md)")
    try:
        header = json.loads(first[1:].strip())
    except json.JSONDecodeError as exc:
        raise TraceError(f"{path}: header line is not valid JSON ({exc.msg})") from None
    if not isinstance(header, dict):
        raise TraceError(f"{path}: header must be a JSON object")
    missing = [k for k in HEADER_KEYS if k not in header]
    if missing:
        raise TraceError(f"{path}: header is missing key(s) {', '.join(missing)}")
    if header["format"] != FORMAT:
        raise TraceError(f"{path}: header format must be {FORMAT!r} (got {header['format']!r})")
    return header


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, comment="#", skipinitialspace=True)
    except FileNotFoundError:
        raise TraceError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: file has no table") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    if not isinstance(df.index, pd.RangeIndex):
        # pandas silently turns the extra leading fields into an index, shifting every column.
        raise TraceError(f"{path}: the rows have more fields than the column header line")
    return df


def read_trace(path: str | Path, tensors: str | Path | None = None) -> Trace:
    """Read ``NAME.csv`` and, if present, ``NAME.tensors.csv`` (or the given tensor file).

    A SCALE-Sim topology CSV (``Layer,M,N,K,`` or convolution rows) is read too, each layer one
    ``fwd`` product (``sim.foreign.scalesim``; header ``defaults`` lists what it assumed).

    Raises:
        TraceError: missing file, bad header, missing columns or bad values (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise TraceError(f"{path}: trace file not found")
    from sim.foreign import foreign_trace  # lazy: sim.foreign builds on this module

    foreign = foreign_trace(path)  # a SCALE-Sim topology CSV, lowered to products
    if foreign is not None:
        header, raw_ops = {"format": FORMAT, **foreign[0]}, foreign[1]
    else:
        header, raw_ops = _read_header(path), _read_csv(path)
    ops = validate_ops(raw_ops, str(path))
    tensor_path = Path(tensors) if tensors is not None else tensors_path_for(path)
    tensor_df = None
    if tensors is not None or tensor_path.is_file():
        if not tensor_path.is_file():
            raise TraceError(f"{tensor_path}: tensor table not found")
        tensor_df = validate_tensors(_read_csv(tensor_path), str(tensor_path))
    return Trace(ops=ops, header=header, tensors=tensor_df, path=path)
