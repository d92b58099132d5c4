"""Files of peer simulators read (and written) as the simulator's own inputs.

Architects arrive with SCALE-Sim ``.cfg`` configs and topology CSVs, or ZigZag accelerator
YAMLs. ``sim.config.load_hw`` and ``sim.trace.read_trace`` hand such a file to this package,
which translates it into the project's schema (docs/trace.md, ``sim.config``). A field the
simulator needs and the peer lacks takes a stated default; every default used is one line of
``Translation.defaults`` (hardware) or of the trace header's ``defaults`` list, and the
commands print them.

Peers and their formats (read from their own code, not re-invented):

- SCALE-Sim v3 (``scalesim`` 3.0.0): ``scale_config.read_conf_file`` for the ``.cfg`` keys,
  ``topology_utils.load_arrays_gemm`` / ``load_arrays_conv`` for topologies; see
  ``sim.foreign.scalesim``.
- ZigZag (``zigzag-dse`` 3.9): ``parser/accelerator_validator.py`` for the accelerator YAML;
  see ``sim.foreign.zigzag``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.textfile import read_text

__all__ = ["Translation", "foreign_trace", "hw_translation", "resolve_dataflow", "stated_defaults",
           "translate_hw"]


@dataclass(frozen=True)
class Translation:
    """A peer's hardware file in the project's schema, before validation.

    Attributes:
        data: the mapping ``sim.config.hw_from_dict`` validates (same keys as a hwconfig YAML).
        source_format: ``scalesim-cfg`` or ``zigzag-yaml``.
        dataflow: the dataflow the peer's array is fixed to (``ws``, ``os``, ``is``), or None
            when the peer leaves the mapping free; the commands use it unless ``--dataflow``
            is given.
        defaults: one line per field the peer does not have, ``key = value (why)``.
        rules: one line per field derived from the peer's own numbers, saying how (for a
            translated file's comment header).
    """

    data: dict[str, Any]
    source_format: str
    dataflow: str | None = None
    defaults: tuple[str, ...] = field(default_factory=tuple)
    rules: tuple[str, ...] = field(default_factory=tuple)


def translate_hw(path: Path, text: str, parsed: Any = None) -> Translation | None:
    """The translation of a peer's hardware file, or None when it is one of ours.

    A ``.cfg`` file is SCALE-Sim's; a YAML mapping with ``memories`` and
    ``operational_array`` is ZigZag's. ``parsed`` is the YAML already loaded by the caller.

    Raises:
        ConfigError: a peer file with a missing or malformed field (one line naming it).
    """
    if path.suffix.lower() == ".cfg":
        from sim.foreign.scalesim import cfg_to_hw

        return cfg_to_hw(text, source=str(path))
    if isinstance(parsed, dict) and "memories" in parsed and "operational_array" in parsed:
        from sim.foreign.zigzag import accelerator_to_hw

        return accelerator_to_hw(parsed, source=str(path))
    return None


def hw_translation(path: str | Path) -> Translation | None:
    """``translate_hw`` of a file on disk (None for a project hwconfig or an unreadable file;
    ``load_hw`` reports the latter)."""
    path = Path(path)
    try:
        text = read_text(path)
    except (OSError, ValueError):
        return None
    parsed = None
    if path.suffix.lower() != ".cfg":
        import yaml

        try:
            parsed = yaml.safe_load(text)
        except (yaml.YAMLError, RecursionError):
            return None
    return translate_hw(path, text, parsed)


def foreign_trace(path: Path, text: str | None = None) -> tuple[dict[str, Any], Any] | None:
    """(header without ``format``, ops rows with the docs/trace.md columns) of a peer's workload
    file, or None when ``path`` is not one (a trace of ours starts with ``# {json}``).

    Today: a SCALE-Sim topology CSV (GEMM ``Layer,M,N,K,`` or convolution rows).

    Raises:
        TraceError: a topology with a malformed row (one line naming it).
    """
    if text is None:
        try:
            text = read_text(path)
        except (OSError, ValueError):
            return None  # read_trace reports it
    first = text.split("\n", 1)[0]
    if first.lstrip().startswith("#"):
        return None
    from sim.foreign.scalesim import is_topology, read_topology

    if not is_topology(first):
        return None
    return read_topology(path, text)


def resolve_dataflow(requested: str | None, peer: Translation | None) -> str:
    """The dataflow a command uses: the one asked for, else the peer file's fixed one, else
    ``auto`` (the per-op choice)."""
    if requested is not None:
        return requested
    return peer.dataflow if peer is not None and peer.dataflow else "auto"


def stated_defaults(peer: Translation | None, header: Mapping[str, Any] | None = None
                    ) -> list[str]:
    """One line per default a peer's hardware file or workload file took (for the output)."""
    lines = [f"hw default ({peer.source_format}): {d}" for d in peer.defaults] if peer else []
    for note in (header or {}).get("defaults", []) or []:
        lines.append(f"trace default ({(header or {}).get('source', 'trace')}): {note}")
    return lines
