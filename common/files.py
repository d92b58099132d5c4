"""Atomic file writes: a killed or failing run leaves the old file or the new one, never half
of one, and no temporary file behind."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["output_mode", "write_atomic"]


def output_mode(*, directory: bool = False) -> int:
    """The mode a new file (or ``directory``) gets under the current umask: 0644 (0755) under
    the usual 022. ``tempfile`` makes 0600 files and 0700 folders, private to their owner."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it to ``path``.

    The temporary file is hidden (``.NAME.*``), ends in ``path``'s suffix (so a writer that
    infers the format from the name still sees it) and gets the mode any new file gets under
    the current umask (``output_mode``: 0644 under the usual 022) before the rename. Creating
    the folder is the caller's choice.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OSError: the folder does not exist or is not writable (nothing is left behind);
        whatever ``write`` raises, after removing the temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix,
                               dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, output_mode())
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
