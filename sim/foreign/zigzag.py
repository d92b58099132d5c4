"""ZigZag accelerator YAMLs (``zigzag/inputs/hardware/*.yaml``) read as hardware configs.

Field meanings are ZigZag's (``zigzag-dse`` 3.9: ``parser/accelerator_validator.py``,
``hardware/architecture/memory_instance.py``, ``cost_model/cost_model.py``):

- ``memories.X.size`` is in bits; ``operands`` lists the operands it holds: ``I1`` the input
  activations, ``I2`` the weights, ``O`` the outputs (ZigZag's default memory_operand_links:
  I -> I1, W -> I2, O -> O); ``served_dimensions`` lists the array dimensions one instance is
  shared across, so there are prod(sizes of the other dimensions) instances.
- ports: ``bandwidth_min`` / ``bandwidth_max`` in bits per cycle. ``r_cost`` / ``w_cost`` are pJ
  per access; ``CostModel._calc_memory_access`` counts a large transfer in accesses of
  ``bandwidth_max`` bits, so energy per bit is ``r_cost / bandwidth_max``.
- ``operational_array``: ``sizes`` of dimensions D1, D2, ...; ``unit_energy`` pJ per MAC.

Translation to our schema:

- top memory (the largest holding I1, I2 and O, i.e. DRAM): bandwidth = its read port's
  ``bandwidth_max``; capacity = its size; energy per bit = ``r_cost / bandwidth_max``.
- on-chip buffer of each operand: the largest other memory holding it, all its instances
  (a per-PE register file of 128 B in a 32 x 32 array is 128 KiB). Three distinct memories
  become our input/weight/output buffers; a memory shared by two operands makes one unified
  buffer of all the chosen memories. SRAM bandwidth = their read ports' ``bandwidth_max``
  times instances; SRAM energy per byte is that of the largest of them.
- PE array: ``cols`` = D1, ``rows`` = the product of the other dimensions.

Fields ZigZag lacks take defaults, each listed in ``Translation.defaults``.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from sim.errors import ConfigError
from sim.foreign import Translation

__all__ = ["accelerator_to_hw"]

CLOCK_MHZ = 1000.0  # ZigZag counts cycles only
WORD_BITS = 8  # ZigZag's example workloads use 8-bit operands
MAC_PJ = 0.23  # Horowitz ISSCC 2014, 45 nm: 8-bit multiply 0.2 pJ + add 0.03 pJ
_OPERANDS = ("I1", "I2", "O")
_OUR_BUFFER = {"I1": "input_kib", "I2": "weight_kib", "O": "output_kib"}


def _mem_field(mem: Mapping[str, Any], key: str, source: str, name: str) -> Any:
    if key not in mem:
        raise ConfigError(f"{source}: memories.{name}.{key}: missing required field")
    return mem[key]


def _read_bw_bits(mem: Mapping[str, Any], source: str, name: str) -> float:
    """Widest read (or read-write) port of a memory, bits per cycle."""
    ports = _mem_field(mem, "ports", source, name)
    widths = [float(p.get("bandwidth_max", 0)) for p in ports or []
              if isinstance(p, Mapping) and p.get("type") in ("read", "read_write")]
    if not widths or max(widths) <= 0:
        raise ConfigError(f"{source}: memories.{name}.ports: no read port with bandwidth_max > 0")
    return max(widths)


class _Memories:
    """The memories of one accelerator with their instance counts (see module docstring)."""

    def __init__(self, data: Mapping[str, Any], dims: Sequence[str], sizes: Sequence[int],
                 source: str) -> None:
        memories = data.get("memories")
        if not isinstance(memories, Mapping) or not memories:
            raise ConfigError(f"{source}: memories: must be a non-empty mapping")
        self.source = source
        self.mems: dict[str, Mapping[str, Any]] = {}
        self.instances: dict[str, int] = {}
        for name, mem in memories.items():
            if not isinstance(mem, Mapping):
                raise ConfigError(f"{source}: memories.{name}: must be a mapping")
            size = _mem_field(mem, "size", source, name)
            if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0:
                raise ConfigError(f"{source}: memories.{name}.size: must be > 0 bits "
                                  f"(got {size!r})")
            operands = _mem_field(mem, "operands", source, name)
            bad = [op for op in operands or [] if op not in _OPERANDS]
            if not operands or bad:
                raise ConfigError(f"{source}: memories.{name}.operands: must list I1, I2, O "
                                  f"(got {operands!r})")
            served = set(mem.get("served_dimensions") or [])
            self.mems[str(name)] = mem
            self.instances[str(name)] = math.prod(
                s for d, s in zip(dims, sizes, strict=True) if d not in served)

    def bits(self, name: str) -> float:
        """Total capacity of all instances, bits."""
        return float(self.mems[name]["size"]) * self.instances[name]

    def top(self) -> str:
        full = [n for n, m in self.mems.items() if set(m["operands"]) >= set(_OPERANDS)]
        if not full:
            raise ConfigError(f"{self.source}: memories: none holds I1, I2 and O (the "
                              f"off-chip memory, e.g. dram)")
        return max(full, key=lambda n: float(self.mems[n]["size"]))

    def buffer_of(self, operand: str, top: str) -> str:
        held = [n for n, m in self.mems.items() if n != top and operand in m["operands"]]
        if not held:
            raise ConfigError(f"{self.source}: memories: no on-chip memory holds {operand}; "
                              f"the simulator needs a buffer for every operand")
        return max(held, key=self.bits)


def _array(data: Mapping[str, Any], source: str
           ) -> tuple[list[str], list[int], Mapping[str, Any]]:
    array = data.get("operational_array")
    if not isinstance(array, Mapping):
        raise ConfigError(f"{source}: operational_array: must be a mapping")
    dims, sizes = array.get("dimensions"), array.get("sizes")
    if (not isinstance(dims, list) or not isinstance(sizes, list) or len(dims) != len(sizes)
            or not dims):
        raise ConfigError(f"{source}: operational_array: dimensions and sizes must be lists "
                          f"of the same length")
    if any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in sizes):
        raise ConfigError(f"{source}: operational_array.sizes: must be integers > 0 "
                          f"(got {sizes!r})")
    return [str(d) for d in dims], [int(s) for s in sizes], array


def _sram(mems: _Memories, buffers: dict[str, str]) -> tuple[dict[str, Any], str]:
    """Our sram section from each operand's buffer, and the name of the largest buffer."""
    chosen = list(dict.fromkeys(buffers.values()))
    bw_bits = sum(_read_bw_bits(mems.mems[n], mems.source, n) * mems.instances[n]
                  for n in chosen)
    sram: dict[str, Any] = {"banks": 1, "bank_width_bits": int(bw_bits)}
    if len(chosen) == len(_OPERANDS):
        for operand, name in buffers.items():
            sram[_OUR_BUFFER[operand]] = mems.bits(name) / 8 / 1024
    else:
        sram["unified_kib"] = sum(mems.bits(n) for n in chosen) / 8 / 1024
    sram["double_buffering"] = True
    return sram, max(chosen, key=mems.bits)


def _precision(array: Mapping[str, Any], defaults: list[str]) -> dict[str, Any]:
    bits = array.get("input_precision")
    if isinstance(bits, list) and bits and all(isinstance(b, int) and b > 0 for b in bits):
        base = max(bits)
    else:
        base = WORD_BITS
        defaults.append(f"precision = fixed, {WORD_BITS}-bit (no input_precision; ZigZag's "
                        f"example workloads use 8-bit operands)")
    return {"model": "fixed", "base_bits": base, "min_bits": base}


def accelerator_to_hw(data: Mapping[str, Any], *, source: str = "<zigzag>") -> Translation:
    """Translate a parsed ZigZag accelerator YAML (module docstring).

    Raises:
        ConfigError: a missing or malformed ZigZag field (one line naming it).
    """
    dims, sizes, array = _array(data, source)
    mems = _Memories(data, dims, sizes, source)
    defaults = [f"clock_mhz = {CLOCK_MHZ:g} (ZigZag counts cycles and has no clock)",
                "pe.accum_bits = 32 (ZigZag sizes partial sums in the workload, not the array)",
                "energy.static_mw = 0 (ZigZag models no leakage)"]
    top = mems.top()
    buffers = {op: mems.buffer_of(op, top) for op in _OPERANDS}
    sram, largest = _sram(mems, buffers)
    if len(set(buffers.values())) < len(_OPERANDS):
        defaults.append(f"sram.unified_kib = {sram['unified_kib']:g} (one buffer: "
                        + ", ".join(f"{op} in {name}" for op, name in buffers.items())
                        + "; our model splits buffers only when each operand has its own)")
    defaults.append("sram.double_buffering = true (ZigZag double-buffers a level whenever "
                    "the data fit in half of it)")
    dram_bw = _read_bw_bits(mems.mems[top], source, top)
    cost = mems.mems[top].get("r_cost")
    dram_pj_bit = float(cost) / dram_bw if cost is not None else 20.0
    if cost is None:
        defaults.append(f"dram.energy_pj_per_bit = 20 ({top} has no r_cost)")
    sram_cost = mems.mems[largest].get("r_cost")
    sram_bw = _read_bw_bits(mems.mems[largest], source, largest)
    sram_pj_byte = float(sram_cost) / sram_bw * 8 if sram_cost is not None else 2.5
    if sram_cost is None:
        defaults.append(f"energy.sram_pj_per_byte = 2.5 ({largest} has no r_cost)")
    mac_pj = array.get("unit_energy")
    if mac_pj is None:
        defaults.append(f"energy.mac_pj = {MAC_PJ} (no unit_energy; Horowitz ISSCC 2014, "
                        f"45 nm, 8-bit)")
        mac_pj = MAC_PJ
    hw: dict[str, Any] = {
        "name": str(data.get("name") or "zigzag"),
        "clock_mhz": CLOCK_MHZ,
        "pe": {"rows": math.prod(sizes[1:]) if len(sizes) > 1 else 1, "cols": sizes[0],
               "macs_per_pe_per_cycle": 1, "accum_bits": 32},
        "precision": _precision(array, defaults),
        "sparsity": {"support": "none"},
        "sram": sram,
        "dram": {"bandwidth_gbps": dram_bw / 8 * CLOCK_MHZ / 1000.0,
                 "capacity_mib": float(mems.mems[top]["size"]) / 8 / 2**20,
                 "energy_pj_per_bit": dram_pj_bit},
        "energy": {"mac_pj": float(mac_pj), "sram_pj_per_byte": sram_pj_byte,
                   "static_mw": 0.0},
    }
    if len(sizes) > 2:
        defaults.append(f"pe.rows = {hw['pe']['rows']} (dimensions {', '.join(dims[1:])} "
                        f"folded into rows; cols = {dims[0]})")
    return Translation(data=hw, source_format="zigzag-yaml", dataflow=None,
                       defaults=tuple(defaults))
