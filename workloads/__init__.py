"""Workloads: the real model, its data, compression (LUC), adaptive tuning and the trace.

Everything here runs in torch on the host; the simulator (`sim`) only sees the trace.
"""

__all__ = []
