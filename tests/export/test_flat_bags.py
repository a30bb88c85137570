"""The raw graph's flat bags: list and text inputs go to the model as flat ids + weights + rows, pooled with a
segment sum (ScatterND add), so a batch pays for its ids, not for B times its longest bag. Probabilities equal the
Python encoder + PyTorch whatever the bags' lengths, empty bags included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pyarrow as pa
import pytest
import torch

from shoal.artifacts.bundle import Bundle, load_bundle
from shoal.config import parse_config
from shoal.data.batch import Batch
from shoal.data.encoder import Encoder
from shoal.export.padded import layout_for, trace_to_onnx
from shoal.export.raw import RawOnnxModel, export_raw_onnx, parity
from shoal.models import build
from shoal.runtime.feed import InputLayout, padded_feed

FEATURES: list[dict[str, Any]] = [
    {"name": "body", "kind": "text", "buckets": 5000, "max_bytes": 2048},  # room for one long text
    {"name": "tags", "kind": "sparse", "buckets": 50, "separator": "|"},
    {"name": "u", "kind": "sparse", "buckets": 40},
    {"name": "price", "kind": "dense", "transform": "log1p"},
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, random_bundle: Any) -> tuple[Bundle, RawOnnxModel]:
    """A bag model over a text, a list, an id and a number, tables made to matter; its raw export."""
    tmp = tmp_path_factory.mktemp("flat")
    random_bundle(tmp, FEATURES, {"name": "bag", "embedding_dim": 8}, seed=5)
    report = export_raw_onnx(tmp / "bundle", parity_rows=64)
    return load_bundle(tmp / "bundle"), RawOnnxModel(report.path)


def test_the_raw_graph_takes_bags_flat_and_pools_with_a_segment_sum(bundle: tuple[Bundle, RawOnnxModel]) -> None:
    _, model = bundle
    graph = onnx.load(str(model.path)).graph
    scatters = [n for n in graph.node if n.op_type == "ScatterND"]
    assert len(scatters) == 2  # one per bag: the text and the list
    assert all(a.s == b"add" for n in scatters for a in n.attribute if a.name == "reduction")
    assert all(a.name == "reduction" for n in scatters for a in n.attribute)
    assert not [n for n in graph.node if n.op_type == "ReduceSum" and n.name.startswith("/model")]  # no padded sum


def test_one_long_text_among_short_ones_pools_right(bundle: tuple[Bundle, RawOnnxModel]) -> None:
    """One 1,900-byte text in a batch of short, empty and missing ones: each row's probability is the Python
    path's, and the one it gets alone (the long bag changes nobody else's pooling)."""
    b, model = bundle
    rng = np.random.default_rng(3)
    words = ["ab", "cd中", "🙂x", "the", "goal", "é"]
    short: list[str | None] = [" ".join(rng.choice(words, int(rng.integers(1, 6)))) for _ in range(60)]
    texts = [*short[:30], " ".join(rng.choice(words, 600))[:1900], *short[30:], "", None, " "]
    table = pa.table({"body": pa.array(texts, pa.string()), "tags": pa.array(["a|b"] * len(texts)),
                      "u": pa.array(["x"] * len(texts)), "price": pa.array([1.0] * len(texts))})
    assert parity(b, model, table) <= 1e-5
    whole = model.predict_proba(table)
    alone = np.array([model.predict_proba(table.slice(r, 1))[0] for r in (0, 30, 31, len(texts) - 1)])
    np.testing.assert_allclose(whole[[0, 30, 31, len(texts) - 1]], alone, atol=1e-6)


@pytest.mark.parametrize("rows", [
    [{"body": None, "tags": None, "u": None, "price": None}],  # one row, every bag empty
    [{"body": "", "tags": "", "u": "", "price": 0.0}, {"body": " \t", "tags": "  ", "u": None, "price": None}],
    [{"body": "a b", "tags": None, "u": "q", "price": 2.0}, {"body": None, "tags": "x|y|z", "u": "q", "price": 2.0},
     {"body": "", "tags": "", "u": "", "price": None}, {"body": "late goal", "tags": "x", "u": "r", "price": 1.0}],
])
def test_empty_bags_and_lists(bundle: tuple[Bundle, RawOnnxModel], rows: list[dict[str, Any]]) -> None:
    """Empty and missing texts and lists, alone, together and between full ones: as the Python path (an empty
    bag holds the reserved id 0, as the encoder gives it)."""
    b, model = bundle
    table = pa.Table.from_pylist(rows, schema=pa.schema([("body", pa.string()), ("tags", pa.string()),
                                                          ("u", pa.string()), ("price", pa.float64())]))
    assert parity(b, model, table) <= 1e-5


def test_flat_feed_matches_the_picture() -> None:
    """Jagged ids -> flat ids, weights 1/len and the row of each id; a row without ids has no entry."""
    layout = InputLayout(dense_dim=1, singles=(0,), lists=(1,), flat=(1,))
    batch = Batch(dense=np.zeros((4, 1), np.float32), ids=[np.array([5, 6, 7, 8]), np.array([7, 3, 9, 4, 8, 2])],
                  offsets=[np.arange(5), np.array([0, 2, 3, 3, 6])], label=None, lines=np.arange(4))
    feed = padded_feed(batch, layout)
    assert list(feed) == layout.input_names == ["dense", "single_ids", "ids_1", "weights_1", "rows_1"]
    np.testing.assert_array_equal(feed["ids_1"], [7, 3, 9, 4, 8, 2])
    np.testing.assert_array_equal(feed["rows_1"], [0, 0, 1, 3, 3, 3])
    np.testing.assert_allclose(feed["weights_1"], [.5, .5, 1, 1 / 3, 1 / 3, 1 / 3])
    assert InputLayout.from_dict(layout.to_dict()) == layout
    assert "flat" not in InputLayout(1, (0,), (1,)).to_dict()  # a padded export's metadata is as it was


def test_the_traced_flat_model_pools_an_empty_bag_to_zeros(tmp_path: Path) -> None:
    """The traced model alone, fed bags with no ids at all (not even id 0): zeros, as SparseArch's empty bag;
    equal to PyTorch at batch 1 and on a batch of empty, one-id and long bags."""
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": FEATURES[1:],
                        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots).eval()
    with torch.no_grad():
        net.sparse_arch.bag.weight.normal_(std=0.5)
    layout = layout_for(encoder, flat=True)
    assert layout.flat == (0,) and layout.lists == (0,)
    trace_to_onnx(net, layout, tmp_path / "m.onnx", list(encoder.buckets), opset=18)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    lists = [[], [3], list(range(1, 40)), [], [7, 7, 2]]
    for chosen in (lists, [[]], [[5, 6]]):
        n = len(chosen)
        offsets = np.concatenate([[0], np.cumsum([len(x) for x in chosen])]).astype(np.int64)
        batch = Batch(dense=np.linspace(-1, 1, n * encoder.dense_dim, dtype=np.float32).reshape(n, -1),
                      ids=[np.array([i for x in chosen for i in x], np.int64), np.arange(n) % 40],
                      offsets=[offsets, np.arange(n + 1)], label=None, lines=np.arange(n))
        feed = padded_feed(batch, layout)
        got = session.run(["logits"], {i.name: feed[i.name] for i in session.get_inputs()})[0]
        with torch.no_grad():
            want = net(torch.from_numpy(batch.dense), [torch.from_numpy(i) for i in batch.ids],
                       [torch.from_numpy(o[:-1]) for o in batch.offsets]).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
