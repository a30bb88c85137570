"""A dense feature that reads numbers written for people (``thousands``, ``decimal``, ``symbol``) takes them as text
in a request too, parsed by the reader's own code: the model sees the number the training file's cell gave."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from shoal.config import FeatureConfig, LabelConfig
from shoal.data.encoder import Encoder
from shoal.data.features.base import Problems
from shoal.serving.schema import RequestSchema

FEATURES = [{"name": "amount", "kind": "dense", "thousands": ",", "symbol": "$"},
            {"name": "rate", "kind": "dense", "decimal": ",", "not_a_number": "missing"},
            {"name": "x", "kind": "dense"}]


def _encoder() -> Encoder:
    return Encoder([FeatureConfig(**f) for f in FEATURES], LabelConfig(column="y"))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def schema() -> RequestSchema:
    return RequestSchema(_encoder(), 10, 1024)


def _parse(schema: RequestSchema, *rows: dict[str, object]) -> pa.Table:
    return schema.table(schema.parse(json.dumps({"rows": list(rows)}).encode()))


def test_text_reads_as_the_file_reader_reads_it(schema: RequestSchema) -> None:
    cells = ["$1,858.39", " 30,220 ", "-$5", "12"]
    table = _parse(schema, *({"amount": c, "rate": 1.0, "x": 0.0} for c in cells), {"amount": 7.5, "rate": None,
                                                                                       "x": None})
    assert table.column("amount").to_pylist() == [1858.39, 30220.0, -5.0, 12.0, 7.5]
    # the same cells in a file, through the training reader
    column = next(f for f in _encoder().dense_features if f.name == "amount")
    read = column.read(pa.table({"amount": pa.array(cells, pa.string())}), Problems())
    np.testing.assert_array_equal(read, np.float32(table.column("amount").to_numpy()[:4]))


def test_decimal_comma_and_not_a_number_missing(schema: RequestSchema) -> None:
    table = _parse(schema, {"amount": None, "rate": "0,3105", "x": 1.0}, {"amount": None, "rate": "n/a", "x": 1.0})
    assert table.column("rate").to_pylist() == [0.3105, None]


def test_bad_text_is_a_422_naming_the_field_and_the_marks(schema: RequestSchema) -> None:
    for value, words in (("abc", "not a number as this feature reads them (thousands ',', symbol '$')"),
                         ("$12 000", "not a number"),
                         ("1e40", "float32's range"),  # a number as the file reader reads it, but too big
                         ("$" + "9" * 40, "float32's range")):
        with pytest.raises(ValidationError) as err:
            schema.parse(json.dumps({"rows": [{"amount": value, "rate": 1.0, "x": 1.0}]}).encode())
        (problem,) = schema.describe_errors(err.value)
        assert problem["loc"] == ["body", "rows", 0, "amount"] and "field 'amount'" in problem["msg"], problem
        assert words in problem["msg"], problem


def test_a_plain_dense_field_still_takes_numbers_only(schema: RequestSchema) -> None:
    with pytest.raises(ValidationError) as err:
        schema.parse(json.dumps({"rows": [{"amount": 1.0, "rate": 1.0, "x": "3"}]}).encode())
    (problem,) = schema.describe_errors(err.value)
    assert problem["msg"] == "field 'x' (dense) must be a number or null, not '3'"
    fields = schema.request_model.model_json_schema()["$defs"]["Row"]["properties"]
    assert "written as the training file's" in schema._expect(schema.fields[0])
    assert {"type": "string"} in fields["amount"]["anyOf"] and {"type": "string"} not in fields["x"]["anyOf"]
