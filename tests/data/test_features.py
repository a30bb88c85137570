"""Tests for the per-kind feature columns (``shoal.data.features``) that the Encoder composes.

The parity test pins the Encoder's output and its saved form to ``encoder_parity.json``, recorded from the
Encoder before it was split into one class per kind (and again for encoder format 2, whose id hash changed: only
the sparse ids and the format moved): a saved bundle must load and predict the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from shoal.config import FeatureConfig, LabelConfig
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.data.features import DenseColumn, Problems, SparseColumn, TextColumn, column_for, column_from_dict
from shoal.data.readers import BadRow, BadRowSink, Chunk
from shoal.data.text import BYTE_VOCAB

PARITY = Path(__file__).with_name("encoder_parity.json")

# every kind and option: three dense transforms (two binned), single and list ids, n-grams and bytes,
# and one column read by two kinds
FEATURES: list[dict[str, Any]] = [
    {"name": "d_std", "kind": "dense"},
    {"name": "d_log", "kind": "dense", "transform": "log1p", "bins": 4},
    {"name": "d_none", "kind": "dense", "transform": "none", "column": "raw", "bins": 3},
    {"name": "s_one", "kind": "sparse", "buckets": 50},
    {"name": "s_list", "kind": "sparse", "buckets": 30, "separator": "|"},
    {"name": "s_raw", "kind": "sparse", "buckets": 20, "column": "raw"},
    {"name": "t_bag", "kind": "text", "buckets": 64, "column": "txt", "max_bytes": 16, "ngram_min": 2,
     "ngram_max": 3, "word_ngrams": 2},
    {"name": "t_bytes", "kind": "text", "tokens": "bytes", "column": "txt", "max_bytes": 8},
]
FIT = {
    "d_std": ["1", "2", "3.5", None, "-4", "1e2", "0", "7", "oops", "2"],
    "d_log": ["0", "10", "100", "1000", "-3", None, "5", "50", "500", "1"],
    "raw": ["1", "2", "3", "4", "5", "6", "7", "8", "9", None],
    "s_one": ["a", "b", None, "c", "a", "", "d", "e", "f", "a"],
    "s_list": ["x|y", "", "z", None, "x", "y|z|w", "q", "r|", "|s", "x"],
    "txt": ["hello world", "", "stocks rally today", None, "a", "déjà vu", "the quick brown fox jumps", "b c",
            "d", "e"],
    "y": ["1", "0", "1", "0", "1", "0", "1", "1", "0", "0"],
}
ENCODE = {
    "d_std": ["3", "x", None, "inf", "2", "-1", "4"],
    "d_log": ["7", "8", "9", "10", None, "-20", "0.5"],
    "raw": ["1", "2", None, "4", "12", "0", "5"],
    "s_one": ["a", "zzz", None, "b", "", "c", "a"],
    "s_list": ["x|q", "y", "", None, "z|z", "w|  |x", "r"],
    "txt": ["hello", "rally stocks", "", None, "une phrase bien plus longue", "ü", "fox"],
    "y": ["1", "0", "2", "1", "0", "1", "0"],
}


def chunk(columns: dict[str, list[str | None]], first_line: int = 2) -> Chunk:
    table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    return Chunk(table, np.arange(first_line, first_line + table.num_rows, dtype=np.int64), "f.csv")


def encoded() -> tuple[Encoder, Batch, list[BadRow]]:
    """The parity encoder fitted on FIT, and ENCODE encoded by it with its bad rows."""
    enc = Encoder([FeatureConfig(**f) for f in FEATURES], LabelConfig(column="y"))
    enc.fit([chunk(FIT)], BadRowSink("count"))
    sink = BadRowSink("keep")
    return enc, enc.encode(chunk(ENCODE, first_line=20), sink), sink.rows


def as_json(enc: Encoder, batch: Batch, bad: list[BadRow]) -> dict[str, Any]:
    """What the parity file records: the saved encoder, the batch's arrays with their dtypes, the bad rows."""
    def arr(a: np.ndarray) -> dict[str, Any]:
        return {"dtype": str(a.dtype), "shape": list(a.shape), "values": a.tolist()}

    assert batch.label is not None
    return {
        "encoder": enc.to_dict(),
        "batch": {"dense": arr(batch.dense), "ids": [arr(a) for a in batch.ids],
                  "offsets": [arr(a) for a in batch.offsets], "label": arr(batch.label), "lines": arr(batch.lines),
                  "truncated": batch.truncated},
        "bad_rows": [[r.file, r.line, r.column, r.value, r.reason] for r in bad],
        "shape": {"dense_dim": enc.dense_dim, "buckets": enc.buckets, "sequence_slots": enc.sequence_slots,
                  "columns": enc.columns()},
    }


def test_encoder_output_and_saved_form_match_the_recorded_ones() -> None:
    enc, batch, bad = encoded()
    expected = json.loads(PARITY.read_text(encoding="utf-8"))
    assert as_json(enc, batch, bad) == expected
    # the saved form is the same text, key order included
    assert json.dumps(enc.to_dict()) == json.dumps(expected["encoder"])


def test_a_recorded_encoder_loads_and_encodes_the_same() -> None:
    expected = json.loads(PARITY.read_text(encoding="utf-8"))
    restored = Encoder.from_dict(expected["encoder"])
    sink = BadRowSink("keep")
    batch = restored.encode(chunk(ENCODE, first_line=20), sink)
    assert as_json(restored, batch, sink.rows) == expected


def test_each_kind_gets_its_own_column_class() -> None:
    enc, _, _ = encoded()
    assert [type(f).__name__ for f in enc.features] == ["DenseColumn"] * 3 + ["SparseColumn"] * 3 + ["TextColumn"] * 2
    assert column_for(FeatureConfig(name="x", kind="text", tokens="bytes")).buckets == BYTE_VOCAB
    with pytest.raises(TypeError, match="feature 'x' of kind 'dense' has no encoder column"):
        column_for(FeatureConfig.model_construct(name="x", kind="dense"))


def test_saved_columns_list_every_kinds_options_in_one_order() -> None:
    enc, _, _ = encoded()
    keys = ["name", "kind", "column", "transform", "buckets", "separator", "bins", "tokens", "max_bytes",
            "ngram_min", "ngram_max", "word_ngrams", "mean_", "std_", "edges_", "seed"]
    assert all(list(f.to_dict()) == keys for f in enc.features)
    assert enc.features[3].to_dict()["transform"] == "standardize" and enc.features[0].to_dict()["buckets"] == 100_000


def test_a_saved_column_loads_by_its_kind_and_keeps_its_state() -> None:
    enc, _, _ = encoded()
    for f in enc.features:
        again = column_from_dict(json.loads(json.dumps(f.to_dict())))
        assert type(again) is type(f) and again.to_dict() == f.to_dict()
    binned = column_from_dict(enc.features[1].to_dict())
    assert isinstance(binned, DenseColumn) and binned.edges_ == enc.features[1].edges_ and binned.bin_buckets == 5
    with pytest.raises(ValueError, match="saved feature 'x' has kind 'video'; known kinds: dense, sparse, text, "
                                         "image, audio"):
        column_from_dict({"name": "x", "kind": "video", "column": "x"})


def test_dense_column_reads_numbers_and_reports_the_rest() -> None:
    col = DenseColumn("d", "d", seed=1, transform="log1p", bins=2)
    problems = Problems()
    values = col.read(pa.table({"d": ["1", " 2 ", "x", None, "1e400"]}), problems)
    np.testing.assert_array_equal(values[[0, 1]], [1.0, 2.0])
    assert np.isnan(values[[2, 3]]).all() and np.isinf(values[4])
    assert [(r.tolist(), reason) for r, reason in zip(problems.rows, problems.reasons, strict=True)] == [
        ([2], "not a number (dense feature)"), ([4], "infinite value (dense feature)")]
    col.edges_ = [float(np.log1p(1.5))]
    assert col.bin_ids(np.array([1.0, 2.0, np.nan])).tolist() == [1, 2, 0]


def test_sparse_and_text_columns_give_jagged_ids() -> None:
    cells = pa.chunked_array([pa.array(["a|b", "", None, "c"])])
    one_per_row = np.arange(5, dtype=np.int64)
    ids, offsets, cut = SparseColumn("s", "s", seed=3, buckets=10, separator="|").ids(cells, one_per_row)
    assert offsets.tolist() == [0, 2, 3, 4, 5] and ids[2:4].tolist() == [0, 0] and cut == 0
    ids, offsets, _ = SparseColumn("s", "s", seed=3, buckets=10).ids(cells, one_per_row)
    assert offsets is one_per_row and ids[1:3].tolist() == [0, 0]
    ids, offsets, cut = TextColumn("t", "t", seed=3, buckets=BYTE_VOCAB, tokens="bytes", max_bytes=2).ids(
        pa.chunked_array([pa.array(["ab", "abc"])]), np.arange(3))
    assert ids.tolist() == [98, 99, 98, 99] and offsets.tolist() == [0, 2, 4] and cut == 1
