"""Errors a user can cause (bad hardware file, bad trace, bad flag).

Each carries a one-line message naming the culprit; the CLIs print it as ``error: ...`` and
exit with code 2. Anything else escaping the simulator is a bug and keeps its traceback.
"""
from __future__ import annotations

from common.errors import ToolWarning, UserError

__all__ = ["ConfigError", "MappingError", "SimError", "SimWarning", "SweepError", "TraceError",
           "TraceFormatWarning"]


class SimError(UserError):
    """Base class of the simulator's user-facing errors (one-line message)."""


class ConfigError(SimError):
    """The hardware YAML or a ``--set`` override is invalid."""


class TraceError(SimError):
    """The trace CSV (ops or tensor table) is missing, malformed or out of range."""


class MappingError(SimError):
    """No dataflow/tiling fits the hardware for some op (e.g. buffers too small)."""


class SweepError(SimError):
    """A user error in a sweep's inputs or output folder (``python -m sim.sweep``)."""


class SimWarning(ToolWarning):
    """Base class of the simulator's warnings: the run goes on, but a result is partial."""


class TraceFormatWarning(SimWarning):
    """The trace is an older format that lacks part of the step (format 1: no vector rows)."""
