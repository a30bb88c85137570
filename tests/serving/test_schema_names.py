"""The request schema's internal field names never collide with a column (``shoal inspect`` names a headerless
file's columns c0, c1, ...; with one left out, an internal c2 was the next field's column)."""

from __future__ import annotations

import json

from shoal.config import FeatureConfig, LabelConfig
from shoal.data.encoder import Encoder
from shoal.serving.schema import RequestSchema


def test_columns_named_like_the_internal_names_keep_their_values() -> None:
    features = [{"name": "c0", "kind": "dense"}, {"name": "c1", "kind": "dense"},
                {"name": "c3", "kind": "sparse", "buckets": 16}, {"name": "c4", "kind": "dense"},
                {"name": "c4_id", "column": "c4", "kind": "sparse", "buckets": 16},
                {"name": "f0", "kind": "sparse", "buckets": 16}]
    encoder = Encoder([FeatureConfig(**f) for f in features], LabelConfig(column="c5"))  # type: ignore[arg-type]
    schema = RequestSchema(encoder, 10, 1024)
    warm = schema.table([schema.placeholder()])  # the warm-up row: every value missing
    assert warm.column_names == ["c0", "c1", "c3", "c4", "f0"]
    assert all(v is None for v in warm.to_pylist()[0].values())
    rows = schema.parse(json.dumps({"rows": [{"c0": 1.5, "c1": 2.0, "c3": "x", "c4": 7, "f0": "y"}]}).encode())
    # a column read as a number and as ids goes as a CSV cell would, "7"
    assert schema.table(rows).to_pylist() == [{"c0": 1.5, "c1": 2.0, "c3": "x", "c4": "7", "f0": "y"}]
