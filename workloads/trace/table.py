"""The ``Trace`` object: ops table, tensor table and provenance header (docs/trace.md)."""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.files import write_atomic
from common.textfile import file_problem, read_text
from common.trace_format import (
    FORMAT,
    FORMAT_V1,
    LIFETIME_COLUMNS,
    MATMUL_DEFAULTS,
    OPS_COLUMNS,
    OPTIONAL_OPS_COLUMNS,
    TEMPORARY_KINDS,
    tensors_path,
)
from common.trace_format import TENSOR_COLUMNS as REQUIRED_TENSOR_COLUMNS
from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.trace.annotate import annotate_ops, annotate_tensors, weight_in_features
from workloads.tuning.lora import LINEAR_MODULES

# What a cached trace was recorded with: format 2, tensor table with lifetimes (first_op, last_op).
# Bump when a recorder change alters what an existing trace would contain. 2.2: the chunked head
# frees each chunk's logits before the next (one chunk fewer live at the head), and products
# carry weight_bytes.
RECORDER_VERSION = "2.2"
TENSOR_COLUMNS = REQUIRED_TENSOR_COLUMNS + LIFETIME_COLUMNS  # what the recorder writes

__all__ = ["FORMAT", "OPS_COLUMNS", "RECORDER_VERSION", "TEMPORARY_KINDS", "TENSOR_COLUMNS", "Trace",
           "TraceFormatWarning", "policy_summary", "tensors_path"]


class TraceFormatWarning(UserWarning):
    """A trace in an older format: it reads, but lacks what newer traces record."""


def policy_summary(policy: Policy) -> dict[str, Any]:
    """The policy's summary for a trace header: pattern, group size, mean sparsity and mean weight
    bits over the layers (unweighted), head bits.

    Raises:
        ZeroDivisionError: a policy without layers.
    """
    layers = list(policy.layers.values())
    return {
        "pattern": policy.pattern,
        "group_size": policy.group_size,
        "mean_sparsity": sum(lp.sparsity for lp in layers) / len(layers),
        "mean_w_bits": sum(lp.w_bits for lp in layers) / len(layers),
        "head_bits": policy.head_bits,
    }


@dataclass(frozen=True)
class Trace:
    """One tuning step (or inference pass) of a real torch run: its matrix products, its
    non-matrix work and its tensors.

    ``ops`` has the columns of docs/trace.md (one row per product or vector operation pass,
    ``count`` repeats, ``kind`` telling them apart);
    ``tensors`` lists what lives in device memory during the step; ``header`` is the
    provenance (``format``, ``model``, ``method``, ``seq_len``, ``batch``, ...).
    """

    ops: pd.DataFrame
    tensors: pd.DataFrame
    header: dict[str, Any] = field(default_factory=dict)

    def with_policy(self, policy: Policy | None, *, label: str | None = None) -> Trace:
        """The same trace annotated for another compression policy (sparsity, pattern and bits
        of each product, weight bytes in the tensor table), without running torch again.
        Vector rows stay as recorded: none of their operands is a compressed weight."""
        a_bits = int(self.header.get("a_bits", 16))
        lora_bits = int(self.header.get("lora_bits", 16))
        dense_bits = int(self.header.get("dense_bits", 16))
        names = {k: self.header[k] for k in ("linear_modules", "head_weights") if self.header.get(k)}  # per architecture
        linear = names.get("linear_modules", LINEAR_MODULES)
        ops = annotate_ops(self.ops, policy, a_bits=a_bits, dense_bits=dense_bits, lora_bits=lora_bits,
                           linear_modules=linear)
        tensors = annotate_tensors(self.tensors, policy, dense_bits=dense_bits, **names,
                                   in_features=weight_in_features(self.ops, linear))
        header = dict(self.header)
        header["policy"] = label if label is not None else ("inline" if policy is not None else None)
        header["policy_summary"] = policy_summary(policy) if policy is not None else None
        return replace(self, ops=ops[[*OPS_COLUMNS, *OPTIONAL_OPS_COLUMNS]], tensors=tensors[list(TENSOR_COLUMNS)],
                       header=header)

    def macs(self, phase: str | None = None) -> int:
        """Multiply-accumulates of the step's products (``M * N * K * count`` summed over
        ``matmul`` rows), optionally of one phase."""
        ops = self.matmuls()
        ops = ops if phase is None else ops[ops["phase"] == phase]
        return int((ops["M"] * ops["N"] * ops["K"] * ops["count"]).sum())

    def matmuls(self) -> pd.DataFrame:
        """The matrix-product rows."""
        return self.ops[self.ops["kind"] == "matmul"]

    def vectors(self) -> pd.DataFrame:
        """The non-matrix (vector) rows."""
        return self.ops[self.ops["kind"] == "vector"]

    def vector_bytes(self, phase: str | None = None) -> int:
        """Bytes the step's vector work reads and writes (``(read + write) * count`` summed),
        optionally of one phase."""
        ops = self.vectors()
        ops = ops if phase is None else ops[ops["phase"] == phase]
        return int(((ops["read_bytes"] + ops["write_bytes"]) * ops["count"]).sum())

    def memory_bytes(self) -> int:
        """Peak bytes live at once: the largest sum of ``bytes`` over the rows whose
        ``[first_op, last_op]`` covers one ops row (docs/trace.md)."""
        if self.tensors.empty:
            return 0
        n = max(len(self.ops), int(self.tensors["last_op"].max()) + 1)
        change = np.zeros(n + 1)
        np.add.at(change, self.tensors["first_op"].to_numpy(dtype=np.int64), self.tensors["bytes"].to_numpy(dtype=float))
        np.add.at(change, self.tensors["last_op"].to_numpy(dtype=np.int64) + 1, -self.tensors["bytes"].to_numpy(dtype=float))
        return int(round(np.cumsum(change)[:n].max()))

    def save(self, path: str | Path) -> Path:
        """Write ``NAME.csv`` (header line + ops) and ``NAME.tensors.csv``, each through a temp
        file and a rename, so a reader never sees half a file. Returns the ops path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ops = self.ops.copy()
        for col in ("trainable", "fusable"):
            ops[col] = ops[col].map({True: "true", False: "false"})
        _write_atomically(tensors_path(path), self.tensors.to_csv(index=False))
        _write_atomically(path, "# " + json.dumps(self.header) + "\n" + ops.to_csv(index=False))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Read a trace written by :meth:`save` (or any file following docs/trace.md). A
        format-1 trace reads as products only, with a warning that its vector work is missing."""
        path = Path(path)
        problem = file_problem(path)
        if problem is not None:
            raise UserError(f"trace file '{path}' {problem}")
        text = read_text(path, what="trace CSV", error=UserError)
        first = text.split("\n", 1)[0].strip()
        if not first.startswith("#"):
            raise UserError(f"{path}: first line must be '# {{json header}}' (see docs/trace.md)")
        try:
            header = json.loads(first[1:])
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: header is not valid JSON ({exc.msg})") from None
        ops = pd.read_csv(io.StringIO(text), comment="#")
        if header.get("format") == FORMAT_V1:
            warnings.warn(f"{path}: trace format 1 has no vector rows: the step's non-matrix work is "
                          f"missing (record it again for format 2)", TraceFormatWarning, stacklevel=2)
            for col, value in MATMUL_DEFAULTS.items():
                ops[col] = value
        elif header.get("format") != FORMAT:
            raise UserError(f"{path}: unknown trace format {header.get('format')!r} (expected {FORMAT!r})")
        missing = [c for c in OPS_COLUMNS if c not in ops.columns]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} (see docs/trace.md)")
        for col in ("trainable", "fusable"):
            ops[col] = ops[col].astype(str).str.lower().isin(["true", "1"])
        for col, value in OPTIONAL_OPS_COLUMNS.items():  # an older trace: not given
            if col not in ops.columns:
                ops[col] = value
        ops["vector_class"] = ops["vector_class"].fillna("").astype(str)
        tpath = tensors_path(path)
        tensors = (pd.read_csv(io.StringIO(read_text(tpath, what="tensor table", error=UserError)))
                   if tpath.is_file() else pd.DataFrame(columns=list(TENSOR_COLUMNS)))
        if "first_op" not in tensors.columns:  # an older table: every tensor lives the whole step
            tensors = tensors.assign(first_op=0, last_op=max(len(ops) - 1, 0))
        return cls(ops, tensors, header)


def _write_atomically(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))
