"""Phase lines for a long job: what it is doing now, what it found cached, and how long each
phase and the whole job took. Loops inside a phase draw their own tqdm bars (with an ETA).

    phases = Phases(total=3, stream=sys.stderr)
    with phases.phase("sensitivity profiles") as note:
        ...
        note.result = "2 read from the cache, 1 measured"
    # [1/3] sensitivity profiles ...
    #       done in 4.2 min: 2 read from the cache, 1 measured

Nothing is written when ``stream`` is None (library use, tests, worker processes).
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Note", "Phases", "duration"]


def duration(seconds: float) -> str:
    """``seconds`` as a short human duration: "12.3 s", "4.2 min", "1.3 h"."""
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class Note:
    """What a phase tells when it ends (set by the phase's body)."""

    result: str = ""


class Phases:
    """Numbered phase lines on ``stream``; ``total`` is the number of phases announced."""

    def __init__(self, total: int, *, stream: TextIO | None) -> None:
        self.total = total
        self.stream = stream
        self.count = 0
        self.start = time.perf_counter()

    def say(self, text: str) -> None:
        """Print ``text`` as one line on the stream (nothing when the stream is ``None``, as in a worker)."""
        if self.stream is not None:
            print(text, file=self.stream, flush=True)

    @contextmanager
    def phase(self, title: str) -> Iterator[Note]:
        """Announce ``title`` now and its duration (and the body's ``note.result``) at the end."""
        self.count += 1
        self.say(f"[{self.count}/{self.total}] {title} ...")
        note = Note()
        begun = time.perf_counter()
        yield note
        tail = f": {note.result}" if note.result else ""
        self.say(f"      done in {duration(time.perf_counter() - begun)}{tail}")

    def elapsed(self) -> float:
        """Seconds since these phases began."""
        return time.perf_counter() - self.start
