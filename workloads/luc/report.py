"""What compression achieved: per module and per layer, the pruned fraction and bit-width."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["CompressionReport", "LayerReport", "ModuleReport"]


@dataclass(frozen=True)
class ModuleReport:
    """One linear module after compression.

    ``pruned`` counts the weights removed by the mask; ``zeros`` counts every exact zero after
    quantization too (rounding can send small kept weights to the zero level), so
    ``zeros >= pruned``. Hardware that skips by mask sees ``sparsity``.
    """

    module: str
    numel: int
    pruned: int
    zeros: int
    w_bits: int

    @property
    def sparsity(self) -> float:
        return self.pruned / self.numel

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "numel": self.numel,
            "pruned": self.pruned,
            "zeros": self.zeros,
            "sparsity": self.sparsity,
            "w_bits": self.w_bits,
        }


@dataclass(frozen=True)
class LayerReport:
    layer: int
    target_sparsity: float
    w_bits: int
    modules: list[ModuleReport]
    seconds: float

    @property
    def numel(self) -> int:
        return sum(m.numel for m in self.modules)

    @property
    def sparsity(self) -> float:
        """Achieved pruned fraction of the layer's linear weights (parameter-weighted)."""
        return sum(m.pruned for m in self.modules) / max(self.numel, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "target_sparsity": self.target_sparsity,
            "sparsity": self.sparsity,
            "w_bits": self.w_bits,
            "numel": self.numel,
            "seconds": round(self.seconds, 3),
            "modules": [m.to_dict() for m in self.modules],
        }


@dataclass
class CompressionReport:
    """The outcome of ``compress_model``: achieved sparsity per layer and module."""

    layers: list[LayerReport]
    prune: str
    quant: str
    pattern: str
    group_size: int
    calib_tokens: int
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def numel(self) -> int:
        return sum(lr.numel for lr in self.layers)

    @property
    def avg_sparsity(self) -> float:
        """Achieved sparsity over all compressed weights (parameter-weighted)."""
        return sum(lr.sparsity * lr.numel for lr in self.layers) / max(self.numel, 1)

    @property
    def avg_bits(self) -> float:
        """Mean weight bit-width over the decoder layers' linear weights (parameter-weighted;
        unquantized layers count as 16)."""
        return sum(lr.w_bits * lr.numel for lr in self.layers) / max(self.numel, 1)

    def sparsity_by_layer(self) -> dict[int, float]:
        return {lr.layer: lr.sparsity for lr in self.layers}

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (layer, module), for a DataFrame or CSV."""
        return [{"layer": lr.layer, **m.to_dict()} for lr in self.layers for m in lr.modules]

    def to_dict(self) -> dict[str, Any]:
        return {
            "prune": self.prune,
            "quant": self.quant,
            "pattern": self.pattern,
            "group_size": self.group_size,
            "calib_tokens": self.calib_tokens,
            "avg_sparsity": self.avg_sparsity,
            "avg_bits": self.avg_bits,
            "seconds": round(self.seconds, 3),
            "layers": [lr.to_dict() for lr in self.layers],
        }
