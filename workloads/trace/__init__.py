"""The layer-wise trace of a real tuning step (or inference pass): its matrix products and its
non-matrix (vector) work, the contract with ``sim`` (docs/trace.md). ``record_trace`` runs torch once; ``Trace.with_policy`` re-annotates it for
any compression policy without running torch again."""
from workloads.trace.record import METHODS, record_trace
from workloads.trace.table import FORMAT, RECORDER_VERSION, Trace, TraceFormatWarning, tensors_path

__all__ = ["FORMAT", "METHODS", "RECORDER_VERSION", "Trace", "TraceFormatWarning", "record_trace",
           "tensors_path"]
