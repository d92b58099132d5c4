"""Host memory: the process's resident set (Linux ``/proc/self/status``) and torch's own
account of the tensors a training step keeps for its backward pass."""
from __future__ import annotations

import re
import resource
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from workloads.tuning.actcomp import ActivationCodec, View

__all__ = ["SavedTensor", "SavedTensorLog", "peak_rss_bytes", "reset_peak_rss", "rss_bytes",
           "ru_maxrss_bytes", "touch"]

_STATUS = Path("/proc/self/status")


def _status_kib(key: str) -> int | None:
    try:
        match = re.search(rf"^{key}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_bytes() -> int:
    """Current resident set size of this process, bytes (``VmRSS``)."""
    kib = _status_kib("VmRSS")
    return (kib if kib is not None else ru_maxrss_bytes() // 1024) * 1024


def peak_rss_bytes() -> int:
    """Peak resident set size of this process since start or the last :func:`reset_peak_rss`,
    bytes (``VmHWM``; ``ru_maxrss`` where ``/proc`` is missing)."""
    kib = _status_kib("VmHWM")
    return kib * 1024 if kib is not None else ru_maxrss_bytes()


def ru_maxrss_bytes() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def touch(tensors: Iterable[torch.Tensor]) -> None:
    """Read one element per 4 KiB page of each tensor, making file-mapped weights resident."""
    with torch.no_grad():
        for t in tensors:
            flat = t.detach().reshape(-1)
            step = max(1, 4096 // flat.element_size())
            float(flat[::step].sum())


def reset_peak_rss() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux >= 4.0, ``clear_refs`` value 5), so a
    later :func:`peak_rss_bytes` covers only what ran after this call, not model loading.
    Returns False where the kernel does not allow it (the peak then covers the whole run)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


@dataclass(frozen=True)
class SavedTensor:
    """A tensor autograd kept for backward (one storage, counted once)."""

    where: str  # module that was running when it was saved ("" if unknown)
    layer: int  # its decoder layer, -1 if none
    numel: int  # elements of the whole storage kept alive
    element_bits: int  # bits per element on the host
    is_float: bool
    nbytes: int  # host bytes of the storage (as packed, when packed)
    packed_bits: int | None = None  # bits per value when the activation codec packed it
    handle: Any = None  # what ``SavedTensorLog.on_save`` returned for it


@dataclass
class SavedTensorLog:
    """Context manager recording every tensor autograd saves for backward, through
    ``torch.autograd.graph.saved_tensors_hooks``. Storages are counted once (several ops often
    save the same tensor) and parameters are left out (they are weights, not activations).

    ``where`` is called at each save and returns ``(module name, layer)`` for labelling.
    With a ``codec`` (``actcomp.ActivationCodec``) the step stores what it packs, and the log
    counts each pack once at its packed size. ``on_save`` is called with the tensors whose
    storages hold each new entry (the packed values and scales when packed) and its result is
    kept as the entry's ``handle`` (the trace recorder's storage lifetimes).
    """

    exclude: Iterable[torch.Tensor] = ()
    where: Callable[[], tuple[str, int]] | None = None
    codec: ActivationCodec | None = None
    on_save: Callable[[list[torch.Tensor]], Any] | None = None
    entries: list[SavedTensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._skip = {t.untyped_storage().data_ptr() for t in self.exclude}
        self._seen: set[Any] = set()
        unpack = self.codec.unpack if self.codec is not None else (lambda t: t)
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, unpack)

    def _pack(self, tensor: torch.Tensor) -> Any:
        saved = self.codec.pack(tensor) if self.codec is not None else tensor
        storage = tensor.untyped_storage()
        # A packed storage's original may be freed and its address reused, so packs count by
        # identity; an unpacked saved tensor stays alive (the graph holds it) until backward.
        key: Any = ("packed", id(saved.packed)) if isinstance(saved, View) else storage.data_ptr()
        if storage.data_ptr() in self._skip or key in self._seen or storage.nbytes() == 0:
            return saved
        self._seen.add(key)
        name, layer = self.where() if self.where else ("", -1)
        size = tensor.element_size()
        numel = storage.nbytes() // size
        held = [saved.packed.q, saved.packed.scale] if isinstance(saved, View) else [tensor]
        handle = self.on_save(held) if self.on_save is not None else None
        if isinstance(saved, View):
            entry = SavedTensor(name, layer, numel, 8 * size, True, saved.packed.nbytes, self.codec.bits,
                                handle)
        else:
            entry = SavedTensor(name, layer, numel, 8 * size, tensor.is_floating_point(), storage.nbytes(),
                                handle=handle)
        self.entries.append(entry)
        return saved

    @property
    def total_bytes(self) -> int:
        """Bytes of every tensor logged as saved for backward."""
        return sum(e.nbytes for e in self.entries)

    def __enter__(self) -> SavedTensorLog:
        self._hooks.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._hooks.__exit__(exc_type, exc, tb)
        if self.codec is not None:
            self.codec.reset()
