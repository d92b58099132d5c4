"""JSON files a user may hand us (policies, sensitivity tables): read with one-line errors,
written atomically so a kill leaves the old file or the new one, never half of one."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from shared.textfile import file_problem, read_text
from workloads.errors import UserError


def read_json(path: str | Path, what: str, noun: str) -> Any:
    """The parsed document at ``path``; ``what`` names the file in errors ("policy file"),
    ``noun`` the thing it should hold ("policy"). The text is decoded by ``shared.textfile``
    (BOMs honoured, else strict UTF-8, binaries refused)."""
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise UserError(f"{what} '{path}' {problem}")
    try:
        return json.loads(read_text(path, what=what, error=UserError))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except (ValueError, RecursionError):  # e.g. a 5000-digit integer, or [[[[... nested too deep
        raise UserError(f"{path}: not a {noun} (JSON too large or too deeply nested)") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None


def output_mode(*, directory: bool = False) -> int:
    """The mode a new file (or ``directory``) gets under the current umask: 0644 (0755) under
    the usual 022. ``tempfile`` makes 0600 files and 0700 folders, private to their owner."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temp file in ``path``'s folder, then rename it to ``path``: a
    killed run leaves the old file or the new one, never half of one. The file is readable like
    any other output (``output_mode``; ``mkstemp`` alone would leave it 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, output_mode())
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = None) -> None:
    """Write ``obj`` as JSON through ``write_atomic``."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=indent)))
