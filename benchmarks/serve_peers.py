"""The peers of ``benchmarks/serve.py``: the same bundle served the way a team would without shoal.

- :func:`naive_app`: a plain FastAPI endpoint (``def``, run in FastAPI's thread pool) that encodes each request's
  rows with the bundle's Python encoder and runs the model once per request, PyTorch (``naive``) or ONNX Runtime on
  ``model.onnx`` (``naive-onnx``, the design before the raw graph). No batching, no validation.
- ``serve_bentoml.py`` (``bentoml``): the same encoder + ONNX Runtime call as a BentoML service, served by
  ``bentoml serve`` from the virtual environment made by ``make install-bentoml``.

Both call :func:`encoded_predictor`, so every peer computes exactly what ``shoal predict`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 1  # torch / ONNX Runtime threads per server: the load generator needs the other core


def encoded_predictor(bundle_dir: Path, backend: str = "torch") -> Callable[[list[dict[str, Any]]], list[float]]:
    """JSON rows -> probabilities: the bundle's Python encoder, then PyTorch (``torch``) or ``model.onnx`` in ONNX
    Runtime (``onnx``), one call for the rows given."""
    import pyarrow as pa

    from shoal.artifacts.bundle import load_bundle
    from shoal.data.readers import BadRowSink, Chunk
    from shoal.runtime.onnx import OnnxPredictor

    bundle = load_bundle(bundle_dir)
    schema = pa.schema([(f.column, pa.float64() if f.kind == "dense" else pa.string())
                        for f in bundle.encoder.features])
    model: Any = OnnxPredictor(bundle_dir, threads=THREADS) if backend == "onnx" else bundle

    def predict(rows: list[dict[str, Any]]) -> list[float]:
        table = pa.Table.from_pylist(rows, schema=schema)
        batch = bundle.encoder.encode(Chunk(table, np.arange(table.num_rows), "request"), BadRowSink("error"),
                                      with_label=False)
        return [float(p) for p in model.predict_proba(batch)]

    return predict


def naive_app(bundle_dir: Path, backend: str = "torch") -> Any:
    """A plain FastAPI endpoint around :func:`encoded_predictor`: what ``shoal serve`` is compared with."""
    from fastapi import FastAPI

    predict_rows = encoded_predictor(bundle_dir, backend)
    app = FastAPI()

    @app.post("/predict")
    def predict(body: dict[str, Any]) -> dict[str, Any]:
        return {"predictions": [{"probability": p} for p in predict_rows(body["rows"])]}

    @app.get("/readyz")
    def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app
