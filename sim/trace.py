"""Reading and validating traces (the contract in docs/trace.md).

A trace is ``NAME.csv`` (ops, first line ``# {json header}``) and optionally
``NAME.tensors.csv`` (tensors live during the step). Format 2 (``edgellm-trace/2``) has matrix
products (``kind = matmul``) and vector rows (``kind = vector``); format 1 has products only,
is read with every row a product, and raises a ``TraceFormatWarning`` (vector work missing).

Every problem a user can cause ends in a ``TraceError`` whose one-line message names the file,
the row (1-based, as in the data rows) and the column.
"""
from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.textfile import file_problem, read_text
from common.trace_format import (
    FORMAT,
    FORMAT_V1,
    FORMATS,
    HEADER_KEYS,
    KINDS,
    LIFETIME_COLUMNS,
    MATMUL_DEFAULTS,
    MATMUL_PHASES,
    OPS_COLUMNS,
    OPTIONAL_OPS_COLUMNS,
    PHASES,
    TENSOR_COLUMNS,
    TENSOR_KINDS,
    V1_COLUMNS,
    VECTOR_CLASSES,
    VECTOR_COLUMNS,
    tensors_path,
)
from sim.errors import TraceError, TraceFormatWarning

__all__ = ["FORMAT", "FORMATS", "FORMAT_V1", "HEADER_KEYS", "KINDS", "LIFETIME_COLUMNS",
           "MATMUL_DEFAULTS", "MATMUL_PHASES", "OPS_COLUMNS", "OPTIONAL_OPS_COLUMNS", "PHASES",
           "TENSOR_COLUMNS",
           "TENSOR_KINDS", "V1_COLUMNS", "VECTOR_CLASSES", "VECTOR_COLUMNS", "Trace", "read_trace",
           "tensors_path_for", "validate_ops", "validate_tensors"]

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

    @property
    def version(self) -> int:
        """Trace format version from the header (2 when there is none, e.g. a table in code)."""
        return FORMATS.get(str(self.header.get("format", FORMAT)), 2)


def tensors_path_for(ops_path: Path) -> Path:
    """``NAME.tensors.csv`` next to ``NAME.csv`` (``common.trace_format.tensors_path``)."""
    return tensors_path(ops_path)


def _short_repr(value: Any) -> str:
    """A header value for an error message, cut to one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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


def _infer_version(df: pd.DataFrame) -> int:
    """2 when any format-2 column is present (then all are required), else 1."""
    return 2 if any(c in df.columns for c in VECTOR_COLUMNS) else 1


def validate_ops(df: pd.DataFrame, source: str = "<ops>", *, version: int | None = None
                 ) -> pd.DataFrame:
    """Check and normalize an ops table; returns a new DataFrame with clean dtypes.

    ``version`` 1 reads only the format-1 columns and makes every row a product (``kind =
    matmul``, the format-2 columns at their matmul values); 2 requires every column of
    ``OPS_COLUMNS``. ``None`` picks 2 when the table has any format-2 column, else 1. The
    columns of ``OPTIONAL_OPS_COLUMNS`` (``weight_bytes``) are checked when present and take
    their default when absent, in either version.

    Raises:
        TraceError: a missing column or an out-of-range value (one line naming row and column).
    """
    version = _infer_version(df) if version is None else version
    required = OPS_COLUMNS if version >= 2 else V1_COLUMNS
    _require_columns(df, required, source)
    if df.empty:
        raise TraceError(f"{source}: the ops table has no rows")
    out = df.copy()
    if version < 2:
        for col, value in MATMUL_DEFAULTS.items():
            out[col] = value
        kind = np.full(len(df), "matmul", dtype=object)
    else:
        kind = _choice_column(df, "kind", KINDS, source)
        out["kind"] = kind
    is_vector = kind == "vector"
    out["layer"] = _int_column(df, "layer", source, lo=-1, what="an integer >= -1")
    for col in ("M", "N", "K"):
        if version < 2:
            out[col] = _int_column(df, col, source, lo=1, what="an integer > 0")
            continue
        out[col] = _int_column(df, col, source, what="an integer")
        _require_where(out[col].to_numpy() > 0, ~is_vector, df, col, source,
                       "an integer > 0 (got {value}; kind is matmul)")
    for col in ("w_bits", "a_bits"):
        out[col] = _int_column(df, col, source, lo=1, hi=32, what="an integer in 1..32")
    out["count"] = _int_column(df, "count", source, lo=1, what="an integer >= 1")
    out["trainable"] = _bool_column(df, "trainable", source)
    out["weight_sparsity"] = _sparsity_column(df, source)
    out["module"] = _module_column(df, source)
    out["phase"] = _choice_column(df, "phase", PHASES, source)
    _require_where(out["phase"].to_numpy() != "update", ~is_vector, df, "phase", source,
                   f"one of {', '.join(MATMUL_PHASES)} in a matrix product (got {{value}}; "
                   f"update is for vector rows)")
    out["sparsity_pattern"] = _pattern_column(df, out["weight_sparsity"].to_numpy(), source)
    if version >= 2:
        _vector_columns(df, out, is_vector, source)
    _weight_bytes_column(df, out, is_vector, source)
    return out.reset_index(drop=True)


def _weight_bytes_column(df: pd.DataFrame, out: pd.DataFrame, is_vector: np.ndarray,
                         source: str) -> None:
    """``weight_bytes`` (stored bytes of a weight operand B; 0: not given) into ``out``."""
    if "weight_bytes" not in df.columns:
        out["weight_bytes"] = OPTIONAL_OPS_COLUMNS["weight_bytes"]
        return
    out["weight_bytes"] = _int_column(df, "weight_bytes", source, lo=0, what="an integer >= 0")
    _require_where(out["weight_bytes"].to_numpy() == 0, is_vector, df, "weight_bytes", source,
                   "0 when kind is vector (got {value})")


def _require_where(ok: np.ndarray, rows: np.ndarray, df: pd.DataFrame, col: str, source: str,
                   must: str) -> None:
    """Raise for the first of ``rows`` where ``ok`` fails: ``column COL must be MUST``."""
    bad = rows & ~ok
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(f"{_where(source, i)}: column {col} must be "
                         f"{must.format(value=_show(df[col].iloc[i]))}")


def _choice_column(df: pd.DataFrame, col: str, allowed: tuple[str, ...], source: str
                   ) -> np.ndarray:
    values = df[col].fillna("").astype(str).str.strip()
    bad = ~values.isin(allowed)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceError(f"{_where(source, i)}: column {col} must be one of "
                         f"{', '.join(allowed)} (got {_show(df[col].iloc[i])})")
    return values.to_numpy(dtype=object)


def _sparsity_column(df: pd.DataFrame, source: str) -> np.ndarray:
    sparsity = pd.to_numeric(df["weight_sparsity"], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(sparsity) | (sparsity < 0) | (sparsity >= 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(f"{_where(source, i)}: column weight_sparsity must be in [0, 1) "
                         f"(got {_show(df['weight_sparsity'].iloc[i])})")
    return sparsity


def _module_column(df: pd.DataFrame, source: str) -> pd.Series:
    module = df["module"].astype(str).str.strip()
    empty = (module == "") | df["module"].isna()
    if empty.any():
        raise TraceError(f"{_where(source, int(np.flatnonzero(empty.to_numpy())[0]))}: "
                         f"column module is empty")
    return module


def _pattern_column(df: pd.DataFrame, sparsity: np.ndarray, source: str) -> np.ndarray:
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
    return patterns.to_numpy()


def _vector_columns(df: pd.DataFrame, out: pd.DataFrame, is_vector: np.ndarray,
                    source: str) -> None:
    """Format-2 columns and the rules that tie them to ``kind`` (writes into ``out``)."""
    is_matmul = ~is_vector
    for col in ("M", "N", "K"):
        _require_where(out[col].to_numpy() == 0, is_vector, df, col, source,
                       "0 when kind is vector (got {value})")
    _require_where(out["weight_sparsity"].to_numpy() == 0, is_vector, df, "weight_sparsity",
                   source, "0 when kind is vector (got {value})")
    _require_where(out["sparsity_pattern"].to_numpy() == "dense", is_vector, df,
                   "sparsity_pattern", source, "dense when kind is vector (got {value})")
    classes = df["vector_class"].fillna("").astype(str).str.strip().str.lower().to_numpy()
    _require_where(np.isin(classes, VECTOR_CLASSES), is_vector, df, "vector_class", source,
                   f"one of {', '.join(VECTOR_CLASSES)} when kind is vector (got {{value}})")
    _require_where(classes == "", is_matmul, df, "vector_class", source,
                   "empty when kind is matmul (got {value})")
    out["vector_class"] = classes
    for col in ("elements", "read_bytes", "write_bytes"):
        out[col] = _int_column(df, col, source, lo=0, what="an integer >= 0")
        _require_where(out[col].to_numpy() == 0, is_matmul, df, col, source,
                       "0 when kind is matmul (got {value})")
    out["fusable"] = _bool_column(df, "fusable", source)
    _require_where(~out["fusable"].to_numpy(), is_matmul, df, "fusable", source,
                   "false when kind is matmul (got {value})")
    # The product a fusable row reads from must be in this table (and, in a table several
    # traces were concatenated into, then in the same trace).
    after_product = np.maximum.accumulate(np.where(is_matmul, np.arange(len(df)), -1)) >= 0
    _require_where(after_product, out["fusable"].to_numpy(), df, "fusable", source,
                   "false when no matmul row comes before it (got {value}; kind is vector)")


def validate_tensors(df: pd.DataFrame, source: str = "<tensors>") -> pd.DataFrame:
    """Check and normalize a tensor table (name, kind, layer, numel, bits, bytes, and
    optionally first_op <= last_op, ops-table rows)."""
    _require_columns(df, TENSOR_COLUMNS, source)
    out = df.copy()
    present = [c for c in LIFETIME_COLUMNS if c in df.columns]
    if present and len(present) < len(LIFETIME_COLUMNS):
        raise TraceError(f"{source}: columns first_op and last_op go together "
                         f"(only {present[0]} is present)")
    if present:
        out["first_op"] = _int_column(df, "first_op", source, lo=0, what="an integer >= 0")
        out["last_op"] = _int_column(df, "last_op", source, lo=0, what="an integer >= 0")
        _require_where(out["last_op"].to_numpy() >= out["first_op"].to_numpy(),
                       np.ones(len(df), dtype=bool), df, "last_op", source,
                       ">= first_op (got {value})")
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


def _read_header(path: Path, text: str) -> dict[str, Any]:
    first = text.split("\n", 1)[0].strip()
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
    if not isinstance(header["format"], str) or header["format"] not in FORMATS:
        raise TraceError(f"{path}: header format must be {FORMAT_V1!r} or {FORMAT!r} "
                         f"(got {_short_repr(header['format'])})")
    return header


def _decode(path: Path, what: str) -> str:
    """The text of a trace or tensor table (``common.textfile``: BOMs honoured, else strict
    UTF-8, CRLF normalized, binaries refused)."""
    problem = file_problem(path)
    if problem is not None:
        raise TraceError(f"{path}: {what} {problem}")
    try:
        return read_text(path, what=f"{what} (docs/trace.md)", error=TraceError)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_csv(path: Path, text: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(io.StringIO(text), comment="#", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise TraceError(f"{path}: file has no table") from None
    except pd.errors.ParserError as exc:
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
    text = _decode(path, "trace file")
    from sim.foreign import foreign_trace  # lazy: sim.foreign builds on this module

    foreign = foreign_trace(path, text)  # a SCALE-Sim topology CSV, lowered to products
    if foreign is not None:
        header, raw_ops = {"format": FORMAT, **foreign[0]}, foreign[1]
    else:
        header, raw_ops = _read_header(path, text), _read_csv(path, text)
    version = FORMATS[header["format"]]
    ops = validate_ops(raw_ops, str(path), version=version)
    tensor_path = Path(tensors) if tensors is not None else tensors_path_for(path)
    tensor_df = None
    if tensors is not None or tensor_path.is_file():
        tensor_df = validate_tensors(_read_csv(tensor_path, _decode(tensor_path, "tensor table")),
                                     str(tensor_path))
        if "last_op" in tensor_df.columns and (tensor_df["last_op"] >= len(ops)).any():
            i = int(np.flatnonzero((tensor_df["last_op"] >= len(ops)).to_numpy())[0])
            raise TraceError(f"{_where(str(tensor_path), i)}: column last_op must be below the "
                             f"{len(ops)} rows of {path.name} (got {tensor_df['last_op'].iloc[i]})")
    if version < 2:
        # Only once the whole trace is valid: a rejected file gets its one-line error alone.
        warnings.warn(TraceFormatWarning(
            f"{path}: trace format {FORMAT_V1} has no vector rows, so the step's non-matrix "
            f"work (norms, softmax, activations, residuals, loss, optimizer update) is not "
            f"charged; re-record the trace for format {FORMAT} (docs/trace.md)"), stacklevel=2)
    return Trace(ops=ops, header=header, tensors=tensor_df, path=path)
