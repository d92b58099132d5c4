"""The names of the trace format (docs/trace.md is the contract; this is its one copy in code).

``workloads`` writes traces with these columns and ``sim`` reads them; both import them from
here, so the two sides agree without importing each other.

Example:
    >>> tensors_path("runs/step.csv").name
    'step.tensors.csv'
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "FORMATS", "FORMAT_V1", "HEADER_KEYS", "KINDS", "LIFETIME_COLUMNS",
           "MATMUL_DEFAULTS", "MATMUL_PHASES", "OPS_COLUMNS", "OPTIONAL_OPS_COLUMNS", "PHASES",
           "TEMPORARY_KINDS", "TENSOR_COLUMNS", "TENSOR_KINDS", "V1_COLUMNS", "VECTOR_CLASSES",
           "VECTOR_COLUMNS", "tensors_path"]

FORMAT = "edgellm-trace/2"
FORMAT_V1 = "edgellm-trace/1"
FORMATS = {FORMAT_V1: 1, FORMAT: 2}
HEADER_KEYS = ("format", "model", "method", "seq_len", "batch")
V1_COLUMNS = ("layer", "module", "phase", "M", "N", "K", "weight_sparsity", "sparsity_pattern",
              "w_bits", "a_bits", "trainable", "count")
# Format 2: matrix products and non-matrix (vector) work in one table.
VECTOR_COLUMNS = ("kind", "vector_class", "elements", "read_bytes", "write_bytes", "fusable")
OPS_COLUMNS = V1_COLUMNS + VECTOR_COLUMNS
KINDS = ("matmul", "vector")
VECTOR_CLASSES = ("add", "exp", "rsqrt", "reduce", "move")
MATMUL_PHASES = ("fwd", "bwd_input", "bwd_weight")
PHASES = (*MATMUL_PHASES, "update")  # update: optimizer step and clipping, vector rows only
# The format-2 columns of a product (and of every row of a format-1 trace).
MATMUL_DEFAULTS: dict[str, Any] = {"kind": "matmul", "vector_class": "", "elements": 0,
                                   "read_bytes": 0, "write_bytes": 0, "fusable": False}
# Columns a reader fills with the default when a table lacks them (older traces, hand-made
# tables): ``weight_bytes``, the bytes of operand B as stored when B is a weight (the packed
# tensor: values, sparse index, quantization-group scales and zeros); 0 when B is an activation
# or its bytes are not given (then ``sim`` stores B by its own hardware model).
OPTIONAL_OPS_COLUMNS: dict[str, Any] = {"weight_bytes": 0}
TENSOR_COLUMNS = ("name", "kind", "layer", "numel", "bits", "bytes")  # required
# When each tensor lives (ops-table rows, inclusive); a table without them: the whole step.
LIFETIME_COLUMNS = ("first_op", "last_op")
TENSOR_KINDS = ("weight", "lora_weight", "activation", "gradient", "optimizer", "kv_cache",
                "activation_grad", "temporary")
# Storages the step made and dropped that are neither saved activations nor gradients of weights.
TEMPORARY_KINDS = ("temporary", "activation_grad")


def tensors_path(ops_path: str | Path) -> Path:
    """``NAME.tensors.csv`` beside ``NAME.csv`` (the tensor table of a trace)."""
    path = Path(ops_path)
    stem = path.name[:-4] if path.name.endswith(".csv") else path.name
    return path.with_name(f"{stem}.tensors.csv")
