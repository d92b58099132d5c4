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

Translation to our schema (one rule per field; ``Translation.rules`` says how each field of a
translated file was derived, ``Translation.defaults`` which ones ZigZag does not have):

- PE array: ``cols`` = D1, ``rows`` = the product of the other dimensions.
- A memory with no ``served_dimensions`` has one instance per PE: a register file inside the
  PE. Its accesses are part of a MAC in our model, so ``mac_pj`` = ``unit_energy`` plus, per
  such memory, one read for an input operand (I1, I2) and one read and one write for the
  output (the accesses ZigZag counts per MAC when the register holds one word per PE, as in
  ``tpu_like``). A per-PE output register of at most 64 bits sets ``accum_bits``.
- top memory (the largest holding I1, I2 and O, i.e. DRAM): bandwidth = its read port's
  ``bandwidth_max`` bits per cycle at ``CLOCK_MHZ``; capacity = its size; energy per bit =
  ``r_cost / bandwidth_max``.
- on-chip buffer of each operand: the largest other memory holding it, all its instances
  (a per-PE register file of 128 B in a 32 x 32 array is 128 KiB). One memory for all three
  operands becomes our unified buffer; otherwise each operand gets its own buffer, and a memory
  serving k of them is split into k equal parts.
- SRAM bandwidth = the read ports' ``bandwidth_max`` times instances of the buffers shared
  across the array (per-PE register files feed their own PE); SRAM energy per byte is the
  read cost per byte of the largest of them.

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
        self.per_pe: dict[str, bool] = {}  # no served dimension: one instance inside every PE
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
            self.per_pe[str(name)] = not served
            self.instances[str(name)] = math.prod(
                s for d, s in zip(dims, sizes, strict=True) if d not in served)

    def bits(self, name: str) -> float:
        """Total capacity of all instances, bits."""
        return float(self.mems[name]["size"]) * self.instances[name]

    def cost(self, name: str, key: str) -> float | None:
        value = self.mems[name].get(key)
        return None if value is None else float(value)

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


def _num(x: float) -> int | float:
    """A value as written to YAML: an integer when it is one, else rounded to 6 decimals."""
    x = round(float(x), 6)
    return int(x) if x.is_integer() else x


def _sram(mems: _Memories, buffers: dict[str, str], rules: list[str]) -> tuple[dict[str, Any], str]:
    """Our sram section from each operand's buffer, and the name of the buffer whose access
    cost is the SRAM's (the largest one shared across the array)."""
    chosen = list(dict.fromkeys(buffers.values()))
    shared = [n for n in chosen if not mems.per_pe[n]] or chosen
    bw_bits = sum(_read_bw_bits(mems.mems[n], mems.source, n) * mems.instances[n] for n in shared)
    sram: dict[str, Any] = {}
    kib = {n: mems.bits(n) / 8 / 1024 for n in chosen}
    if len(chosen) == 1:
        sram["unified_kib"] = _num(kib[chosen[0]])
        rules.append(f"sram: {chosen[0]} ({kib[chosen[0]]:g} KiB) holds every operand: one "
                     f"unified buffer")
    else:
        for operand, name in buffers.items():
            share = sum(1 for n in buffers.values() if n == name)
            sram[_OUR_BUFFER[operand]] = _num(kib[name] / share)
        parts = []
        for name in chosen:
            ops = [op for op, n in buffers.items() if n == name]
            where = (f"{mems.mems[name]['size'] // 8} B x {mems.instances[name]} PEs = "
                     if mems.per_pe[name] else "")
            shares = " + ".join(f"{kib[name] / len(ops):g}" for _ in ops)
            split = f": split {shares} KiB" if len(ops) > 1 else ""
            parts.append(f"{name} ({where}{kib[name]:g} KiB) serves {', '.join(ops)}{split}")
        rules.append("sram: " + "; ".join(parts))
    sram.update({"banks": 1, "bank_width_bits": _num(bw_bits), "double_buffering": True})
    rules.append(f"sram bank_width_bits {bw_bits:g}: read ports of "
                 + ", ".join(f"{n} ({_read_bw_bits(mems.mems[n], mems.source, n):g} bit x "
                             f"{mems.instances[n]})" for n in shared))
    return sram, max(shared, key=mems.bits)


def _precision(array: Mapping[str, Any], defaults: list[str]) -> dict[str, Any]:
    bits = array.get("input_precision")
    if isinstance(bits, list) and bits and all(isinstance(b, int) and b > 0 for b in bits):
        base = max(bits)
    else:
        base = WORD_BITS
        defaults.append(f"precision = fixed, {WORD_BITS}-bit (no input_precision; ZigZag's "
                        f"example workloads use 8-bit operands)")
    return {"model": "fixed", "base_bits": base, "min_bits": base}


def _pe_energy(array: Mapping[str, Any], mems: _Memories, rules: list[str],
               defaults: list[str]) -> tuple[float, int]:
    """``mac_pj`` (the multiplier plus the per-PE registers' accesses of one MAC) and
    ``accum_bits`` (a per-PE output register's width, else 32)."""
    unit = array.get("unit_energy")
    if unit is None:
        defaults.append(f"energy.mac_pj = {MAC_PJ} (no unit_energy; Horowitz ISSCC 2014, "
                        f"45 nm, 8-bit)")
        unit = MAC_PJ
    mac, terms = float(unit), [f"unit_energy {unit}"]
    accum = None
    for name in (n for n, pe in mems.per_pe.items() if pe):
        operands = mems.mems[name]["operands"]
        read, write = mems.cost(name, "r_cost") or 0.0, mems.cost(name, "w_cost") or 0.0
        if any(op in ("I1", "I2") for op in operands):
            mac += read
            terms.append(f"{name} read {read:g}")
        if "O" in operands:
            mac += read + write
            terms.append(f"{name} read {read:g} + write {write:g}")
            if float(mems.mems[name]["size"]) <= 64:
                accum = int(mems.mems[name]["size"])
    rules.append(f"mac_pj {mac:.3f} = " + " + ".join(terms)
                 + (" (per-PE registers: one access each per MAC, as ZigZag counts them)"
                    if len(terms) > 1 else ""))
    if accum is not None:
        rules.append(f"accum_bits {accum}: the per-PE output register holds one {accum}-bit "
                     f"partial sum")
    else:
        defaults.append("pe.accum_bits = 32 (ZigZag sizes partial sums in the workload, not "
                        "the array)")
    return mac, accum or 32


def _dram(mems: _Memories, top: str, rules: list[str], defaults: list[str]) -> dict[str, Any]:
    bw = _read_bw_bits(mems.mems[top], mems.source, top)
    read, write = mems.cost(top, "r_cost"), mems.cost(top, "w_cost")
    if read is None:
        defaults.append(f"dram.energy_pj_per_bit = 20 ({top} has no r_cost)")
        pj_bit = 20.0
    else:
        pj_bit = read / bw
        note = (f" (w_cost {write:g}: our model has one DRAM cost)"
                if write not in (None, read) else "")
        rules.append(f"dram energy_pj_per_bit {pj_bit:.4f} = {top} r_cost {read:g} pJ / "
                     f"{bw:g}-bit access{note}")
    gbps = bw / 8 * CLOCK_MHZ / 1000.0
    rules.append(f"dram bandwidth {bw / 8:g} B/cycle ({top}'s {bw:g}-bit port) at a nominal "
                 f"{CLOCK_MHZ:g} MHz = {gbps:g} GB/s; ZigZag counts cycles only")
    size_mib = float(mems.mems[top]["size"]) / 8 / 2**20
    rules.append(f"dram capacity {size_mib:g} MiB ({top} size {mems.mems[top]['size']} bits)")
    return {"bandwidth_gbps": _num(gbps), "capacity_mib": size_mib,  # exact: size / 8 bytes
            "energy_pj_per_bit": _num(pj_bit)}


def accelerator_to_hw(data: Mapping[str, Any], *, source: str = "<zigzag>") -> Translation:
    """Translate a parsed ZigZag accelerator YAML (module docstring).

    Raises:
        ConfigError: a missing or malformed ZigZag field (one line naming it).
    """
    dims, sizes, array = _array(data, source)
    mems = _Memories(data, dims, sizes, source)
    defaults = [f"clock_mhz = {CLOCK_MHZ:g} (ZigZag counts cycles and has no clock)",
                "energy.static_mw = 0 (ZigZag models no leakage)",
                "sram.double_buffering = true (ZigZag double-buffers a level whenever the data "
                "fit in half of it)"]
    rows = math.prod(sizes[1:]) if len(sizes) > 1 else 1
    rules = [f"pe: {rows} x {sizes[0]} (operational_array.sizes: cols = {dims[0]}"
             + (f", rows = {' x '.join(dims[1:])})" if len(dims) > 1 else ")")]
    mac_pj, accum = _pe_energy(array, mems, rules, defaults)
    top = mems.top()
    buffers = {op: mems.buffer_of(op, top) for op in _OPERANDS}
    sram, costly = _sram(mems, buffers, rules)
    read_bw = _read_bw_bits(mems.mems[costly], source, costly)
    sram_cost = mems.cost(costly, "r_cost")
    if sram_cost is None:
        defaults.append(f"energy.sram_pj_per_byte = 2.5 ({costly} has no r_cost)")
        sram_pj_byte = 2.5
    else:
        sram_pj_byte = sram_cost / (read_bw / 8)
        write = mems.cost(costly, "w_cost")
        note = (f" (w_cost {write:g}: our model has one SRAM cost)"
                if write not in (None, sram_cost) else "")
        rules.append(f"sram_pj_per_byte {sram_pj_byte:.4f} = {costly} r_cost {sram_cost:g} pJ / "
                     f"{read_bw / 8:g} B per access{note}")
    dram = _dram(mems, top, rules, defaults)
    hw: dict[str, Any] = {
        "name": str(data.get("name") or "zigzag"),
        "clock_mhz": _num(CLOCK_MHZ),
        "pe": {"rows": rows, "cols": sizes[0], "macs_per_pe_per_cycle": 1, "accum_bits": accum},
        "precision": _precision(array, defaults),
        "sparsity": {"support": "none"},
        "sram": sram,
        "dram": dram,
        "energy": {"mac_pj": _num(mac_pj), "sram_pj_per_byte": _num(sram_pj_byte),
                   "static_mw": 0},
    }
    return Translation(data=hw, source_format="zigzag-yaml", dataflow=None,
                       defaults=tuple(defaults), rules=tuple(rules))
