"""SCALE-Sim v3 files: ``.cfg`` hardware configs and topology CSVs, read and written.

Read from SCALE-Sim 3.0.0's own code (PyPI ``scalesim``):

- ``scale_config.read_conf_file``: ``[architecture_presets]`` ArrayHeight x ArrayWidth PEs,
  IfmapSramSzkB / FilterSramSzkB / OfmapSramSzkB (KiB: ``single_layer_sim`` multiplies by 1024),
  Dataflow ``ws|os|is``; ``[run_presets] InterfaceBandwidth`` ``USER`` (the DRAM interface moves
  ``Bandwidth`` words per cycle) or ``CALC`` (SCALE-Sim sizes the interface so that the array
  never stalls); ``[sparsity]`` SparsitySupport and BlockSize. A word is one byte
  (``single_layer_sim``: ``word_size = 1``).
- ``topology_utils.load_arrays_gemm``: a GEMM row ``name, M, N, K[, N:M],`` is an ifmap of
  M x K times a filter of K x N, i.e. our ``out[M, N] = A[M, K] @ B[K, N]`` with the optional
  N:M sparsity of the filter (our operand B).
- ``topology_utils.load_arrays_conv`` and ``compute/operand_matrix``: a convolution row
  ``name, H, W, R, S, C, F, stride[, N:M],`` is lowered to one GEMM whose ifmap operand matrix
  has one row per output pixel and one column per filter tap: M = E x G output pixels with
  ``E = ceil((H - R + stride) / stride)``, ``G = ceil((W - S + stride) / stride)`` (no padding),
  K = R x S x C, N = F filters. A layer whose name contains ``DP`` (depth-wise) is split by
  SCALE-Sim into C layers of one channel each: here one row with K = R x S and ``count = C``.

Our schema has fields SCALE-Sim does not: they take the defaults below, each listed in the
translation (``DEFAULT_NOTES``). ``sim.export`` writes a ``[edgellm]`` section holding the
whole source config as JSON; SCALE-Sim ignores sections it does not know, and reading the file
back restores every field exactly, except those the user edited in SCALE-Sim's own keys.
"""
from __future__ import annotations

import configparser
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from common.scalesim_cfg import scalesim_cfg
from sim.errors import ConfigError, TraceError
from sim.foreign import Translation

__all__ = ["DEFAULT_NOTES", "WORD_BITS", "cfg_to_hw", "hw_to_cfg", "is_topology",
           "read_topology", "topology_rows", "trace_to_topology"]

WORD_BITS = 8  # SCALE-Sim's word: single_layer_sim.py sets word_size = 1 byte
CLOCK_MHZ = 1000.0  # SCALE-Sim counts cycles only; 1 GHz makes 1 cycle = 1 ns
DRAM_CAPACITY_GIB = 16.0
# Horowitz, "Computing's energy problem", ISSCC 2014 (45 nm, 0.9 V): 8-bit integer multiply
# 0.2 pJ + 8-bit add 0.03 pJ; 64-bit read of a 32 KB SRAM 20 pJ; DRAM 1.3-2.6 nJ per 64 bits.
MAC_PJ = 0.23
SRAM_PJ_PER_BYTE = 2.5
DRAM_PJ_PER_BIT = 20.0
BANK_WIDTH_BITS = 64

DEFAULT_NOTES: dict[str, str] = {
    "clock_mhz": f"clock_mhz = {CLOCK_MHZ:g} (SCALE-Sim counts cycles and has no clock)",
    "precision": f"precision = fixed, {WORD_BITS}-bit (SCALE-Sim's word is one byte; no "
                 f"precision scaling)",
    "accum_bits": "pe.accum_bits = 32 (SCALE-Sim does not size partial sums)",
    "banks": f"sram.banks = ArrayHeight + ArrayWidth, bank_width_bits = {BANK_WIDTH_BITS} "
             f"(SCALE-Sim's SRAM feeds every edge PE each cycle; never the bottleneck)",
    "double_buffering": "sram.double_buffering = true (SCALE-Sim splits each scratchpad "
                        "into an active and a prefetch half: active_buf_frac = 0.5)",
    "capacity": f"dram.capacity_gib = {DRAM_CAPACITY_GIB:g} (SCALE-Sim has no DRAM capacity)",
    "energy": f"energy.mac_pj = {MAC_PJ}, energy.sram_pj_per_byte = {SRAM_PJ_PER_BYTE}, "
              f"dram.energy_pj_per_bit = {DRAM_PJ_PER_BIT} (SCALE-Sim has no energy model; "
              f"Horowitz ISSCC 2014, 45 nm, 8-bit)",
    "calc": "dram.bandwidth_gbps from Bandwidth (InterfaceBandwidth CALC: SCALE-Sim assumes a "
            "stall-free interface; this model charges stalls at that bandwidth)",
    "calc_missing": "dram.bandwidth_gbps = 10 words/cycle (InterfaceBandwidth CALC without "
                    "Bandwidth: SCALE-Sim's example value)",
}
_REQUIRED = ("ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB",
             "Dataflow")
_DATAFLOWS = ("ws", "os", "is")
EXTRA_SECTION = "edgellm"


# ----------------------------------------------------------------------------- .cfg -> hw

def _parse_cfg(text: str, source: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False,
                                       inline_comment_prefixes=("#", ";"))
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{source}: not a readable SCALE-Sim .cfg ({first})") from None
    if not parser.has_section("architecture_presets"):
        raise ConfigError(f"{source}: SCALE-Sim .cfg needs an [architecture_presets] section "
                          f"(ArrayHeight, ArrayWidth, ...)")
    return parser


def _int(parser: configparser.ConfigParser, section: str, key: str, source: str) -> int:
    raw = parser.get(section, key, fallback=None)
    if raw is None:
        raise ConfigError(f"{source}: [{section}] {key}: missing required field")
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{source}: [{section}] {key}: must be an integer (got "
                          f"{raw.strip()!r})") from None
    if value <= 0:
        raise ConfigError(f"{source}: [{section}] {key}: must be > 0 (got {value})")
    return value


def _scalesim_fields(parser: configparser.ConfigParser, source: str) -> dict[str, Any]:
    """SCALE-Sim's own keys, checked (one-line errors naming section and key)."""
    arch = "architecture_presets"
    for key in _REQUIRED:
        if parser.get(arch, key, fallback=None) is None:
            raise ConfigError(f"{source}: [{arch}] {key}: missing required field")
    fields: dict[str, Any] = {
        "rows": _int(parser, arch, "ArrayHeight", source),
        "cols": _int(parser, arch, "ArrayWidth", source),
        "ifmap_kib": _int(parser, arch, "IfmapSramSzkB", source),
        "filter_kib": _int(parser, arch, "FilterSramSzkB", source),
        "ofmap_kib": _int(parser, arch, "OfmapSramSzkB", source),
    }
    dataflow = parser.get(arch, "Dataflow").strip().lower()
    if dataflow not in _DATAFLOWS:
        raise ConfigError(f"{source}: [{arch}] Dataflow: must be one of ws, os, is "
                          f"(got {dataflow!r})")
    fields["dataflow"] = dataflow
    mode = parser.get("run_presets", "InterfaceBandwidth", fallback="CALC").strip().upper()
    if mode not in ("USER", "CALC"):
        raise ConfigError(f"{source}: [run_presets] InterfaceBandwidth: must be USER or CALC "
                          f"(got {mode!r})")
    fields["mode"] = mode
    raw_bw = parser.get(arch, "Bandwidth", fallback=None)
    if raw_bw is None and mode == "USER":
        raise ConfigError(f"{source}: [{arch}] Bandwidth: missing required field "
                          f"(InterfaceBandwidth is USER)")
    fields["bandwidth_words"] = None
    if raw_bw is not None:
        # SCALE-Sim takes a comma-separated list (one per memory level); the first is DRAM's.
        first = raw_bw.split(",")[0].strip()
        try:
            fields["bandwidth_words"] = float(first)
        except ValueError:
            raise ConfigError(f"{source}: [{arch}] Bandwidth: must be a number of words per "
                              f"cycle (got {raw_bw.strip()!r})") from None
        if fields["bandwidth_words"] <= 0:
            raise ConfigError(f"{source}: [{arch}] Bandwidth: must be > 0 (got {first})")
    sparse = parser.get("sparsity", "SparsitySupport", fallback="false").strip().lower()
    fields["sparse_block"] = None
    if sparse == "true":
        fields["sparse_block"] = _int(parser, "sparsity", "BlockSize", source) \
            if parser.has_option("sparsity", "BlockSize") else 4
    fields["name"] = parser.get("general", "run_name", fallback="").strip()
    return fields


def _bandwidth_gbps(words_per_cycle: float, clock_mhz: float) -> float:
    return words_per_cycle * (WORD_BITS / 8) * clock_mhz / 1000.0


def _base_hw(fields: Mapping[str, Any], name: str) -> tuple[dict[str, Any], list[str]]:
    """Our config for SCALE-Sim fields alone, and the defaults it took."""
    rows, cols = fields["rows"], fields["cols"]
    defaults = [DEFAULT_NOTES[k] for k in ("clock_mhz", "precision", "accum_bits", "banks",
                                            "double_buffering", "capacity", "energy")]
    words = fields["bandwidth_words"]
    if fields["mode"] == "CALC":
        defaults.append(DEFAULT_NOTES["calc" if words is not None else "calc_missing"])
        words = 10.0 if words is None else words
    data: dict[str, Any] = {
        "name": name,
        "clock_mhz": CLOCK_MHZ,
        "pe": {"rows": rows, "cols": cols, "macs_per_pe_per_cycle": 1, "accum_bits": 32},
        "precision": {"model": "fixed", "base_bits": WORD_BITS, "min_bits": WORD_BITS},
        "sparsity": {"support": "none"},
        "sram": {"input_kib": fields["ifmap_kib"], "weight_kib": fields["filter_kib"],
                 "output_kib": fields["ofmap_kib"], "banks": rows + cols,
                 "bank_width_bits": BANK_WIDTH_BITS, "double_buffering": True},
        "dram": {"bandwidth_gbps": _bandwidth_gbps(words, CLOCK_MHZ),
                 "capacity_gib": DRAM_CAPACITY_GIB, "energy_pj_per_bit": DRAM_PJ_PER_BIT},
        "energy": {"mac_pj": MAC_PJ, "sram_pj_per_byte": SRAM_PJ_PER_BYTE, "static_mw": 0.0},
    }
    block = fields["sparse_block"]
    if block is not None:
        if block < 2:
            raise ConfigError(f"sparsity BlockSize must be >= 2 for N:M skipping (got {block})")
        data["sparsity"] = {"support": "nm",
                            "nm_patterns": [f"{n}:{block}" for n in range(1, block)]}
        defaults.append(f"sparsity.nm_patterns = 1:{block} .. {block - 1}:{block} "
                        f"(SCALE-Sim skips any N:M with M = BlockSize)")
    return data, defaults


def _apply_edits(data: dict[str, Any], fields: Mapping[str, Any],
                 written: Mapping[str, Any]) -> None:
    """Carry SCALE-Sim keys the user changed since ``sim.export`` wrote the file into ``data``."""
    clock = float(data.get("clock_mhz", CLOCK_MHZ))
    if fields["rows"] != written["rows"]:
        data["pe"]["rows"] = fields["rows"]
    if fields["cols"] != written["cols"]:
        data["pe"]["cols"] = fields["cols"]
    sram = data["sram"]
    for ours, theirs in (("input_kib", "ifmap_kib"), ("weight_kib", "filter_kib"),
                         ("output_kib", "ofmap_kib")):
        if fields[theirs] != written[theirs]:
            sram.pop("unified_kib", None)
            sram[ours] = fields[theirs]
    if "unified_kib" not in sram:
        for ours, theirs in (("input_kib", "ifmap_kib"), ("weight_kib", "filter_kib"),
                             ("output_kib", "ofmap_kib")):
            sram.setdefault(ours, fields[theirs])
    words = fields["bandwidth_words"]
    if words is not None and words != written["bandwidth_words"]:
        data["dram"]["bandwidth_gbps"] = _bandwidth_gbps(words, clock)


def cfg_to_hw(text: str, *, source: str = "<cfg>") -> Translation:
    """Translate a SCALE-Sim ``.cfg`` into a hwconfig mapping (see the module docstring).

    Raises:
        ConfigError: unreadable file, missing or malformed SCALE-Sim key (one line).
    """
    parser = _parse_cfg(text, source)
    fields = _scalesim_fields(parser, source)
    name = fields["name"] or Path(source).stem
    saved = parser.get(EXTRA_SECTION, "hw_json", fallback=None)
    if saved is None:
        data, defaults = _base_hw(fields, name)
        return Translation(data=data, source_format="scalesim-cfg",
                           dataflow=fields["dataflow"], defaults=tuple(defaults))
    try:
        data = json.loads(saved)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: [{EXTRA_SECTION}] hw_json: not valid JSON ({exc.msg})"
                          ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: [{EXTRA_SECTION}] hw_json: must be a JSON object")
    written = _cfg_fields_of(data)
    _apply_edits(data, fields, written)
    data["name"] = name
    return Translation(data=data, source_format="scalesim-cfg", dataflow=fields["dataflow"],
                       defaults=())


# ----------------------------------------------------------------------------- hw -> .cfg

_CFG_HEADER = """# SCALE-Sim v3 config written by `python -m sim.export` from hwconfig {run_name}.
# Run: python -m scalesim.scale -c THIS.cfg -t TOPOLOGY.csv -l layout.csv -i gemm -p logs/
# The [{extra}] section is ignored by SCALE-Sim; `sim` reads it back.
"""


def _cfg_fields_of(hw: Mapping[str, Any]) -> dict[str, Any]:
    """The SCALE-Sim values ``hw_to_cfg`` writes for a hwconfig mapping."""
    sram = hw.get("sram", {})
    if sram.get("unified_kib") is not None:
        # SCALE-Sim has three scratchpads: a unified buffer is split in equal thirds.
        third = max(1, int(sram["unified_kib"] // 3))
        sizes = (third, third, third)
    else:
        size = {k: max(1, int(round(float(sram[k]))))
                for k in ("input_kib", "weight_kib", "output_kib")}
        sizes = (size["input_kib"], size["weight_kib"], size["output_kib"])
    clock = float(hw["clock_mhz"])
    bytes_per_cycle = float(hw["dram"]["bandwidth_gbps"]) * 1000.0 / clock
    words = max(1, int(round(bytes_per_cycle / (WORD_BITS / 8))))
    return {"rows": int(hw["pe"]["rows"]), "cols": int(hw["pe"]["cols"]),
            "ifmap_kib": sizes[0], "filter_kib": sizes[1], "ofmap_kib": sizes[2],
            "bandwidth_words": float(words)}


def hw_to_cfg(hw: Mapping[str, Any], *, dataflow: str) -> tuple[str, list[str]]:
    """A SCALE-Sim ``.cfg`` for a hwconfig mapping (``HwConfig.model_dump(mode="json")``);
    its ``run_name`` is the config's name.

    Returns the file text and one line per approximation SCALE-Sim forces (rounded sizes and
    bandwidth, a unified buffer split in thirds). The ``[edgellm]`` section keeps the whole
    config, so ``load_hw`` of the written file gives ``hw`` back.
    """
    if dataflow not in _DATAFLOWS:
        raise ConfigError(f"SCALE-Sim needs one dataflow: ws, os or is (got {dataflow!r})")
    f = _cfg_fields_of(hw)
    notes = []
    sram = hw["sram"]
    if sram.get("unified_kib") is not None:
        notes.append(f"sram.unified_kib = {sram['unified_kib']} split into three SCALE-Sim "
                     f"scratchpads of {f['ifmap_kib']} KiB")
    bpc = float(hw["dram"]["bandwidth_gbps"]) * 1000.0 / float(hw["clock_mhz"])
    if not math.isclose(bpc, f["bandwidth_words"]):
        notes.append(f"Bandwidth = {f['bandwidth_words']:g} words/cycle (rounded from "
                     f"{bpc:g} bytes/cycle; SCALE-Sim takes an integer)")
    if hw.get("precision", {}).get("base_bits", WORD_BITS) != WORD_BITS:
        notes.append(f"SCALE-Sim counts {WORD_BITS}-bit words; the config's "
                     f"{hw['precision']['base_bits']}-bit precision is not expressed")
    blob = json.dumps(dict(hw), sort_keys=True, separators=(",", ":"))
    run_name = str(hw["name"])
    text = (_CFG_HEADER.format(run_name=run_name, extra=EXTRA_SECTION)
            + scalesim_cfg(run_name=run_name, rows=f["rows"], cols=f["cols"],
                           ifmap_kib=f["ifmap_kib"], filter_kib=f["filter_kib"],
                           ofmap_kib=f["ofmap_kib"], bandwidth=int(f["bandwidth_words"]),
                           dataflow=dataflow)
            + f"\n[{EXTRA_SECTION}]\nhw_json = {blob}\n")
    return text, notes


# ----------------------------------------------------------------------------- topologies

_GEMM_HEADER = re.compile(r"^\s*[^,]*,\s*m\s*,\s*n\s*,\s*k\s*(,|$)", re.IGNORECASE)
_CONV_HEADER = re.compile(r"ifmap\s*height", re.IGNORECASE)


def is_topology(first_line: str) -> bool:
    """Whether a file's first line is a SCALE-Sim topology header (GEMM or convolution)."""
    return bool(_GEMM_HEADER.match(first_line) or _CONV_HEADER.search(first_line))


def _fields(line: str) -> list[str]:
    parts = [p.strip() for p in line.split(",")]
    while parts and parts[-1] == "":  # SCALE-Sim rows end with a comma
        parts.pop()
    return parts


def _positive(value: str, where: str, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise TraceError(f"{where}: {what} must be an integer > 0 (got {value!r})") from None
    if number <= 0:
        raise TraceError(f"{where}: {what} must be an integer > 0 (got {number})")
    return number


def _ratio(text: str | None, where: str) -> tuple[str, float]:
    """SCALE-Sim's optional ``N:M`` filter sparsity as our (pattern, weight_sparsity)."""
    if text is None or text.strip() in ("", "1:1"):
        return "dense", 0.0
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if match is None or not 0 < int(match.group(1)) <= int(match.group(2)):
        raise TraceError(f"{where}: sparsity must be N:M with 0 < N <= M (got {text!r})")
    n, m = int(match.group(1)), int(match.group(2))
    if n == m:
        return "dense", 0.0
    return f"{n}:{m}", 1.0 - n / m


def _gemm_row(parts: Sequence[str], where: str) -> dict[str, Any]:
    if len(parts) < 4:
        raise TraceError(f"{where}: a GEMM row needs name, M, N, K (got {len(parts)} fields)")
    pattern, sparsity = _ratio(parts[4] if len(parts) > 4 else None, where)
    return {"module": parts[0], "M": _positive(parts[1], where, "M"),
            "N": _positive(parts[2], where, "N"), "K": _positive(parts[3], where, "K"),
            "sparsity_pattern": pattern, "weight_sparsity": sparsity, "count": 1}


def _conv_row(parts: Sequence[str], where: str) -> dict[str, Any]:
    """A convolution lowered to SCALE-Sim's GEMM (module docstring)."""
    if len(parts) < 8:
        raise TraceError(f"{where}: a convolution row needs name, IFMAP height, IFMAP width, "
                         f"filter height, filter width, channels, filters, stride "
                         f"(got {len(parts)} fields)")
    names = ("IFMAP height", "IFMAP width", "filter height", "filter width", "channels",
             "filters", "stride")
    h, w, r, s, c, f, stride = (_positive(v, where, n)
                                  for v, n in zip(parts[1:8], names, strict=True))
    if r > h or s > w:
        raise TraceError(f"{where}: filter {r}x{s} is larger than the IFMAP {h}x{w}")
    pattern, sparsity = _ratio(parts[8] if len(parts) > 8 else None, where)
    out_h = math.ceil((h - r + stride) / stride)
    out_w = math.ceil((w - s + stride) / stride)
    depthwise = "DP" in parts[0]
    return {"module": parts[0], "M": out_h * out_w, "N": f,
            "K": r * s * (1 if depthwise else c), "sparsity_pattern": pattern,
            "weight_sparsity": sparsity, "count": c if depthwise else 1}


def topology_rows(text: str, *, source: str = "<topology>") -> tuple[str, pd.DataFrame]:
    """Parse a topology's text into (kind, rows): kind ``gemm`` or ``conv``; rows have
    module, M, N, K, sparsity_pattern, weight_sparsity, count (one per layer, file order).

    Raises:
        TraceError: an unknown header or a malformed row (one line naming the row).
    """
    lines = text.splitlines()
    if not lines or not is_topology(lines[0]):
        raise TraceError(f"{source}: not a SCALE-Sim topology (first line must be "
                         f"'Layer,M,N,K,' or 'Layer name, IFMAP Height, ...')")
    kind = "gemm" if _GEMM_HEADER.match(lines[0]) else "conv"
    rows = []
    for number, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        where = f"{source}: row {number}"
        parts = _fields(line)
        rows.append(_gemm_row(parts, where) if kind == "gemm" else _conv_row(parts, where))
    if not rows:
        raise TraceError(f"{source}: the topology has no layer rows")
    return kind, pd.DataFrame(rows)


TOPOLOGY_DEFAULTS = (
    f"w_bits = a_bits = {WORD_BITS} (SCALE-Sim's word is one byte)",
    "phase = fwd, trainable = false (a topology is one inference pass)",
    "layer = row number from 0, module = layer name",
    "no tensor table: peak memory is not computed",
)


def read_topology(path: Path, text: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """A topology as a trace: (header, ops rows with the columns of docs/trace.md, all
    ``kind = matmul``).

    The header's ``defaults`` lists the stated defaults; ``lowering`` says how conv rows
    became products.
    """
    kind, rows = topology_rows(text, source=str(path))
    ops = pd.DataFrame({
        "layer": range(len(rows)), "module": rows["module"], "phase": "fwd",
        "M": rows["M"], "N": rows["N"], "K": rows["K"],
        "weight_sparsity": rows["weight_sparsity"], "sparsity_pattern": rows["sparsity_pattern"],
        "w_bits": WORD_BITS, "a_bits": WORD_BITS, "trainable": False, "count": rows["count"],
        # docs/trace.md format 2: every row is a matrix product (a topology has no vector work).
        "kind": "matmul", "vector_class": "", "elements": 0, "read_bytes": 0, "write_bytes": 0,
        "fusable": False,
    })
    defaults = list(TOPOLOGY_DEFAULTS)
    if kind == "conv":
        defaults.append("convolutions lowered as SCALE-Sim does: M = output pixels, "
                        "N = filters, K = R x S x C (depth-wise 'DP' rows: K = R x S, count = C)")
    header = {"model": path.stem, "method": "inference", "seq_len": 1, "batch": 1,
              "source": f"scalesim-topology-{kind}", "defaults": defaults}
    return header, ops


def trace_to_topology(ops: pd.DataFrame) -> tuple[str, list[str]]:
    """A SCALE-Sim GEMM topology of a trace's matrix products.

    Each row repeats ``count`` times (SCALE-Sim has no repeat count), named
    ``L{layer}.{module}.{phase}`` plus ``#i`` for repeats. N:M sparsity is written as the
    row's ratio; unstructured sparsity and bit widths cannot be expressed and are listed.

    Returns:
        The topology text and one note per approximation.
    """
    lines = ["Layer,M,N,K,"]
    notes: list[str] = []
    if "kind" in ops.columns:  # format 2: vector rows have no product to write
        vector = ops["kind"].astype(str) != "matmul"
        if vector.any():
            notes.append(f"{int(vector.sum())} vector row(s) left out (SCALE-Sim models "
                         f"matrix products only)")
        ops = ops[~vector]
    unstructured = 0
    for row in ops.to_dict("records"):
        name = f"L{int(row['layer'])}.{row['module']}.{row['phase']}".replace(",", "_")
        ratio = ""
        if row["sparsity_pattern"] not in ("dense", "unstructured"):
            ratio = f"{row['sparsity_pattern']},"
        elif row["sparsity_pattern"] == "unstructured":
            unstructured += 1
        count = int(row["count"])
        for i in range(count):
            label = name if count == 1 else f"{name}#{i}"
            lines.append(f"{label},{int(row['M'])},{int(row['N'])},{int(row['K'])},{ratio}")
    if unstructured:
        notes.append(f"{unstructured} row(s) with unstructured sparsity written dense "
                     f"(SCALE-Sim models N:M only)")
    bits = sorted({int(b) for b in ops["w_bits"]} | {int(b) for b in ops["a_bits"]})
    if bits != [WORD_BITS]:
        notes.append(f"bit widths {bits} not expressed (SCALE-Sim counts {WORD_BITS}-bit words)")
    return "\n".join(lines) + "\n", notes
