"""Atomic file writes: a killed run leaves the old file or the new one, never half of one."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from common.files import write_atomic

__all__ = ["markdown_table", "save_figure", "write_csv", "write_json", "write_text"]


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``common.files.write_atomic`` into ``path``, creating its folder first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, write)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file and rename: a reader never sees half a file)."""
    _atomic(Path(path), lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` as indented JSON (non-JSON values as their ``str``), atomically."""
    write_text(path, json.dumps(obj, indent=1, default=str) + "\n")


def write_csv(path: str | Path, df: pd.DataFrame) -> None:
    """Write ``df`` to ``path`` as CSV without the index, atomically."""
    _atomic(Path(path), lambda tmp: df.to_csv(tmp, index=False))


def save_figure(path: str | Path, fig: Any) -> None:
    """Save a matplotlib figure atomically (format from the file suffix)."""
    path = Path(path)
    _atomic(path, lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight", format=path.suffix.lstrip(".")))


def markdown_table(df: pd.DataFrame, *, index: bool = False, digits: int = 4) -> str:
    """A GitHub-markdown table of ``df`` (floats rounded to ``digits`` significant places)."""
    frame = df.reset_index() if index else df

    def cell(v: Any) -> str:
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])
