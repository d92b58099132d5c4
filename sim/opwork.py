"""What an op costs on a given PE design before any mapping: precision and sparsity effects.

Three numbers per op, all vectorized over arrays of ops:

* ``cycles_per_mac`` relative to base precision (``< 1`` is faster), from the precision model;
* ``density``: the fraction of B's reduction entries the PEs still process after zero skipping
  (``1`` without hardware support);
* ``b_bits``: DRAM/SRAM storage bits per *dense* element of B, including sparse-format metadata
  when a compressed format is smaller.

How B is stored: when the trace gives a product's ``weight_bytes`` (docs/trace.md: B is a
weight, and these are the bytes of its packed tensor, with its sparse index and its
quantization groups' scales and zeros), B takes exactly those bytes, ``b_bits = 8 x
weight_bytes / (K x N)``, whatever the hardware's sparse format: the device holds the tensor
the compressor packed, the one the tensor table charges, and a product reads it whole. The
hardware's ``sparsity`` still decides which zeros the PEs skip (``density``). Otherwise (B an
activation, or a trace that does not give the bytes) B is stored by the hardware's model:
``w_bits`` per element, or compressed (kept values plus ``metadata_bits``, or ``ceil(log2 M)``
index bits for N:M) when the hardware keeps sparse B compressed and that is smaller.

The array treats a PE that does ``p`` MACs per cycle as consuming ``p`` reduction entries per
cycle, so the dataflows see an effective reduction length ``ceil(K * density / p)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.config import HwConfig, PrecisionModel, SparsitySupport, parse_nm

__all__ = ["OpWork", "op_work", "pattern_nm"]


def pattern_nm(pattern: str) -> tuple[int, int] | None:
    """``(N, M)`` for an ``"N:M"`` pattern string, None for ``dense``/``unstructured``."""
    if ":" not in pattern:
        return None
    return parse_nm(pattern)


def _scaled_factor(hw: HwConfig, bits: np.ndarray) -> np.ndarray:
    """Cycles per MAC of the precision-scaled operand relative to base_bits."""
    p = hw.precision
    base = p.base_bits
    wide = np.ceil(bits / base)  # wider than base: multi-pass on any PE
    if p.model is PrecisionModel.fixed:
        return np.maximum(wide, 1.0)
    narrow = np.maximum(bits, p.min_bits).astype(float)
    if p.model is PrecisionModel.scalable:
        # Bit-fusion modes are base, base/2, base/4, ... >= min_bits; round up to the next mode.
        halvings = np.floor(np.log2(base / narrow) + 1e-9)
        max_halvings = math.floor(math.log2(base / p.min_bits) + 1e-9)
        narrow = base / 2.0 ** np.clip(halvings, 0, max_halvings)
    return np.where(bits > base, wide, narrow / base)


@dataclass(frozen=True)
class OpWork:
    """Per-op effective work on the PEs (arrays aligned with the input ops)."""

    cycles_per_mac: np.ndarray  # relative to base precision, dimensionless
    macs_per_pe_per_cycle: np.ndarray  # effective, at the op's bits
    density: np.ndarray  # fraction of K entries processed, 0 < density <= 1
    b_bits: np.ndarray  # stored bits per dense element of B (incl. metadata), bits
    a_bits: np.ndarray  # bits per element of A and of the output, bits
    weight_bytes: np.ndarray  # B's stored bytes as the trace gives them, bytes; 0: not given

    def b_bytes(self, b_numel: float) -> np.ndarray:
        """Bytes of the whole operand B of ``b_numel = K x N`` elements as stored: the trace's
        ``weight_bytes`` exactly where given, else ``b_numel x b_bits / 8``."""
        return np.where(self.weight_bytes > 0, self.weight_bytes, b_numel * self.b_bits / 8.0)


def op_work(hw: HwConfig, w_bits: np.ndarray, a_bits: np.ndarray, sparsity: np.ndarray,
            patterns: np.ndarray | list[str], *, weight_bytes: np.ndarray | None = None,
            b_numel: float | None = None) -> OpWork:
    """Effective precision/sparsity numbers for ops (all arguments are aligned arrays).

    Args:
        hw: hardware config.
        w_bits: storage bits of operand B.
        a_bits: bits of operand A and the output.
        sparsity: fraction of zeros in B, in [0, 1).
        patterns: ``dense``, ``unstructured`` or ``N:M`` per op.
        weight_bytes: stored bytes of B per op where the trace gives them (0 or None: not
            given, the hardware's storage model applies).
        b_numel: elements of B (``K x N``, the same for every op); needed with ``weight_bytes``.

    Raises:
        ValueError: ``weight_bytes`` given without ``b_numel``.

    Example:
        >>> from sim.config import load_hw
        >>> hw = load_hw("hwconfigs/edge_llm.yaml")
        >>> one = np.array([4])
        >>> op_work(hw, one, one * 4, np.zeros(1), ["dense"]).b_bits  # codes only
        array([4.])
        >>> w = op_work(hw, one, one * 4, np.zeros(1), ["dense"], weight_bytes=np.array([2304]),
        ...             b_numel=64 * 64)  # plus a float16 scale and zero per row
        >>> w.b_bits, w.b_bytes(64 * 64)
        (array([4.5]), array([2304.]))
    """
    w_bits = np.asarray(w_bits, dtype=float)
    a_bits = np.asarray(a_bits, dtype=float)
    sparsity = np.asarray(sparsity, dtype=float)
    patterns = [str(p) for p in patterns]

    w_factor = _scaled_factor(hw, w_bits)
    if hw.precision.operands == "both":
        a_factor = _scaled_factor(hw, a_bits)
    else:
        a_factor = np.maximum(np.ceil(a_bits / hw.precision.base_bits), 1.0)
    cycles_per_mac = w_factor * a_factor

    nm = [pattern_nm(p) for p in patterns]
    # Zero fraction of B: an N:M op has at least 1 - N/M zeros whatever the column says.
    zeros = np.array([0.0 if p == "dense" else (max(s, 1.0 - t[0] / t[1]) if t else s)
                      for p, s, t in zip(patterns, sparsity, nm, strict=True)],
                     dtype=float)

    sp = hw.sparsity
    density = np.ones_like(zeros)
    # Bits per dense element when B is kept compressed: values of the kept entries + metadata.
    compressed_bits = np.full_like(zeros, np.inf)
    if sp.support is SparsitySupport.nm:
        hw_nm = [parse_nm(p) for p in sp.nm_patterns]
        for i, t in enumerate(nm):
            if t is None:
                continue
            n, m = t
            # An op pattern n:m satisfies hardware n_h:m_h if every m_h-group holds <= n_h
            # non-zeros, guaranteed when m_h divides m and n <= n_h.
            fits = [nh / mh for nh, mh in hw_nm if m % mh == 0 and n <= nh]
            if fits:
                best = min(fits)
                mh = next(mh for nh, mh in hw_nm if nh / mh == best)
                density[i] = best
                compressed_bits[i] = best * (w_bits[i] + math.ceil(math.log2(mh)))
    elif sp.support is SparsitySupport.unstructured:
        density = 1.0 - zeros * sp.efficiency
        compressed_bits = np.where(zeros > 0, (1.0 - zeros) * (w_bits + sp.metadata_bits), np.inf)
    if sp.compressed_storage:
        meta = np.array([math.ceil(math.log2(t[1])) if t else sp.metadata_bits for t in nm],
                        dtype=float)
        generic = np.where(zeros > 0, (1.0 - zeros) * (w_bits + meta), np.inf)
        compressed_bits = np.minimum(compressed_bits, generic)
    b_bits = np.minimum(w_bits, compressed_bits)
    given = np.zeros_like(b_bits) if weight_bytes is None else np.asarray(weight_bytes, dtype=float)
    if (given > 0).any():
        if not b_numel:
            raise ValueError("op_work: weight_bytes needs b_numel (K x N of the ops)")
        b_bits = np.where(given > 0, given * 8.0 / b_numel, b_bits)

    return OpWork(cycles_per_mac=cycles_per_mac,
                  macs_per_pe_per_cycle=hw.pe.macs_per_pe_per_cycle / cycles_per_mac,
                  density=density, b_bits=b_bits, a_bits=a_bits, weight_bytes=given)
