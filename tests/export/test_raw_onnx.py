"""The raw ONNX export: preprocessing in the graph, equal to the Python encoder + PyTorch, the hash bit for bit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.artifacts.bundle import Bundle
from shoal.config import parse_config
from shoal.data.encoder import Encoder
from shoal.data.features import SparseColumn
from shoal.data.hashing import bucketize, hash_strings
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.raw import (
    RawOnnxModel,
    export_raw_onnx,
    parity,
    preprocess_model,
    raw_contract,
    raw_edges,
    raw_feed,
    synthetic_raw_rows,
)

FEATURES: list[dict[str, Any]] = [
    {"name": "price", "kind": "dense", "transform": "standardize", "bins": 6},
    {"name": "clicks", "kind": "dense", "transform": "log1p", "bins": 8},
    {"name": "age", "kind": "dense"},
    {"name": "user", "kind": "sparse", "buckets": 1000},
    {"name": "item", "kind": "sparse", "buckets": 37},
    {"name": "tags", "kind": "sparse", "buckets": 50, "separator": "|"},
]


DLRM = {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]}


def _make_bundle(random_bundle: Any, tmp: Path, features: list[dict[str, Any]] = FEATURES, fit_rows: int = 3000,
                 classes: list[str] | None = None) -> tuple[Path, Bundle]:
    """A DLRM bundle with random weights (tables made to matter) and an encoder fitted on synthetic raw rows."""
    return random_bundle(tmp, features, DLRM, fit_rows=fit_rows, seed=7, std=0.3, classes=classes)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, random_bundle: Any) -> tuple[Path, Bundle, Any]:
    folder, bundle = _make_bundle(random_bundle, tmp_path_factory.mktemp("raw"))
    report = export_raw_onnx(folder)  # the default: unrolled over 64 bytes
    return folder, bundle, report


def _session(model: Any) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


# -- parity with the Python path --------------------------------------------------------------------------------
def test_export_writes_the_model_and_the_contract(exported: tuple[Path, Bundle, Any]) -> None:
    folder, _, report = exported
    assert report.path == folder / "onnx" / "model.raw.onnx" and report.path.is_file()
    assert report.contract_path == folder / "onnx" / "raw_inputs.json"
    assert report.max_abs_proba_diff <= 1e-5 and report.parity_rows > 0
    model = RawOnnxModel(folder / "onnx")
    assert set(model.contract["inputs"]) == {"price", "clicks", "age", "user.bytes", "user.lengths", "item.bytes",
                                             "item.lengths", "tags.bytes", "tags.lengths", "tags.counts"}
    assert {o.name for o in model.session.get_outputs()} == {"probabilities", "logits"}
    assert not any(n.op_type in ("Loop", "Scan") for n in __import__("onnx").load(str(report.path)).graph.node)


@pytest.mark.parametrize("rows", [1, 7, 500])
def test_probabilities_equal_the_python_path(exported: tuple[Path, Bundle, Any], rows: int) -> None:
    """Missing numbers, values on the bin thresholds, unicode, padded and empty ids, empty lists: to 1e-5."""
    folder, bundle, _ = exported
    table = synthetic_raw_rows(bundle.encoder, rows, seed=rows)
    assert parity(bundle, RawOnnxModel(folder / "onnx"), table) <= 1e-5


def test_row_dicts_feed_the_same_as_a_table(exported: tuple[Path, Bundle, Any]) -> None:
    folder, bundle, _ = exported
    model = RawOnnxModel(folder / "onnx")
    rows = [{"price": 3.5, "clicks": None, "age": "41", "user": " ü-42 ", "item": "17", "tags": "a| b ||c"},
            {"price": None, "clicks": 12.0, "age": None, "user": None, "item": "", "tags": None}]
    table = pa.table({"price": [3.5, None], "clicks": [None, 12.0], "age": ["41", None], "user": [" ü-42 ", None],
                      "item": ["17", ""], "tags": ["a| b ||c", None]})
    np.testing.assert_array_equal(model.predict_proba(rows), model.predict_proba(table))
    assert parity(bundle, model, table) <= 1e-5


def test_str_strip_trims_what_the_encoder_trims() -> None:
    """The fast feed of row dicts trims with ``str.strip()``: the same code points as ``utf8_trim_whitespace``."""
    chars = [chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000]
    trimmed = pc.utf8_trim_whitespace(pa.array([f"{c}x{c}" for c in chars])).to_pylist()
    assert [t for t in trimmed] == [f"{c}x{c}".strip() for c in chars]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.fixed_dictionaries({
    "price": st.one_of(st.none(), st.floats(-1e6, 1e6, width=32), st.integers(-1000, 1000)),
    "clicks": st.one_of(st.none(), st.floats(0, 1e9, width=32)), "age": st.none(),
    "user": st.one_of(st.none(), st.text(max_size=6)),
    "item": st.one_of(st.none(), st.text(alphabet=" \t\u3000ab\u2028é", max_size=5)),
    "tags": st.one_of(st.none(), st.text(alphabet="ab |\u00a0中", max_size=12))}), min_size=1, max_size=5))
def test_fast_feed_of_row_dicts_equals_the_table_feed(rows: list[dict[str, Any]]) -> None:
    contract = _CONTRACT["c"]
    fast = raw_feed(rows, contract)
    slow = raw_feed(pa.Table.from_pylist(rows), contract)
    assert fast.keys() == slow.keys()
    for k in fast:
        np.testing.assert_array_equal(fast[k], slow[k], err_msg=k)
        assert fast[k].dtype == slow[k].dtype, k


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({
    "price": st.one_of(st.none(), st.floats(allow_nan=True, width=64), st.integers(-2**60, 2**60)),
    "clicks": st.one_of(st.none(), st.floats(0, 1e9, width=32)), "age": st.one_of(st.none(), st.just("41")),
    "user": st.one_of(st.none(), st.integers(-5, 10**12), st.text(max_size=6)),
    "item": st.one_of(st.none(), st.text(alphabet=" \t\u3000ab\u2028é", max_size=5)),
    "tags": st.one_of(st.none(), st.text(alphabet="ab |\u00a0中", max_size=12))}))
def test_one_row_feed_equals_the_table_feed(row: dict[str, Any]) -> None:
    """A request's single row takes its own short path (numbers, ids and lists, one array each): the same inputs
    as the table path, or the table path's own answer where a cell needs pyarrow's rules (text in a dense column,
    a number beyond float32, an int too large for a double)."""
    contract = _CONTRACT["c"]
    try:
        slow = raw_feed(pa.Table.from_pylist([row]), contract)
    except (ValueError, pa.ArrowException) as err:
        with pytest.raises(type(err)):
            raw_feed([row], contract)
        return
    fast = raw_feed([row], contract)
    assert fast.keys() == slow.keys()
    for k in fast:
        np.testing.assert_array_equal(fast[k], slow[k], err_msg=k)
        assert fast[k].dtype == slow[k].dtype and fast[k].shape == slow[k].shape, k


_CONTRACT: dict[str, Any] = {}


@pytest.fixture(autouse=True, scope="module")
def _contract(exported: tuple[Path, Bundle, Any]) -> None:
    _CONTRACT["c"] = RawOnnxModel(exported[0] / "onnx").contract


def test_bins_match_the_encoder_exactly(exported: tuple[Path, Bundle, Any]) -> None:
    """The thresholds on the raw float32 value give searchsorted's bins, at and next to every edge."""
    _, bundle, _ = exported
    for col in bundle.encoder.binned_features:
        thresholds = raw_edges(col)
        assert len(thresholds) == len(col.edges_)
        near = np.concatenate([thresholds, np.nextafter(thresholds, np.float32(-np.inf)),
                               np.nextafter(thresholds, np.float32(np.inf)), [0, -1, 1e30, -1e30]]).astype(np.float32)
        near = near[np.isfinite(near)]
        expected = col.bin_ids(near.astype(np.float64))
        got = (near[:, None] >= thresholds[None, :]).sum(axis=1) + 1
        np.testing.assert_array_equal(got, expected)


def test_multiclass_and_lists_only(tmp_path: Path, random_bundle: Any) -> None:
    """Softmax probabilities (N, C); a bundle without dense features; no rows gives no probabilities."""
    features = [{"name": "u", "kind": "sparse", "buckets": 40},
                {"name": "tags", "kind": "sparse", "buckets": 30, "separator": ","}]
    folder, bundle = _make_bundle(random_bundle, tmp_path, features, fit_rows=200, classes=["a", "b", "c"])
    report = export_raw_onnx(folder, tmp_path / "out" / "mc.onnx", max_bytes=48)
    assert report.path == tmp_path / "out" / "mc.onnx" and (tmp_path / "out" / "raw_inputs.json").is_file()
    assert report.own_rows_source == "" and report.own_rows_diff == 0.0  # no data file beside it: synthetic only
    model = RawOnnxModel(report.path)
    table = synthetic_raw_rows(bundle.encoder, 50, seed=2, max_bytes=48)
    proba = model.predict_proba(table)
    assert proba.shape == (50, 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert parity(bundle, model, table) <= 1e-5
    assert model.predict_proba(table.slice(0, 0)).shape == (0, 3)


def test_cli_export_raw(exported: tuple[Path, Bundle, Any], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shoal.cli.main import app

    folder, _, _ = exported
    result = CliRunner().invoke(app, ["export", str(folder), "--raw", "--out", str(tmp_path), "--raw-max-bytes", "40",
                                      "--raw-form", "unrolled"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.raw.onnx").is_file() and "tags.counts" in result.output
    assert RawOnnxModel(tmp_path).contract["max_bytes"] == 40
    assert "--raw" in CliRunner().invoke(app, ["export", "--help"]).output
    result = CliRunner().invoke(app, ["export", str(folder)])
    assert result.exit_code == 2 and "--onnx" in result.output and "--raw" in result.output


def test_form_auto_times_both_forms_and_writes_the_faster(exported: tuple[Path, Bundle, Any], tmp_path: Path) -> None:
    from shoal.export.raw import choose_form

    folder, bundle, _ = exported
    report = export_raw_onnx(folder, tmp_path, form="auto", parity_rows=64)
    assert set(report.form_ms) == {"unrolled", "loop"} and all(set(t) == {"1", "256"} for t in report.form_ms.values())
    assert report.form == choose_form({f: {int(b): ms for b, ms in t.items()} for f, t in report.form_ms.items()})
    written = RawOnnxModel(report.path)
    assert written.contract["max_bytes"] == (64 if report.form == "unrolled" else None)
    assert report.max_abs_proba_diff <= 1e-5
    # the rule: the geometric mean of the ratios to unrolled over the batch sizes; a tie keeps unrolled
    assert choose_form({"unrolled": {1: 1.0, 256: 10.0}, "loop": {1: 1.1, 256: 6.0}}) == "loop"
    assert choose_form({"unrolled": {1: 1.0, 256: 10.0}, "loop": {1: 2.0, 256: 6.0}}) == "unrolled"
    assert choose_form({"unrolled": {1: 1.0, 256: 10.0}, "loop": {1: 1.0, 256: 10.0}}) == "unrolled"


def test_forms_are_timed_call_by_call_in_turn() -> None:
    """A slow spell of the machine must slow both forms alike: calls alternate, the order reversed each time."""
    from shoal.export.raw import time_raw_graphs

    calls: list[tuple[str, int]] = []

    class Fake:
        def __init__(self, name: str) -> None:
            self.name = name

        def predict_proba(self, rows: Any) -> None:
            calls.append((self.name, len(rows)))

    table = pa.table({"x": [1.0, 2.0, 3.0]})
    timings = time_raw_graphs({"unrolled": Fake("unrolled"), "loop": Fake("loop")},  # type: ignore[dict-item]
                              table, batches=(1, 4), repeats=2)
    assert set(timings) == {"unrolled", "loop"} and all(set(t) == {1, 4} for t in timings.values())
    ones = [n for n, b in calls if b == 1][2:]  # after one warm-up call each
    assert ones[:6] == ["unrolled", "loop", "loop", "unrolled", "unrolled", "loop"] and len(ones) == 40
    assert [n for n, b in calls if b == 4][2:] == ["unrolled", "loop", "loop", "unrolled"]


@pytest.mark.parametrize("form", ["unrolled", "loop"])
def test_vocabulary_features_are_looked_up_in_the_graph(tmp_path: Path, form: str, random_bundle: Any) -> None:
    """encoding: vocab (one id per row and a list): the graph's rows are the encoder's exactly, out-of-vocabulary
    ids (never seen, or too rare) on row V+1, missing on 0; probabilities to 1e-5."""
    features = [{"name": "user", "kind": "sparse", "encoding": "vocab", "min_count": 2},
                {"name": "item", "kind": "sparse", "buckets": 37},
                {"name": "tags", "kind": "sparse", "encoding": "vocab", "separator": "|"},
                {"name": "price", "kind": "dense"}]
    folder, bundle = _make_bundle(random_bundle, tmp_path, features, fit_rows=1500)
    report = export_raw_onnx(folder, form=form, parity_rows=300)
    assert report.max_abs_proba_diff <= 1e-5
    user, _, tags = bundle.encoder.sparse_features
    assert user.vocab is not None and tags.vocab is not None and user.vocab.size > 10
    contract = RawOnnxModel(report.path).contract
    assert [f.get("encoding") for f in contract["features"] if f["kind"] == "sparse"] == ["vocab", None, "vocab"]
    table = synthetic_raw_rows(bundle.encoder, 400, seed=11)
    table = table.set_column(table.column_names.index("user"), "user", pa.concat_arrays(
        [pa.array(["never-seen", "", None, f" {user.vocab.values_[0]} "], pa.string()),
         table.column("user").combine_chunks().slice(4)]))
    session = _session(preprocess_model(bundle.encoder, max_bytes=64 if form == "unrolled" else None))
    got_user, got_tags = session.run(["raw/ids/user", "raw/ids/tags"], raw_feed(table, contract))
    want_user, _, _ = user.ids(table.column("user"), np.arange(table.num_rows + 1))
    np.testing.assert_array_equal(got_user, want_user)
    assert want_user[0] == user.vocab.size + 1 and list(want_user[1:3]) == [0, 0]  # unseen; missing
    assert 1 < (want_user == user.vocab.size + 1).sum() < 200 and (want_user == 1).any()  # both kinds present
    tag_ids, tag_off, _ = tags.ids(table.column("tags"), np.arange(table.num_rows + 1))
    counts = raw_feed(table, contract)["tags.counts"]
    np.testing.assert_array_equal(got_tags, tag_ids[np.repeat(counts > 0, np.maximum(counts, 1))])


def test_a_number_also_read_as_an_id(tmp_path: Path, random_bundle: Any) -> None:
    """A column read both as a number and as ids (the starter's ``c4`` and ``c4_id``): the synthetic rows of the
    export's parity check keep it numeric (the number parser refused the unicode ids written over it), half of
    them its vocabulary's values, and the graph's ids are the encoder's."""
    features = [{"name": "age", "kind": "dense", "bins": 4},
                {"name": "age_id", "column": "age", "kind": "sparse", "encoding": "vocab"}]
    folder, bundle = _make_bundle(random_bundle, tmp_path, features, fit_rows=400)
    report = export_raw_onnx(folder, parity_rows=300)
    assert report.max_abs_proba_diff <= 1e-5
    table = synthetic_raw_rows(bundle.encoder, 300, seed=5)
    assert table.schema.field("age").type == pa.float64()
    (col,) = bundle.encoder.sparse_features
    assert col.vocab is not None
    session = _session(preprocess_model(bundle.encoder))
    (got,) = session.run(["raw/ids/age_id"], raw_feed(table, RawOnnxModel(report.path).contract))
    want, _, _ = col.ids(table.column("age"), np.arange(table.num_rows + 1))
    np.testing.assert_array_equal(got, want)
    assert 50 < ((want > 0) & (want <= col.vocab.size)).sum() < 250  # in the vocabulary about half the time


# -- the hash ---------------------------------------------------------------------------------------------------------
def _ids_graph(features: list[dict[str, Any]], max_bytes: int | None) -> tuple[Encoder, ort.InferenceSession]:
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": features,
                        "model": {"name": "dlrm"}})
    encoder = Encoder(cfg.features, cfg.label)
    return encoder, _session(preprocess_model(encoder, max_bytes=max_bytes))


ODD_IDS = ["a", "", "é", "中文", "🙂🙂", "x" * 300, "ab\x00cd", "  spaced  ", "Ωmega-" * 20, "0", "-1", "ß" * 150]


@pytest.mark.parametrize("max_bytes", [320, None])
def test_in_graph_ids_equal_hash_strings(max_bytes: int | None) -> None:
    """Unicode, an empty string (hashed; its id is the reserved 0), a 300-byte id, a NUL byte: bit for bit."""
    encoder, session = _ids_graph([{"name": "user", "kind": "sparse", "buckets": 1000},
                                   {"name": "tags", "kind": "sparse", "buckets": 77, "separator": ";"}], max_bytes)
    contract = {"max_bytes": max_bytes, "features": [
        {"name": "user", "kind": "sparse", "column": "user", "separator": None,
         "inputs": {"bytes": "user.bytes", "lengths": "user.lengths"}},
        {"name": "tags", "kind": "sparse", "column": "tags", "separator": ";",
         "inputs": {"bytes": "tags.bytes", "lengths": "tags.lengths", "counts": "tags.counts"}}]}
    table = pa.table({"user": ODD_IDS, "tags": [";".join(ODD_IDS[: i % 4 + 1]) for i in range(len(ODD_IDS))]})
    feed = raw_feed(table, contract)
    # raw_feed trims: put the untrimmed bytes back for the hash check, the encoder's trimming is tested elsewhere
    raw = pa.array(ODD_IDS)
    feed["user.bytes"], feed["user.lengths"] = _untrimmed(raw, max_bytes)
    ids, hashes = session.run(["raw/ids/user", "raw/hashes"], feed)
    user = encoder.sparse_features[0]
    expected_hash = hash_strings(raw, user.seed)
    np.testing.assert_array_equal(hashes[: len(ODD_IDS)], expected_hash)
    expected = bucketize(expected_hash, user.buckets)
    expected[np.array([s == "" for s in ODD_IDS])] = 0  # length 0: missing, as the encoder maps ""
    np.testing.assert_array_equal(ids, expected)
    # the list feature: the encoder's ids and offsets, through the padded form
    tags = encoder.sparse_features[1]
    tag_ids, tag_off, _ = tags.ids(table.column("tags"), np.arange(len(ODD_IDS) + 1))
    flat = session.run(["raw/ids/tags"], feed)[0]
    counts = feed["tags.counts"]
    np.testing.assert_array_equal(np.diff(tag_off), np.maximum(counts, 1))
    np.testing.assert_array_equal(flat, tag_ids[np.repeat(counts > 0, np.maximum(counts, 1))])


def _untrimmed(arr: pa.Array, max_bytes: int | None) -> tuple[np.ndarray, np.ndarray]:
    encoded = [s.encode("utf-8") for s in arr.to_pylist()]
    width = max_bytes or max(1, max(map(len, encoded)))
    out = np.zeros((len(encoded), width), np.uint8)
    for i, b in enumerate(encoded):
        out[i, : len(b)] = np.frombuffer(b, np.uint8)
    return out, np.array([len(b) for b in encoded], np.int64)


def test_missing_ids_are_id_0_whatever_the_length_says() -> None:
    encoder, session = _ids_graph([{"name": "u", "kind": "sparse", "buckets": 10}], 4)
    feed = {"u.bytes": np.array([[97, 0, 0, 0], [97, 0, 0, 0], [0, 0, 0, 0]], np.uint8),
            "u.lengths": np.array([1, -1, 0], np.int64)}
    ids = session.run(["raw/ids/u"], feed)[0]
    assert ids[0] == bucketize(hash_strings(pa.array(["a"]), encoder.sparse_features[0].seed), 10)[0]
    assert list(ids[1:]) == [0, 0]


def test_a_too_long_id_is_refused_not_cut() -> None:
    contract = {"max_bytes": 4, "features": [{"name": "u", "kind": "sparse", "column": "u", "separator": None,
                                              "inputs": {"bytes": "u.bytes", "lengths": "u.lengths"}}]}
    with pytest.raises(ValueError, match="5 bytes long.*at most 4"):
        raw_feed([{"u": "abcde"}], contract)
    _, session = _ids_graph([{"name": "u", "kind": "sparse", "buckets": 10}], 4)
    with pytest.raises(Exception, match="(?i)dimension"):  # ONNX Runtime refuses another width
        session.run(None, {"u.bytes": np.zeros((1, 5), np.uint8), "u.lengths": np.array([5], np.int64)})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=9)), min_size=2, max_size=30), st.sampled_from([None, 40]))
def test_bytes_matrix_packs_each_id_left_aligned(values: list[str | None], width: int | None) -> None:
    """Each id's UTF-8 bytes at the start of its row, zeros after, length 0 for a null: from a plain string array
    (the bytes in one run), a slice of one, and an array whose nulls hold bytes (the general gather)."""
    from shoal.export.raw_bytes import bytes_matrix

    def check(arr: pa.Array, cells: list[str | None]) -> None:
        out, lengths = bytes_matrix(arr, width, "u")
        encoded = [b"" if c is None else c.encode("utf-8") for c in cells]
        assert list(lengths) == [len(b) for b in encoded]
        assert out.shape[1] == (width if width is not None else max(1, max(map(len, encoded))))
        for row, b in zip(out, encoded, strict=True):
            assert bytes(row[: len(b)]) == b and not row[len(b):].any()

    arr = pa.array(values, pa.string())
    check(arr, values)
    check(arr.slice(1), values[1:])
    filled = pa.array(["x" * 3 if v is None else v for v in values], pa.string())  # nulls over bytes
    mask = pa.array([v is None for v in values])
    check(pc.if_else(mask, pa.scalar(None, pa.string()), filled), values)
    holed = pa.Array.from_buffers(pa.string(), len(values), [pa.array([v is not None for v in values]).buffers()[1],
                                                             *filled.buffers()[1:]])
    check(holed, values)


_HASH_SESSION: dict[str, Any] = {}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=20))
def test_property_in_graph_hash_equals_hash_strings(values: list[str]) -> None:
    if "s" not in _HASH_SESSION:
        _HASH_SESSION["s"] = _ids_graph([{"name": "prop", "kind": "sparse", "buckets": 9973}], None)
    encoder, session = _HASH_SESSION["s"]
    arr = pa.array(values, pa.string())
    data, lengths = _untrimmed(arr, None)
    hashes, ids = session.run(["raw/hashes", "raw/ids/prop"], {"prop.bytes": data, "prop.lengths": lengths})
    col: SparseColumn = encoder.sparse_features[0]
    expected = hash_strings(arr, col.seed)
    np.testing.assert_array_equal(hashes, expected)
    np.testing.assert_array_equal(ids, np.where(lengths > 0, bucketize(expected, col.buckets), 0))


# -- latency (printed, not asserted) ------------------------------------------------------------------------------
def _percentiles(fn: Any, calls: int) -> tuple[float, float]:
    times = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def _rows_per_s(fn: Any, rows: int, seconds: float = 1.0) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n * rows / (time.perf_counter() - t0)


def test_latency_raw_graph_vs_python_encoder(exported: tuple[Path, Bundle, Any], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Raw row -> probability, feed building included: the raw graph vs the Python encoder + exported graph."""
    from shoal.export.onnx import export_onnx
    from shoal.runtime.onnx import OnnxPredictor

    folder, bundle, _ = exported
    export_onnx(folder, tmp_path / "encoded", parity_rows=200)
    encoded = OnnxPredictor(tmp_path / "encoded")
    raw = RawOnnxModel(folder / "onnx")
    loop = RawOnnxModel(export_raw_onnx(folder, tmp_path / "loop", form="loop").path)
    one = [synthetic_raw_rows(bundle.encoder, 1, seed=3).to_pylist()[0]]
    table256 = synthetic_raw_rows(bundle.encoder, 256, seed=4)
    sink = BadRowSink("error")

    def python_path(rows: Any) -> np.ndarray:
        t = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
        return encoded.predict_proba(bundle.encoder.encode(Chunk(t, np.arange(1, t.num_rows + 1), "r"), sink,
                                                           with_label=False))

    systems = {"python encoder + onnx": python_path, "raw onnx (unrolled, 64 B)": raw.predict_proba,
               "raw onnx (Loop)": loop.predict_proba}
    lines = []
    for name, fn in systems.items():
        fn(one)
        p50, p99 = _percentiles(lambda fn=fn: fn(one), 2000)
        rps = _rows_per_s(lambda fn=fn: fn(table256), 256)
        lines.append(f"{name:28s} batch 1: p50 {p50:.3f} ms p99 {p99:.3f} ms; batch 256: {rps:,.0f} rows/s")
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_timing_rows_hold_a_csv_files_numbers_as_numbers(tmp_path: Path) -> None:
    """The rows bench, compress and ``auto`` time on are typed as a JSON request's: a CSV's number column (strings
    as read) is float64, so a row takes the one-row feed a served request takes (as strings it took the general
    feed, ~14x slower); a column also read as ids holds integers, as a request's whole numbers there."""
    import shoal
    from shoal.export.raw import timing_rows

    lines = ["y,x,n,s"] + [f"{i % 2},{i * 0.5},{i % 7},s{i % 5}" for i in range(200)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = parse_config({"data": {"train": str(tmp_path / "t.csv"), "valid_fraction": 0.2}, "label": {"column": "y"},
                        "features": [{"name": "x", "kind": "dense"}, {"name": "n", "kind": "dense"},
                                     {"name": "n_id", "column": "n", "kind": "sparse", "buckets": 16},
                                     {"name": "s", "kind": "sparse", "buckets": 16}],
                        "model": {"name": "logistic"}, "train": {"epochs": 1, "pictures": False}})
    run = shoal.train(cfg, home=tmp_path / "home")
    folder = Path(run.artifact_dir) / "bundle"
    rows, source = timing_rows(shoal.load(run.run_id, home=tmp_path / "home"), folder, 16)
    assert source.endswith("valid-split.parquet") and rows.num_rows == 16
    assert rows.schema.field("x").type == pa.float64() and rows.schema.field("n").type == pa.int64()
    assert all(isinstance(v, float) for v in rows.column("x").to_pylist())


def test_a_value_on_a_bin_edge_that_float32_cannot_hold(tmp_path: Path) -> None:
    """Decimal values no float32 holds ('-0.028') become the bin edges; the same text then lands in the same bin in
    the encoder and in the graph (the encoder reads numbers as the float32 the graph takes)."""
    import torch

    from shoal.artifacts.bundle import load_bundle, save_bundle
    from shoal.models import build

    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"},
                        "features": [{"name": "x", "kind": "dense", "transform": "standardize", "bins": 4}],
                        "model": {"name": "logistic"}})
    encoder = Encoder(cfg.features, cfg.label)
    values = ["-0.649"] * 50 + ["-0.028"] * 100 + ["0.749"] * 50  # the middle quantiles fall on -0.028
    encoder.fit([Chunk(pa.table({"x": values, "y": ["0", "1"] * 100}), np.arange(1, 201), "fit")],
                BadRowSink("error"))
    edges = encoder.dense_features[0].edges_
    assert -0.028 not in edges and float(np.float32(-0.028)) in edges  # learnt from the float32 values
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
    with torch.no_grad():
        for p in net.parameters():
            torch.nn.init.normal_(p, std=2.0)
    save_bundle(tmp_path / "bundle", net, encoder, cfg, {"train_base_rate": 0.5})
    export_raw_onnx(tmp_path / "bundle", parity_rows=16)  # raises ExportError beyond the tolerance
    bundle = load_bundle(tmp_path / "bundle")
    rows = pa.table({"x": ["-0.649", "-0.028", "0.749", "1.31", "-0.0280001", "0.7490001"]})
    batch = bundle.encoder.encode(Chunk(rows, np.arange(6), "t"), BadRowSink("error"), with_label=False)
    np.testing.assert_allclose(RawOnnxModel(tmp_path / "bundle" / "onnx").predict_proba(rows),
                               bundle.predict_proba(batch), atol=1e-6)
    np.testing.assert_allclose(RawOnnxModel(tmp_path / "bundle" / "onnx").predict_proba(
        [{"x": float(v)} for v in rows.column("x").to_pylist()]), bundle.predict_proba(batch), atol=1e-6)


def test_a_graph_that_fails_its_parity_is_not_left_to_serve(tmp_path: Path, random_bundle: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed parity check leaves no model.raw.onnx nor contract (an earlier export's neither: the server would
    pick it) and keeps the graph as model.raw.failed.onnx."""
    import shoal.export.raw as raw_module
    from shoal.export.onnx import ExportError
    from shoal.export.raw_runtime import raw_graph_refusal

    folder, bundle = _make_bundle(random_bundle, tmp_path, fit_rows=300)
    export_raw_onnx(folder, parity_rows=8)
    assert (folder / "onnx" / "model.raw.onnx").is_file() and raw_graph_refusal(bundle, folder) is None
    monkeypatch.setattr(raw_module, "parity", lambda *a, **k: 0.002)
    with pytest.raises(ExportError, match=r"model.raw.onnx: outputs differ from the Python encoder \+ PyTorch by "
                                          r"0.002 on 8 synthetic rows .*kept to inspect as .*model.raw.failed.onnx"):
        export_raw_onnx(folder, parity_rows=8)
    assert sorted(p.name for p in (folder / "onnx").iterdir()) == ["model.raw.failed.onnx"]
    assert raw_graph_refusal(bundle, folder) is not None


def test_in_graph_log1p_equals_the_encoders_to_the_last_bit() -> None:
    """The dense values of log1p columns, bit for bit, over float32s of every exponent: tiny ones (below and at
    2^-29, where the graph takes |v| itself), negatives, zeros, the largest, NaN (missing)."""
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"},
                        "features": [{"name": "x", "kind": "dense", "transform": "log1p"}],
                        "model": {"name": "logistic"}})
    encoder = Encoder(cfg.features, cfg.label)
    rng = np.random.default_rng(0)
    floats = rng.integers(0, 2**32, 40_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    edge = np.float32(2.0**-29)
    special = np.array([0.0, -0.0, 1e-45, edge, np.nextafter(edge, np.float32(0)), np.nextafter(edge, np.float32(1)),
                        -edge, 1.0, 3.4028235e38, -3.4028235e38, np.nan], np.float32)
    values = np.concatenate([floats[np.isfinite(floats)], special, rng.uniform(-9, 9, 5_000).astype(np.float32),
                             rng.uniform(-1e-7, 1e-7, 5_000).astype(np.float32)])
    table = pa.table({"x": pa.array(values.astype(np.float64), pa.float64())})
    encoder.fit([Chunk(table.append_column("y", pa.array(["0", "1"] * (len(values) // 2) + ["0"] * (len(values) % 2))),
                       np.arange(1, len(values) + 1), "fit")], BadRowSink("error"))
    want = encoder.encode(Chunk(table, np.arange(1, len(values) + 1), "t"), BadRowSink("error"),
                          with_label=False).dense
    (got,) = _session(preprocess_model(encoder)).run(["raw/out/dense"], raw_feed(table, raw_contract(encoder)))
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
