"""Hidden states of a split at chosen layers, computed once and kept on disk.

Translators are trained and exits are scored on these states, so the decoder runs once per
window however many exits, translators and rules are studied (nothing back-propagates through
it). The cache lives in ``cache_dir()/exits/`` keyed by the model's weights, the windows' tokens
and the layers, so a changed model or split never reads stale states.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from workloads.models import cache_dir
from workloads.tuning.forward import num_layers, run_layers


@dataclass(frozen=True)
class States:
    """Token windows ``ids [n, T]`` and the hidden state after each of ``layers``,
    ``hidden[layer]: [n, T, d]`` float32 (before the final norm)."""

    ids: torch.Tensor
    hidden: dict[int, torch.Tensor]

    @property
    def layers(self) -> list[int]:
        return sorted(self.hidden)

    def flat(self, layer: int, *, start: int = 0) -> torch.Tensor:
        """Hidden states of ``layer`` at the positions that predict a next token, from
        ``start`` on: ``[n * (T - 1 - start), d]``."""
        h = self.hidden[layer][:, start:-1]
        return h.reshape(-1, h.shape[-1])

    def targets(self, *, start: int = 0) -> torch.Tensor:
        """The next token of each position of :meth:`flat`, ``[n * (T - 1 - start)]``."""
        return self.ids[:, start + 1 :].reshape(-1)


def _digest(model: nn.Module, ids: torch.Tensor, layers: list[int]) -> str:
    h = hashlib.sha1()
    for name, p in sorted(model.state_dict().items()):
        if ".lora_" in name or "exit_translators" in name:
            continue
        h.update(name.encode())
        h.update(p.detach().reshape(-1)[:: max(1, p.numel() // 4096)].contiguous().numpy().tobytes())
    h.update(ids.numpy().tobytes())
    h.update(repr(layers).encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def collect(
    model: nn.Module,
    ids: torch.Tensor,
    layers: list[int],
    *,
    batch_size: int = 4,
    cache: bool = True,
    progress: bool = True,
) -> States:
    """Run the decoder on ``ids [n, T]`` and keep the hidden states after ``layers`` (the last
    layer is always added). With ``cache``, a previous identical run is read from disk.

    Raises:
        ValueError: a layer outside the model.
    """
    top = num_layers(model) - 1
    wanted = sorted(set(layers) | {top})
    if any(not 0 <= e <= top for e in wanted):
        raise ValueError(f"layers {wanted} must lie in 0..{top}")
    path = cache_dir() / "exits" / f"states-{_digest(model, ids, wanted)}.pt"
    if cache and path.is_file():
        return States(ids, torch.load(path, weights_only=True))
    parts: dict[int, list[torch.Tensor]] = {e: [] for e in wanted}
    for s in tqdm(range(0, len(ids), batch_size), desc="hidden states", disable=not progress or None, leave=False):
        out = run_layers(model, ids[s : s + batch_size], capture=wanted)
        for e in wanted:
            parts[e].append(out[e].float())
    hidden = {e: torch.cat(p) for e, p in parts.items()}
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(hidden, tmp)
        tmp.replace(path)
    return States(ids, hidden)


def cached_paths() -> list[Path]:
    return sorted((cache_dir() / "exits").glob("states-*.pt"))
