"""Errors a user can cause, and the CLI wrapper that turns them into one clear line."""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., int | None])


class UserError(Exception):
    """A problem with the user's input (path, flag, budget): reported in one line, exit code 2."""


def cli_main(func: F) -> F:
    """Wrap a CLI ``main`` so that a ``UserError`` prints ``error: ...`` and exits with 2.

    Ctrl-C exits with 130 and no traceback; anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            # One line even when the message quotes a user's path that holds a line break.
            message = str(exc).replace("\r", "\\r").replace("\n", "\\n")
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
