"""The ``Trace`` object: ops table, tensor table and provenance header (docs/trace.md)."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from common.files import write_atomic
from common.trace_format import (
    FORMAT,
    FORMAT_V1,
    MATMUL_DEFAULTS,
    OPS_COLUMNS,
    TENSOR_COLUMNS,
    tensors_path,
)
from workloads.errors import UserError
from workloads.luc.policy import Policy
from workloads.trace.annotate import annotate_ops, annotate_tensors

__all__ = ["FORMAT", "OPS_COLUMNS", "TENSOR_COLUMNS", "Trace", "TraceFormatWarning",
           "policy_summary", "tensors_path"]


class TraceFormatWarning(UserWarning):
    """A trace in an older format: it reads, but lacks what newer traces record."""


def policy_summary(policy: Policy) -> dict[str, Any]:
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

    def with_policy(self, policy: Policy | None, *, label: str | None = None) -> "Trace":
        """The same trace annotated for another compression policy (sparsity, pattern and bits
        of each product, weight bytes in the tensor table), without running torch again.
        Vector rows stay as recorded: none of their operands is a compressed weight."""
        a_bits = int(self.header.get("a_bits", 16))
        lora_bits = int(self.header.get("lora_bits", 16))
        dense_bits = int(self.header.get("dense_bits", 16))
        ops = annotate_ops(self.ops, policy, a_bits=a_bits, dense_bits=dense_bits, lora_bits=lora_bits)
        tensors = annotate_tensors(self.tensors, policy, dense_bits=dense_bits)
        header = dict(self.header)
        header["policy"] = label if label is not None else ("inline" if policy is not None else None)
        header["policy_summary"] = policy_summary(policy) if policy is not None else None
        return replace(self, ops=ops[list(OPS_COLUMNS)], tensors=tensors[list(TENSOR_COLUMNS)], header=header)

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
        """Sum of the tensor table (docs/trace.md: all listed tensors are live at the peak)."""
        return int(self.tensors["bytes"].sum())

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
    def load(cls, path: str | Path) -> "Trace":
        """Read a trace written by :meth:`save` (or any file following docs/trace.md). A
        format-1 trace reads as products only, with a warning that its vector work is missing."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"trace file '{path}' not found")
        with path.open() as fh:
            first = fh.readline().strip()
        if not first.startswith("#"):
            raise UserError(f"{path}: first line must be '# {{json header}}' (see docs/trace.md)")
        try:
            header = json.loads(first[1:])
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: header is not valid JSON ({exc.msg})") from None
        ops = pd.read_csv(path, comment="#")
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
        ops["vector_class"] = ops["vector_class"].fillna("").astype(str)
        tpath = tensors_path(path)
        tensors = pd.read_csv(tpath) if tpath.is_file() else pd.DataFrame(columns=list(TENSOR_COLUMNS))
        return cls(ops, tensors, header)


def _write_atomically(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))
