"""Windows of layers, their exits, and the order in which adaptive tuning visits them.

A window is a run of consecutive decoder layers ``[start, end]`` whose LoRA adapters are
trained through an exit head placed after layer ``end`` (the window's exit). A schedule says
which window each tuning step trains:

- ``sequential`` (the paper's): the window moves through the depth, from the shallowest exit
  to the deepest, each window getting an equal share of consecutive steps;
- ``round_robin``: the windows take turns, one step each;
- ``random``: each step draws a window uniformly (seeded).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from workloads.errors import UserError

__all__ = ["DEFAULT_NUM_EXITS", "SCHEDULES", "Window", "default_exits", "make_windows", "schedule"]

SCHEDULES = ("sequential", "round_robin", "random")
DEFAULT_NUM_EXITS = 4


@dataclass(frozen=True, order=True)
class Window:
    """A window of consecutive decoder layers ``start..end`` (inclusive) that adaptive layer tuning
    trains through the exit at ``end`` (Edge-LLM's adaptive layer tuning).
    """
    start: int  # first decoder layer with trainable adapters
    end: int  # last one; the exit head reads this layer's output

    @property
    def exit_layer(self) -> int:
        """The layer whose output the window's exit head reads (``end``)."""
        return self.end

    @property
    def layers(self) -> range:
        """The window's layer indices."""
        return range(self.start, self.end + 1)

    def to_list(self) -> list[int]:
        """``[start, end]``, for JSON."""
        return [self.start, self.end]


def default_exits(num_layers: int, window: int, num_exits: int = DEFAULT_NUM_EXITS) -> list[int]:
    """Exits at the ends of the top ``num_exits`` non-overlapping windows of ``window`` layers:
    the final layer is always an exit (the model's own output), the others every ``window``
    layers below it."""
    count = max(1, min(num_exits, num_layers // window))
    return sorted(num_layers - 1 - k * window for k in range(count))


def make_windows(num_layers: int, window: int, exits: list[int]) -> list[Window]:
    """One window of ``window`` layers ending at each exit (clipped at layer 0)."""
    if window < 1:
        raise UserError(f"--window must be at least 1 layer (got {window})")
    if window > num_layers:
        raise UserError(f"--window {window} is larger than the model's {num_layers} layers")
    if not exits:
        raise UserError("at least one exit layer is needed")
    bad = [e for e in exits if not 0 <= e < num_layers]
    if bad:
        raise UserError(f"exit layer(s) {bad} outside 0..{num_layers - 1}")
    return [Window(max(0, e - window + 1), e) for e in sorted(set(exits))]


def schedule(windows: list[Window], steps: int, kind: str = "sequential", *, seed: int = 0) -> list[Window]:
    """The window trained at each of ``steps`` tuning steps."""
    if kind not in SCHEDULES:
        raise UserError(f"unknown schedule '{kind}': use one of {', '.join(SCHEDULES)}")
    if kind == "sequential":
        # Equal shares of consecutive steps; the first windows take the remainder.
        return [windows[(i * len(windows)) // steps] for i in range(steps)]
    if kind == "round_robin":
        return [windows[i % len(windows)] for i in range(steps)]
    rng = random.Random(seed)
    return [rng.choice(windows) for _ in range(steps)]
