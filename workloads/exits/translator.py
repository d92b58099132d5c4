"""Exit translators: a learned affine map in front of the shared final norm and tied head.

The tuned lens (Belrose et al., 2023, "Eliciting Latent Predictions from Transformers with the
Tuned Lens", arXiv:2303.08112) reads an intermediate hidden state ``h [..., d]`` through
``head(norm(A h + b))``, with one affine map per layer trained to match the model's final
next-token distribution. Here:

- ``rank=None``: full ``A [d, d]``, initialized at the identity (``A = I``, ``b = 0``), so an
  untrained translator is exactly the plain exit;
- ``rank=r``: ``A = I + U V`` with ``V [r, d]`` and ``U [d, r]``, ``U = 0`` at start (the low-rank
  variant: ``2 r d + d`` parameters instead of ``d^2 + d``).

The translators of a model live in ``causal_lm(model).exit_translators`` (an ``nn.ModuleDict``
keyed by the exit layer), so they move, save and freeze with the model, and the trace recorder
sees their ``nn.Linear`` products like any other (module ``exit_translator``). peft's LoRA does
not touch them (its target modules are the decoder's seven projections).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from workloads.architecture import causal_lm
from workloads.errors import UserError

ATTRIBUTE = "exit_translators"
TRACE_MODULE = "exit_translator"  # the trace's ``module`` of every translator product


class Translator(nn.Module):
    """``h -> A h + b`` over the last dimension of ``h [..., d]`` (see the module docstring).

    Args:
        d: hidden size.
        rank: ``None`` for a full ``d x d`` map, else the rank of ``A - I`` (``1 <= rank < d``).

    Raises:
        ValueError: a rank outside ``1..d-1``.
    """

    def __init__(self, d: int, *, rank: int | None = None) -> None:
        super().__init__()
        if rank is not None and not 1 <= rank < d:
            raise ValueError(f"translator rank must be in 1..{d - 1} (got {rank}); use None for a full map")
        self.d, self.rank = d, rank
        if rank is None:
            self.linear = nn.Linear(d, d)
            with torch.no_grad():
                self.linear.weight.copy_(torch.eye(d))
                self.linear.bias.zero_()
        else:
            self.down = nn.Linear(d, rank, bias=False)  # V; its default (Kaiming) init is kept
            self.up = nn.Linear(rank, d)  # U and b, zero: identity at start
            with torch.no_grad():
                self.up.weight.zero_()
                self.up.bias.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.rank is None:
            return self.linear(h)
        return h + self.up(self.down(h))

    def extra_repr(self) -> str:
        return f"d={self.d}, rank={self.rank}"


def install(model: nn.Module, translators: dict[int, Translator]) -> None:
    """Attach ``{exit layer: translator}`` to ``model`` (replacing any it had), frozen, on the
    model's device and dtype. A model wrapped by peft keeps them (they live in the base model)."""
    lm = causal_lm(model)
    ref = lm.lm_head.weight
    wrong = {e: t.d for e, t in translators.items() if t.d != ref.shape[1]}
    if wrong:
        raise UserError(f"translators of hidden size {sorted(set(wrong.values()))} do not fit this model "
                        f"(hidden size {ref.shape[1]}): train them for this model with `python -m workloads.exits`")
    table = nn.ModuleDict({str(int(e)): t for e, t in sorted(translators.items())})
    table.to(device=ref.device, dtype=ref.dtype)
    for p in table.parameters():
        p.requires_grad_(False)
    setattr(lm, ATTRIBUTE, table)


def remove(model: nn.Module) -> None:
    """Take the translators off ``model`` (the plain exits again)."""
    lm = causal_lm(model)
    if hasattr(lm, ATTRIBUTE):
        delattr(lm, ATTRIBUTE)


def installed(model: nn.Module) -> dict[int, Translator]:
    """The translators attached to ``model``, ``{}`` if none."""
    table = getattr(causal_lm(model), ATTRIBUTE, None)
    return {} if table is None else {int(k): t for k, t in table.items()}


def translate(model: nn.Module, hidden: torch.Tensor, exit_layer: int) -> torch.Tensor:
    """``hidden [..., d]`` through the translator of ``exit_layer``, unchanged when it has none
    (the final layer never has one: its exit is the model's own output)."""
    table = getattr(causal_lm(model), ATTRIBUTE, None)
    if table is None or str(exit_layer) not in table:
        return hidden
    return table[str(exit_layer)](hidden)


def parameter_count(translators: dict[int, Translator]) -> int:
    return sum(p.numel() for t in translators.values() for p in t.parameters())


def save(path: str | Path, translators: dict[int, Translator], meta: dict[str, Any]) -> None:
    """Write the translators and ``meta`` (what they were trained on) to one ``torch.save``
    file, through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {
        "meta": meta,
        "translators": {
            int(e): {"d": t.d, "rank": t.rank, "state": {k: v.detach().cpu() for k, v in t.state_dict().items()}}
            for e, t in translators.items()
        },
    }
    torch.save(state, tmp)
    tmp.replace(path)


def load(path: str | Path) -> tuple[dict[int, Translator], dict[str, Any]]:
    """Translators and their ``meta`` from a file written by :func:`save`.

    Raises:
        UserError: the file is missing or is not a translator file.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"translator file '{path}' not found: train them with `python -m workloads.exits`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        out = {}
        for e, entry in state["translators"].items():
            t = Translator(int(entry["d"]), rank=entry["rank"])
            t.load_state_dict(entry["state"])
            out[int(e)] = t
    except (KeyError, TypeError, RuntimeError, ValueError) as exc:
        raise UserError(f"{path}: not a translator file ({type(exc).__name__}); retrain with `python -m workloads.exits`") from None
    return out, dict(state.get("meta", {}))
