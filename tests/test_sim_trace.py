"""Trace reading: the hand-written fixture follows docs/trace.md; bad traces fail in one line."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim import TraceError, read_trace, validate_ops
from sim.trace import OPS_COLUMNS, OPTIONAL_OPS_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "tiny_step.csv"
HEADER = ('# {"format": "edgellm-trace/1", "model": "m", "method": "adaptive", '
          '"seq_len": 16, "batch": 2}\n')
GOOD_ROW = "0,q_proj,fwd,32,64,64,0.5,unstructured,4,16,false,1\n"


def _trace(tmp_path: Path, body: str, header: str = HEADER,
           columns: str = ",".join(OPS_COLUMNS)) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(header + columns + "\n" + body)
    return path


def test_fixture_reads_with_header_ops_and_tensors() -> None:
    trace = read_trace(FIXTURE)
    assert trace.header["format"] == "edgellm-trace/1"
    assert trace.header["seq_len"] == 16 and trace.header["batch"] == 2
    assert list(trace.ops.columns) == [*OPS_COLUMNS, *OPTIONAL_OPS_COLUMNS]
    assert set(trace.ops["phase"]) == {"fwd", "bwd_input", "bwd_weight"}
    assert trace.ops["trainable"].dtype == bool
    assert trace.tensors is not None and trace.tensors["bytes"].sum() > 0
    # Attention rows repeat per batch x head; LoRA rows are the trainable ones.
    attn = trace.ops[trace.ops["module"] == "attn_qk"]
    assert (attn["count"] == 2 * 4).all()
    assert set(trace.ops.loc[trace.ops["trainable"], "module"]) == {"lora_A", "lora_B"}


def test_fixture_linear_shapes_follow_the_contract() -> None:
    ops = read_trace(FIXTURE).ops
    tokens = 2 * 16
    up = ops[(ops["layer"] == 1) & (ops["module"] == "up_proj")].set_index("phase")
    assert tuple(up.loc["fwd", ["M", "K", "N"]]) == (tokens, 64, 128)
    assert tuple(up.loc["bwd_input", ["M", "K", "N"]]) == (tokens, 128, 64)
    lora = ops[(ops["module"] == "lora_A") & (ops["phase"] == "bwd_weight")].iloc[0]
    assert (lora["M"], lora["K"], lora["N"]) == (4, tokens, 64)
    assert lora["sparsity_pattern"] == "dense" and lora["w_bits"] == lora["a_bits"]


@pytest.mark.parametrize(("row", "expected"), [
    ("0,q_proj,fwd,-32,64,64,0.5,unstructured,4,16,false,1",
     "column M must be an integer > 0 (got -32)"),
    ("0,q_proj,fwd,32,64,0,0.5,unstructured,4,16,false,1", "column K must be an integer > 0"),
    ("0,q_proj,fwd,32,6.5,64,0.5,unstructured,4,16,false,1", "column N must be an integer > 0"),
    ("0,q_proj,fwd,32,64,64,1.0,unstructured,4,16,false,1",
     "column weight_sparsity must be in [0, 1)"),
    ("0,q_proj,fwd,32,64,64,0.5,unstructured,0,16,false,1", "column w_bits must be an integer in"),
    ("0,q_proj,fwd,32,64,64,0.5,unstructured,4,64,false,1", "column a_bits must be an integer in"),
    ("0,q_proj,forward,32,64,64,0.5,unstructured,4,16,false,1", "column phase must be one of"),
    ("0,q_proj,fwd,32,64,64,0.5,4:2,4,16,false,1", "column sparsity_pattern must be"),
    ("0,q_proj,fwd,32,64,64,0.5,dense,4,16,false,1", "needs sparsity_pattern unstructured"),
    ("0,q_proj,fwd,32,64,64,0.5,unstructured,4,16,maybe,1", "column trainable must be true"),
    ("0,q_proj,fwd,32,64,64,0.5,unstructured,4,16,false,0", "column count must be an integer"),
    ("-2,q_proj,fwd,32,64,64,0.5,unstructured,4,16,false,1", "column layer must be an integer"),
])
def test_bad_values_name_row_and_column(tmp_path: Path, row: str, expected: str) -> None:
    path = _trace(tmp_path, GOOD_ROW + row + "\n")
    with pytest.raises(TraceError) as err:
        read_trace(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: row 2: ")
    assert expected in message


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    cols = [c for c in OPS_COLUMNS if c not in ("count", "a_bits")]
    path = _trace(tmp_path, "0,q_proj,fwd,32,64,64,0.5,unstructured,4,false\n",
                  columns=",".join(cols))
    with pytest.raises(TraceError, match=r"missing column\(s\) a_bits, count"):
        read_trace(path)


@pytest.mark.parametrize(("header", "expected"), [
    ("", "first line must be '# {json header}'"),
    ("# {not json}\n", "header line is not valid JSON"),
    ('# {"format": "edgellm-trace/1", "model": "m"}\n', "missing key(s) method, seq_len, batch"),
    ('# {"format": "other/2", "model": "m", "method": "x", "seq_len": 1, "batch": 1}\n',
     "header format must be 'edgellm-trace/1'"),
])
def test_bad_headers(tmp_path: Path, header: str, expected: str) -> None:
    with pytest.raises(TraceError) as err:
        read_trace(_trace(tmp_path, GOOD_ROW, header=header))
    assert expected in str(err.value)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="trace file not found"):
        read_trace(tmp_path / "nope.csv")
    with pytest.raises(TraceError, match="tensor table not found"):
        read_trace(_trace(tmp_path, GOOD_ROW), tensors=tmp_path / "nope.tensors.csv")


def test_tensor_table_is_validated(tmp_path: Path) -> None:
    path = _trace(tmp_path, GOOD_ROW)
    (tmp_path / "t.tensors.csv").write_text("name,kind,layer,numel,bits,bytes\n"
                                            "w,weight,0,10,4,-5\n")
    with pytest.raises(TraceError, match=r"t.tensors.csv: row 1: column bytes must be"):
        read_trace(path)
    (tmp_path / "t.tensors.csv").write_text("name,kind,layer,numel,bits,bytes\n"
                                            "w,weights,0,10,4,5\n")
    with pytest.raises(TraceError, match="column kind must be one of"):
        read_trace(path)


def test_validate_ops_accepts_dataframes_and_normalizes() -> None:
    df = pd.DataFrame([{"layer": 0, "module": " q_proj ", "phase": "fwd", "M": 8.0, "N": 8,
                        "K": 8, "weight_sparsity": 0.5, "sparsity_pattern": "2:4",
                        "w_bits": 4, "a_bits": 16, "trainable": "True", "count": 1}])
    ops = validate_ops(df)
    assert ops.loc[0, "module"] == "q_proj" and ops.loc[0, "M"] == 8
    assert ops["M"].dtype.kind == "i" and bool(ops.loc[0, "trainable"]) is True
    with pytest.raises(TraceError, match="has no rows"):
        validate_ops(df.iloc[:0])
