"""Quantile bins of dense features: fitted edges, bin ids after the sparse ids, missing -> 0, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shoal.config import ConfigError, FeatureConfig, LabelConfig, parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk


def _chunk(values: list[float | None], ids: list[str]) -> Chunk:
    table = pa.table({"x": pa.array(values, pa.float64()), "c": pa.array(ids), "y": pa.array(["1"] * len(ids))})
    return Chunk(table, np.arange(1, len(ids) + 1), "mem")


def _encoder(bins: int) -> Encoder:
    return Encoder([FeatureConfig(name="x", kind="dense", transform="none", bins=bins),
                    FeatureConfig(name="c", kind="sparse", buckets=10)], LabelConfig(column="y"))


def test_edges_are_quantiles_and_ids_follow_sparse_features() -> None:
    values = [float(v) for v in range(100)]
    chunk = _chunk(values, ["a"] * 100)
    enc = _encoder(bins=4).fit([chunk], BadRowSink("error"))
    assert enc.dense_features[0].edges_ == pytest.approx([24.75, 49.5, 74.25])
    assert enc.buckets == [10, 5]  # sparse "c", then the 4 bins + missing of "x"
    batch = enc.encode(_chunk([0.0, 30.0, 99.0, None, 1e9, -5.0], ["a"] * 6), BadRowSink("error"))
    assert batch.ids[1].tolist() == [1, 2, 4, 0, 4, 1]  # below/above the range fall in the end bins
    assert len(batch.ids) == 2 and batch.offsets[1].tolist() == list(range(7))


def test_constant_feature_gets_one_bin_and_roundtrip_is_exact() -> None:
    chunk = _chunk([3.0] * 50, ["a"] * 50)
    enc = _encoder(bins=8).fit([chunk], BadRowSink("error"))
    assert enc.dense_features[0].edges_ == [3.0]
    again = Encoder.from_dict(json.loads(json.dumps(enc.to_dict())))
    a, b = enc.encode(chunk, BadRowSink("error")), again.encode(chunk, BadRowSink("error"))
    assert all(np.array_equal(x, y) for x, y in zip(a.ids, b.ids, strict=True))
    assert again.buckets == enc.buckets


def test_reservoir_sample_is_deterministic_beyond_its_size() -> None:
    rng = np.random.default_rng(0)
    chunks = [_chunk(list(rng.normal(size=1000)), ["a"] * 1000) for _ in range(5)]
    e1 = _encoder(bins=10).fit(chunks, BadRowSink("error"), sample_size=700)
    e2 = _encoder(bins=10).fit(chunks, BadRowSink("error"), sample_size=700)
    assert e1.dense_features[0].edges_ == e2.dense_features[0].edges_
    assert e1.dense_features[0].edges_ == pytest.approx(list(np.quantile(rng.normal(size=200_000),
                                                                        np.linspace(0, 1, 11)[1:-1])), abs=0.15)


def test_bins_only_for_dense(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bins applies to dense features only"):
        parse_config({"data": {"train": "x.csv"}, "label": {"column": "y"}, "model": {"name": "dlrm"},
                      "features": [{"name": "c", "kind": "sparse", "bins": 4}]})
