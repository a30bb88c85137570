"""Tests for a dense feature's number format (decimal and thousands marks, symbols, not_a_number) in training's
encoder, the saved form, the config's checks and the raw ONNX feed."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from shoal.config import FeatureConfig, LabelConfig
from shoal.data.encoder import Encoder
from shoal.data.features import DenseColumn, Problems, column_from_dict
from shoal.data.features.dense import NumberFormat
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.raw_feed import raw_feed


@pytest.mark.parametrize(("number", "cells", "expected"), [
    (NumberFormat(thousands=","), ["30,220", "1,234,567.5", "-12", "3,02,20", "12,34"],
     [30220, 1234567.5, -12, None, None]),
    (NumberFormat(decimal=","), ["0,3105", "-15,1", "1030", ",5", "1.5"], [0.3105, -15.1, 1030, 0.5, None]),
    (NumberFormat(decimal=",", thousands="."), ["1.234,5", "12", "1.5"], [1234.5, 12, None]),
    (NumberFormat(symbol="%"), ["2.1%", "-0.5 %", "7", "%"], [2.1, -0.5, 7, None]),
    (NumberFormat(thousands=",", symbol="$"), ["$139.45", "$1,858.39", "-$5", "$-5", "5$"],
     [139.45, 1858.39, -5, -5, 5]),
])
def test_a_number_format_reads_its_marks(number: NumberFormat, cells: list[str], expected: list[float | None]) -> None:
    col = DenseColumn("d", "d", seed=0, number=number)
    problems = Problems()
    values = col.read(pa.table({"d": cells + [None]}), problems)
    bad = [i for i, e in enumerate(expected) if e is None]
    np.testing.assert_allclose(values[:-1], [np.nan if e is None else e for e in expected])
    assert np.isnan(values[-1])
    assert [r.tolist() for r in problems.rows] == ([bad] if bad else [])


def test_not_a_number_missing_reads_the_cell_as_missing_and_counts_it() -> None:
    col = DenseColumn("d", "d", seed=0, number=NumberFormat(not_a_number="missing"))
    problems = Problems()
    values = col.read(pa.table({"d": ["1.5", "abc", None, "n/a"]}), problems)
    assert values[0] == 1.5 and np.isnan(values[1:]).all() and not problems.rows and col.not_numbers == 2


def _chunk(cells: dict[str, list[Any]]) -> Chunk:
    table = pa.table(cells)
    return Chunk(table, np.arange(2, table.num_rows + 2, dtype=np.int64), "t.csv")


def test_training_reads_formatted_numbers_as_the_config_says() -> None:
    features = [FeatureConfig(name="income", kind="dense", transform="none", thousands=","),
                FeatureConfig(name="x", kind="dense", transform="none", decimal=",", not_a_number="missing"),
                FeatureConfig(name="price", kind="dense", transform="none", thousands=",", symbol="$")]
    enc = Encoder(features, LabelConfig(column="y"))
    chunk = _chunk({"income": ["30,220", "1,000", "7"], "x": ["0,3105", "abc", "-2,5"],
                    "price": ["$1,858.39", "$0.5", None], "y": ["1", "0", "1"]})
    enc.fit([chunk], BadRowSink("error"))
    sink = BadRowSink("keep")
    batch = enc.encode(chunk, sink)
    assert not sink.rows  # the row with "abc" is kept: x is missing there
    np.testing.assert_allclose(batch.dense[:, :3], [[30220, 0.3105, 1858.39], [1000, 0, 0.5], [7, -2.5, 0]],
                               rtol=1e-6)
    np.testing.assert_array_equal(batch.dense[:, 3:], [[0, 0, 0], [0, 1, 0], [0, 0, 1]])  # missing flags
    saved = enc.features[1].to_dict()
    assert (saved["decimal"], saved["not_a_number"]) == (",", "missing") and "thousands" not in saved
    again = column_from_dict(saved)
    assert isinstance(again, DenseColumn) and again.number == NumberFormat(decimal=",", not_a_number="missing")


def test_a_plain_dense_feature_saves_no_number_options() -> None:
    saved = DenseColumn("d", "d", seed=0).to_dict()
    assert not {"decimal", "thousands", "symbol", "not_a_number"} & saved.keys()


@pytest.mark.parametrize(("options", "message"), [
    ({"decimal": ",", "thousands": ","}, "feature 'p': thousands ',' is also the decimal mark"),
    ({"symbol": "1$"}, "feature 'p': symbol '1$' must be a mark such as \"$\""),
    ({"thousands": "_"}, "thousands"),
])
def test_the_config_refuses_a_bad_number_format(options: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        FeatureConfig(name="p", kind="dense", **options)


def test_the_raw_feed_reads_text_as_the_encoder_does() -> None:
    feature = {"name": "p", "kind": "dense", "column": "p", "transform": "none", "bins": 0, "thousands": ",",
               "symbol": "$", "not_a_number": "missing", "inputs": {"value": "p"}}
    feed = raw_feed(pa.table({"p": ["$1,858.39", None, "abc"]}), {"features": [feature]})
    np.testing.assert_allclose(feed["p"], np.array([1858.39, np.nan, np.nan], np.float32))
    strict = {**feature, "not_a_number": "bad_row"}
    with pytest.raises(ValueError, match="row 2, column 'p': not a number"):
        raw_feed(pa.table({"p": ["$1,858.39", None, "abc"]}), {"features": [strict]})
