"""Planning a sweep: hardware configs x grid points x traces, each point with a content key.

Planning happens in the parent process before anything is simulated or written, so every
mistake a user can make in the flags (no config matches a glob, a missing trace, a malformed
``--grid``) surfaces as one ``SweepError`` line while the output folder is still untouched.
A grid point whose overrides make a config invalid (``pe.rows=0``) is *not* a user error: it
becomes a point with ``error`` set, recorded as a failed row.

A point's key is a hash of what determines its numbers: the resolved (validated, overridden)
config dict, the content hash of the trace files, the dataflow and the objective. Renaming a
trace or a config file therefore keeps its results; editing either recomputes them.
"""
from __future__ import annotations

import glob
import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.textfile import file_problem
from sim.config import HwConfig, check_key, hw_from_dict, load_hw, parse_value
from sim.config import parse_overrides as config_overrides
from sim.dataflow import DATAFLOWS
from sim.errors import ConfigError, SweepError
from sim.foreign import hw_translation
from sim.scheduler import MAPPING_OBJECTIVES
from sim.sweep.worker import cached_trace
from sim.trace import tensors_path_for

__all__ = [
    "ConfigInfo", "GridAxis", "Point", "SweepPlan", "TraceInfo", "build_plan", "expand_hw",
    "file_hash", "grid_points", "load_configs", "load_traces", "parse_grid", "parse_overrides",
    "point_key",
]

# Bump when the meaning of a stored row changes, so old rows are recomputed, not reused.
KEY_VERSION = 1
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class GridAxis:
    """One swept hardware field: a dotted key and its values (parsed as YAML scalars)."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class ConfigInfo:
    """A validated base hardware config and where it came from."""

    path: Path
    hw: HwConfig
    label: str  # unique name used in tables and plots (the config's ``name`` if unique)
    dataflow: str | None = None  # fixed by the file (a SCALE-Sim .cfg's Dataflow), or None


@dataclass(frozen=True)
class TraceInfo:
    """A validated trace file: its provenance header and the hash of its content."""

    path: Path
    label: str  # unique short name (file stem) used in tables and plots
    header: dict[str, Any]
    content_hash: str  # sha256 of NAME.csv + NAME.tensors.csv (if present), hex
    has_tensors: bool


@dataclass(frozen=True)
class Point:
    """One sweep point: a config under one grid point, on one trace."""

    index: int  # position in the plan (row order of sweep.csv)
    config: int  # index into SweepPlan.configs
    grid: tuple[Any, ...]  # one value per SweepPlan.axes entry
    trace: int  # index into SweepPlan.traces
    key: str  # content key (see module docstring)
    hw: HwConfig | None  # resolved config; None when the overrides are invalid
    error: str | None = None  # one-line reason when hw is None
    dataflow: str = "auto"  # the dataflow this point runs (requested, or its config's)


@dataclass(frozen=True)
class SweepPlan:
    """Everything a sweep will compute, in row order."""

    configs: tuple[ConfigInfo, ...]
    axes: tuple[GridAxis, ...]
    traces: tuple[TraceInfo, ...]
    points: tuple[Point, ...]
    dataflow: str | None  # as requested; None: each config's own (auto unless it fixes one)
    objective: str
    fixed: dict[str, Any] = field(default_factory=dict)

    @property
    def grid_size(self) -> int:
        """Number of grid points (product of the axes' lengths; 1 without --grid)."""
        size = 1
        for axis in self.axes:
            size *= len(axis.values)
        return size


# ----------------------------------------------------------------------------- parsing

def parse_grid(specs: Iterable[str] | Mapping[str, Sequence[Any]]) -> tuple[GridAxis, ...]:
    """Parse ``--grid`` flags (``"pe.rows=8,16,32"``) or a mapping ``{"pe.rows": [8, 16]}``.

    Values are split on commas and parsed as YAML scalars, exactly like ``--set`` values.

    Raises:
        SweepError: a spec without ``=``, an empty value, a repeated key or an unknown field.
    """
    axes: list[GridAxis] = []
    if isinstance(specs, Mapping):
        items = [(str(k), tuple(v) if isinstance(v, (list, tuple)) else (v,))
                 for k, v in specs.items()]
        for key, _ in items:
            check_key(key, flag="--grid", error=SweepError)
    else:
        items = []
        for spec in specs:
            key, sep, raw = str(spec).partition("=")
            key = key.strip()
            if not sep or not key:
                raise SweepError(f"--grid {spec!r}: expected KEY=V1,V2,..., e.g. "
                                 f"pe.rows=8,16,32")
            parts = [p.strip() for p in raw.split(",")]
            if not raw.strip() or any(p == "" for p in parts):
                raise SweepError(f"--grid {spec!r}: empty value (expected KEY=V1,V2,..., "
                                 f"e.g. pe.rows=8,16,32)")
            check_key(key, flag="--grid", error=SweepError)
            items.append((key, tuple(parse_value(p) for p in parts)))
    seen: set[str] = set()
    for key, values in items:
        if key in seen:
            raise SweepError(f"--grid {key}: given twice (put all values in one flag, "
                             f"e.g. {key}=8,16,32)")
        if not values:
            raise SweepError(f"--grid {key}: no values")
        if len(set(map(repr, values))) != len(values):
            raise SweepError(f"--grid {key}: repeated value")
        seen.add(key)
        axes.append(GridAxis(key=key, values=tuple(values)))
    return tuple(axes)


def parse_overrides(specs: Iterable[str] | Mapping[str, Any]) -> dict[str, Any]:
    """Parse fixed ``--set key=value`` overrides applied to every point (values as YAML).

    Raises:
        SweepError: an item without ``=`` or a key that names no hardware field.
    """
    out = dict(config_overrides(specs, error=SweepError))
    for key in out:
        check_key(key, flag="--set", error=SweepError)
    return out


def grid_points(axes: Sequence[GridAxis]) -> list[tuple[Any, ...]]:
    """Cartesian product of the axes' values (one empty point when there are no axes)."""
    return list(itertools.product(*(axis.values for axis in axes)))


# ----------------------------------------------------------------------------- inputs

def expand_hw(patterns: Iterable[str | Path]) -> list[Path]:
    """Config files from paths and globs, in the order given (globs sorted), duplicates dropped.

    Raises:
        SweepError: a glob that matches nothing or a path that does not exist.
    """
    found: list[Path] = []
    for pattern in patterns:
        text = str(pattern)
        if _GLOB_CHARS & set(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise SweepError(f"--hw {text!r}: no config file matches this glob")
            found.extend(Path(m) for m in matches)
        else:
            if (problem := file_problem(text)) is not None:
                raise SweepError(f"--hw {text}: hardware config {problem}")
            found.append(Path(text))
    unique: list[Path] = []
    seen: set[Path] = set()
    for path in found:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    if not unique:
        raise SweepError("--hw: no hardware config given")
    return unique


def _unique_labels(names: Sequence[str], paths: Sequence[Path]) -> list[str]:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else f"{name} ({path})"
            for name, path in zip(names, paths, strict=True)]


def load_configs(paths: Sequence[Path]) -> tuple[ConfigInfo, ...]:
    """Validate every base config (a broken file is a user error for the whole sweep)."""
    hws = [load_hw(p) for p in paths]
    labels = _unique_labels([hw.name for hw in hws], paths)
    peers = [hw_translation(p) for p in paths]
    return tuple(ConfigInfo(path=p, hw=hw, label=lab, dataflow=peer.dataflow if peer else None)
                 for p, hw, lab, peer in zip(paths, hws, labels, peers, strict=True))


def file_hash(paths: Iterable[Path]) -> str:
    """sha256 over the bytes of the given files (in order), hex."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.endswith(".tensors.csv").to_bytes(1, "little"))
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_traces(paths: Iterable[str | Path]) -> tuple[TraceInfo, ...]:
    """Validate every trace (header, ops and tensor table) and hash its content.

    Raises:
        SweepError / TraceError: a missing or malformed trace (one line naming it).
    """
    infos: list[TraceInfo] = []
    seen: set[Path] = set()
    raw = list(paths)
    if not raw:
        raise SweepError("--trace: no trace given")
    for item in raw:
        path = Path(item)
        if (problem := file_problem(path)) is not None:
            raise SweepError(f"--trace {path}: trace file {problem}")
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        tensors = tensors_path_for(path)
        # read_trace picks up NAME.tensors.csv when it exists, so the hash covers it then.
        content_hash = file_hash([path, tensors] if tensors.is_file() else [path])
        trace = cached_trace(str(path), content_hash)
        stem = path.name[:-4] if path.name.endswith(".csv") else path.name
        infos.append(TraceInfo(path=path, label=stem, header=dict(trace.header),
                               content_hash=content_hash,
                               has_tensors=trace.tensors is not None))
    labels = _unique_labels([t.label for t in infos], [t.path for t in infos])
    return tuple(TraceInfo(path=t.path, label=lab, header=t.header, content_hash=t.content_hash,
                           has_tensors=t.has_tensors)
                 for t, lab in zip(infos, labels, strict=True))


# ----------------------------------------------------------------------------- the plan

def point_key(hw: Mapping[str, Any], trace_hash: str, dataflow: str, objective: str) -> str:
    """Content key of a point: hash of resolved config dict, trace content, dataflow, objective."""
    blob = json.dumps({"v": KEY_VERSION, "hw": hw, "trace": trace_hash, "dataflow": dataflow,
                       "objective": objective}, sort_keys=True, separators=(",", ":"),
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def build_plan(configs: Sequence[ConfigInfo], axes: Sequence[GridAxis],
               traces: Sequence[TraceInfo], *, dataflow: str | None = None,
               objective: str = "latency", fixed: Mapping[str, Any] | None = None) -> SweepPlan:
    """Every config x grid point x trace, with resolved configs and content keys.

    Overrides are ``fixed`` (``--set``) then the grid point's values (the grid wins).
    ``dataflow`` None runs each config with its own (a SCALE-Sim .cfg fixes one), else auto.
    """
    if dataflow is not None and dataflow not in ("auto", *DATAFLOWS):
        raise SweepError(f"--dataflow must be auto, {', '.join(DATAFLOWS)} (got {dataflow!r})")
    if objective not in MAPPING_OBJECTIVES:
        raise SweepError(f"--objective must be one of {', '.join(MAPPING_OBJECTIVES)} "
                         f"(got {objective!r})")
    fixed = dict(fixed or {})
    points: list[Point] = []
    for ci, info in enumerate(configs):
        base = info.hw.model_dump(mode="json", exclude_none=True)
        point_dataflow = dataflow or info.dataflow or "auto"
        for combo in grid_points(axes):
            overrides = {**fixed, **{a.key: v for a, v in zip(axes, combo, strict=True)}}
            hw: HwConfig | None
            try:
                hw = hw_from_dict(base, overrides, source=str(info.path)) if overrides \
                    else info.hw
                resolved: dict[str, Any] = hw.model_dump(mode="json")
                error = None
            except ConfigError as exc:
                hw, error = None, str(exc)
                # An invalid config has no resolved dict; key it by base + overrides instead.
                resolved = {"invalid": True, "base": base, "overrides": overrides}
            for ti, trace in enumerate(traces):
                points.append(Point(index=len(points), config=ci, grid=tuple(combo), trace=ti,
                                    key=point_key(resolved, trace.content_hash,
                                                  point_dataflow, objective),
                                    hw=hw, error=error, dataflow=point_dataflow))
    return SweepPlan(configs=tuple(configs), axes=tuple(axes), traces=tuple(traces),
                points=tuple(points), dataflow=dataflow, objective=objective, fixed=fixed)
