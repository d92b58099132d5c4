"""JSON files a user may hand us (policies, sensitivity tables): read with one-line errors,
written atomically so a kill leaves the old file or the new one, never half of one."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.files import write_atomic
from common.textfile import file_problem, read_text
from workloads.errors import UserError

__all__ = ["read_json", "write_json_atomic"]


def read_json(path: str | Path, what: str, noun: str) -> Any:
    """The parsed document at ``path``; ``what`` names the file in errors ("policy file"),
    ``noun`` the thing it should hold ("policy"). The text is decoded by ``common.textfile``
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


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = None) -> None:
    """Write ``obj`` as JSON through a temp file in the same folder and a rename
    (``common.files.write_atomic``), creating the folder first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(obj, indent=indent)))
