"""Errors a user can cause, and the CLI wrapper that turns them into one clear line.

``UserError``, ``one_line`` and ``cli_main`` have their one home in ``common.errors``; they are
named here too because every ``workloads`` and ``dse`` command imports them from here.
"""
from __future__ import annotations

from common.errors import UserError, cli_main, one_line

__all__ = ["UserError", "cli_main", "one_line"]
