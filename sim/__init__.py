"""Cycle-approximate simulator of edge accelerators running LLM tuning traces.

Pure numpy/pandas (no torch): a hardware YAML and a trace (docs/trace.md) in, per-op cycles,
stalls, DRAM traffic, energy, roofline bounds (one ``OpCost`` record per op, summed into every
total) and the step's memory footprint out. Matrix products run on the PE array, the trace's
vector rows (format 2) on the vector unit.

Example:
    >>> import sim
    >>> hw = sim.load_hw("hwconfigs/edge_llm.yaml", ["dram.bandwidth_gbps=8"])
    >>> hw.dram.bandwidth_gbps
    8.0
    >>> res = sim.simulate_trace("tests/data/tiny_step_v2.csv", hw, dataflow="auto")
    >>> sorted(res.ops["kind"].unique()), res.total.cycles >= res.total.roofline_cycles
    (['matmul', 'vector'], True)
"""
from sim.api import simulate_gemm, simulate_trace
from sim.config import HwConfig, apply_overrides, hw_from_dict, load_hw
from sim.cost import OpCost
from sim.dataflow import DATAFLOWS
from sim.errors import (
    ConfigError,
    MappingError,
    SimError,
    SimWarning,
    SweepError,
    TraceError,
    TraceFormatWarning,
)
from sim.report import Footprint, GemmResult, SimResult
from sim.scheduler import MAPPING_OBJECTIVES, evaluate_op, schedule_ops
from sim.trace import Trace, read_trace, validate_ops, validate_tensors

__all__ = [
    "DATAFLOWS", "MAPPING_OBJECTIVES", "ConfigError", "Footprint", "GemmResult", "HwConfig",
    "MappingError", "OpCost", "SimError", "SimResult", "SimWarning", "SweepError", "Trace",
    "TraceError",
    "TraceFormatWarning", "apply_overrides", "evaluate_op", "hw_from_dict", "load_hw",
    "read_trace", "schedule_ops", "simulate_gemm", "simulate_trace", "validate_ops",
    "validate_tensors",
]
