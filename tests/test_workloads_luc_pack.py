"""The bytes the trace charges for a weight equal the bytes of the packed tensor the compressor
produced (issue 20, kind 2): real compressed weights of the tiny model are packed and compared
with the tensor table, byte for byte, for every pattern, bit width and group size."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from workloads import data as data_mod
from workloads.luc.compress import compress_model
from workloads.luc.layers import decoder_layers, linear_modules
from workloads.luc.pack import groups_per_row, pack_weight, packed_bytes, unpack_weight
from workloads.luc.policy import HEAD_GROUP, LayerPolicy, Policy
from workloads.luc.prune import keep_mask, pruned_count
from workloads.trace import record_trace
from workloads.trace.annotate import weight_bytes

# (prune, quant, pattern, per-layer (sparsity, bits), group, head_bits): every pattern, bit
# widths 2..8 and 16, groups that divide the widths, that do not (100), and per-channel.
POLICIES = [
    ("magnitude", "rtn", "unstructured", [(0.0, 4)] * 4, 128, 16),  # the issue's q_proj / up_proj
    ("magnitude", "rtn", "unstructured", [(0.0, 4)] * 4, 100000, 16),  # per-channel
    ("magnitude", "rtn", "unstructured", [(0.3, 3), (0.0, 2), (0.55, 8), (0.1, 16)], 32, 8),
    ("wanda", "gptq", "unstructured", [(0.5, 2), (0.3, 4), (0.0, 16), (0.7, 6)], 100, 16),
    ("sparsegpt", "gptq", "2:4", [(0.5, 4), (0.5, 3), (0.0, 5), (0.5, 16)], 128, 4),
    ("wanda", "rtn", "4:8", [(0.5, 8), (0.5, 2), (0.5, 16), (0.0, 4)], 48, 16),
    ("sparsegpt", "rtn", "unstructured", [(0.05, 16), (0.37, 16), (0.9, 4), (0.2, 7)], 64, 16),
]


@pytest.fixture(scope="module")
def inference_trace(tiny):
    return record_trace(tiny, method="inference", seq_len=16, batch=1)


@pytest.fixture(scope="module")
def calib(tiny):
    return data_mod.split_windows(tiny.tokenizer, "calibration", 32, max_windows=4)


@pytest.mark.parametrize("case", range(len(POLICIES)))
def test_trace_bytes_equal_the_packed_compressed_weights(tiny, inference_trace, calib, case):
    prune, quant, pattern, layers, group, head_bits = POLICIES[case]
    policy = Policy({i: LayerPolicy(s, b) for i, (s, b) in enumerate(layers)}, pattern=pattern, prune=prune,
                    quant=quant, group_size=group, head_bits=head_bits)
    model = copy.deepcopy(tiny.model)
    compress_model(model, policy, calib, progress=False)
    table = inference_trace.with_policy(policy).tensors.set_index("name")
    compared = 0
    for i, layer in enumerate(decoder_layers(model)):
        lp = policy.layers[i]
        for name, mod in linear_modules(layer).items():
            w = mod.weight.detach()
            keep = (w != 0) if lp.sparsity > 0 else None
            packed = pack_weight(w, bits=lp.w_bits, group_size=group, keep=keep, pattern=pattern)
            row = table.loc[[n for n in table.index if n.startswith(f"layers.{i}.") and f".{name}." in n][0]]
            assert packed.nbytes == row["bytes"], (case, i, name, packed.layout, packed.nbytes, row["bytes"])
            assert row["bits"] == lp.w_bits
            compared += 1
    head = model.get_input_embeddings().weight.detach()
    if head_bits < 16:
        packed = pack_weight(head, bits=head_bits, group_size=HEAD_GROUP, symmetric=True)
        assert packed.nbytes == table.loc["embed_tokens.weight", "bytes"]
        torch.testing.assert_close(unpack_weight(packed), head.float())  # the head's own grid, exactly
    assert compared == 4 * 7


def test_issue_numbers_for_4_bit_dense():
    """The issue's expected bytes (tiny model: q_proj 64x64, up_proj 160x64)."""
    assert packed_bytes(64, 64, bits=4, group_size=128) == 2304
    assert packed_bytes(160, 64, bits=4, group_size=128) == 5760
    assert packed_bytes(64, 64, bits=4, group_size=100000) == 2304
    # A group never spans two rows: 64 rows of 160 inputs are 2 groups each, not 80 in all.
    assert groups_per_row(160, 128) == 2
    assert packed_bytes(64, 160, bits=4, group_size=128) == 64 * 160 // 2 + 64 * 2 * 4


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("group", [7, 32, 100, 1000])
def test_rtn_weights_round_trip_through_their_packing(bits, group):
    from workloads.luc.quantize import rtn_quantize

    gen = torch.Generator().manual_seed(bits * 1000 + group)
    w = torch.randn(24, 96, generator=gen)
    keep = keep_mask(w.abs(), 0.4, per_row=True)
    q = rtn_quantize(w, bits, group, keep)
    packed = pack_weight(q, bits=bits, group_size=group, keep=keep)
    assert packed.layout == "bitmap" and packed.kept == int(keep.sum())
    levels = np.unpackbits(packed.values, bitorder="little")
    assert levels.size == packed.values.size * 8  # whole bytes
    # float16 scale and origin: exact to float16's precision of the group's range.
    torch.testing.assert_close(unpack_weight(packed), q, atol=float(q.abs().max()) * 2e-3, rtol=0)
    assert (unpack_weight(packed)[~keep] == 0).all()


def test_nm_positions_round_trip():
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(3))
    keep = keep_mask(w.abs(), 0.5, "2:4")
    packed = pack_weight(w * keep, bits=16, group_size=128, keep=keep, pattern="2:4")
    assert packed.layout == "nm" and packed.index.nbytes == 8 * 32 // 2 * 2 // 8
    torch.testing.assert_close(unpack_weight(packed), (w * keep).half().float())


@pytest.mark.parametrize("prune", ["magnitude", "wanda"])
@pytest.mark.parametrize("sparsity", [0.1, 0.25, 0.3, 0.5, 0.77])
def test_pruned_count_is_what_keep_mask_prunes(prune, sparsity):
    scores = torch.rand(40, 90, generator=torch.Generator().manual_seed(1))
    mask = keep_mask(scores, sparsity, per_row=prune == "wanda")
    assert int((~mask).sum()) == pruned_count(40, 90, sparsity, prune=prune)


def test_weight_bytes_per_layout():
    # float16, low sparsity: the dense layout is smaller than values + bitmap.
    assert weight_bytes(32, 32, w_bits=16, sparsity=0.03, pattern="unstructured", group_size=128) == 32 * 32 * 2
    # quantized and pruned: bitmap layout (a pruned weight is not on the grid), even at low sparsity.
    kept = 32 * 32 - round(0.03 * 32 * 32)
    assert weight_bytes(32, 32, w_bits=4, sparsity=0.03, pattern="unstructured", group_size=128) == \
        -(-kept * 4 // 8) + 32 * 32 // 8 + 32 * 4
    # 2:4 at 4 bits: half the values, 2 bits of position each, per-row groups.
    assert weight_bytes(16, 64, w_bits=4, sparsity=0.5, pattern="2:4", group_size=32) == \
        16 * 32 * 4 // 8 + 16 * 32 * 2 // 8 + 16 * 2 * 4
