"""Design-space exploration: an Optuna search over compression policy, tuning depth, dataflow
schedule (and hardware), trading predicted accuracy against simulated latency and memory."""

__all__ = []
