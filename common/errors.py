"""One-line user errors and the wrapper that turns them into ``error: ...`` and exit code 2.

A user error (bad path, bad flag, impossible budget) ends a command in one line that names
the problem and its fix; anything else is a bug and keeps its traceback. ``sim.SimError`` and
``workloads.errors.UserError`` are this ``UserError``.

Example:
    >>> one_line("runs/a\\nb.csv: not found")
    'runs/a\\\\nb.csv: not found'
"""
from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TextIO, TypeVar, cast

__all__ = ["ToolWarning", "UserError", "cli_main", "deferred_warnings", "one_line",
           "print_error", "print_warnings"]

MainFunc = TypeVar("MainFunc", bound=Callable[..., Any])

# Every character str.splitlines() breaks at, so "one line" holds for any reader.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class UserError(Exception):
    """A problem with the user's input (path, flag, file, budget): one line, exit code 2."""


class ToolWarning(UserWarning):
    """A warning a command collects and prints after it succeeded, as ``warning: ...``."""


def one_line(text: object) -> str:
    """``str(text)`` with every line break escaped (a user's path may hold any character)."""
    return str(text).translate(_LINE_BREAKS)


@contextlib.contextmanager
def deferred_warnings() -> Iterator[list[str]]:
    """Collect the ``ToolWarning``s raised inside the block.

    Yields the list they are appended to (each message once, in order); other warnings go
    through Python's usual display. A command prints the list with ``print_warnings`` after it
    succeeded, so a run that fails prints its one-line error alone.
    """
    messages: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always", ToolWarning)  # every file read once, dedupe here
        show = warnings.showwarning

        def collect(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: TextIO | None = None, line: str | None = None) -> None:
            if issubclass(category, ToolWarning):
                if str(message) not in messages:
                    messages.append(str(message))
            else:
                show(message, category, filename, lineno, file, line)

        warnings.showwarning = collect
        yield messages


def print_warnings(messages: list[str]) -> None:
    """Each collected warning as one line ``warning: ...`` on stderr."""
    for message in messages:
        print(f"warning: {one_line(message)}", file=sys.stderr)


def print_error(exc: BaseException) -> None:
    """A user error (or an ``OSError`` on a user's path) as one line ``error: ...``."""
    if isinstance(exc, OSError) and not isinstance(exc, UserError):
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {one_line(where)}{one_line(exc.strerror or exc)}", file=sys.stderr)
    else:
        print(f"error: {one_line(exc)}", file=sys.stderr)


def cli_main(func: MainFunc) -> MainFunc:
    """Wrap a command's ``main``: a ``UserError`` or an ``OSError`` (an unreadable or
    unwritable path) prints ``error: ...`` and exits 2, Ctrl-C prints ``interrupted`` and exits
    130; after a successful run the collected ``ToolWarning``s print as ``warning: ...``.
    Anything else is a bug and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with deferred_warnings() as messages:
                code = func(*args, **kwargs)
        except (UserError, OSError) as exc:
            print_error(exc)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        print_warnings(messages)
        return code

    return cast(MainFunc, wrapper)
