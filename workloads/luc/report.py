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
        """The fraction of the module's weights the pruning removed (``pruned / numel``)."""
        return self.pruned / self.numel

    def to_dict(self) -> dict[str, Any]:
        """The module's report as a JSON-ready dict."""
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
    """What compressing one decoder layer did: its target sparsity and bits, per-module counts and
    the seconds it took.
    """
    layer: int
    target_sparsity: float
    w_bits: int
    modules: list[ModuleReport]
    seconds: float

    @property
    def numel(self) -> int:
        """Weights in the layer's compressed modules."""
        return sum(m.numel for m in self.modules)

    @property
    def sparsity(self) -> float:
        """Achieved pruned fraction of the layer's linear weights (parameter-weighted)."""
        return sum(m.pruned for m in self.modules) / max(self.numel, 1)

    def to_dict(self) -> dict[str, Any]:
        """The layer's report as a JSON-ready dict (achieved sparsity, seconds rounded to ms)."""
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
        """Weights in every compressed module of every layer."""
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
        """Achieved sparsity per layer index."""
        return {lr.layer: lr.sparsity for lr in self.layers}

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (layer, module), for a DataFrame or CSV."""
        return [{"layer": lr.layer, **m.to_dict()} for lr in self.layers for m in lr.modules]

    def to_dict(self) -> dict[str, Any]:
        """The whole report as a JSON-ready dict (methods, calibration tokens, averages, seconds, layers)."""
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
