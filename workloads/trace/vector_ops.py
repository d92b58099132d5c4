"""What one aten operator costs a vector unit: its classes (docs/trace.md: ``add``, ``exp``,
``rsqrt``, ``reduce``, ``move``), how many elements, and which of its tensors it reads and writes.

This is the table the trace recorder applies to every operator torch dispatches in a real step
(``workloads.trace.vector``). Matrix products are not here (they are rows of their own), nor
views and allocations, which move no data. An operator missing from the table is recorded as
``add`` and named in the trace header (``vector_unclassified``), so a new torch version that
dispatches something new shows up instead of disappearing.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._pytree import tree_leaves

__all__ = ["ADD", "DESTINATIONS", "EXP", "GATHERS", "LAYER_NORM", "LAYER_NORM_BACKWARD",
           "LOGSUMEXP", "LOG_SOFTMAX", "LOG_SOFTMAX_BACKWARD", "MOVE", "NO_WORK", "OpWork",
           "PRODUCTS", "Passes", "REDUCE", "REDUCTIONS", "RSQRT", "SOFTMAX", "SOFTMAX_BACKWARD",
           "VECTOR_CLASSES", "op_work", "product_macs", "tensor_bytes", "vector_rows"]

VECTOR_CLASSES = ("add", "exp", "rsqrt", "reduce", "move")

# One pass over the op's base elements per (class, multiplier) entry.
Passes = tuple[tuple[str, int], ...]
ADD: Passes = (("add", 1),)
EXP: Passes = (("exp", 1),)
RSQRT: Passes = (("rsqrt", 1),)
REDUCE: Passes = (("reduce", 1),)
MOVE: Passes = (("move", 1),)
# softmax: max, exp(x - max) (the subtraction and any scale folded into the exp's argument),
# sum, divide. Its backward dS = P * (dP - sum(P * dP)): multiply, sum, subtract and multiply.
SOFTMAX: Passes = (("reduce", 1), ("exp", 1), ("reduce", 1), ("rsqrt", 1))
SOFTMAX_BACKWARD: Passes = (("add", 1), ("reduce", 1), ("add", 2))
# log_softmax: max, exp, sum, subtract the log-sum (one log per row is negligible).
LOG_SOFTMAX: Passes = (("reduce", 1), ("exp", 1), ("reduce", 1), ("add", 1))
LOG_SOFTMAX_BACKWARD: Passes = (("reduce", 1), ("exp", 1), ("add", 2))
LOGSUMEXP: Passes = (("reduce", 1), ("exp", 1), ("reduce", 1))
# LayerNorm (GPT-2, OPT): the mean and the variance (two reductions, squaring the centred
# values), then subtract the mean, multiply by the row's reciprocal deviation, scale and shift.
# Its backward: the two row means of the gradient (g dy and g dy x_hat) and about seven
# elementwise operations to recentre, combine and scale (torch's native_layer_norm_backward).
LAYER_NORM: Passes = (("reduce", 2), ("add", 4))
LAYER_NORM_BACKWARD: Passes = (("reduce", 2), ("add", 7))

# Matrix products: recorded as ``matmul`` rows by the module and attention hooks.
PRODUCTS = frozenset({
    "mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "dot", "mv", "addmv", "linear", "_int_mm",
    "convolution", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_cudnn_attention_backward", "_flash_attention_forward", "_flash_attention_backward",
    "_efficient_attention_forward", "_efficient_attention_backward",
})
# No data moved (allocation, metadata, host reads of a value, profiler markers). Views are
# recognised by torch's own ``is_view`` flag; these are the ones it does not flag.
NO_WORK = frozenset({
    "_unsafe_view", "_reshape_alias", "lift_fresh", "empty", "empty_like", "empty_strided", "new_empty",
    "new_empty_strided", "resize_", "set_", "_local_scalar_dense", "_record_function_enter_new",
    "_record_function_exit", "detach_", "is_same_size", "_has_compatible_shallow_copy_type",
    "_to_copy_meta", "record_stream", "_assert_async", "sym_size", "sym_stride", "sym_numel",
})
# Reductions count the elements they fold (of their first input), not the few they write.
REDUCTIONS = frozenset({
    "sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "logsumexp", "linalg_vector_norm",
    "norm", "_foreach_norm", "cumsum", "all", "any", "prod", "var", "std", "var_mean", "_softmax",
    "_log_softmax", "_softmax_backward_data", "_log_softmax_backward_data", "native_layer_norm",
    "native_layer_norm_backward",
})
# Read the indexed rows of their source (and the indices), not the whole source.
GATHERS = frozenset({"embedding", "gather", "index", "index_select"})
# Write only into their first argument without reading it.
DESTINATIONS = frozenset({"copy_", "fill_", "zero_", "index_put_", "_index_put_impl_"})

_TABLE: dict[str, Passes] = {}
for _names, _passes in (
    ("add sub mul neg rsub where clamp clamp_min clamp_max maximum minimum eq ne lt gt le ge abs sign "
     "round floor ceil trunc lerp masked_fill threshold_backward bitwise_and bitwise_or bitwise_not "
     "logical_and logical_or logical_not relu sigmoid_backward tanh_backward _foreach_mul _foreach_add "
     "_foreach_sub _foreach_lerp _foreach_neg", ADD),
    ("addcmul _foreach_addcmul", (("add", 2),)),
    ("exp exp2 log log2 log1p expm1 sigmoid silu tanh gelu erf cos sin _foreach_exp", EXP),
    ("bernoulli", (("add", 2),)),  # dropout's mask: a uniform draw and a comparison per element
    ("silu_backward", (("exp", 1), ("add", 4))),  # sigmoid again, then four multiply-adds
    ("gelu_backward", (("exp", 1), ("add", 4))),
    ("rsqrt sqrt div reciprocal _foreach_sqrt _foreach_div _foreach_reciprocal", RSQRT),
    ("addcdiv _foreach_addcdiv", (("rsqrt", 1), ("add", 1))),
    ("sum mean amax amin max min argmax argmin linalg_vector_norm norm _foreach_norm cumsum all any prod "
     "var std var_mean", REDUCE),
    ("logsumexp", LOGSUMEXP),
    ("_softmax", SOFTMAX),
    ("_softmax_backward_data", SOFTMAX_BACKWARD),
    ("_log_softmax", LOG_SOFTMAX),
    ("_log_softmax_backward_data", LOG_SOFTMAX_BACKWARD),
    ("native_layer_norm", LAYER_NORM),
    ("native_layer_norm_backward", LAYER_NORM_BACKWARD),
    ("copy clone _to_copy cat stack embedding gather index index_select index_put _index_put_impl "
     "slice_backward select_backward slice_scatter select_scatter zeros zeros_like ones ones_like full "
     "full_like new_zeros new_ones new_full fill zero arange repeat expand_copy scalar_tensor "
     "_foreach_copy _foreach_zero", MOVE),
):
    for _name in _names.split():
        _TABLE[_name] = _passes
        _TABLE[_name + "_"] = _passes  # the in-place variant does the same work


@dataclass(frozen=True)
class OpWork:
    """The vector work of one operator call: ``passes`` over ``elements``, ``read`` and
    ``written`` tensors (host tensors; their device bits are applied by the caller),
    ``gathered`` source elements read through an index, and ``known`` whether the table
    classified the operator."""

    passes: Passes
    elements: int
    read: tuple[torch.Tensor, ...]
    written: tuple[torch.Tensor, ...]
    gathered: tuple[tuple[torch.Tensor, int], ...]  # (source, elements read from it)
    known: bool


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor)]


def _mutated(func: torch._ops.OpOverload, args: Sequence[Any], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """Tensors the operator writes in place (``self`` of ``mul_``, ``out=``), from its schema."""
    out: list[torch.Tensor] = []
    for i, arg in enumerate(func._schema.arguments):
        if arg.alias_info is None or not arg.alias_info.is_write:
            continue
        value = kwargs.get(arg.name) if arg.kwarg_only or i >= len(args) else args[i]
        out.extend(_tensors(value))
    return out


def op_work(func: torch._ops.OpOverload, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> OpWork:
    """Classify one dispatched operator call (not a product, view or allocation)."""
    name = func.overloadpacket.__name__
    passes = _TABLE.get(name, ADD)
    if name == "pow" or name == "pow_":
        # x ** 2 (RMSNorm) and the integer powers of its backward are multiplications.
        exponent = args[1] if len(args) > 1 else None
        passes = ADD if isinstance(exponent, (int, float)) and float(exponent).is_integer() else RSQRT
    inputs = _tensors((args, kwargs))
    written = _mutated(func, args, kwargs) or _tensors(out)
    gathered: list[tuple[torch.Tensor, int]] = []
    if name in DESTINATIONS:
        inputs = inputs[1:]  # the destination is written, not read
    if name in ("index_put_", "_index_put_impl_", "index_put"):
        values = args[2]
        written = [values]  # only the indexed positions change
    if name in GATHERS:
        source = args[0]
        inputs = [t for t in inputs if t is not source]
        gathered = [(source, sum(t.numel() for t in _tensors(out)))]
    if name in REDUCTIONS:
        elements = sum(t.numel() for t in _tensors(args[0])) if args else 0
    else:
        elements = sum(t.numel() for t in written)
    return OpWork(passes, elements, tuple(inputs), tuple(written), tuple(gathered),
                  known=name in _TABLE or name in ("pow", "pow_"))


def product_macs(name: str, args: Sequence[Any]) -> int | None:
    """Multiply-accumulates of one dispatched product kernel from its operands' shapes, ``0``
    for an outer product (``K = 1``: elementwise work), ``None`` for a kernel whose MACs this
    table cannot read off (fused attention, convolution)."""
    if name in ("mm", "bmm", "_int_mm"):
        a, b = args[0], args[1]
    elif name in ("addmm", "baddbmm", "addbmm"):
        a, b = args[1], args[2]
    elif name in ("mv", "dot"):
        a, b = args[0], args[1].unsqueeze(-1)
    elif name == "addmv":
        a, b = args[1], args[2].unsqueeze(-1)
    else:
        return None
    k = int(a.shape[-1])
    batch = math.prod(int(d) for d in a.shape[:-2]) if name in ("bmm", "baddbmm", "addbmm") else 1
    rows = int(a.shape[-2]) if a.dim() >= 2 else 1
    return 0 if k == 1 else batch * rows * k * int(b.shape[-1])


def tensor_bytes(numel: int, bits: int) -> int:
    """Device bytes of ``numel`` values at ``bits`` each."""
    return math.ceil(numel * bits / 8)


def vector_rows(
    *,
    layer: int,
    module: str,
    phase: str,
    passes: Passes,
    elements: int,
    read_bytes: int,
    write_bytes: int,
    bits: int,
    fusable: bool = False,
    count: int = 1,
) -> list[dict[str, Any]]:
    """Trace rows of one vector operation (docs/trace.md): one row per pass, the bytes and the
    ``fusable`` mark on the first, so summing ``read_bytes`` counts each operand once."""
    rows = []
    for i, (cls, times) in enumerate(passes):
        rows.append({
            "layer": layer, "module": module, "phase": phase, "M": 0, "N": 0, "K": 0,
            "weight_sparsity": 0.0, "sparsity_pattern": "dense", "w_bits": bits, "a_bits": bits,
            "trainable": False, "count": count, "kind": "vector", "vector_class": cls,
            "elements": elements * times, "read_bytes": read_bytes if i == 0 else 0,
            "write_bytes": write_bytes if i == 0 else 0, "fusable": fusable and i == 0,
        })
    return rows

