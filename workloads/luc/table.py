"""The sensitivity table: per decoder layer, how much the model's calibration loss grows when
only that layer is compressed, at measured sparsities and bit-widths, plus what the allocation
rules need besides (parameter counts, Wanda outlier ratios).

Degradations are in nats per token (increase of the mean next-token cross-entropy), so they
add up across layers into a loss-increase estimate and compare across depths, unlike raw
output MSE, which grows with the residual stream.

Two axes are measured per layer: pruning alone (``prune[layer, k]`` at ``sparsities[k]``,
weights unquantized) and quantization alone (``quant[layer, j]`` at ``bits[j]``, dense).
``joint[layer, k, j]`` optionally holds measured combinations. ``degradation`` reads any
``(sparsity, bits)``: from the joint grid where it was measured, else as the sum of the two
single-axis effects, the quantization part scaled by ``(1 - s) ** JOINT_EXPONENT``
(fewer weights left to round).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from workloads.errors import UserError
from workloads.jsonfile import read_json, write_json_atomic
from workloads.luc.policy import DENSE_BITS

__all__ = ["JOINT_EXPONENT", "SensitivityTable", "TABLE_FORMAT"]

TABLE_FORMAT = "edgellm-sensitivity/1"
# Joint pruning + quantization of one layer: the rounding loss of the surviving weights shrinks
# as sqrt(1 - s). Fitted on SmolLM2 (Wanda + RTN, 90 measured joint cells): RMS log error 0.10,
# against 0.25 for a plain sum and 0.17 for a (1 - s) factor (docs/results/luc.md).
JOINT_EXPONENT = 0.5


@dataclass
class SensitivityTable:
    """Measured per-layer degradation (nats/token of calibration loss increase).

    ``sparsities``: ascending, each in (0, 1); ``bits``: ascending, each < 16 (16, "not
    quantized", has zero degradation by definition); ``prune`` is ``[layers, len(sparsities)]``,
    ``quant`` is ``[layers, len(bits)]``, ``joint`` (optional) ``[layers, len(sparsities),
    len(bits)]`` with NaN where not measured. ``layer_params``: compressible weights per layer.
    ``outlier_ratio``: share of each layer's Wanda scores above ``outlier_m`` times their mean
    (OWL's layer outlier ratio). ``key`` says what was measured (model, data, method, seq_len,
    windows); ``base_loss`` is the dense model's calibration loss, nats/token.
    """

    key: dict[str, Any]
    sparsities: list[float]
    bits: list[int]
    prune: np.ndarray
    quant: np.ndarray
    layer_params: list[int]
    outlier_ratio: list[float]
    base_loss: float
    joint: np.ndarray | None = None
    outlier_m: float = 5.0
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    # Where this table was read from when it came from the cache (None: measured in this run, or
    # loaded by the caller); not saved with the table.
    cache_file: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.prune = np.asarray(self.prune, dtype=float)
        self.quant = np.asarray(self.quant, dtype=float)
        if self.joint is not None:
            self.joint = np.asarray(self.joint, dtype=float)
        self._prune_c = _monotone(np.clip(np.nan_to_num(self.prune, nan=0.0), 0, None), axis=1)
        # Fewer bits never hurt less: cumulative max from the widest bit-width down.
        self._quant_c = _monotone(np.clip(np.nan_to_num(self.quant, nan=0.0), 0, None)[:, ::-1], axis=1)[:, ::-1]

    @property
    def num_layers(self) -> int:
        """Decoder layers the table covers."""
        return len(self.layer_params)

    @property
    def max_sparsity(self) -> float:
        """The highest measured sparsity of the ladder."""
        return float(self.sparsities[-1])

    def prune_curve(self, layer: int, s: np.ndarray | float) -> np.ndarray:
        """Degradation of pruning ``layer`` alone to sparsity ``s`` (piecewise linear in s,
        zero at 0, extended past the last level with the last segment's slope)."""
        xs = np.concatenate([[0.0], self.sparsities])
        ys = np.concatenate([[0.0], self._prune_c[layer]])
        s = np.asarray(s, dtype=float)
        out = np.interp(s, xs, ys)
        slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
        return np.where(s > xs[-1], ys[-1] + slope * (s - xs[-1]), out)

    def quant_curve(self, layer: int, b: np.ndarray | float) -> np.ndarray:
        """Degradation of quantizing ``layer`` alone to ``b`` bits (16 means none): linear
        between measured bit-widths; outside them the loss scales by 4 per bit, since each
        bit halves the rounding step and a small loss increase grows with its square; exactly
        zero at 16 bits."""
        xs = np.asarray(self.bits, dtype=float)
        ys = self._quant_c[layer]
        b = np.asarray(b, dtype=float)
        out = np.interp(b, xs, ys)
        out = np.where(b < xs[0], ys[0] * 4.0 ** (xs[0] - b), out)
        out = np.where(b > xs[-1], ys[-1] * 4.0 ** (xs[-1] - b), out)
        return np.where(b >= DENSE_BITS, 0.0, out)

    def degradation(self, layer: int, s: float, b: float) -> float:
        """Loss increase (nats/token) when only ``layer`` is pruned to ``s`` and quantized to
        ``b`` bits: ``prune(s) + quant(b) * (1 - s) ** JOINT_EXPONENT``, or interpolated from
        measured joint cells near ``(s, b)``."""
        additive = self.joint_model(layer, s, b)
        if self.joint is None or b >= DENSE_BITS or s <= 0:
            return additive
        measured = self._joint_lookup(layer, s, b)
        return additive if measured is None else measured

    def joint_model(self, layer: int, s: float, b: float) -> float:
        """The single-axis curves combined: pruning loss plus the rounding loss of the
        ``1 - s`` surviving weights."""
        return float(self.prune_curve(layer, s) + self.quant_curve(layer, b) * (1.0 - min(s, 1.0)) ** JOINT_EXPONENT)

    def _joint_lookup(self, layer: int, s: float, b: float) -> float | None:
        """Bilinear interpolation between the four surrounding (sparsity, bits) cells, each
        the measured joint value where there is one and the additive estimate elsewhere; None
        if no surrounding cell was measured or ``(s, b)`` lies outside the measured ladders."""
        assert self.joint is not None
        sx = np.asarray(self.sparsities, dtype=float)
        bx = np.asarray(self.bits, dtype=float)
        if not (sx[0] - 1e-9 <= s <= sx[-1] + 1e-9 and bx[0] - 1e-9 <= b <= bx[-1] + 1e-9):
            return None
        k, k2, ts = _bracket(sx, s)
        j, j2, tb = _bracket(bx, b)
        grid = self.joint[layer]
        corners = np.empty((2, 2))
        any_measured = False
        for a, kk in enumerate((k, k2)):
            for c, jj in enumerate((j, j2)):
                value = grid[kk, jj]
                if np.isnan(value):
                    value = self.joint_model(layer, float(sx[kk]), float(bx[jj]))
                elif (a == 0 or ts > 0) and (c == 0 or tb > 0):
                    any_measured = True
                corners[a, c] = value
        if not any_measured:
            return None
        top = corners[0, 0] * (1 - tb) + corners[0, 1] * tb
        bottom = corners[1, 0] * (1 - tb) + corners[1, 1] * tb
        return float(max(top * (1 - ts) + bottom * ts, 0.0))

    # -- persistence ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The table's JSON form (``TABLE_FORMAT``; NaN cells as ``null``)."""
        return {
            "format": TABLE_FORMAT,
            "key": self.key,
            "sparsities": list(self.sparsities),
            "bits": list(self.bits),
            "prune": _nan_to_none(self.prune),
            "quant": _nan_to_none(self.quant),
            "joint": None if self.joint is None else _nan_to_none(self.joint),
            "layer_params": list(self.layer_params),
            "outlier_ratio": list(self.outlier_ratio),
            "outlier_m": self.outlier_m,
            "base_loss": self.base_loss,
            "seconds": self.seconds,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str = "table") -> SensitivityTable:
        """Read a table from its JSON form (``where`` names the source in errors).

        Raises:
            UserError: not a sensitivity table of ``TABLE_FORMAT``, or a missing or malformed field.
        """
        if not isinstance(obj, dict) or obj.get("format") != TABLE_FORMAT:
            raise UserError(f"{where}: not a sensitivity table (format {TABLE_FORMAT})")
        try:
            return cls(
                key=dict(obj["key"]),
                sparsities=[float(s) for s in obj["sparsities"]],
                bits=[int(b) for b in obj["bits"]],
                prune=_none_to_nan(obj["prune"]),
                quant=_none_to_nan(obj["quant"]),
                joint=None if obj.get("joint") is None else _none_to_nan(obj["joint"]),
                layer_params=[int(p) for p in obj["layer_params"]],
                outlier_ratio=[float(r) for r in obj["outlier_ratio"]],
                outlier_m=float(obj.get("outlier_m", 5.0)),
                base_loss=float(obj["base_loss"]),
                seconds=float(obj.get("seconds", 0.0)),
                meta=dict(obj.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: malformed sensitivity table ({exc})") from None

    def save(self, path: str | Path) -> None:
        """Write the table as JSON to ``path``, atomically."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> SensitivityTable:
        """Read a table JSON file (``from_dict``).

        Raises:
            UserError: a missing or unreadable file, bad JSON, or not a sensitivity table.
        """
        return cls.from_dict(read_json(path, "sensitivity table", "sensitivity table"), where=str(path))


def _bracket(xs: np.ndarray, x: float) -> tuple[int, int, float]:
    """Indices of the ladder points around ``x`` and the interpolation weight of the upper."""
    if len(xs) == 1:
        return 0, 0, 0.0
    k = int(np.clip(np.searchsorted(xs, x, side="right") - 1, 0, len(xs) - 2))
    t = float(np.clip((x - xs[k]) / (xs[k + 1] - xs[k]), 0.0, 1.0))
    if t <= 1e-9:
        return k, k + 1, 0.0
    return k, k + 1, t


def _monotone(a: np.ndarray, axis: int) -> np.ndarray:
    """Running maximum along ``axis``: more compression never measures as less damage (tiny
    negative or non-monotone readings are noise of a finite calibration set)."""
    return np.maximum.accumulate(a, axis=axis)


def _nan_to_none(a: np.ndarray) -> Any:
    return [_nan_to_none(x) for x in a] if a.ndim > 1 else [None if np.isnan(x) else float(x) for x in a]


def _none_to_nan(obj: Any) -> np.ndarray:
    return np.array(obj, dtype=float)  # JSON null becomes NaN through dtype=float
