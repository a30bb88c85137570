"""The graph pieces of :mod:`shoal.export.raw_graph`: :func:`flat_lookups` (a one-column table's ``Gather`` as a
``GatherElements``) gives the same rows, and a linear model's raw export uses it with parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from shoal.export.raw import RawOnnxModel, export_raw_onnx, parity, synthetic_raw_rows
from shoal.export.raw_graph import OPSET, flat_lookups


def _lookups(rewrite: bool) -> ort.InferenceSession:
    """Rows of a (V, 1) table by (N, F) ids and by (M,) ids, and of a (V, 3) table (left as it is)."""
    rng = np.random.default_rng(0)
    tables = [numpy_helper.from_array(rng.standard_normal((50, 1)).astype(np.float32), "w"),
              numpy_helper.from_array(rng.standard_normal((50, 3)).astype(np.float32), "wide")]
    nodes = [helper.make_node("Gather", ["w", "grid"], ["a"], name="a"),
             helper.make_node("Gather", ["w", "flat"], ["b"], name="b", axis=0),
             helper.make_node("Gather", ["wide", "flat"], ["c"], name="c")]
    inits: list[Any] = tables
    if rewrite:
        nodes, extra = flat_lookups(nodes, tables)
        inits = [*tables, *extra]
    inputs = [helper.make_tensor_value_info("grid", T.INT64, ["N", "F"]),
              helper.make_tensor_value_info("flat", T.INT64, ["M"])]
    outputs = [helper.make_tensor_value_info(o, T.FLOAT, [f"{o}{k}" for k in range(rank)])
               for o, rank in (("a", 3), ("b", 2), ("c", 2))]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("shapes", [((4, 3), 7), ((1, 26), 1), ((0, 3), 0)])
def test_flat_lookups_give_the_gathers_rows(shapes: tuple[tuple[int, int], int]) -> None:
    grid, m = shapes
    rng = np.random.default_rng(1)
    feed = {"grid": rng.integers(0, 50, grid), "flat": rng.integers(0, 50, m)}
    want, got = _lookups(False).run(None, feed), _lookups(True).run(None, feed)
    for w, g in zip(want, got, strict=True):
        assert w.shape == g.shape
        np.testing.assert_array_equal(w, g)


def test_flat_lookups_rewrite_only_one_column_tables() -> None:
    nodes = [helper.make_node("Gather", ["w", "i"], ["a"]), helper.make_node("Gather", ["wide", "i"], ["b"]),
             helper.make_node("Gather", ["w", "i"], ["c"], axis=1)]
    tables = [numpy_helper.from_array(np.zeros((5, 1), np.float32), "w"),
              numpy_helper.from_array(np.zeros((5, 2), np.float32), "wide")]
    out, extra = flat_lookups(nodes, tables)
    assert [n.op_type for n in out].count("Gather") == 2 and "GatherElements" in [n.op_type for n in out]
    assert [t.name for t in extra][0] == "raw/lookup/table/w" and list(extra[0].dims) == [5]
    assert flat_lookups(nodes[1:], tables) == (nodes[1:], [])


def test_a_linear_models_raw_export_looks_up_flat(tmp_path: Path, random_bundle: Any) -> None:
    """A logistic model (one weight per id: (V, 1) tables) over ids, a list and numbers: the export's tables are
    read by GatherElements, and its probabilities are the Python path's (parity checked at export and here)."""
    features = [{"name": "u", "kind": "sparse", "buckets": 200}, {"name": "v", "kind": "sparse", "buckets": 200},
                {"name": "tags", "kind": "sparse", "buckets": 50, "separator": "|"},
                {"name": "price", "kind": "dense", "transform": "log1p"}]
    folder, bundle = random_bundle(tmp_path, features, {"name": "logistic"}, seed=3)
    report = export_raw_onnx(folder, parity_rows=128)
    graph = onnx.load(str(report.path)).graph
    one_column = {t.name for t in graph.initializer if len(t.dims) == 2 and t.dims[1] == 1}
    assert not [n for n in graph.node if n.op_type == "Gather" and n.input[0] in one_column]
    assert [n for n in graph.node if n.op_type == "GatherElements" and n.input[0].startswith("raw/lookup/")]
    model = RawOnnxModel(report.path)
    assert parity(bundle, model, synthetic_raw_rows(bundle.encoder, 300, seed=9)) <= 1e-5
