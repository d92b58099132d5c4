"""The simulator's public functions: pure, deterministic, no printing."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from sim.config import HwConfig, apply_overrides, load_hw
from sim.foreign import hw_translation, resolve_dataflow
from sim.report import GemmResult, SimResult, footprint
from sim.scheduler import evaluate_op, schedule_ops
from sim.trace import Trace, read_trace, validate_ops, validate_tensors

__all__ = ["simulate_gemm", "simulate_trace"]

Overrides = Iterable[str] | Mapping[str, Any]


def _hw(hw: HwConfig | str | Path, overrides: Overrides) -> HwConfig:
    if isinstance(hw, HwConfig):
        return apply_overrides(hw, overrides) if overrides else hw
    return load_hw(hw, overrides)


def _dataflow(requested: str | None, hw: HwConfig | str | Path) -> str:
    """The dataflow asked for, else the one a peer's hardware file fixes (a SCALE-Sim ``.cfg``'s
    ``Dataflow``), else ``auto``: what the commands do (``sim.foreign.resolve_dataflow``)."""
    peer = None if requested is not None or isinstance(hw, HwConfig) else hw_translation(hw)
    return resolve_dataflow(requested, peer)


def simulate_trace(trace: Trace | pd.DataFrame | str | Path, hw: HwConfig | str | Path, *,
                   dataflow: str | None = None, objective: str = "latency",
                   overrides: Overrides = (), tensors: pd.DataFrame | None = None
                   ) -> SimResult:
    """Simulate every op of a trace on an accelerator.

    Args:
        trace: a ``Trace``, a path to ``NAME.csv``, or an ops DataFrame (docs/trace.md columns).
        hw: a ``HwConfig`` or a path to a hardware YAML, a SCALE-Sim ``.cfg`` or a ZigZag
            accelerator YAML.
        dataflow: ``auto`` (per-op choice of ws/os/is) or one fixed dataflow; ``None`` (the
            default): the dataflow a SCALE-Sim ``.cfg`` given as ``hw`` fixes, else ``auto``,
            as the commands' ``--dataflow`` default does.
        objective: what the per-op choice minimizes: ``latency``, ``energy`` or ``edp``.
        overrides: dotted ``key=value`` overrides applied to the hardware config.
        tensors: tensor table to use instead of the trace's own.

    Returns:
        ``SimResult`` with the per-op DataFrame, totals and the memory footprint (if a tensor
        table is known).

    Example:
        >>> res = simulate_trace("tests/data/tiny_step_v2.csv", "hwconfigs/edge_llm.yaml")
        >>> res.summary()["ops"]  # one output row per trace row
        61
    """
    config = _hw(hw, overrides)
    dataflow = _dataflow(dataflow, hw)
    if isinstance(trace, (str, Path)):
        trace = read_trace(trace)
    if isinstance(trace, pd.DataFrame):
        trace = Trace(ops=validate_ops(trace))
    table = validate_tensors(tensors) if tensors is not None else trace.tensors
    ops = schedule_ops(config, trace.ops, dataflow=dataflow, objective=objective)
    fp = footprint(table, config) if table is not None else None
    return SimResult(ops=ops, hw=config, dataflow=dataflow, objective=objective,
                     header=dict(trace.header), footprint=fp)


def simulate_gemm(hw: HwConfig | str | Path, M: int, N: int, K: int, *,  # noqa: N803
                  dataflow: str | None = None, objective: str = "latency",
                  w_bits: int | None = None, a_bits: int | None = None,
                  weight_sparsity: float = 0.0, sparsity_pattern: str | None = None,
                  rows: int | None = None,
                  cols: int | None = None, overrides: Overrides = ()) -> GemmResult:
    """Simulate one product ``out[M, N] = A[M, K] @ B[K, N]``.

    Bits default to the hardware's ``precision.base_bits``; the pattern defaults to
    ``unstructured`` when ``weight_sparsity > 0``. ``rows``/``cols`` override the PE array.
    ``dataflow`` ``None`` (the default) takes the one a SCALE-Sim ``.cfg`` given as ``hw``
    fixes, else ``auto`` (``simulate_trace``).

    Example:
        >>> r = simulate_gemm("hwconfigs/edge_llm.yaml", 128, 576, 576, dataflow="ws")
        >>> r.cycles >= r.roofline_cycles
        True
    """
    extra: dict[str, Any] = {}
    if rows is not None:
        extra["pe.rows"] = rows
    if cols is not None:
        extra["pe.cols"] = cols
    config = _hw(hw, overrides)
    dataflow = _dataflow(dataflow, hw)
    if extra:
        config = apply_overrides(config, extra)
    base = config.precision.base_bits
    w = base if w_bits is None else int(w_bits)
    a = base if a_bits is None else int(a_bits)
    pattern = sparsity_pattern or ("unstructured" if weight_sparsity > 0 else "dense")
    # Reuse the trace validator so a bad argument gets the same one-line message.
    op = validate_ops(pd.DataFrame([{
        "layer": -1, "module": "gemm", "phase": "fwd", "M": M, "N": N, "K": K,
        "weight_sparsity": weight_sparsity, "sparsity_pattern": pattern, "w_bits": w,
        "a_bits": a, "trainable": False, "count": 1}]), "gemm").iloc[0]
    res = evaluate_op(config, int(op.M), int(op.N), int(op.K), w_bits=int(op.w_bits),
                      a_bits=int(op.a_bits), weight_sparsity=float(op.weight_sparsity),
                      sparsity_pattern=str(op.sparsity_pattern), dataflow=dataflow,
                      objective=objective)
    return GemmResult(M=int(op.M), N=int(op.N), K=int(op.K), hw=config.name,
                      rows=config.pe.rows, cols=config.pe.cols, w_bits=int(op.w_bits),
                      a_bits=int(op.a_bits), weight_sparsity=float(op.weight_sparsity),
                      sparsity_pattern=str(op.sparsity_pattern),
                      latency_s=res["cycles"] / (config.clock_mhz * 1e6), **res)
