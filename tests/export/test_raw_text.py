"""Text features in the raw ONNX export: the in-graph n-gram and byte ids equal the Python encoder's bit for bit,
and bag / bytecnn probabilities equal the Python encoder + PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shoal.artifacts.bundle import Bundle, load_bundle, save_bundle
from shoal.config import parse_config
from shoal.data.encoder import Encoder
from shoal.data.features import TextColumn
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.onnx import ExportError
from shoal.export.raw import (
    RawOnnxModel,
    export_raw_onnx,
    parity,
    preprocess_model,
    raw_contract,
    raw_feed,
    synthetic_raw_rows,
)
from shoal.export.raw_text import synthetic_texts, text_contract
from shoal.models import build

# every tokens mode, and n-gram settings at their edges (one order, no words, words only up to 1, many words)
TEXT_FEATURES: dict[str, dict[str, Any]] = {
    "default": {"name": "body", "kind": "text", "buckets": 5000, "max_bytes": 48},
    "bytes3-5": {"name": "body", "kind": "text", "buckets": 997, "max_bytes": 40, "ngram_min": 3, "ngram_max": 5,
                 "word_ngrams": 0},
    "unigrams": {"name": "body", "kind": "text", "buckets": 2, "max_bytes": 16, "ngram_min": 1, "ngram_max": 1,
                 "word_ngrams": 1},
    "words4": {"name": "body", "kind": "text", "buckets": 100_003, "max_bytes": 64, "ngram_min": 2, "ngram_max": 2,
               "word_ngrams": 4},
    "bytes": {"name": "body", "kind": "text", "tokens": "bytes", "max_bytes": 24},
}
ODD_TEXTS: list[str | None] = [
    "", None, "a", "ab", " ", "a b", "  x \t y\n", "中文 🙂🙂 é", "x" * 80, "é" * 40, "ab\x00cd ef", "\x0b\x0cz\r",
    "no\u00a0break\u3000space", "🙂" * 15 + " tail", "word " * 20]


def _encoder(features: list[dict[str, Any]], model: dict[str, Any] | None = None) -> tuple[Any, Encoder]:
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": features,
                        "model": model or {"name": "bag"}})
    return cfg, Encoder(cfg.features, cfg.label)


_SESSIONS: dict[str, tuple[Encoder, ort.InferenceSession]] = {}


def _ids_session(mode: str) -> tuple[Encoder, ort.InferenceSession]:
    if mode not in _SESSIONS:
        _, encoder = _encoder([TEXT_FEATURES[mode]])
        model = preprocess_model(encoder)
        _SESSIONS[mode] = encoder, ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return _SESSIONS[mode]


def _check_ids(mode: str, texts: list[str | None], cut_in_feed: bool = True) -> None:
    encoder, session = _ids_session(mode)
    col = encoder.text_features[0]
    table = pa.table({"body": pa.array(texts, pa.string())})
    expected, offsets, _ = col.ids(table.column("body"), np.arange(len(texts) + 1))
    if cut_in_feed:
        feed = raw_feed(table, raw_contract(encoder))
    else:  # whole texts, wider than max_bytes: the graph cuts them
        encoded = [(t or "").encode("utf-8") for t in texts]
        data = np.zeros((len(texts), max(1, max(map(len, encoded)))), np.uint8)
        for i, b in enumerate(encoded):
            data[i, : len(b)] = np.frombuffer(b, np.uint8)
        feed = {"body.bytes": data, "body.lengths": np.array([len(b) if t is not None else -1
                                                              for b, t in zip(encoded, texts, strict=True)], np.int64)}
    got = session.run(["raw/ids/body"], feed)[0]
    np.testing.assert_array_equal(got, expected)
    counts = np.diff(offsets)
    if col.sequence:  # a byte sequence, padded: each row's ids in order, then id 0
        ids, weights = session.run(["raw/out/ids_0", "raw/out/weights_0"], feed)
        assert (weights > 0).sum(axis=1).tolist() == counts.tolist()
        for r in range(len(texts)):
            np.testing.assert_array_equal(ids[r, : counts[r]], expected[offsets[r]: offsets[r + 1]])
            assert not ids[r, counts[r]:].any()
        return
    # a bag, flat: each row's ids (the encoder's, in any order), each with its row and 1/len
    ids, weights, rows = session.run(["raw/out/ids_0", "raw/out/weights_0", "raw/out/rows_0"], feed)
    expected_rows = np.repeat(np.arange(len(texts)), counts)
    got, want = np.lexsort((ids, rows)), np.lexsort((expected, expected_rows))
    np.testing.assert_array_equal(np.stack([rows[got], ids[got]]), np.stack([expected_rows[want], expected[want]]))
    np.testing.assert_array_equal(weights, (1 / counts).astype(np.float32)[rows])


@pytest.mark.parametrize("mode", list(TEXT_FEATURES))
def test_in_graph_text_ids_equal_the_encoder(mode: str) -> None:
    """Empty and missing texts, whitespace runs, multi-byte characters, texts past max_bytes: bit for bit and in
    the encoder's order, whether the caller cuts the texts (raw_feed) or sends them whole (the graph cuts)."""
    texts = ODD_TEXTS + synthetic_texts(np.random.default_rng(1), 120, int(TEXT_FEATURES[mode]["max_bytes"]))
    _check_ids(mode, texts)
    _check_ids(mode, texts, cut_in_feed=False)
    _check_ids(mode, ["", None])  # a batch of empty texts only
    _check_ids(mode, ["ab cd"])  # one row


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=st.characters(codec="utf-8"), max_size=70),
                          st.text(alphabet=" \t\n\x0b\x0c\rab中🙂\u00a0", max_size=30)), min_size=1, max_size=8),
       st.sampled_from(["default", "words4", "bytes"]))
def test_property_text_ids_equal_the_encoder(texts: list[str | None], mode: str) -> None:
    _check_ids(mode, texts)


def test_row_dicts_and_tables_feed_text_alike() -> None:
    _, encoder = _encoder([TEXT_FEATURES["default"], {"name": "u", "kind": "sparse", "buckets": 30}])
    contract = raw_contract(encoder)
    rows = [{"body": "héllo wörld " * 9, "u": "a"}, {"body": None, "u": "b"}, {"body": "", "u": None},
            {"body": b"raw \xff bytes", "u": "c"}]
    fast = raw_feed(rows[:3], contract)
    slow = raw_feed(pa.Table.from_pylist(rows[:3]), contract)
    for k in fast:
        np.testing.assert_array_equal(fast[k], slow[k], err_msg=k)
    assert fast["body.bytes"].shape == (3, 48) and fast["body.lengths"].tolist() == [48, 0, 0]
    assert raw_feed(rows[3:], contract)["body.lengths"].tolist() == [11]  # bytes cells: as they are


def test_contract_describes_the_text_inputs() -> None:
    _, encoder = _encoder([TEXT_FEATURES["default"], TEXT_FEATURES["bytes"] | {"name": "title"}])
    contract = raw_contract(encoder)
    assert contract["inputs"]["body.bytes"]["dtype"] == "uint8" and contract["inputs"]["body.bytes"]["shape"] == [
        "N", "W"]
    assert contract["inputs"]["title.lengths"]["dtype"] == "int64"
    body, title = contract["features"]
    assert body["kind"] == "text" and body["tokens"] == "ngrams" and body["ngram_max"] == 4
    assert title["tokens"] == "bytes" and title["max_bytes"] == 24 and "ngram_min" not in title


def test_an_unknown_tokens_mode_is_refused_by_name() -> None:
    col = TextColumn("review", "review", 1, buckets=100, tokens="sentencepiece")
    with pytest.raises(ExportError, match="text feature 'review': tokens mode 'sentencepiece' cannot be built into "
                                          r"the raw graph \(the raw export computes \['ngrams', 'bytes'\]\)"):
        text_contract(col)


# -- models: probabilities against the Python encoder + PyTorch ----------------------------------------------------
def _bundle(tmp: Path, features: list[dict[str, Any]], model: dict[str, Any], classes: list[str] | None = None,
            fit_rows: int = 400) -> tuple[Path, Bundle]:
    label: dict[str, Any] = {"column": "y"} if classes is None else {"column": "y", "kind": "multiclass",
                                                                        "classes": classes}
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": label, "features": features, "model": model})
    encoder = Encoder(cfg.features, cfg.label)
    encoder.fit([Chunk(synthetic_raw_rows(encoder, fit_rows, seed=5), np.arange(1, fit_rows + 1), "fit")],
                BadRowSink("error"))
    torch.manual_seed(0)
    net = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
    with torch.no_grad():  # tables that matter, so a wrong id moves the probability
        for name, p in net.named_parameters():
            if name.endswith("bag.weight") or "embedding" in name:
                torch.nn.init.normal_(p, std=0.5)
                if "embedding" in name:  # bytecnn's padding row stays 0, as training leaves it (padding_idx)
                    p[0] = 0
    meta: dict[str, Any] = {"train_base_rate": 0.3}
    if classes:
        meta |= {"classes": classes, "train_class_prior": [1 / len(classes)] * len(classes)}
    save_bundle(tmp / "bundle", net, encoder, cfg, meta)
    return tmp / "bundle", load_bundle(tmp / "bundle")


def test_bag_model_with_text_sparse_and_dense(tmp_path: Path) -> None:
    """A fastText-style bag over text n-grams next to an id and a number: the raw graph's probabilities."""
    features = [TEXT_FEATURES["default"], {"name": "u", "kind": "sparse", "buckets": 50},
                {"name": "price", "kind": "dense", "transform": "log1p"}]
    folder, bundle = _bundle(tmp_path, features, {"name": "bag", "embedding_dim": 8})
    report = export_raw_onnx(folder)
    assert report.max_abs_proba_diff <= 1e-5
    model = RawOnnxModel(report.path)
    assert {"body.bytes", "body.lengths", "u.bytes", "price"} <= set(model.contract["inputs"])
    for rows in (1, 7, 300):
        assert parity(bundle, model, synthetic_raw_rows(bundle.encoder, rows, seed=rows)) <= 1e-5
    rows_in = [{"body": "the coach saw a late goal", "u": "x", "price": 3.0}, {"body": None, "u": None, "price": None}]
    table = pa.Table.from_pylist(rows_in)
    np.testing.assert_array_equal(model.predict_proba(rows_in), model.predict_proba(table))
    assert parity(bundle, model, table) <= 1e-5


def test_multiclass_bag_on_text_only(tmp_path: Path) -> None:
    features = [TEXT_FEATURES["bytes3-5"], TEXT_FEATURES["unigrams"] | {"name": "title"}]
    folder, bundle = _bundle(tmp_path, features, {"name": "bag", "embedding_dim": 4}, classes=["a", "b", "c"])
    model = RawOnnxModel(export_raw_onnx(folder, tmp_path / "out").path)
    table = synthetic_raw_rows(bundle.encoder, 200, seed=3)
    proba = model.predict_proba(table)
    assert proba.shape == (200, 3) and parity(bundle, model, table) <= 1e-5


def test_bytecnn_model(tmp_path: Path) -> None:
    """A byte CNN over `tokens: bytes` (its padded sequence built in the graph) next to an n-gram bag."""
    features = [TEXT_FEATURES["bytes"], TEXT_FEATURES["unigrams"] | {"name": "title"}]
    folder, bundle = _bundle(tmp_path, features, {"name": "bytecnn", "embedding_dim": 8, "channels": [8, 8],
                                                  "kernel_size": 3, "pool": 2, "hidden": [8], "dropout": 0.0})
    report = export_raw_onnx(folder)
    assert report.max_abs_proba_diff <= 1e-5
    model = RawOnnxModel(report.path)
    for rows in (1, 9, 200):
        assert parity(bundle, model, synthetic_raw_rows(bundle.encoder, rows, seed=10 + rows)) <= 1e-5


def test_cli_export_raw_of_a_text_bundle(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shoal.cli.main import app

    folder, _ = _bundle(tmp_path, [TEXT_FEATURES["default"]], {"name": "bag", "embedding_dim": 4}, fit_rows=50)
    result = CliRunner().invoke(app, ["export", str(folder), "--raw", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "body.bytes" in result.output and (tmp_path / "out" / "model.raw.onnx").is_file()
