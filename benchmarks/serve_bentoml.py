"""The BentoML peer of ``benchmarks/serve.py``: the bundle's Python encoder + ONNX Runtime as a BentoML service.

Run by the benchmark as ``VENV/bin/bentoml serve serve_bentoml:ShoalPeer --port P`` from this folder, with
``SHOAL_BENCH_BUNDLE`` naming the bundle (exported with ``shoal export --onnx``). One worker, one request per model
call (BentoML's adaptive batching left off, as in ``naive-onnx``), access log off as for every other system.
``POST /predict`` takes ``{"rows": [...]}``, the body ``shoal serve`` takes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
from serve_peers import encoded_predictor


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class ShoalPeer:
    def __init__(self) -> None:
        self.predict_rows = encoded_predictor(Path(os.environ["SHOAL_BENCH_BUNDLE"]), "onnx")

    @bentoml.api
    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"predictions": [{"probability": p} for p in self.predict_rows(rows)]}
