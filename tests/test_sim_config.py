"""Hardware config files: the shipped ones load, bad ones fail in one line naming the field."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sim import ConfigError, apply_overrides, hw_from_dict, load_hw
from sim.config import PrecisionModel, SparsitySupport

ROOT = Path(__file__).resolve().parents[1]
HW_FILES = sorted((ROOT / "hwconfigs").glob("*.yaml"))


def _base() -> dict:
    return yaml.safe_load((ROOT / "hwconfigs" / "edge_llm.yaml").read_text())


def _write(tmp_path: Path, data: dict | str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_at_least_four_configs_with_a_source_comment() -> None:
    names = {p.stem for p in HW_FILES}
    assert {"eyeriss", "mobile_npu", "edge_tpu", "edge_llm"} <= names
    for path in HW_FILES:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("# "), path
        comment = " ".join(line for line in lines if line.startswith("#"))
        assert "modelled after" in comment, path
        assert re.search(r"\b(19|20)\d\d\b", comment), f"{path}: no dated source"


@pytest.mark.parametrize("path", HW_FILES, ids=lambda p: p.stem)
def test_shipped_configs_load_and_are_plausible(path: Path) -> None:
    hw = load_hw(path)
    assert hw.name == path.stem
    assert 50 <= hw.clock_mhz <= 2000
    assert 64 <= hw.pe_count <= 8192
    assert 64 * 1024 <= hw.sram.total_bytes <= 16 * 2**20
    assert 0.1 <= hw.dram.bandwidth_gbps <= 100
    assert hw.dram.capacity_bytes >= 256 * 2**20
    assert hw.area_proxy()["area_mm2"] is not None


def test_eyeriss_and_edge_tpu_numbers_match_their_sources() -> None:
    eyeriss = load_hw(ROOT / "hwconfigs" / "eyeriss.yaml")
    assert (eyeriss.pe.rows, eyeriss.pe.cols) == (12, 14)
    assert eyeriss.sram.unified_kib == 108
    tpu = load_hw(ROOT / "hwconfigs" / "edge_tpu.yaml")
    assert tpu.pe_count * 2 * tpu.clock_mhz * 1e6 == pytest.approx(4e12, rel=0.05)  # 4 TOPS
    assert tpu.sram.total_bytes == 8 * 2**20


def test_default_accelerator_is_precision_scalable_and_sparse() -> None:
    hw = load_hw(ROOT / "hwconfigs" / "edge_llm.yaml")
    assert hw.precision.model is PrecisionModel.scalable
    assert hw.sparsity.support is not SparsitySupport.none
    assert hw.dram.capacity_bytes >= 2 * 2**30  # a SmolLM2-135M tuning step fits


def test_negative_size_names_field_and_value(tmp_path: Path) -> None:
    data = _base()
    data["pe"]["rows"] = -4
    with pytest.raises(ConfigError) as err:
        load_hw(_write(tmp_path, data))
    assert str(err.value) == f"{tmp_path / 'x.yaml'}: pe.rows: must be > 0 (got -4)"


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d["pe"].update(rowz=3), "pe.rowz: unknown field (allowed: rows, cols"),
    (lambda d: d.update(colour="red"), "colour: unknown field"),
    (lambda d: d["dram"].pop("bandwidth_gbps"), "dram.bandwidth_gbps: missing required field"),
    (lambda d: d.pop("sram"), "sram: missing required field"),
    (lambda d: d["precision"].update(model="analog"), "precision.model: must be one of"),
    (lambda d: d["sparsity"].update(support="nm"), "sparsity: support 'nm' needs nm_patterns"),
    (lambda d: d["sparsity"].update(nm_patterns=["4:2"]), "sparsity.nm_patterns: bad N:M"),
    (lambda d: d["sram"].update(unified_kib=64), "sram: give either unified_kib or"),
    (lambda d: d["sram"].pop("output_kib"), "sram: give unified_kib, or all of"),
    (lambda d: d["dram"].update(capacity_mib=512), "dram: give exactly one of capacity_gib"),
    (lambda d: d["energy"].update(sram_pj_per_bit=0.1), "energy: give exactly one of sram_pj"),
    (lambda d: d["precision"].update(min_bits=32), "precision: min_bits must be <= base_bits"),
    (lambda d: d["sparsity"].update(efficiency=1.5), "sparsity.efficiency: must be <= 1"),
    (lambda d: d.update(clock_mhz="fast"), "clock_mhz: "),
])
def test_invalid_fields_fail_in_one_line(tmp_path: Path, mutate, expected: str) -> None:
    data = _base()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        load_hw(_write(tmp_path, data))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "x.yaml") + ": ")
    assert expected in message


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hardware config not found"):
        load_hw(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+: "):
        load_hw(_write(tmp_path, "name: x\npe: {rows: 1\nclock_mhz: : 3\n"))
    with pytest.raises(ConfigError, match="file is empty"):
        load_hw(_write(tmp_path, ""))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_hw(_write(tmp_path, "- 1\n- 2\n"))


def test_set_overrides_parse_yaml_values_and_apply_before_validation() -> None:
    path = ROOT / "hwconfigs" / "edge_llm.yaml"
    hw = load_hw(path, ["pe.rows=16", "dram.bandwidth_gbps=8", "sram.double_buffering=false",
                        "sparsity.nm_patterns=['2:4']", "sparsity.support=nm"])
    assert hw.pe.rows == 16 and hw.dram.bandwidth_gbps == 8.0
    assert hw.sram.double_buffering is False
    assert hw.sparsity.support is SparsitySupport.nm and hw.sparsity.nm_patterns == ["2:4"]
    # Switching the capacity unit needs the old key removed: null does that.
    hw2 = load_hw(path, ["dram.capacity_gib=null", "dram.capacity_mib=2048"])
    assert hw2.dram.capacity_bytes == 2 * 2**30


@pytest.mark.parametrize(("override", "expected"), [
    ("pe.rows=0", "pe.rows: must be > 0 (got 0)"),
    ("pe.rowz=3", "pe.rowz: unknown field"),
    ("pe.rows", "expected key=value"),
    ("=3", "expected key=value"),
    ("clock_mhz.x=3", "clock_mhz is not a section"),
])
def test_bad_overrides(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_hw(ROOT / "hwconfigs" / "edge_llm.yaml", [override])
    assert expected in str(err.value)


def test_apply_overrides_and_dict_source() -> None:
    hw = hw_from_dict(_base(), {"pe.cols": 8}, source="mem")
    assert hw.pe.cols == 8
    assert apply_overrides(hw, ["pe.cols=4"]).pe.cols == 4
    assert hw.pe.cols == 8  # the original is untouched (configs are frozen values)
    with pytest.raises(ConfigError, match=r"^mem: pe.cols: must be > 0"):
        hw_from_dict(_base(), {"pe.cols": -1}, source="mem")


def test_sram_energy_in_bits_or_bytes_is_equivalent() -> None:
    data = _base()
    per_byte = hw_from_dict(data).energy.sram_pj_per_byte_eff
    data["energy"].pop("sram_pj_per_byte")
    data["energy"]["sram_pj_per_bit"] = per_byte / 8
    assert hw_from_dict(data).energy.sram_pj_per_byte_eff == pytest.approx(per_byte)
