"""The layer-wise trace of a real tuning step (or inference pass): the contract with ``sim``
(docs/trace.md). ``record_trace`` runs torch once; ``Trace.with_policy`` re-annotates it for
any compression policy without running torch again."""
from workloads.trace.record import METHODS, record_trace
from workloads.trace.table import Trace, tensors_path

__all__ = ["METHODS", "Trace", "record_trace", "tensors_path"]
