"""Hardware configuration: the YAML schema, its validation and ``--set`` overrides.

A config file looks like this (every section and key is listed in ``docs/results/sim.md``)::

    name: edge_llm
    clock_mhz: 800
    pe: {rows: 32, cols: 32, macs_per_pe_per_cycle: 1, accum_bits: 32}
    precision: {model: scalable, base_bits: 16, min_bits: 2, operands: weight}
    sparsity: {support: nm, nm_patterns: ["2:4"], efficiency: 1.0, metadata_bits: 0}
    sram: {input_kib: 128, weight_kib: 256, output_kib: 128, banks: 16, bank_width_bits: 128,
           double_buffering: true}
    dram: {bandwidth_gbps: 25.6, capacity_gib: 4, energy_pj_per_bit: 4.0}
    energy: {mac_pj: 0.4, sram_pj_per_byte: 1.2, static_mw: 50}
    vector: {lanes: 32, elements_per_cycle: {add: 1, exp: 0.25, rsqrt: 0.25, reduce: 1, move: 1},
             fusion: none}

``vector`` is optional (see ``Vector`` for its stated defaults: ``lanes = pe.cols``, exp and
rsqrt at a quarter of add, energy per element from ``energy.mac_pj``, no fusion); so is
``vector.pj_per_element`` ({add, exp, rsqrt, reduce, move} in pJ).

Unknown keys are rejected, sizes must be positive, numbers finite and within 1e-9..1e12 of
their unit (or 0), and every error is one line naming the field:
``hwconfigs/x.yaml: pe.rows: must be > 0 (got -4)``.
"""
from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, cast, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from common.textfile import file_problem, read_text
from sim.errors import ConfigError, SimError
from sim.foreign import translate_hw

__all__ = [
    "DEFAULT_AREA", "VECTOR_PJ_PER_MAC", "Area", "Dram", "Energy", "HwConfig", "PEArray",
    "Precision", "PrecisionModel", "Sparsity", "SparsitySupport", "Sram", "Vector", "VectorEnergy",
    "VectorFusion", "VectorRates", "apply_overrides", "check_key", "config_help", "config_keys",
    "hw_from_dict", "load_hw", "parse_nm", "parse_overrides", "parse_value",
]


# Magnitudes a number in a config may have (besides 0), in its field's unit: wide enough for
# any device, narrow enough that cycles, bytes and joules stay finite in float64 (a clock of
# 1e308 MHz or 1e-300 MACs per cycle would overflow them to inf or NaN).
NUMBER_RANGE = (1e-9, 1e12)


class _Strict(BaseModel):
    """Base: unknown keys are errors (a typo must not silently fall back to a default); numbers
    are finite, not booleans, and 0 or of magnitude within ``NUMBER_RANGE``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def _is_number(cls, info: ValidationInfo) -> bool:
        if info.field_name is None:
            return False
        ann = cls.model_fields[info.field_name].annotation
        return bool({int, float} & {ann, *get_args(ann)})

    # Pairs of fields that give one quantity in two units: exactly one of each pair is set.
    one_unit_of: ClassVar[tuple[tuple[str, str], ...]] = ()

    @model_validator(mode="after")
    def _exactly_one_unit(self) -> Self:
        for first, second in self.one_unit_of:
            if (getattr(self, first) is None) == (getattr(self, second) is None):
                raise ValueError(f"give exactly one of {first} or {second}")
        return self

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads yes/no/on/true as booleans, which pydantic would take as 1 and 0.
        if isinstance(value, bool) and cls._is_number(info):
            raise ValueError(f"expected a number (got {value!r})")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _in_range(cls, value: Any, info: ValidationInfo) -> Any:
        lo, hi = NUMBER_RANGE
        if (isinstance(value, (int, float)) and not isinstance(value, bool) and value != 0
                and not lo <= abs(value) <= hi and cls._is_number(info)):
            raise ValueError(f"out of range: 0 or a magnitude within {lo:g}..{hi:g} "
                             f"(got {_short(value)})")
        return value


class PEArray(_Strict):
    """The systolic PE array."""

    rows: int = Field(gt=0, description="PE rows (the reduction dimension K maps here)")
    cols: int = Field(gt=0, description="PE columns")
    macs_per_pe_per_cycle: float = Field(
        1.0, gt=0, description="MACs one PE completes per cycle at precision.base_bits")
    accum_bits: int = Field(32, gt=0, le=64, description="partial-sum width, bits")


class PrecisionModel(StrEnum):
    """How operand bit width changes throughput.

    ``scalable``: a bit-fusion style PE; throughput x base_bits / bits, bits rounded up to a
    power-of-two fraction of base_bits and floored at min_bits. ``bit_serial``: one bit per
    cycle, cycles x bits / base_bits for any integer bits >= min_bits. ``fixed``: no gain below
    base_bits; wider operands take ceil(bits / base_bits) passes.
    """

    scalable = "scalable"
    bit_serial = "bit_serial"
    fixed = "fixed"


class Precision(_Strict):
    """Precision model of the PEs."""

    model: PrecisionModel = PrecisionModel.fixed
    base_bits: int = Field(16, ge=1, le=32, description="bits at which macs_per_pe_per_cycle holds")
    min_bits: int = Field(1, ge=1, le=32, description="narrowest width that still speeds up")
    operands: Literal["weight", "both"] = Field(
        "weight", description="operand(s) whose bits scale throughput: B only, or A and B")

    @model_validator(mode="after")
    def _min_le_base(self) -> Precision:
        if self.min_bits > self.base_bits:
            raise ValueError(f"min_bits must be <= base_bits ({self.base_bits})")
        return self


class SparsitySupport(StrEnum):
    """Zero skipping in operand B: none, structured N:M, or unstructured."""

    none = "none"
    nm = "nm"
    unstructured = "unstructured"


def parse_nm(pattern: str) -> tuple[int, int]:
    """Parse ``"N:M"`` (N non-zeros kept in every M) into ``(N, M)``; ValueError if malformed."""
    parts = str(pattern).split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"bad N:M pattern {pattern!r} (expected e.g. '2:4')")
    n, m = int(parts[0]), int(parts[1])
    if not 0 < n < m:
        raise ValueError(f"bad N:M pattern {pattern!r} (need 0 < N < M)")
    return n, m


class Sparsity(_Strict):
    """Sparsity support for operand B (weights)."""

    support: SparsitySupport = SparsitySupport.none
    nm_patterns: list[str] = Field(
        default_factory=list, description="N:M patterns the PEs skip, e.g. ['2:4'] (support: nm)")
    efficiency: float = Field(
        1.0, gt=0, le=1, description="fraction of zeros actually skipped (support: unstructured)")
    metadata_bits: float = Field(
        0.0, ge=0, description="index bits stored per non-zero (support: unstructured; for "
                               "weights whose packed bytes the trace does not give)")
    compressed_storage: bool = Field(
        False, description="keep sparse B compressed in DRAM even without compute skipping "
                           "(for weights whose packed bytes the trace does not give)")

    @field_validator("nm_patterns", mode="before")
    @classmethod
    def _quoted_patterns(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted 2:4 as the base-60 integer 124: say so instead of
        # "should be a valid string (got 124)".
        if isinstance(value, list) and any(type(p) is int for p in value):
            raise ValueError("quote each N:M pattern, e.g. ['2:4'] (YAML reads an unquoted "
                             "2:4 as the number 124)")
        return value

    @field_validator("nm_patterns")
    @classmethod
    def _check_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            parse_nm(pattern)
        return value

    @model_validator(mode="after")
    def _nm_needs_patterns(self) -> Sparsity:
        if self.support is SparsitySupport.nm and not self.nm_patterns:
            raise ValueError("support 'nm' needs nm_patterns, e.g. ['2:4']")
        return self


class Sram(_Strict):
    """On-chip buffers: separate input/weight/output buffers, or one unified buffer."""

    input_kib: float | None = Field(None, gt=0, description="operand A buffer, KiB")
    weight_kib: float | None = Field(None, gt=0, description="operand B buffer, KiB")
    output_kib: float | None = Field(None, gt=0, description="output / partial-sum buffer, KiB")
    unified_kib: float | None = Field(None, gt=0, description="one buffer shared by A, B, out, KiB")
    banks: int = Field(16, gt=0, description="independent banks (one access per bank per cycle)")
    bank_width_bits: int = Field(128, gt=0, description="bits per bank access")
    double_buffering: bool = Field(
        True, description="two copies of each tile so DRAM transfer overlaps compute")

    @model_validator(mode="after")
    def _one_layout(self) -> Sram:
        split = [self.input_kib, self.weight_kib, self.output_kib]
        if self.unified_kib is not None:
            if any(v is not None for v in split):
                raise ValueError("give either unified_kib or input_kib/weight_kib/output_kib, "
                                 "not both")
        elif any(v is None for v in split):
            raise ValueError("give unified_kib, or all of input_kib, weight_kib and output_kib")
        return self

    @property
    def total_bytes(self) -> int:
        """Total SRAM capacity in bytes."""
        kib = self.unified_kib if self.unified_kib is not None else (
            (self.input_kib or 0) + (self.weight_kib or 0) + (self.output_kib or 0))
        return int(kib * 1024)

    @property
    def bytes_per_cycle(self) -> float:
        """Peak SRAM bandwidth to the array, bytes per cycle (all banks)."""
        return self.banks * self.bank_width_bits / 8


class Dram(_Strict):
    """Off-chip memory."""

    bandwidth_gbps: float = Field(gt=0, description="sustained bandwidth, GB/s (1e9 bytes/s)")
    capacity_gib: float | None = Field(None, gt=0, description="capacity, GiB")
    capacity_mib: float | None = Field(None, gt=0, description="capacity, MiB")
    energy_pj_per_bit: float = Field(ge=0, description="access energy, pJ per bit moved")

    one_unit_of = (("capacity_gib", "capacity_mib"),)

    @property
    def capacity_bytes(self) -> int:
        """Capacity in bytes."""
        if self.capacity_gib is not None:
            return int(self.capacity_gib * 2**30)
        return int((self.capacity_mib or 0) * 2**20)


class Energy(_Strict):
    """Energy per action (dynamic) and static power."""

    mac_pj: float = Field(ge=0, description="pJ per MAC at precision.base_bits")
    sram_pj_per_byte: float | None = Field(None, ge=0, description="pJ per SRAM byte accessed")
    sram_pj_per_bit: float | None = Field(None, ge=0, description="pJ per SRAM bit accessed")
    static_mw: float = Field(0.0, ge=0, description="leakage + clock power while busy, mW")

    one_unit_of = (("sram_pj_per_byte", "sram_pj_per_bit"),)

    @property
    def sram_pj_per_byte_eff(self) -> float:
        """SRAM access energy in pJ per byte, whichever unit the file used."""
        if self.sram_pj_per_byte is not None:
            return self.sram_pj_per_byte
        return 8.0 * (self.sram_pj_per_bit or 0.0)


class Area(_Strict):
    """Optional area proxy coefficients (area ~ PE count and SRAM bytes).

    A proxy for ranking designs, not a layout estimate: ``pe_um2`` covers a MAC and its
    registers, ``sram_um2_per_kib`` an SRAM macro's density. ``DEFAULT_AREA`` (used by
    ``HwConfig.area_proxy(fallback=True)``, e.g. in sweep tables) holds the coefficients of
    ``hwconfigs/edge_llm.yaml``: a 16-bit precision-scalable MAC with pipeline registers, and
    1.5 mm^2 per MiB of SRAM, a 28 nm-class macro density.
    """

    pe_um2: float = Field(gt=0, description="area of one PE, um^2")
    sram_um2_per_kib: float = Field(gt=0, description="SRAM area per KiB, um^2")


DEFAULT_AREA = Area(pe_um2=2500.0, sram_um2_per_kib=1500.0)


class VectorRates(_Strict):
    """Elements one vector lane completes per cycle, per op class (docs/trace.md)."""

    add: float = Field(1.0, gt=0, description="add, sub, mul, compare, ... per lane per cycle")
    exp: float = Field(0.25, gt=0, description="exp, log, sigmoid, SiLU, tanh per lane per cycle")
    rsqrt: float = Field(0.25, gt=0, description="rsqrt, sqrt, divide per lane per cycle")
    reduce: float = Field(1.0, gt=0,
                          description="elements folded into a sum/max per lane per cycle")
    move: float = Field(1.0, gt=0, description="copy, cast, gather, pack per lane per cycle")


class VectorEnergy(_Strict):
    """Dynamic energy of one element of each op class, pJ (SRAM and DRAM bytes are extra)."""

    add: float = Field(ge=0, description="pJ per add-class element")
    exp: float = Field(ge=0, description="pJ per exp-class element")
    rsqrt: float = Field(ge=0, description="pJ per rsqrt-class element")
    reduce: float = Field(ge=0, description="pJ per reduce-class element")
    move: float = Field(ge=0, description="pJ per move-class element")


class VectorFusion(StrEnum):
    """``elementwise``: a ``fusable`` vector row reads the product it follows straight from the
    array's output buffer instead of DRAM; ``none``: every vector row reads DRAM."""

    none = "none"
    elementwise = "elementwise"


# Default energy of one vector element relative to energy.mac_pj, used when a config gives no
# vector.pj_per_element. add/reduce/move: a 16-bit add is 0.4 pJ against 1.5 pJ for a 16-bit
# multiply plus add (Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm), so 0.27 of a
# MAC; a move is charged like an add (an upper bound: it does no arithmetic). exp/rsqrt: a
# special-function unit evaluates a table lookup plus a quadratic (Oberman and Siu, "A
# high-performance area-efficient multifunction interpolator", ARITH 2005): about two MACs.
VECTOR_PJ_PER_MAC = {"add": 0.27, "exp": 2.0, "rsqrt": 2.0, "reduce": 0.27, "move": 0.27}


class Vector(_Strict):
    """The vector unit beside the array (norms, softmax, activations, residuals, optimizer).

    Optional: a config without it gets ``lanes = pe.cols`` (one lane per array column, as wide
    as the array's output row, like the TPU's activation/vector unit), the default rates (exp
    and rsqrt at a quarter of add, the ratio of special-function to FP32 add throughput per SM
    in the CUDA C++ Programming Guide's arithmetic-instruction table), energy per element from
    ``VECTOR_PJ_PER_MAC`` x ``energy.mac_pj``, and no fusion.
    """

    lanes: int | None = Field(None, gt=0, description="parallel lanes (default: pe.cols)")
    elements_per_cycle: VectorRates = VectorRates()
    pj_per_element: VectorEnergy | None = Field(
        None, description="pJ per element by class (default: VECTOR_PJ_PER_MAC x mac_pj)")
    fusion: VectorFusion = VectorFusion.none


class HwConfig(_Strict):
    """A whole accelerator: PE array, precision, sparsity, SRAM, DRAM, energy, vector unit."""

    name: str = Field(min_length=1, description="the design's name in tables and plots")
    clock_mhz: float = Field(gt=0, description="core clock, MHz")
    pe: PEArray
    precision: Precision = Precision()  # frozen, so one shared default is safe
    sparsity: Sparsity = Sparsity()
    sram: Sram
    dram: Dram
    energy: Energy
    area: Area | None = None
    vector: Vector = Vector()

    @property
    def vector_lanes(self) -> int:
        """Lanes of the vector unit (``vector.lanes``, default ``pe.cols``)."""
        return self.vector.lanes if self.vector.lanes is not None else self.pe.cols

    @property
    def vector_pj_per_element(self) -> dict[str, float]:
        """pJ per vector element by class (given, or derived from ``energy.mac_pj``)."""
        if self.vector.pj_per_element is not None:
            return self.vector.pj_per_element.model_dump()
        return {c: r * self.energy.mac_pj for c, r in VECTOR_PJ_PER_MAC.items()}

    @property
    def pe_count(self) -> int:
        """Number of PEs."""
        return self.pe.rows * self.pe.cols

    @property
    def peak_macs_per_cycle(self) -> float:
        """Array MACs per cycle at base precision, dense."""
        return self.pe_count * self.pe.macs_per_pe_per_cycle

    @property
    def dram_bytes_per_cycle(self) -> float:
        """DRAM bandwidth in bytes per core cycle."""
        return self.dram.bandwidth_gbps * 1e9 / (self.clock_mhz * 1e6)

    def area_proxy(self, *, fallback: bool = False) -> dict[str, Any]:
        """PE count, SRAM bytes and the area proxy in mm^2 (see ``Area``)::

            area_mm2 = (pe_count * pe_um2 + sram_bytes / 1024 * sram_um2_per_kib) / 1e6

        Args:
            fallback: a config without an ``area`` section uses ``DEFAULT_AREA`` (True) or has
                no ``area_mm2`` (False: None).

        Returns:
            ``{"pe_count": int, "sram_bytes": int, "area_mm2": float | None,
            "area_source": "config" | "default" | None}``.
        """
        area, source = self.area, cast(str | None, "config")
        if area is None:
            area, source = (DEFAULT_AREA, "default") if fallback else (None, None)
        sram_bytes = self.sram.total_bytes
        area_mm2 = None if area is None else (
            self.pe_count * area.pe_um2 + sram_bytes / 1024 * area.sram_um2_per_kib) / 1e6
        return {"pe_count": self.pe_count, "sram_bytes": sram_bytes, "area_mm2": area_mm2,
                "area_source": source}


# ----------------------------------------------------------------------------- loading

def _set_dotted(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: bad --set key {key!r} (expected e.g. pe.rows=16)")
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"{where}: --set {key}: {'.'.join(parts[:i + 1])} is not a section")
    node[parts[-1]] = value


def parse_value(raw: str) -> Any:
    """A ``--set`` or ``--grid`` value as YAML (``16`` -> int, ``true`` -> bool, ``""`` ->
    None); text that is no YAML stays text."""
    try:
        return yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        return raw


def parse_overrides(overrides: Iterable[str] | Mapping[str, Any], *, flag: str = "--set",
                    error: type[SimError] = ConfigError) -> list[tuple[str, Any]]:
    """``["pe.rows=16", ...]`` (values parsed by ``parse_value``) or a mapping, as
    ``[(dotted key, value), ...]`` in order.

    Raises:
        error: an item without ``=`` or with an empty key (``ConfigError`` by default).
    """
    if isinstance(overrides, Mapping):
        return [(str(k), v) for k, v in overrides.items()]
    out = []
    for item in overrides:
        key, sep, raw = str(item).partition("=")
        if not sep or not key.strip():
            raise error(f"{flag} {item!r}: expected key=value, e.g. pe.rows=16")
        out.append((key.strip(), parse_value(raw)))
    return out


def _section_model(annotation: Any) -> type[BaseModel] | None:
    """The config section a field holds (its model, also inside ``X | None``), else None."""
    for cand in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _allowed_fields(loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that owns ``loc`` (for 'unknown field' messages)."""
    model: type[BaseModel] | None = HwConfig
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(part, str) and model else None
        model = _section_model(field.annotation) if field is not None else None
        if model is None:
            return []
    return list(model.model_fields) if model is not None else []


def check_key(key: str, *, flag: str = "--set", error: type[SimError] = ConfigError) -> None:
    """Reject a dotted key that names no field of the hardware schema, before any config is
    built (in a sweep a typo would otherwise fail every point, one by one).

    Raises:
        error: an empty part, a part below a plain field, or an unknown field (the message
            lists the allowed ones).
    """
    parts = key.split(".")
    if not all(parts):
        raise error(f"{flag} {key!r}: empty part in dotted key (expected e.g. pe.rows)")
    model: type[BaseModel] | None = HwConfig
    for i, part in enumerate(parts):
        if model is None:
            raise error(f"{flag} {key!r}: {'.'.join(parts[:i])} is not a section")
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "top level"
            raise error(f"{flag} {key!r}: unknown field {part!r} in {where} "
                        f"(allowed: {', '.join(fields)})")
        model = _section_model(fields[part].annotation)


def config_keys(model: type[BaseModel] = HwConfig, prefix: str = ""
                ) -> list[tuple[str, FieldInfo]]:
    """Every settable field of the schema as ``(dotted key, pydantic FieldInfo)``, in schema
    order (sections walked depth first)."""
    out: list[tuple[str, FieldInfo]] = []
    for name, info in model.model_fields.items():
        section = _section_model(info.annotation)
        if section is None:
            out.append((prefix + name, info))
        else:
            out.extend(config_keys(section, f"{prefix}{name}."))
    return out


def _choices(annotation: Any) -> list[str]:
    """The allowed values of an enum or ``Literal`` field (empty for any other type)."""
    for cand in (annotation, *get_args(annotation)):
        if isinstance(cand, type) and issubclass(cand, StrEnum):
            return [m.value for m in cand]
    return [str(a) for a in get_args(annotation)] if get_origin(annotation) is Literal else []


def config_help() -> str:
    """One line per hardware key for ``--help``, generated from the schema: the key, its
    description with units, its choices and its default (``--set`` and ``--grid`` keys)."""
    items = []
    for key, info in config_keys():
        parts = [info.description] if info.description else []
        choices = _choices(info.annotation)
        if choices:
            parts.append("|".join(choices))
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            if default is not None:
                parts.append(f"default {getattr(default, 'value', default)}")
        items.append(f"{key} ({'; '.join(parts)})" if parts else key)
    return ", ".join(items)


def _short_repr() -> reprlib.Repr:
    """Bounded repr of a bad value: one short line even for a huge (or YAML alias-bomb) value."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxstring, r.maxother = 2, 4, 4, 60, 60
    return r


_short = _short_repr().repr


def _key(part: Any) -> str:
    """One part of a dotted field path; user-typed keys with control characters are quoted."""
    text = str(part)
    return text if text.isprintable() else repr(text)


def _describe(err: Mapping[str, Any]) -> str:
    loc = tuple(err.get("loc", ()))
    path = ".".join(_key(p) for p in loc) or "(top level)"
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = _short(err.get("input"))
    if kind == "missing":
        return f"{path}: missing required field"
    if kind == "extra_forbidden":
        allowed = _allowed_fields(loc)
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"{path}: unknown field{hint}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{path}: must be {bounds[kind]} {limit} (got {got})"
    if kind == "enum":
        return f"{path}: must be one of {ctx.get('expected')} (got {got})"
    if kind == "value_error":
        return f"{path}: {ctx.get('error', err.get('msg'))}"
    return f"{path}: {err.get('msg', 'invalid')} (got {got})"


def hw_from_dict(data: object, overrides: Iterable[str] | Mapping[str, Any] = (),
                 *, source: str = "<config>") -> HwConfig:
    """Validate a config mapping, after applying dotted overrides.

    Args:
        data: the parsed YAML (anything but a mapping is a ``ConfigError``).
        overrides: ``["pe.rows=16", "dram.bandwidth_gbps=8"]`` (values parsed as YAML) or a
            mapping ``{"pe.rows": 16}``.
        source: name used at the start of error messages (usually the file path).

    Raises:
        ConfigError: one line, ``SOURCE: dotted.field: problem (got value)``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: top level must be a mapping of sections, "
                          f"got {type(data).__name__}")
    try:
        tree: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data)))  # deep copy, plain
    except (yaml.YAMLError, RecursionError):
        raise ConfigError(f"{source}: not a plain mapping of YAML values (nested too deeply "
                          f"or of a type YAML cannot hold)") from None
    for key, value in parse_overrides(overrides):
        _set_dotted(tree, key, value, source)
    try:
        return HwConfig.model_validate(tree)
    except ValidationError as exc:
        # A typo shows up as an unknown key plus a missing one; the unknown key is the clue.
        errors = sorted(exc.errors(), key=lambda e: e.get("type") != "extra_forbidden")
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(errors[0])}{more}") from None


def load_hw(path: str | Path, overrides: Iterable[str] | Mapping[str, Any] = ()) -> HwConfig:
    """Read and validate a hardware YAML file, a SCALE-Sim ``.cfg`` or a ZigZag accelerator
    YAML (translated by ``sim.foreign``; ``sim.foreign.hw_translation`` lists the defaults).

    Example:
        >>> hw = load_hw("hwconfigs/edge_llm.yaml", ["pe.rows=16"])
        >>> hw.pe.rows
        16

    Raises:
        ConfigError: missing file, bad YAML or an invalid field (one line naming it).
    """
    path = Path(path)
    problem = file_problem(path)
    if problem is not None:
        raise ConfigError(f"{path}: hardware config {problem}")
    try:
        # common.textfile: BOMs honoured, else strict UTF-8, CRLF normalized, binaries refused.
        text = read_text(path, what="YAML hardware config", error=ConfigError)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = None if path.suffix.lower() == ".cfg" else yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        # ReaderError (control characters) has a reason instead of a problem.
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "syntax error"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    if data is None and path.suffix.lower() != ".cfg":
        raise ConfigError(f"{path}: file is empty")
    # A SCALE-Sim .cfg or a ZigZag accelerator YAML is translated first (sim/foreign).
    foreign = translate_hw(path, text, data)
    if foreign is not None:
        data = foreign.data
    return hw_from_dict(data, overrides, source=str(path))


def apply_overrides(hw: HwConfig, overrides: Iterable[str] | Mapping[str, Any]) -> HwConfig:
    """A new validated config with dotted overrides applied (for sweeps in code)."""
    return hw_from_dict(hw.model_dump(mode="json", exclude_none=True), overrides,
                        source=f"<{hw.name}>")

