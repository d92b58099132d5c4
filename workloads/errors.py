"""Errors a user can cause, and the CLI wrapper that turns them into one clear line."""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., int | None])


class UserError(Exception):
    """A problem with the user's input (path, flag, budget): reported in one line, exit code 2."""


# Every character str.splitlines() breaks at, so "one line" holds for any reader.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped (a user's path may hold any character)."""
    return text.translate(_LINE_BREAKS)


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
            message = one_line(str(exc))
            print(f"error: {message}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
