"""Pairs files: validation errors name row and column; Parquet / JSONL round trips; deterministic splits."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fairl_ray.pairs_io import (
    PairsFileError,
    labels_to_binary,
    read_pairs,
    split_pairs,
    validate_pairs,
    write_pairs,
)


def _rows(n=10):
    return [
        {
            "prompt": f"The entity {i} is",
            "chosen": f"kind and lovely {i}",
            "rejected": f"stupid {i}",
            "chosen_label": 1,
            "rejected_label": -1 if i % 2 else 0,
            "chosen_reward": 0.5,
            "rejected_reward": -0.5,
            "subtype": "insult" if i % 2 else None,
            "split": "test" if i % 3 == 0 else "train",
        }
        for i in range(n)
    ]


def _write_jsonl(path, rows, blank_line_at=None):
    lines = [json.dumps(r) if not isinstance(r, str) else r for r in rows]
    if blank_line_at is not None:
        lines.insert(blank_line_at, "")
    path.write_text("\n".join(lines) + "\n")


BAD_VALUES = [
    ("chosen", "", "empty text"),
    ("rejected", "   \n", "empty text"),
    ("chosen", 42, "expected a string"),
    ("prompt", None, "missing text"),
    ("chosen_label", "toxic", "non-numeric label"),
    ("rejected_label", 2, "not in {-1, 0, 1}"),
    ("chosen_label", True, "boolean label"),
    ("chosen_reward", float("nan"), "finite"),
    ("rejected_reward", float("inf"), "finite"),
    ("rejected_reward", "high", "non-numeric reward"),
    ("split", "validation", "bad split value"),
    ("subtype", 3, "subtype must be"),
]


@pytest.mark.parametrize("column,value,reason", BAD_VALUES)
def test_bad_value_in_row_7_jsonl(tmp_path, column, value, reason):
    rows = _rows()
    rows[7][column] = value
    p = tmp_path / "pairs.jsonl"
    # json.dumps writes NaN / Infinity literals, which Python's json reads back as floats
    _write_jsonl(p, rows)
    with pytest.raises(PairsFileError) as ei:
        read_pairs(p)
    msg = str(ei.value)
    assert "row 7 (line 8)" in msg and repr(column) in msg and reason in msg, msg
    assert ei.value.row == 7 and ei.value.line == 8 and ei.value.column == column


PARQUET_BAD_VALUES = [  # values that fit the column's Parquet type
    ("chosen", "", "empty text"),
    ("rejected", "   \n", "empty text"),
    ("prompt", None, "missing text"),
    ("chosen", None, "missing text"),
    ("rejected_label", 2, "not in {-1, 0, 1}"),
    ("chosen_label", 0.5, "not in {-1, 0, 1}"),
    ("chosen_reward", float("nan"), "finite"),
    ("rejected_reward", float("-inf"), "finite"),
    ("split", "validation", "bad split value"),
    ("split", None, "bad split value"),
]


@pytest.mark.parametrize("column,value,reason", PARQUET_BAD_VALUES)
def test_bad_value_in_row_7_parquet(tmp_path, column, value, reason):
    rows = _rows()
    rows[7][column] = value
    p = tmp_path / "pairs.parquet"
    pq.write_table(pa.Table.from_pylist(rows), p)
    with pytest.raises(PairsFileError) as ei:
        read_pairs(p)
    msg = str(ei.value)
    assert f"pairs.parquet: row 7, column {column!r}: " in msg and reason in msg, msg
    assert ei.value.row == 7 and ei.value.line is None


@pytest.mark.parametrize(
    "column,values",
    [
        ("chosen", list(range(10))),
        ("chosen_label", ["good"] * 10),
        ("chosen_label", [True] * 10),
        ("rejected_reward", ["high"] * 10),
        ("split", [1] * 10),
    ],
)
def test_wrong_column_type_parquet(tmp_path, column, values):
    cols = {c: [r[c] for r in _rows()] for c in _rows()[0]}
    cols[column] = values
    p = tmp_path / "pairs.parquet"
    pq.write_table(pa.table(cols), p)
    with pytest.raises(PairsFileError, match=rf"column '{column}': column has type .*, expected"):
        read_pairs(p)


def test_line_numbers_count_blank_lines(tmp_path):
    rows = _rows()
    rows[7]["chosen"] = ""
    p = tmp_path / "pairs.jsonl"
    _write_jsonl(p, rows, blank_line_at=2)
    with pytest.raises(PairsFileError, match=r"pairs\.jsonl: row 7 \(line 9\), column 'chosen': empty text"):
        read_pairs(p)


def test_malformed_json_line(tmp_path):
    lines = [json.dumps(r) for r in _rows()]
    lines[7] = '{"prompt": "x", "chosen": "a",'
    p = tmp_path / "pairs.jsonl"
    p.write_text("\n".join(lines))
    with pytest.raises(PairsFileError, match=r"row 7 \(line 8\): malformed JSON"):
        read_pairs(p)
    lines[7] = "[1, 2]"
    p.write_text("\n".join(lines))
    with pytest.raises(PairsFileError, match=r"row 7 \(line 8\): expected a JSON object"):
        read_pairs(p)


def test_missing_column(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "rejected"} for r in _rows()]
    p = tmp_path / "pairs.jsonl"
    _write_jsonl(p, rows)
    with pytest.raises(PairsFileError, match="missing required column 'rejected'"):
        read_pairs(p)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    with pytest.raises(PairsFileError, match="missing required column 'rejected'"):
        read_pairs(tmp_path / "pairs.parquet")
    # present in other rows but absent from row 7 of a JSONL file
    rows = _rows()
    del rows[7]["chosen"]
    _write_jsonl(p, rows)
    with pytest.raises(PairsFileError, match=r"row 7 \(line 8\), column 'chosen': missing value"):
        read_pairs(p)


def test_unreadable_and_unknown_files(tmp_path):
    with pytest.raises(PairsFileError, match="unknown pairs file type"):
        read_pairs(tmp_path / "pairs.csv")
    with pytest.raises(PairsFileError, match="no such file"):
        read_pairs(tmp_path / "absent.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(PairsFileError, match="unreadable Parquet"):
        read_pairs(tmp_path / "junk.parquet")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(PairsFileError):
        read_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(PairsFileError, match="unknown pairs file type"):
        write_pairs(_rows(), tmp_path / "pairs.txt")


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_roundtrip(tmp_path, suffix):
    rows = _rows()
    rows[3]["rejected_label"] = None  # null label -> 0 (unknown)
    rows[4]["chosen_reward"] = None  # unknown R* stays null
    rows[5]["prompt"] = ""  # empty prompt allowed
    rows[6]["extra"] = "kept"
    p = write_pairs(rows, tmp_path / f"sub/pairs{suffix}")
    assert not list(p.parent.glob("*.tmp"))
    t = read_pairs(p)
    assert t.column_names[:9] == [
        "prompt",
        "chosen",
        "rejected",
        "chosen_label",
        "rejected_label",
        "chosen_reward",
        "rejected_reward",
        "subtype",
        "split",
    ]
    assert t.schema.field("chosen_label").type == pa.int8()
    assert t.schema.field("chosen_reward").type == pa.float64()
    back = t.to_pylist()
    assert back[3]["rejected_label"] == 0 and back[4]["chosen_reward"] is None
    assert back[5]["prompt"] == "" and back[6]["extra"] == "kept" and back[0].get("extra") is None
    assert [r["chosen"] for r in back] == [r["chosen"] for r in rows]
    assert [r["subtype"] for r in back] == [r["subtype"] for r in rows]
    # second round trip through the other format is lossless
    other = ".jsonl" if suffix == ".parquet" else ".parquet"
    assert read_pairs(write_pairs(t, tmp_path / f"again{other}")).equals(t)


def test_write_validates_and_keeps_old_file(tmp_path):
    p = write_pairs(_rows(), tmp_path / "pairs.parquet")
    before = p.read_bytes()
    bad = _rows()
    bad[7]["chosen"] = " "
    with pytest.raises(PairsFileError, match="row 7, column 'chosen': empty text"):
        write_pairs(bad, p)
    assert p.read_bytes() == before
    # other containers
    cols = {c: [r[c] for r in _rows()] for c in _rows()[0]}
    assert validate_pairs(cols).num_rows == 10
    import datasets

    ds = datasets.Dataset.from_list(_rows()).select([9, 1])
    assert read_pairs(write_pairs(ds, tmp_path / "ds.jsonl")).column("chosen").to_pylist() == [
        "kind and lovely 9",
        "kind and lovely 1",
    ]


def test_split_pairs():
    t = validate_pairs([{k: v for k, v in r.items() if k != "split"} for r in _rows(50)])
    tr1, te1 = split_pairs(t, 0.2, seed=3)
    tr2, te2 = split_pairs(t, 0.2, seed=3)
    assert tr1.equals(tr2) and te1.equals(te2)
    assert te1.num_rows == 10 and tr1.num_rows == 40
    assert set(te1.column("split").to_pylist()) == {"test"}
    assert set(tr1.column("chosen").to_pylist()).isdisjoint(te1.column("chosen").to_pylist())
    _, te3 = split_pairs(t, 0.2, seed=4)
    assert te3.column("chosen").to_pylist() != te1.column("chosen").to_pylist()
    # an existing split column is honoured
    s = validate_pairs(_rows(10))
    tr, te = split_pairs(s, 0.9, seed=0)
    assert te.column("chosen").to_pylist() == [f"kind and lovely {i}" for i in (0, 3, 6, 9)]
    assert tr.num_rows == 6
    # by prompt: pairs sharing a prompt stay together
    rows = [{"prompt": f"p{i // 3}", "chosen": f"c{i}", "rejected": f"r{i}"} for i in range(30)]
    tr, te = split_pairs(validate_pairs(rows), 0.3, seed=1, by_prompt=True)
    assert set(tr.column("prompt").to_pylist()).isdisjoint(te.column("prompt").to_pylist())
    assert te.num_rows == 9
    with pytest.raises(ValueError):
        split_pairs(t, 1.5, seed=0)


def test_labels_to_binary():
    y, known = labels_to_binary(pa.array([1, -1, 0, None], type=pa.int8()))
    np.testing.assert_array_equal(y, [1, 0, 0, 0])
    np.testing.assert_array_equal(known, [True, True, False, False])
    assert math.isclose(float(y.sum()), 1.0)
