"""Serving through the raw graph (model.raw.onnx): the same answers and the same 422s as the Python-encoder path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from fastapi.testclient import TestClient

from shoal.artifacts.bundle import load_bundle, save_bundle
from shoal.config import parse_config
from shoal.data.encoder import Encoder
from shoal.data.readers import BadRowSink, Chunk
from shoal.export.raw import export_raw_onnx, synthetic_raw_rows
from shoal.export.raw_runtime import RAW_BACKEND, EndToEndPredictor, raw_graph_refusal, select_end_to_end
from shoal.models import build
from shoal.runtime.choice import Route
from shoal.runtime.predictor import TorchPredictor
from shoal.serving.app import create_app
from shoal.serving.offline import predict_file
from shoal.serving.settings import ServeSettings

FEATURES: list[dict[str, Any]] = [
    {"name": "price", "kind": "dense", "transform": "log1p", "bins": 4},
    {"name": "age", "kind": "dense", "transform": "standardize"},
    {"name": "user", "kind": "sparse", "buckets": 97},
    {"name": "tags", "kind": "sparse", "buckets": 31, "separator": "|"},
    {"name": "title", "kind": "text", "buckets": 211, "max_bytes": 32},
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DLRM bundle reading dense, sparse, list and text features, with its raw graph beside it."""
    tmp = tmp_path_factory.mktemp("raw-serving")
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": FEATURES,
                        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    encoder.fit([Chunk(synthetic_raw_rows(encoder, 500, seed=3), np.arange(1, 501), "fit")], BadRowSink("error"))
    torch.manual_seed(0)
    model = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
    with torch.no_grad():  # tables that matter: a wrong id would move the probability
        for name, p in model.named_parameters():
            if name.endswith("bag.weight"):
                torch.nn.init.normal_(p, std=0.5)
    folder = save_bundle(tmp / "bundle", model, encoder, cfg, {"train_base_rate": 0.3})
    export_raw_onnx(folder, parity_rows=64)
    return Path(folder)


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        out.append({"price": None if i % 5 == 0 else float(rng.normal() * 30),
                    "age": float(rng.integers(18, 90)) if i % 7 else None,
                    "user": None if i % 6 == 0 else (int(rng.integers(0, 10**6)) if i % 3 == 0 else f" u{i} "),
                    "tags": "|".join(f"t{int(t)}" for t in rng.integers(0, 50, i % 4)) or None,
                    "title": ["", "the coach saw a late goal", "été 中文 🙂 words", "x" * 80][i % 4]})
    return out


def _answers(client: TestClient, rows: list[dict[str, Any]]) -> np.ndarray:
    r = client.post("/predict", json={"rows": rows})
    assert r.status_code == 200, r.text
    return np.array([p["probability"] for p in r.json()["predictions"]])


@pytest.fixture(scope="module")
def clients(exported: Path) -> Any:
    with TestClient(create_app(exported, ServeSettings(backend="raw"))) as raw, \
            TestClient(create_app(exported, ServeSettings(backend="torch"))) as torch_path:
        yield raw, torch_path


def test_raw_graph_answers_equal_the_encoder_path(clients: Any) -> None:
    raw, torch_path = clients
    assert raw.get("/model").json()["backend"] == RAW_BACKEND
    assert torch_path.get("/model").json()["backend"] == "torch"
    for n, seed in ((1, 0), (5, 1), (40, 2), (200, 3)):  # row dicts (<= 32 rows) and tables
        rows = _rows(n, seed)
        np.testing.assert_allclose(_answers(raw, rows), _answers(torch_path, rows), rtol=0, atol=1e-5)


def test_bad_input_is_refused_as_before(clients: Any) -> None:
    raw, torch_path = clients
    good = _rows(1, 0)[0]
    for bad in ({**good, "price": 1e39}, {**good, "age": "12"}, {**good, "extra": 1},
                {k: v for k, v in good.items() if k != "title"}, {**good, "user": 1.5}):
        a = raw.post("/predict", json={"rows": [good, bad]})
        b = torch_path.post("/predict", json={"rows": [good, bad]})
        assert a.status_code == b.status_code == 422
        assert a.json() == b.json()
    r = raw.post("/predict", content=b'{"rows": [{"price": Infinity}]}', headers={"content-type": "application/json"})
    assert r.status_code == 422


def test_an_id_longer_than_the_export_takes_the_encoder_path(clients: Any) -> None:
    raw, torch_path = clients
    rows = [{**_rows(1, 0)[0], "user": "é" * 100}]  # 200 bytes: over the export's 64, under the server's 2048
    np.testing.assert_allclose(_answers(raw, rows), _answers(torch_path, rows), rtol=0, atol=1e-5)


def test_shoal_predict_through_the_raw_graph(exported: Path, tmp_path: Path) -> None:
    rows = [{**r, "user": None if r["user"] is None else str(r["user"])} for r in _rows(60, 4)]
    src = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    got = {}
    for backend in ("raw", "torch"):
        summary = predict_file(exported, src, tmp_path / f"{backend}.parquet", backend=backend)
        assert summary.backend == ("onnxruntime-raw" if backend == "raw" else "torch")
        got[backend] = pq.read_table(summary.out).column("probability").to_numpy()
    np.testing.assert_allclose(got["raw"], got["torch"], rtol=0, atol=1e-5)


def test_auto_measures_end_to_end_and_caches(exported: Path) -> None:
    bundle = load_bundle(exported)
    auto = select_end_to_end(bundle, exported, "auto", batch_sizes=(1, 64))
    assert auto.choice is not None and set(auto.choice.measured_ms[1]) == {RAW_BACKEND, "torch"}
    assert auto.backend.startswith("auto: ")
    doc = json.loads((exported / "onnx" / "backend-choice.json").read_text(encoding="utf-8"))
    assert len(doc["entries"]) == 1
    again = select_end_to_end(bundle, exported, "auto", batch_sizes=(1, 64))
    assert again.choice is not None and again.choice.cached


def test_routes_and_refusals(exported: Path, tmp_path: Path) -> None:
    bundle = load_bundle(exported)
    assert raw_graph_refusal(bundle, exported) is None
    e2e = EndToEndPredictor(TorchPredictor(bundle), select_end_to_end(bundle, exported, "raw").raw,
                            (Route(1, RAW_BACKEND), Route(9, "torch")))
    assert e2e.raw_for(8) is not None and e2e.raw_for(9) is None
    assert e2e.backend == "auto: onnxruntime-raw for 1-8 rows, torch for 9+ rows"
    bare = tmp_path / "bare"
    save_bundle(bare, bundle.model, bundle.encoder, bundle.config, bundle.meta)
    assert "shoal export RUN --raw" in str(raw_graph_refusal(bundle, bare))
    with pytest.raises(ValueError, match=r"--backend raw: no onnx/model.raw.onnx \(write it with: shoal export"):
        select_end_to_end(bundle, bare, "raw")
    assert select_end_to_end(bundle, bare, "auto").backend == "torch"  # no graph, no export: PyTorch


def test_a_number_also_read_as_ids_takes_the_one_row_feed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A column read as a number and as ids (``shoal inspect``'s ``c4`` and ``c4_id``): a request's integers go
    to the raw graph as row dicts (the one-row feed: ~0.9 -> 0.11 ms a row on adult's starter), with the answers of
    the table the encoder reads; a float there still goes as the table (13.0 is the id "13.0" in it)."""
    from shoal.serving.model import load_served

    features = [{"name": "n", "kind": "dense", "transform": "log1p"},
                {"name": "n_id", "column": "n", "kind": "sparse", "encoding": "vocab"},
                {"name": "shop", "kind": "sparse", "buckets": 31}]
    cfg = parse_config({"data": {"train": "unused.csv"}, "label": {"column": "y"}, "features": features,
                        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]}})
    encoder = Encoder(cfg.features, cfg.label)
    fit = pa.table({"n": pa.array([str(i % 40) for i in range(400)]), "shop": [f"s{i % 7}" for i in range(400)],
                    "y": ["0", "1"] * 200})
    encoder.fit([Chunk(fit, np.arange(1, 401), "fit")], BadRowSink("error"))
    torch.manual_seed(0)
    model = build(cfg.model, encoder.dense_dim, encoder.buckets, encoder.outputs, encoder.sequence_slots)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bag.weight"):
                torch.nn.init.normal_(p, std=0.5)
    folder = save_bundle(tmp_path / "bundle", model, encoder, cfg, {"train_base_rate": 0.3})
    export_raw_onnx(folder, parity_rows=64)
    served = load_served(folder, tmp_path, 100, 1000, backend="raw")
    raw = served.predictor.raw_for(1)
    assert served.schema.shared_columns and raw is not None
    rows = [served.schema.parse(json.dumps({"rows": [r]}).encode()) for r in
            ({"n": 7, "shop": "s1"}, {"n": None, "shop": "s2"}, {"n": 39, "shop": None}, {"n": 1000, "shop": "s3"})]
    assert all(served.schema.as_dicts_safe(r) for r in rows)
    for r in rows:
        np.testing.assert_allclose(served._predict_raw(r), raw.predict_rows(served.schema.table(r)), atol=1e-7)
    floats = served.schema.parse(json.dumps({"rows": [{"n": 7.0, "shop": "s1"}]}).encode())
    assert not served.schema.as_dicts_safe(floats)

    def no_table(rows: Any) -> Any:
        raise AssertionError("the table path")

    monkeypatch.setattr(served.schema, "table", no_table)
    assert served._predict_raw(rows[0]) is not None  # answered as row dicts, without building the table
