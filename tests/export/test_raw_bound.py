"""One row through inputs bound once (shoal.export.raw_bound): the same answer as the plain feed, whatever came
before, on any thread; rows it cannot take go the plain way."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.export.raw import RawOnnxModel, export_raw_onnx, raw_feed
from shoal.export.raw_bound import BoundRow, BoundRows
from shoal.runtime.onnx import run_session

FEATURES: list[dict[str, Any]] = [
    {"name": "price", "kind": "dense", "transform": "standardize", "bins": 6},
    {"name": "clicks", "kind": "dense", "transform": "log1p"},
    {"name": "user", "kind": "sparse", "buckets": 1000},
    {"name": "item", "kind": "sparse", "buckets": 37},
    {"name": "tags", "kind": "sparse", "buckets": 50, "separator": "|"},
]
MODEL = {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]}
_MODEL: dict[str, RawOnnxModel] = {}


@pytest.fixture(autouse=True, scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, random_bundle: Any) -> RawOnnxModel:
    folder, _ = random_bundle(tmp_path_factory.mktemp("bound"), FEATURES, MODEL, fit_rows=500, seed=3, std=0.3)
    export_raw_onnx(folder, max_bytes=16, parity_rows=64)
    _MODEL["m"] = RawOnnxModel(folder / "onnx")
    return _MODEL["m"]


def _plain(m: RawOnnxModel, row: dict[str, Any]) -> np.ndarray:
    return run_session(m.session, ["logits"], raw_feed([row], m.contract))[0]


ROW = {"price": 3.5, "clicks": None, "user": " ü-42 ", "item": "17", "tags": "a| b ||c"}


def test_a_bound_row_answers_what_the_feed_gives(model: RawOnnxModel) -> None:
    bound = BoundRow(model.session, model.contract, "logits")
    got = bound.run(ROW)
    assert got is not None and got.shape == (1,)
    np.testing.assert_array_equal(got, _plain(model, ROW))


def test_the_buffers_keep_nothing_of_the_previous_row(model: RawOnnxModel) -> None:
    """A long id, then a short one, then a missing one, then a shorter list: each answer is its own row's."""
    bound = BoundRow(model.session, model.contract, "logits")
    rows = [{**ROW, "user": "x" * 16, "tags": "a|b|c|d|e"}, {**ROW, "user": "y"}, {**ROW, "user": None, "tags": ""},
            {**ROW, "price": None, "item": None, "tags": "zz"}]
    answers = [bound.run(r) for r in rows]
    for row, got in zip(rows, answers, strict=True):
        assert got is not None
        np.testing.assert_array_equal(got, _plain(model, row))
    assert len({float(a[0]) for a in answers if a is not None}) == len(rows)  # the rows differ, so do the answers


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({
    "price": st.one_of(st.none(), st.floats(allow_nan=True, width=64), st.integers(-2**60, 2**60)),
    "clicks": st.one_of(st.none(), st.floats(0, 1e9, width=32), st.just("12")),
    "user": st.one_of(st.none(), st.integers(-5, 10**12), st.text(max_size=20)),
    "item": st.one_of(st.none(), st.text(alphabet=" \t\u3000ab\u2028é", max_size=5)),
    "tags": st.one_of(st.none(), st.text(alphabet="ab |\u00a0中", max_size=40))}))
def test_property_predict_of_one_row_equals_the_plain_feed(row: dict[str, Any]) -> None:
    """Through the model's bound path: the plain feed's answer, or its error for a row it refuses (an id over
    max_bytes, a number beyond float32, text in a dense column)."""
    m = _MODEL["m"]
    try:
        want = _plain(m, row)
    except (ValueError, pa.ArrowException) as err:
        with pytest.raises(type(err)):
            m.predict_logits([row])
        return
    np.testing.assert_array_equal(m.predict_logits([row]), want)


def test_rows_the_binding_cannot_take_go_the_plain_way(model: RawOnnxModel) -> None:
    bound = BoundRow(model.session, model.contract, "logits")
    assert bound.run({k: v for k, v in ROW.items() if k != "user"}) is None  # a missing column: the feed names it
    assert bound.run({**ROW, "user": "x" * 17}) is None  # over max_bytes: the feed refuses it by name
    with pytest.raises(ValueError, match="'user' is 17 bytes long"):
        model.predict_logits([{**ROW, "user": "x" * 17}])
    with pytest.raises(KeyError, match="'user'"):
        model.predict_logits([{k: v for k, v in ROW.items() if k != "user"}])


def test_contracts_without_a_fixed_shape_are_not_bound(model: RawOnnxModel) -> None:
    loop = {**model.contract, "max_bytes": None}  # the Loop form: bytes as wide as the longest id
    text = {**model.contract, "features": [*model.contract["features"], {"kind": "text", "column": "t"}]}
    for contract in (loop, text):
        assert not BoundRows(model.session, contract, "logits").possible
        assert BoundRows(model.session, contract, "logits").run(ROW) is None
        with pytest.raises(ValueError, match="can be bound"):
            BoundRow(model.session, contract, "logits")


def test_each_thread_has_its_own_buffers(model: RawOnnxModel) -> None:
    rows = [{**ROW, "user": f"u{i}", "price": float(i), "tags": "|".join("abc"[: i % 4])} for i in range(120)]
    want = np.concatenate([_plain(model, r) for r in rows])
    got: dict[int, list[float]] = {}

    def work(k: int) -> None:
        got[k] = [float(model.predict_logits([r])[0]) for r in rows[k::4] * 5]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        np.testing.assert_array_equal(np.array(got[k]), np.tile(want[k::4], 5).astype(np.float32))


def test_a_bound_model_keeps_its_path(tmp_path: Path, model: RawOnnxModel) -> None:
    """The binding is per output: probabilities and logits of one row agree."""
    logits = model.predict_logits([ROW])
    proba = model.predict_proba([ROW])
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6)
