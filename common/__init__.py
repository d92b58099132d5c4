"""What ``sim``, ``workloads`` and ``dse`` share, and nothing else: the trace format's names
(the contract of docs/trace.md), one-line user errors and the CLI wrapper that prints them,
atomic file writes, and the Pareto mask.

It imports only the standard library and numpy, so ``sim`` stays free of torch and the two
sides of the trace still never import each other.
"""
