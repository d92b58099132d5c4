"""A compression policy: per decoder layer, the pruning sparsity and weight bit-width.

Saved as JSON keyed by layer index::

    {"format": "edgellm-policy/1", "pattern": "unstructured", "prune": "wanda",
     "quant": "rtn", "group_size": 128,
     "layers": {"0": {"sparsity": 0.42, "w_bits": 4}, "1": {...}, ...}}

The tied embedding / LM head is stored at ``head_bits`` (optional, default 16 = not quantized):
symmetric, a float16 scale per ``HEAD_GROUP`` values, the checkpoint's own Q8_0 layout.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workloads.errors import UserError
from workloads.jsonfile import read_json, write_json_atomic

__all__ = ["DENSE_BITS", "FORMAT", "HEAD_GROUP", "LayerPolicy", "PATTERNS", "Policy"]

FORMAT = "edgellm-policy/1"
MIN_BITS, MAX_BITS = 2, 8
DENSE_BITS = 16  # "not quantized": weights stay at the model's float precision
PATTERNS = ("unstructured", "2:4", "4:8")
HEAD_GROUP = 32  # values per float16 scale of the embedding / LM head (GGUF Q8_0 blocks)


@dataclass(frozen=True)
class LayerPolicy:
    """One decoder layer's compression: the sparsity of its linear weights and their bit-width."""
    sparsity: float  # fraction of zeroed weights in the layer's linear modules, [0, 1)
    w_bits: int  # weight bits, 2..8, or 16 for unquantized


@dataclass
class Policy:
    """A per-layer compression policy (Edge-LLM's layer-wise unified compression): sparsity and
    bits per decoder layer (``layers``, keyed by layer index), the sparsity ``pattern``, the
    pruning and quantization methods, the quantization group (weights per scale), the head's bits
    and free-form ``meta`` (how it was allocated). JSON form: ``to_dict`` / ``from_dict``.
    """
    layers: dict[int, LayerPolicy]
    pattern: str = "unstructured"
    prune: str = "wanda"
    quant: str = "rtn"
    group_size: int = 128
    meta: dict[str, Any] = field(default_factory=dict)
    head_bits: int = DENSE_BITS  # tied embedding / LM head: 2..8 or 16 (not quantized)

    @classmethod
    def uniform(cls, num_layers: int, sparsity: float, w_bits: int, **kwargs: Any) -> Policy:
        """The same ``sparsity`` and ``w_bits`` in each of ``num_layers`` layers (other fields from
        ``kwargs``).
        """
        return cls({i: LayerPolicy(sparsity, w_bits) for i in range(num_layers)}, **kwargs)

    @classmethod
    def dense(cls, num_layers: int) -> Policy:
        """No compression in any of ``num_layers`` layers (sparsity 0, 16 bits)."""
        return cls.uniform(num_layers, 0.0, DENSE_BITS)

    def validate(self, num_layers: int | None = None, where: str = "policy") -> Policy:
        """Check ranges (and the layer count, if given); raise a one-line ``UserError``."""
        if num_layers is not None and sorted(self.layers) != list(range(num_layers)):
            raise UserError(f"{where}: has {len(self.layers)} layers, the model has {num_layers} (need keys 0..{num_layers - 1})")
        for i, lp in self.layers.items():
            if not 0.0 <= lp.sparsity < 1.0:
                raise UserError(f"{where}: layer {i}: sparsity must be in [0, 1) (got {lp.sparsity})")
            if not (MIN_BITS <= lp.w_bits <= MAX_BITS or lp.w_bits == DENSE_BITS):
                raise UserError(f"{where}: layer {i}: w_bits must be {MIN_BITS}..{MAX_BITS} or {DENSE_BITS} (got {lp.w_bits})")
        if not (MIN_BITS <= self.head_bits <= MAX_BITS or self.head_bits == DENSE_BITS) \
                or isinstance(self.head_bits, bool):
            raise UserError(f"{where}: head_bits must be {MIN_BITS}..{MAX_BITS} or {DENSE_BITS} (got {self.head_bits!r})")
        if self.pattern not in PATTERNS:
            raise UserError(f"{where}: pattern must be one of {', '.join(PATTERNS)} (got {self.pattern!r})")
        from workloads.luc.prune import (
            PRUNE_METHODS,  # lazy: prune/quantize import this module's package
        )
        from workloads.luc.quantize import QUANT_METHODS

        if self.prune not in PRUNE_METHODS:
            raise UserError(f"{where}: prune must be one of {', '.join(PRUNE_METHODS)} (got {self.prune!r})")
        if self.quant not in QUANT_METHODS:
            raise UserError(f"{where}: quant must be one of {', '.join(QUANT_METHODS)} (got {self.quant!r})")
        if self.group_size <= 0:
            raise UserError(f"{where}: group_size must be > 0 (got {self.group_size})")
        return self

    def nm(self) -> tuple[int, int] | None:
        """``(N, M)`` for an N:M pattern (N weights kept in every group of M), else None."""
        match = re.fullmatch(r"(\d+):(\d+)", self.pattern)
        return (int(match.group(1)), int(match.group(2))) if match else None

    def to_dict(self) -> dict[str, Any]:
        """The policy's JSON form (``FORMAT``; layers keyed by their index as a string; ``head_bits``
        only when the head is quantized, so older files and cache keys stay as they were).
        """
        out: dict[str, Any] = {
            "format": FORMAT,
            "pattern": self.pattern,
            "prune": self.prune,
            "quant": self.quant,
            "group_size": self.group_size,
            "meta": self.meta,
            "layers": {str(i): {"sparsity": lp.sparsity, "w_bits": lp.w_bits} for i, lp in sorted(self.layers.items())},
        }
        if self.head_bits != DENSE_BITS:  # an unquantized head writes what it always did (cache keys hash this)
            out["head_bits"] = self.head_bits
        return out

    @classmethod
    def from_dict(cls, obj: Any, where: str = "policy") -> Policy:
        """Read a policy from its JSON form, checking every field (``where`` names the source in errors).

        Raises:
            UserError: not a policy, a layer key that is not a canonical index, a layer without
                exactly ``sparsity`` and ``w_bits``, or a value of the wrong type or range.
        """
        if not isinstance(obj, dict) or not isinstance(obj.get("layers"), dict):
            raise UserError(f"{where}: not a policy (needs a 'layers' object keyed by layer index)")
        layers: dict[int, LayerPolicy] = {}
        for key, entry in obj["layers"].items():
            if not re.fullmatch(r"0|[1-9][0-9]*", str(key)):  # canonical, so no layer is given twice
                raise UserError(f"{where}: layer key {key!r} is not a layer index (0, 1, ...)")
            if not isinstance(entry, dict) or set(entry) != {"sparsity", "w_bits"}:
                raise UserError(f"{where}: layer {key}: needs exactly 'sparsity' and 'w_bits'")
            sparsity, bits = entry["sparsity"], entry["w_bits"]
            if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
                raise UserError(f"{where}: layer {key}: sparsity must be a number (got {sparsity!r})")
            if isinstance(bits, bool) or not isinstance(bits, int):
                raise UserError(f"{where}: layer {key}: w_bits must be an integer (got {bits!r})")
            try:
                value = float(sparsity)
            except OverflowError:  # an integer too large for a float
                raise UserError(f"{where}: layer {key}: sparsity must be in [0, 1)") from None
            layers[int(key)] = LayerPolicy(value, bits)
        fields = {"pattern": "unstructured", "prune": "wanda", "quant": "rtn"}
        for name, default in fields.items():
            fields[name] = obj.get(name, default)
            if not isinstance(fields[name], str):
                raise UserError(f"{where}: {name} must be a string (got {fields[name]!r})")
        group_size, meta = obj.get("group_size", 128), obj.get("meta", {})
        head_bits = obj.get("head_bits", DENSE_BITS)
        for name, value in (("group_size", group_size), ("head_bits", head_bits)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"{where}: {name} must be an integer (got {value!r})")
        if not isinstance(meta, dict):
            raise UserError(f"{where}: meta must be an object (got {type(meta).__name__})")
        policy = cls(layers, group_size=group_size, meta=dict(meta), head_bits=head_bits, **fields)
        return policy.validate(where=where)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        """Read a policy JSON file (``from_dict``).

        Raises:
            UserError: a missing or unreadable file, bad JSON, or not a valid policy.
        """
        return cls.from_dict(read_json(path, "policy file", "policy"), where=str(path))

    def save(self, path: str | Path) -> None:
        """Write atomically: a kill never leaves half a policy."""
        write_json_atomic(path, self.to_dict(), indent=1)

    def as_list(self) -> list[dict[str, Any]]:
        """One ``{"layer", "sparsity", "w_bits"}`` dict per layer, in layer order."""
        return [{"layer": i, "sparsity": lp.sparsity, "w_bits": lp.w_bits} for i, lp in sorted(self.layers.items())]
