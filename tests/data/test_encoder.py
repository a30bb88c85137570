"""Tests for the Encoder (``shoal.data.encoder``) and the jagged Batch (``shoal.data.batch``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.config import FeatureConfig, LabelConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.hashing import bucketize, hash_strings, seed_for
from shoal.data.readers import BadInputError, BadRowSink, Chunk, read_chunks


def dense(name: str, transform: str = "none", **kw) -> FeatureConfig:
    return FeatureConfig(name=name, kind="dense", transform=transform, **kw)


def sparse(name: str, buckets: int = 1000, **kw) -> FeatureConfig:
    return FeatureConfig(name=name, kind="sparse", buckets=buckets, **kw)


def chunk(columns: dict, lines: list[int] | None = None, file: str = "f.csv") -> Chunk:
    table = pa.table(columns)
    n = table.num_rows
    return Chunk(table, np.array(lines if lines is not None else range(2, n + 2), dtype=np.int64), file)


def ids_of(text: str, feature: str, buckets: int = 1000) -> int:
    """The id the encoder must give ``text`` in feature ``feature``."""
    return int(bucketize(hash_strings(pa.array([text]), seed_for(feature) & 0xFFFFFFFF), buckets)[0])


def rows(batch: Batch, k: int = 0) -> list[list[int]]:
    off = batch.offsets[k]
    return [batch.ids[k][off[i]:off[i + 1]].tolist() for i in range(len(batch))]


class Quarantine:
    """A quarantine sink in a temp folder whose records can be read back."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "q.jsonl"
        self.sink = BadRowSink("quarantine", self.path)

    def records(self) -> list[dict]:
        self.sink.close()
        return [json.loads(x) for x in self.path.read_text().splitlines()] if self.path.exists() else []


# -- dense ----------------------------------------------------------------------------------------------------
def test_dense_log1p_sign_preserving() -> None:
    enc = Encoder([dense("d", "log1p")], LabelConfig(column="y"))
    b = enc.encode(chunk({"d": ["0", "1", "-1", "99", "-1e3", "2.5"], "y": ["1"] * 6}), BadRowSink("error"))
    raw = np.array([0, 1, -1, 99, -1e3, 2.5])
    np.testing.assert_allclose(b.dense[:, 0], np.sign(raw) * np.log1p(np.abs(raw)), rtol=1e-6)
    assert b.dense[2, 0] == pytest.approx(-np.log(2), rel=1e-6)
    assert b.dense.dtype == np.float32 and b.dense.shape == (6, 2)
    assert b.dense[:, 1].tolist() == [0] * 6  # no missing flags


def test_dense_standardize_uses_fit_statistics() -> None:
    enc = Encoder([dense("d", "standardize"), dense("e", "log1p")], LabelConfig(column="y"))
    fit_chunks = [chunk({"d": ["1", "2", None], "e": ["0", "0", "0"], "y": ["0", "1", "1"]}),
                  chunk({"d": ["3", "4", "oops"], "e": ["1", "1", "1"], "y": ["0", "0", "0"]}, [5, 6, 7])]
    counter = BadRowSink("count")
    enc.fit(fit_chunks, counter)
    assert counter.count == 1  # "oops" (its values are not part of the statistics)
    values = np.array([1.0, 2.0, 3.0, 4.0])  # the missing value is not part of the statistics
    d, e = enc.dense_features
    assert d.mean_ == pytest.approx(values.mean()) and d.std_ == pytest.approx(values.std())
    # statistics are of the transformed values, after log1p, over the 5 good rows (0, 0, 0, 1, 1)
    assert e.mean_ == pytest.approx(2 * np.log(2) / 5, rel=1e-6)
    b = enc.encode(chunk({"d": ["2.5", "6", None], "e": ["0", "0", "0"], "y": ["1", "1", "1"]}), BadRowSink("error"))
    np.testing.assert_allclose(b.dense[:2, 0], (np.array([2.5, 6.0]) - 2.5) / values.std(), rtol=1e-6)
    assert b.dense[2].tolist() == [0.0, 0.0, 1.0, 0.0]  # missing -> 0, flag 1 (value columns, then flags)


def test_standardize_constant_column_has_unit_std() -> None:
    enc = Encoder([dense("d", "standardize")], None)
    enc.fit([chunk({"d": [5.0, 5.0, 5.0]})], BadRowSink("count"))
    assert enc.dense_features[0].std_ == 1.0
    b = enc.encode(chunk({"d": [5.0, 7.0]}), BadRowSink("error"), with_label=False)
    assert b.dense[:, 0].tolist() == [0.0, 2.0]
    assert b.label is None


def test_dense_none_and_missing_flags() -> None:
    enc = Encoder([dense("a"), dense("b")], LabelConfig(column="y"))
    b = enc.encode(chunk({"a": [" 1.5 ", None, "-2", ".5"], "b": [None, "3", "1e2", "+4"], "y": ["1", "0", "1", "0"]}),
                   BadRowSink("error"))
    assert b.dense.tolist() == [[1.5, 0, 0, 1], [0, 3, 1, 0], [-2, 100, 0, 0], [0.5, 4, 0, 0]]
    assert b.label.tolist() == [1, 0, 1, 0]
    assert b.lines.tolist() == [2, 3, 4, 5]


@pytest.mark.parametrize("value, reason", [
    ("abc", "not a number"), ("1,5", "not a number"), ("12x", "not a number"), ("--1", "not a number"),
    ("inf", "not a number"), ("-Infinity", "not a number"), ("1e400", "infinite value"),
])
def test_bad_dense_value_names_line_column_value(value: str, reason: str) -> None:
    enc = Encoder([dense("num", column="age")], LabelConfig(column="y"))
    c = chunk({"age": ["1", value, "3"], "y": ["1", "0", "1"]}, [10, 11, 12], "data.csv")
    with pytest.raises(BadInputError) as exc:
        enc.encode(c, BadRowSink("error"))
    msg = str(exc.value)
    assert msg.startswith(f"data.csv, line 11, column 'age': value {value!r}: {reason}")


def test_bad_rows_quarantined_and_left_out(tmp_path: Path) -> None:
    q = Quarantine(tmp_path)
    enc = Encoder([dense("d"), sparse("s")], LabelConfig(column="y"))
    c = chunk({"d": ["1", "x", "3", "inf", "5"], "s": ["a", "b", "c", "d", "e"], "y": ["1", "0", "maybe", "1", "0"]},
              [2, 3, 5, 8, 9])
    b = enc.encode(c, q.sink)
    assert b.lines.tolist() == [2, 9]
    assert b.dense[:, 0].tolist() == [1, 5]
    assert rows(b) == [[ids_of("a", "s")], [ids_of("e", "s")]]
    assert b.label.tolist() == [1, 0]
    recs = q.records()
    assert [(r["line"], r["column"], r["value"]) for r in recs] == [(3, "d", "x"), (5, "y", "maybe"), (8, "d", "inf")]
    assert all(r["file"] == "f.csv" for r in recs)
    assert q.sink.count == 3


def test_one_report_per_bad_row(tmp_path: Path) -> None:
    # a row bad in two columns is reported once (the first problem)
    q = Quarantine(tmp_path)
    enc = Encoder([dense("a"), dense("b")], LabelConfig(column="y"))
    b = enc.encode(chunk({"a": ["x", "1"], "b": ["y", "2"], "y": ["2", "1"]}), q.sink)
    assert len(b) == 1
    recs = q.records()
    assert len(recs) == 1 and recs[0]["line"] == 2 and recs[0]["column"] == "a"


def test_parquet_nan_is_missing_not_bad(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"d": [1.0, float("nan"), None, 4.0], "i": pa.array([1, None, 3, 4], pa.int64()),
                             "y": [1, 0, 1, 0]}), p)
    enc = Encoder([dense("d"), dense("i")], LabelConfig(column="y"))
    (c,) = read_chunks(p, fmt=None, columns=enc.columns(), sink=BadRowSink("error"))
    b = enc.encode(c, BadRowSink("error"))
    assert b.dense.tolist() == [[1, 1, 0, 0], [0, 0, 1, 1], [0, 3, 1, 0], [4, 4, 0, 0]]
    assert b.label.tolist() == [1, 0, 1, 0]  # integer labels are read as their text
    assert b.lines.tolist() == [1, 2, 3, 4]


def test_parquet_infinite_float_is_bad(tmp_path: Path) -> None:
    enc = Encoder([dense("d")], LabelConfig(column="y"))
    with pytest.raises(BadInputError, match=r"f\.pq, line 3, column 'd': value 'inf': infinite"):
        enc.encode(chunk({"d": [1.0, 2.0, float("inf")], "y": [1, 1, 0]}, [1, 2, 3], "f.pq"), BadRowSink("error"))


def test_unsupported_dense_type_is_bad() -> None:
    enc = Encoder([dense("d")], None)
    with pytest.raises(BadInputError, match="unsupported type"):
        enc.encode(chunk({"d": pa.array([[1], [2]])}), BadRowSink("error"), with_label=False)


# -- labels ---------------------------------------------------------------------------------------------------
def test_invalid_label_lists_allowed_values() -> None:
    enc = Encoder([dense("d")], LabelConfig(column="click"))
    c = chunk({"d": ["1", "2"], "click": ["1", "yes"]}, [7, 8], "log.tsv")
    with pytest.raises(BadInputError) as exc:
        enc.encode(c, BadRowSink("error"))
    msg = str(exc.value)
    assert msg.startswith("log.tsv, line 8, column 'click': value 'yes': invalid label")
    assert "['0', '0.0', '1', '1.0', 'False', 'True', 'false', 'true']" in msg
    assert "label.positive" in msg


def test_missing_label_is_bad(tmp_path: Path) -> None:
    q = Quarantine(tmp_path)
    enc = Encoder([dense("d")], LabelConfig(column="y"))
    b = enc.encode(chunk({"d": ["1", "2"], "y": [None, "0"]}), q.sink)
    assert b.lines.tolist() == [3]
    (rec,) = q.records()
    assert rec["line"] == 2 and rec["column"] == "y" and rec["value"] is None
    assert rec["reason"].startswith("invalid label")


def test_custom_labels_with_whitespace() -> None:
    label = LabelConfig(column="income", positive=[">50K"], negative=["<=50K"])
    enc = Encoder([sparse("s")], label)
    b = enc.encode(chunk({"s": ["a", "b", "c"], "income": [" >50K", "<=50K ", "\t>50K\t"]}), BadRowSink("error"))
    assert b.label.tolist() == [1, 0, 1]
    assert b.label.dtype == np.float32
    with pytest.raises(BadInputError, match=r"value '>50K\.': invalid label; allowed: \['<=50K', '>50K'\]"):
        enc.encode(chunk({"s": ["a"], "income": [" >50K."]}), BadRowSink("error"))


def test_boolean_and_float_labels() -> None:
    enc = Encoder([dense("d")], LabelConfig(column="y"))
    b = enc.encode(chunk({"d": [1.0, 2.0], "y": [True, False]}), BadRowSink("error"))
    assert b.label.tolist() == [1, 0]
    b = enc.encode(chunk({"d": [1.0, 2.0], "y": [1.0, 0.0]}), BadRowSink("error"))
    assert b.label.tolist() == [1, 0]


# -- sparse ---------------------------------------------------------------------------------------------------
def test_sparse_single_ids_missing_is_zero() -> None:
    enc = Encoder([sparse("c", buckets=50)], None)
    b = enc.encode(chunk({"c": ["x", None, "", "  ", " x ", "y"]}), BadRowSink("error"), with_label=False)
    x, y = ids_of("x", "c", 50), ids_of("y", "c", 50)
    assert b.ids[0].tolist() == [x, 0, 0, 0, x, y]  # whitespace is trimmed; empty -> missing
    assert b.offsets[0].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert b.ids[0].dtype == np.int64 and b.offsets[0].dtype == np.int64
    assert all(1 <= i < 50 for i in (x, y))


def test_sparse_unseen_ids_are_deterministic() -> None:
    enc = Encoder([sparse("c")], None)
    enc.fit([chunk({"c": ["a", "b"]})], BadRowSink("count"))
    first = enc.encode(chunk({"c": ["never", "seen", "a"]}), BadRowSink("error"), with_label=False)
    again = Encoder([sparse("c")], None).encode(chunk({"c": ["a", "never", "seen"]}), BadRowSink("error"),
                                                 with_label=False)
    assert first.ids[0].tolist() == [ids_of("never", "c"), ids_of("seen", "c"), ids_of("a", "c")]
    assert again.ids[0].tolist() == [first.ids[0][2], first.ids[0][0], first.ids[0][1]]
    assert np.all(first.ids[0] > 0)


def test_sparse_features_use_their_own_seeds() -> None:
    enc = Encoder([sparse("c1"), sparse("c2")], None)
    b = enc.encode(chunk({"c1": ["v"], "c2": ["v"]}), BadRowSink("error"), with_label=False)
    assert b.ids[0][0] == ids_of("v", "c1") and b.ids[1][0] == ids_of("v", "c2")
    assert b.ids[0][0] != b.ids[1][0]


def test_sparse_column_alias_hashes_with_feature_name() -> None:
    enc = Encoder([sparse("user", column="uid")], None)
    assert enc.columns() == ["uid"]
    b = enc.encode(chunk({"uid": ["42"]}), BadRowSink("error"), with_label=False)
    assert b.ids[0].tolist() == [ids_of("42", "user")]


def test_sparse_lists_with_separator() -> None:
    enc = Encoder([sparse("tags", separator="|")], None)
    cells = ["a|b", "", None, "a||b", "|", " c ", "b|a| ", "x", "|y|"]
    b = enc.encode(chunk({"tags": cells}), BadRowSink("error"), with_label=False)
    a, bb, c, x, y = (ids_of(t, "tags") for t in ("a", "b", "c", "x", "y"))
    assert rows(b) == [[a, bb], [0], [0], [a, bb], [0], [c], [bb, a], [x], [y]]
    assert b.offsets[0].tolist() == [0, 2, 3, 4, 6, 7, 8, 10, 11, 12]
    assert np.all(np.diff(b.offsets[0]) >= 1)  # every row has at least one id


def test_sparse_lists_in_a_sliced_chunk_with_bad_rows(tmp_path: Path) -> None:
    # chunks are slices of a larger table (offset != 0); bad rows are filtered out before the lists are split
    enc = Encoder([dense("d"), sparse("tags", separator=",")], LabelConfig(column="y"))
    table = pa.table({"d": ["1", "2", "bad", "4", "5"], "tags": ["p", "q,r", "s", None, "t,,u"],
                      "y": ["1", "0", "1", "0", "1"]})
    c = Chunk(table.slice(1, 4), np.array([3, 4, 5, 6]), "f.csv")
    q = Quarantine(tmp_path)
    b = enc.encode(c, q.sink)
    assert b.lines.tolist() == [3, 5, 6]
    assert rows(b, 0) == [[ids_of("q", "tags"), ids_of("r", "tags")], [0], [ids_of("t", "tags"), ids_of("u", "tags")]]
    assert [r["line"] for r in q.records()] == [4]


def test_integer_parquet_sparse_column(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"cat": pa.array([7, None, 123456789012], pa.int64()),
                             "y": pa.array([1, 0, 1], pa.int8())}), p)
    enc = Encoder([sparse("cat")], LabelConfig(column="y"))
    (c,) = read_chunks(p, fmt=None, columns=enc.columns(), sink=BadRowSink("error"))
    b = enc.encode(c, BadRowSink("error"))
    # an integer id hashes like its text, so a CSV and a Parquet copy of the data agree
    assert b.ids[0].tolist() == [ids_of("7", "cat"), 0, ids_of("123456789012", "cat")]
    assert b.label.tolist() == [1, 0, 1]


def test_dimensions() -> None:
    enc = Encoder([dense("a"), sparse("s", buckets=10), dense("b"), sparse("t", buckets=20)], LabelConfig(column="y"))
    assert enc.dense_dim == 4
    assert enc.buckets == [10, 20]
    assert enc.columns() == ["a", "s", "b", "t", "y"]
    assert enc.columns(with_label=False) == ["a", "s", "b", "t"]


# -- persistence ----------------------------------------------------------------------------------------------
def test_to_dict_json_roundtrip_encodes_identically() -> None:
    feats = [dense("a", "standardize"), dense("b", "log1p"), sparse("s", buckets=77), sparse("t", separator=";")]
    label = LabelConfig(column="y", positive=["yes"], negative=["no"])
    enc = Encoder(feats, label)
    data = {"a": ["1", "2", "10", None], "b": ["3", "-4", None, "0"], "s": ["u", None, "v", "u"],
            "t": ["p;q", "", "r", None], "y": ["yes", "no", "no", "yes"]}
    enc.fit([chunk(data)], BadRowSink("count"))
    restored = Encoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    assert restored.fit_rows_ == 4
    x = enc.encode(chunk(data), BadRowSink("error"))
    y = restored.encode(chunk(data), BadRowSink("error"))
    np.testing.assert_array_equal(x.dense, y.dense)
    for k in range(2):
        np.testing.assert_array_equal(x.ids[k], y.ids[k])
        np.testing.assert_array_equal(x.offsets[k], y.offsets[k])
    np.testing.assert_array_equal(x.label, y.label)
    np.testing.assert_array_equal(x.lines, y.lines)
    assert restored.label == label
    assert restored.to_dict() == enc.to_dict()


def test_from_dict_rejects_other_versions() -> None:
    d = Encoder([dense("a")], None).to_dict()
    d["format_version"] = 99
    with pytest.raises(ValueError, match="format_version 99"):
        Encoder.from_dict(d)


def test_a_format_1_encoder_is_refused_saying_why_and_the_fix() -> None:
    """Format 1 hashed ids with FNV-1a: its embedding rows belong to other ids under today's hash."""
    d = Encoder([dense("a")], None).to_dict()
    d["format_version"] = 1
    with pytest.raises(ValueError, match=r"format_version 1 .*FNV-1a.*re-train the model"):
        Encoder.from_dict(d)


# -- Batch ----------------------------------------------------------------------------------------------------
def make_batch(lengths: list[list[int]], with_label: bool = True) -> Batch:
    """A batch with one jagged feature per entry of ``lengths``; ids encode (row, feature, position)."""
    n = len(lengths[0]) if lengths else 0
    ids, offsets = [], []
    for k, lens in enumerate(lengths):
        off = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=off[1:])
        ids.append(np.array([r * 1000 + k * 100 + j for r, m in enumerate(lens) for j in range(m)], np.int64))
        offsets.append(off)
    return Batch(dense=np.arange(n * 3, dtype=np.float32).reshape(n, 3), ids=ids, offsets=offsets,
                 label=(np.arange(n) % 2).astype(np.float32) if with_label else None,
                 lines=np.arange(n, dtype=np.int64) + 10)


def assert_batches_equal(a: Batch, b: Batch) -> None:
    np.testing.assert_array_equal(a.dense, b.dense)
    assert len(a.ids) == len(b.ids)
    for x, y, ox, oy in zip(a.ids, b.ids, a.offsets, b.offsets, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(ox, oy)
    if a.label is None:
        assert b.label is None
    else:
        np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.lines, b.lines)


jagged = st.integers(0, 25).flatmap(
    lambda n: st.lists(st.lists(st.integers(1, 4), min_size=n, max_size=n), min_size=0, max_size=3))


@settings(max_examples=60, deadline=None)
@given(jagged, st.randoms(use_true_random=False))
def test_take_permutation_roundtrip(lengths: list[list[int]], rnd) -> None:
    b = make_batch(lengths)
    n = len(b)
    perm = np.array(rnd.sample(range(n), n), dtype=np.int64)
    shuffled = b.take(perm)
    for k in range(len(lengths)):  # each new row holds exactly the ids of its source row
        src = rows(b, k)
        assert rows(shuffled, k) == [src[i] for i in perm]
    np.testing.assert_array_equal(shuffled.lines, b.lines[perm])
    assert_batches_equal(shuffled.take(np.argsort(perm)), b)


@settings(max_examples=40, deadline=None)
@given(jagged, st.data())
def test_slices_concat_to_original(lengths: list[list[int]], data: st.DataObject) -> None:
    b = make_batch(lengths)
    n = len(b)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=4)))
    bounds = [0, *cuts, n]
    parts = [b.slice(s, e) for s, e in zip(bounds[:-1], bounds[1:], strict=True)]
    assert sum(len(p) for p in parts) == n
    assert_batches_equal(Batch.concat(parts), b)


@settings(max_examples=40, deadline=None)
@given(jagged, st.data())
def test_slice_is_a_view_equal_to_take(lengths: list[list[int]], data: st.DataObject) -> None:
    b = make_batch(lengths)
    start = data.draw(st.integers(0, len(b)))
    stop = data.draw(st.integers(start, len(b) + 3))  # past the end: clipped
    part = b.slice(start, stop)
    assert_batches_equal(part, b.take(np.arange(start, min(stop, len(b)))))
    assert all(np.shares_memory(x, y) for x, y in zip(part.ids, b.ids, strict=True) if len(x))


def test_take_single_id_fast_path_and_subset() -> None:
    b = make_batch([[1, 1, 1, 1], [2, 1, 3, 1]])
    t = b.take(np.array([3, 1]))
    assert rows(t, 0) == [[3000], [1000]]
    assert rows(t, 1) == [[3100], [1100]]
    assert t.offsets[0].tolist() == [0, 1, 2] and t.offsets[1].tolist() == [0, 1, 2]
    t = b.take(np.array([2, 2, 0]))  # repeats are allowed
    assert rows(t, 1) == [[2100, 2101, 2102], [2100, 2101, 2102], [100, 101]]
    empty = b.take(np.array([], dtype=np.int64))
    assert len(empty) == 0 and empty.offsets[1].tolist() == [0] and empty.ids[1].tolist() == []


def test_slice_clips_and_concat_without_labels() -> None:
    b = make_batch([[1, 2, 3]], with_label=False)
    assert len(b.slice(1, 99)) == 2
    c = Batch.concat([b.slice(0, 1), b.slice(1, 3)])
    assert c.label is None
    assert_batches_equal(c, b)
    assert Batch.concat([b]) is b


def test_inputs_are_torch_views() -> None:
    b = make_batch([[1, 2], [1, 1]])
    dense_t, ids_t, off_t = b.inputs()
    assert tuple(dense_t.shape) == (2, 3)
    assert [t.tolist() for t in ids_t] == [[0, 1000, 1001], [100, 1100]]
    assert [t.tolist() for t in off_t] == [[0, 1], [0, 1]]  # EmbeddingBag offsets: starts only


# -- real data ------------------------------------------------------------------------------------------------
@pytest.mark.data
def test_adult_census_encodes_without_bad_rows(shared_data: Path) -> None:
    columns = ["age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
               "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country",
               "income"]
    feats = [dense("age", "standardize"), dense("hours_per_week", "log1p"), sparse("workclass"),
             sparse("education")]
    enc = Encoder(feats, LabelConfig(column="income", positive=[">50K"], negative=["<=50K"]))
    path = shared_data / "adult_census" / "adult.data"

    def stream():
        return read_chunks(path, fmt="csv", columns=enc.columns(), sink=BadRowSink("error"), header=False,
                           names=columns, chunk_rows=8_192)

    enc.fit(stream(), BadRowSink("error"))
    assert 38 < enc.dense_features[0].mean_ < 39.2  # mean age
    sink = BadRowSink("error")
    batch = Batch.concat([enc.encode(c, sink) for c in stream()])
    assert len(batch) == 32_561 and sink.count == 0
    assert int(batch.label.sum()) == 7_841  # SOURCE.txt: >50K 7,841
    assert abs(float(batch.dense[:, 0].mean())) < 1e-3
