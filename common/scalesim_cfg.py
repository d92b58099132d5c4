"""The text of a SCALE-Sim v3 ``.cfg`` file (https://github.com/scalesim-project/scale-sim-v2,
``configs/scale.cfg``), in one place for ``sim.export`` and the peer benchmarks.

Standard library only: the benchmark workers import it inside SCALE-Sim's own venv, which has
neither this project's dependencies nor numpy 2.

Example:
    >>> text = scalesim_cfg(run_name="t", rows=8, cols=8, ifmap_kib=64, filter_kib=64,
    ...                     ofmap_kib=64, bandwidth=10, dataflow="ws")
    >>> text.splitlines()[4:6]
    ['ArrayHeight: 8', 'ArrayWidth: 8']
"""
from __future__ import annotations

__all__ = ["scalesim_cfg"]

_TEMPLATE = """[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {ifmap_kib}
FilterSramSzkB: {filter_kib}
OfmapSramSzkB: {ofmap_kib}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : {bandwidth}
Dataflow : {dataflow}
MemoryBanks: 1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: {bank_bandwidth}
IfmapSRAMBankNum: {bank_num}
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: {bank_bandwidth}
FilterSRAMBankNum: {bank_num}
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: {interface_bandwidth}
UseRamulatorTrace: False
"""


def scalesim_cfg(*, run_name: str, rows: int, cols: int, ifmap_kib: float, filter_kib: float,
                 ofmap_kib: float, bandwidth: int, dataflow: str,
                 interface_bandwidth: str = "USER", bank_bandwidth: int = 10,
                 bank_num: int = 10) -> str:
    """A SCALE-Sim config: one ``rows x cols`` array, three scratchpads, one DRAM interface.

    Args:
        run_name: SCALE-Sim's run name (its output folder).
        rows, cols: PE array height and width.
        ifmap_kib, filter_kib, ofmap_kib: scratchpad sizes, KiB (SCALE-Sim's ``SramSzkB``).
        bandwidth: DRAM words per cycle (used with ``interface_bandwidth = USER``).
        dataflow: ``ws``, ``os`` or ``is``.
        interface_bandwidth: ``USER`` (the given ``bandwidth``) or ``CALC`` (SCALE-Sim picks
            a stall-free one).
        bank_bandwidth, bank_num: SRAM bank width (words) and count of the layout section.
    """
    return _TEMPLATE.format(
        run_name=run_name, rows=rows, cols=cols, ifmap_kib=ifmap_kib, filter_kib=filter_kib,
        ofmap_kib=ofmap_kib, bandwidth=bandwidth, dataflow=dataflow,
        interface_bandwidth=interface_bandwidth, bank_bandwidth=bank_bandwidth,
        bank_num=bank_num)
