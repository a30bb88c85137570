"""The in-graph id hash (:mod:`shoal.export.raw_ids`) alone: bit for bit :func:`~shoal.data.hashing.hash_strings`
and :func:`~shoal.data.hashing.bucketize` over every way parts are laid out (one id per row or lists, in any
order; buckets alike or not), every byte-mask form (a constant, built per batch, any width), with garbage in the
padding, missing ids, and batches where no id has a byte or a part has no id."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
from onnx import TensorProto as T
from onnx import helper

from shoal.data.hashing import bucketize, hash_strings
from shoal.export.raw_graph import OPSET, GraphBuilder
from shoal.export.raw_ids import BELOW_MAX, hash_ids

N = 5  # rows of a part with one id per row
IDS = ["a", "", "é中", "🙂🙂x", "ab\x00cd", "0", "-1", "s12_4e29a2", "ß" * 7, "x" * 15, "q"]


def _session(per_row: tuple[bool, ...], buckets: list[int], max_bytes: int | None) -> ort.InferenceSession:
    g = GraphBuilder()
    parts = [(f"p{k}.bytes", f"p{k}.lengths", 1000 + 7 * k, buckets[k]) for k in range(len(per_row))]
    ids, hashes, _ = hash_ids(g, parts, max_bytes, per_row=per_row)
    inputs = [v for k in range(len(parts)) for v in (
        helper.make_tensor_value_info(f"p{k}.bytes", T.UINT8, [f"n{k}", max_bytes or f"W{k}"]),
        helper.make_tensor_value_info(f"p{k}.lengths", T.INT64, [f"n{k}"]))]
    outputs = [helper.make_tensor_value_info(g.op("Identity", [i], out=f"ids{k}"), T.INT64, None)
               for k, i in enumerate(ids)]
    outputs.append(helper.make_tensor_value_info(g.op("Identity", [hashes], out="hashes"), T.UINT64, None))
    model = helper.make_model(helper.make_graph(g.nodes, "ids", inputs, outputs, initializer=g.inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _part(values: list[str], width: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(bytes (n, width), lengths (n,)): each id's UTF-8 bytes, then random garbage (the graph must not read it);
    an empty id is missing, its length 0 or -1."""
    encoded = [v.encode("utf-8") for v in values]
    out = rng.integers(1, 256, (len(values), width)).astype(np.uint8)
    for r, b in enumerate(encoded):
        out[r, : len(b)] = np.frombuffer(b, np.uint8)
    lengths = np.array([len(b) if b else int(rng.choice([0, -1])) for b in encoded], np.int64)
    return out, lengths


LAYOUTS = [(True,), (False,), (True, True, True), (True, False), (False, True), (True, False, True),
           (False, False, True, True)]


@pytest.mark.parametrize("max_bytes", [16, 300, None])  # the byte masks: a constant, built per batch, any width
@pytest.mark.parametrize("alike", [True, False])  # every part's buckets alike (one constant) or not (per id)
@pytest.mark.parametrize("per_row", LAYOUTS)
def test_ids_equal_the_encoders_in_every_layout(per_row: tuple[bool, ...], alike: bool, max_bytes: int | None) -> None:
    assert 16 <= BELOW_MAX < 300
    rng = np.random.default_rng(len(per_row) * 10 + alike)
    buckets = [97] * len(per_row) if alike else [97 + 13 * k for k in range(len(per_row))]
    session = _session(per_row, buckets, max_bytes)
    counts = [N if single else int(rng.integers(0, 9)) for single in per_row]
    values = [[IDS[int(i)] for i in rng.integers(0, len(IDS), n)] for n in counts]
    widths = [max_bytes or int(rng.integers(15, 40)) for _ in per_row]  # any width: each part its own
    feed: dict[str, np.ndarray] = {}
    for k, (v, w) in enumerate(zip(values, widths, strict=True)):
        feed[f"p{k}.bytes"], feed[f"p{k}.lengths"] = _part(v, w, rng)
    got = session.run(None, feed)
    hashes = []
    for k, v in enumerate(values):
        expected = hash_strings(pa.array(v, pa.string()), 1000 + 7 * k) if v else np.zeros(0, np.uint64)
        ids = bucketize(expected, buckets[k])
        ids[np.array([s == "" for s in v], bool)] = 0
        np.testing.assert_array_equal(got[k], ids, err_msg=f"part {k}")
        hashes.append(np.where(feed[f"p{k}.lengths"] > 0, expected, 0))
    known = np.concatenate([feed[f"p{k}.lengths"] > 0 for k in range(len(values))])
    np.testing.assert_array_equal(got[-1][known], np.concatenate(hashes)[known])


@pytest.mark.parametrize("max_bytes", [16, None])
def test_a_batch_without_a_byte(max_bytes: int | None) -> None:
    """Every id missing (no byte to hash: the mask and the sums are (T, 0)), and a list part with no id at all."""
    session = _session((True, False), [50, 60], max_bytes)
    feed = {"p0.bytes": np.full((N, max_bytes or 3), 7, np.uint8), "p0.lengths": np.array([0, -1, 0, 0, -1]),
            "p1.bytes": np.zeros((0, max_bytes or 1), np.uint8), "p1.lengths": np.zeros(0, np.int64)}
    ids0, ids1, _ = session.run(None, feed)
    assert ids0.tolist() == [0] * N and ids1.shape == (0,)


@pytest.mark.parametrize("max_bytes", [300, None])
def test_ids_past_the_gathered_masks_width(max_bytes: int | None) -> None:
    """A batch whose longest id is over BELOW_MAX bytes takes the compared masks: the same ids."""
    rng = np.random.default_rng(5)
    session = _session((True, False), [97, 89], max_bytes)
    values = [["y" * 290, "a", "", "é" * 140, "b"], ["z" * 257, "c"]]
    feed: dict[str, np.ndarray] = {}
    for k, v in enumerate(values):
        feed[f"p{k}.bytes"], feed[f"p{k}.lengths"] = _part(v, max_bytes or 295, rng)
    got = session.run(None, feed)
    for k, (v, buckets) in enumerate(zip(values, [97, 89], strict=True)):
        ids = bucketize(hash_strings(pa.array(v, pa.string()), 1000 + 7 * k), buckets)
        ids[np.array([s == "" for s in v], bool)] = 0
        np.testing.assert_array_equal(got[k], ids)


@pytest.mark.parametrize("max_bytes", [16, 300, None])
def test_a_batch_without_an_id(max_bytes: int | None) -> None:
    """A list feature alone, every row empty: no id to hash at all."""
    session = _session((False,), [50], max_bytes)
    ids, hashes = session.run(None, {"p0.bytes": np.zeros((0, max_bytes or 1), np.uint8),
                                     "p0.lengths": np.zeros(0, np.int64)})
    assert ids.shape == hashes.shape == (0,)
