"""Decoding a user's text file, the same way for every reader (corpora, JSON lines, policies,
tables, traces, hardware configs).

- A byte-order mark is honoured: UTF-8, UTF-16 (LE/BE) and UTF-32 (LE/BE). This is how
  Windows tools write text (PowerShell's ``>`` writes UTF-16LE with a BOM).
- Anything else is strict UTF-8. A byte that does not decode is a one-line error naming the
  file and the byte offset, never a silent U+FFFD (which turns a UTF-16 file without a BOM,
  or a Latin-1 file, into garbage that still "works").
- Line ends are normalized: ``\\r\\n`` and a lone ``\\r`` become ``\\n`` (Python's universal
  newlines), so a CRLF file gives the same text, and so the same tokens, as an LF one.
- A binary file (a NUL byte, or a NUL character after decoding) is refused.

Standard library only: ``sim`` (which must not import torch or ``workloads``) and ``workloads``
both use it.
"""
from __future__ import annotations

import codecs
from pathlib import Path

__all__ = ["BOMS", "decode_text", "file_problem", "read_text"]

# Longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_FIX = "save it as UTF-8 (or as UTF-16/UTF-32 with a byte-order mark)"


def decode_text(data: bytes, *, source: str, what: str = "file",
                error: type[Exception] = ValueError) -> str:
    """The text of ``data`` (the bytes of ``source``), decoded as the module docstring says.

    Args:
        data: the file's bytes.
        source: the file's name, quoted in errors.
        what: what the file should be ("text corpus", "policy file"), quoted in errors.
        error: the exception class to raise (the caller's one-line user error).

    Raises:
        error: a binary file, or bytes that do not decode (message names the byte offset).
    """
    encoding, skip = "utf-8", 0
    for bom, name in BOMS:
        if data.startswith(bom):
            encoding, skip = name, len(bom)
            break
    else:
        nul = data.find(b"\x00")
        if nul >= 0:
            wide = _guess_wide(data)
            if wide:
                raise error(f"{source}: apparently {wide} text without a byte-order mark "
                            "(NUL byte at "
                            f"offset {nul}); {_FIX}")
            raise error(f"{source}: a binary file (NUL byte at offset {nul}), not a {what}")
    try:
        text = data[skip:].decode(encoding)  # strict
    except UnicodeDecodeError as exc:
        offset = skip + exc.start
        label = encoding.upper().replace("-LE", "LE").replace("-BE", "BE")
        bad = data[offset:offset + 1].hex()
        marked = f" although it starts with a {label} byte-order mark" if skip else ""
        raise error(f"{source}: not {label} text{marked}: byte 0x{bad} at offset {offset} "
                    f"does not decode; {_FIX}") from None
    nul_char = text.find("\x00")
    if nul_char >= 0:
        raise error(f"{source}: a binary file (NUL character {nul_char} after the "
                    f"{encoding.upper()} "
                    f"byte-order mark), not a {what}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text(path: str | Path, *, what: str = "file", error: type[Exception] = ValueError) -> str:
    """``decode_text`` of the file at ``path``.

    Raises:
        OSError: the file cannot be read (missing, a folder, no permission): the caller words it.
        error: a binary file or bytes that do not decode.
    """
    path = Path(path)
    return decode_text(path.read_bytes(), source=str(path), what=what, error=error)


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file, in words for an error message ("not found",
    "is a folder, not a file"), or None when it is a regular file."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "is a folder, not a file"
    if path.exists():
        return "is not a regular file"
    return "not found"


def _guess_wide(data: bytes) -> str:
    """``"UTF-16LE"`` / ``"UTF-16BE"`` when NULs sit at every other byte of ASCII-looking text
    (wide text saved without a byte-order mark), else ``""``."""
    head = data[:4096]
    if len(head) < 8:
        return ""
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "UTF-16LE"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "UTF-16BE"
    return ""
