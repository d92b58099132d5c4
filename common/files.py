"""Atomic file writes: a killed or failing run leaves the old file or the new one, never half
of one, and no temporary file behind."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary sibling of ``path``, then rename it to ``path``.

    The temporary file is hidden (``.NAME.*``), ends in ``path``'s suffix (so a writer that
    infers the format from the name still sees it) and is made world-readable (0644, like any
    other result file) before the rename. Creating the folder is the caller's choice.

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
        os.chmod(tmp, 0o644)  # mkstemp makes it private (0600)
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
