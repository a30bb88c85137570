"""Sparse features with ``encoding: vocab``: exact ids from the training file, an out-of-vocabulary row, saved as
JSON, trained end to end, refused by the raw export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import shoal
from shoal.config import FeatureConfig, LabelConfig, parse_config
from shoal.data.encoder import Encoder
from shoal.data.features import SparseColumn, column_from_dict
from shoal.data.readers import BadRowSink, Chunk


def _chunk(**columns: list[str | None]) -> Chunk:
    table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    return Chunk(table, np.arange(2, 2 + table.num_rows), "train.csv")


def _fitted(chunks: list[Chunk], **options: object) -> Encoder:
    enc = Encoder([FeatureConfig(name="c", kind="sparse", encoding="vocab", **options)], None)
    assert enc.needs_fit
    return enc.fit(chunks, BadRowSink("count"))


def _ids(enc: Encoder, cells: list[str | None]) -> list[int]:
    return enc.encode(_chunk(c=cells), BadRowSink("error"), with_label=False).ids[0].tolist()


def test_ids_follow_the_counts_then_the_values() -> None:
    enc = _fitted([_chunk(c=["b", "b", "a", " c "]), _chunk(c=["b", "a", "d", None, ""])])
    col = enc.sparse_features[0]
    assert col.vocab is not None and col.vocab.values_ == ["b", "a", "c", "d"]  # b:3, a:2, then c, d by value
    assert col.buckets == 6 and enc.buckets == [6]  # 0 missing, 1..4, 5 out of vocabulary
    assert _ids(enc, ["a", "b", "c", "d", None, "", "zz"]) == [2, 1, 3, 4, 0, 0, 5]
    again = _fitted([_chunk(c=["a", "d", "b", "b"]), _chunk(c=[" c ", "b", "a", None])])  # other order, same ids
    assert again.sparse_features[0].vocab.values_ == col.vocab.values_  # type: ignore[union-attr]


def test_min_count_and_max_size_send_rare_ids_to_the_oov_row() -> None:
    cells: list[str | None] = ["x"] * 5 + ["y"] * 3 + ["z"] * 2 + ["w"]
    enc = _fitted([_chunk(c=cells)], min_count=2)
    assert enc.buckets == [5] and _ids(enc, ["x", "y", "z", "w", "never"]) == [1, 2, 3, 4, 4]
    capped = _fitted([_chunk(c=cells)], min_count=2, max_size=2)
    assert capped.buckets == [4] and _ids(capped, ["x", "y", "z", "w", None]) == [1, 2, 3, 3, 0]


def test_lists_of_ids_use_the_vocabulary() -> None:
    enc = _fitted([_chunk(c=["a|b", "b", "", None, "b| c"])], separator="|")
    assert enc.sparse_features[0].vocab.values_ == ["b", "a", "c"]  # type: ignore[union-attr]
    batch = enc.encode(_chunk(c=["a|q", None, "c|b|b"]), BadRowSink("error"), with_label=False)
    assert batch.ids[0].tolist() == [2, 4, 0, 3, 1, 1] and batch.offsets[0].tolist() == [0, 2, 3, 6]


def test_saved_form_round_trips_and_hashed_features_keep_theirs() -> None:
    enc = _fitted([_chunk(c=["b", "a", "b"])], min_count=1, max_size=10)
    saved = json.loads(json.dumps(enc.to_dict()))
    f = saved["features"][0]
    assert (f["encoding"], f["vocab_"], f["counts_"]) == ("vocab", ["b", "a"], [2, 1])
    assert (f["max_size"], f["buckets"]) == (10, 4)
    loaded = Encoder.from_dict(saved)
    assert loaded.buckets == [4] and _ids(loaded, ["a", "b", "new", None]) == [2, 1, 3, 0]
    hashed = SparseColumn.from_config(FeatureConfig(name="h", kind="sparse", buckets=8))  # type: ignore[arg-type]
    assert not {"encoding", "vocab_", "min_count", "max_size"} & set(hashed.to_dict())
    damaged = {**f, "vocab_": ["a", "a"]}
    with pytest.raises(ValueError, match="saved feature 'c': vocab_ lists an id twice"):
        column_from_dict(damaged)


def test_config_rules() -> None:
    with pytest.raises(ValueError, match="min_count and max_size apply to encoding: vocab only"):
        FeatureConfig(name="c", kind="sparse", min_count=3)
    with pytest.raises(ValueError, match="encoding"):
        FeatureConfig(name="c", kind="sparse", encoding="exact")
    with pytest.raises(ValueError, match="applies to sparse features only"):
        FeatureConfig(name="n", kind="dense", encoding="vocab")


def test_unfitted_vocabulary_says_so() -> None:
    enc = Encoder([FeatureConfig(name="c", kind="sparse", encoding="vocab")], LabelConfig(column="y"))
    with pytest.raises(RuntimeError, match="not built yet"):
        enc.encode(_chunk(c=["a"], y=["1"]), BadRowSink("error"))


def test_trains_end_to_end_and_the_raw_export_refuses(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 600
    shop = rng.integers(0, 6, n)
    x = rng.normal(size=n)
    y = (x + np.where(shop < 3, 2.0, -2.0) + rng.normal(scale=0.3, size=n) > 0).astype(int)
    pd.DataFrame({"x": x, "shop": [f"s{v}" for v in shop], "y": y}).to_csv(tmp_path / "train.csv", index=False)
    cfg = parse_config({
        "name": "vocab", "data": {"train": str(tmp_path / "train.csv"), "valid_fraction": 0.2},
        "label": {"column": "y", "positive": ["1"], "negative": ["0"]},
        "features": [{"name": "x", "kind": "dense"}, {"name": "shop", "kind": "sparse", "encoding": "vocab"}],
        "model": {"name": "mlp", "embedding_dim": 4, "hidden": [16]},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.01, "seed": 0, "pictures": False},
    })
    run = shoal.train(cfg, home=tmp_path / "home")
    assert run.metrics["valid_auc"] > 0.9, run.metrics
    bundle = shoal.load(run.run_id, home=tmp_path / "home")
    col = bundle.encoder.sparse_features[0]
    assert col.vocab is not None and sorted(col.vocab.values_ or []) == [f"s{i}" for i in range(6)]
    assert bundle.encoder.buckets == [8]
    rows = pa.table({"x": [0.0, 0.0, 0.0], "shop": ["s0", "s5", "unseen"]})
    batch = bundle.encoder.encode(Chunk(rows, np.arange(1, 4), "req"), BadRowSink("error"), with_label=False)
    assert batch.ids[0].tolist()[2] == 7
    p = bundle.predict_proba(batch)
    assert p[0] > p[1]  # shops s0..s2 push y up
    from shoal.export.raw import RawOnnxModel, export_raw_onnx

    report = export_raw_onnx(tmp_path / "home" / "runs" / run.run_id / "bundle", tmp_path / "raw.onnx")
    assert report.max_abs_proba_diff <= 1e-5  # the vocabulary looked up inside the graph
    raw = RawOnnxModel(report.path).predict_proba(rows)
    np.testing.assert_allclose(raw, p, atol=1e-5)
