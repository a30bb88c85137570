"""The demo: the config it trains on the synthetic click log (``configs/synthetic.yaml`` is the same in YAML),
and its distillation step (teacher against student, side by side)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoal.artifacts.registry import RunRecord
from shoal.config import RunConfig, parse_config
from shoal.training.callbacks import Callbacks

if TYPE_CHECKING:
    from shoal.runtime.latency import BenchResult

__all__ = ["DEMO_STUDENT", "Exchange", "Side", "distil_and_compare", "serve_and_query", "synthetic_config"]


def synthetic_config(train: Path, dense: int = 13, sparse: int = 26, buckets: int = 100_000) -> RunConfig:
    """DLRM on a log written by ``shoal synth``: counts get log1p, the last sparse column is a "|" list."""
    features: list[dict[str, object]] = [{"name": f"d{i}", "kind": "dense", "transform": "log1p"}
                                         for i in range(dense)]
    for i in range(sparse):
        f: dict[str, object] = {"name": f"s{i}", "kind": "sparse", "buckets": buckets}
        if i == sparse - 1:
            f["separator"] = "|"
        features.append(f)
    return parse_config({
        "name": "synthetic-dlrm",
        "data": {"train": str(train), "valid_fraction": 0.1, "chunk_rows": 65536},
        "label": {"column": "label"},
        "features": features,
        "model": {"name": "dlrm", "embedding_dim": 16, "bottom_mlp": [64, 32], "top_mlp": [128, 64]},
        "train": {"epochs": 2, "batch_size": 512, "lr": 0.001, "embedding_lr": 0.05, "seed": 0,
                  "checkpoint_every": 200, "early_stopping_patience": 1},
    }, source="synthetic_config")


DEMO_STUDENT = "logistic"  # the fast family; on the demo log it keeps most of DLRM's gain at a fraction of the cost


@dataclass
class Side:
    """One column of the demo's teacher-vs-student table: a bundle served one way, measured on this machine."""

    name: str
    run_id: str
    metrics: dict[str, Any]  # the run's valid_/test_ metrics
    bench: BenchResult


def distil_and_compare(teacher_run: str, home: Path, callbacks: Callbacks | None = None,
                       student: str = DEMO_STUDENT, seconds: float = 1.0) -> tuple[RunRecord, list[Side]]:
    """Distil ``student`` from the teacher, export it to ONNX, and measure teacher (PyTorch) against student
    (PyTorch and ONNX Runtime): p50/p99 latency at batch 1 and rows/s at batch 256, one thread each."""
    from shoal.artifacts.bundle import load_bundle
    from shoal.artifacts.registry import Registry
    from shoal.distill import distill
    from shoal.export.onnx import export_onnx, sample_rows
    from shoal.runtime.latency import bench_bundle

    teacher = Registry(home).get(teacher_run)
    record = distill(teacher.run_id, student, home, callbacks=callbacks)
    t_dir, s_dir = teacher.artifact_dir / "bundle", record.artifact_dir / "bundle"
    report = export_onnx(s_dir)
    rows, _ = sample_rows(load_bundle(t_dir), t_dir, rows=256)
    s_rows, _ = sample_rows(load_bundle(s_dir), s_dir, rows=256)
    (t_torch,) = bench_bundle(t_dir, rows, systems=["torch"], seconds=seconds, isolate=False)
    s_torch, s_onnx = bench_bundle(s_dir, s_rows, report.dir, systems=["torch", "onnx-fp32"], seconds=seconds,
                                   isolate=False)
    return record, [Side(f"teacher: {teacher.config['model']['name']} (PyTorch)", teacher.run_id, teacher.metrics,
                         t_torch),
                    Side(f"student: {student} (PyTorch)", record.run_id, record.metrics, s_torch),
                    Side(f"student: {student} (ONNX)", record.run_id, record.metrics, s_onnx)]


@dataclass
class Exchange:
    """One request the demo sent to its server and what came back."""

    what: str
    status: int
    body: dict[str, Any]


def serve_and_query(bundle_dir: Path, data: Path, home: Path, rows: int = 3,
                    timeout: float = 60.0) -> tuple[str, list[Exchange]]:
    """Serve ``bundle_dir`` with ``shoal serve``'s app on 127.0.0.1 (a free port), send it ``rows`` real rows of
    ``data``, one malformed request and a health check, then shut it down. Returns (backend, exchanges)."""
    import json
    import socket
    import threading
    import time
    import urllib.error
    import urllib.request

    import pyarrow.parquet as pq
    import uvicorn

    from shoal.serving.app import ServeSettings, create_app

    app = create_app(bundle_dir, ServeSettings(), home)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="shoal-demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo server did not start on 127.0.0.1:{port}")
        time.sleep(0.05)

    def call(what: str, path: str, body: dict[str, Any] | None = None) -> Exchange:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", method="POST" if body is not None else "GET",
            data=None if body is None else json.dumps(body).encode(), headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Exchange(what, response.status, json.loads(response.read()))
        except urllib.error.HTTPError as err:  # 4xx/5xx: the answer is the point of the malformed request
            return Exchange(what, err.code, json.loads(err.read()))

    try:
        table = pq.read_table(data).slice(0, rows)
        real = table.drop([c for c in ("label",) if c in table.column_names]).to_pylist()
        bad = {**real[0], next(iter(real[0])): "not a number"}  # a dense count sent as text
        exchanges = [call("GET /healthz", "/healthz")]
        exchanges += [call(f"POST /predict (row {i + 1})", "/predict", {"rows": [r]}) for i, r in enumerate(real)]
        exchanges.append(call("POST /predict (malformed)", "/predict", {"rows": [bad]}))
        backend = str(call("GET /model", "/model").body.get("backend", "?"))
    finally:
        server.should_exit = True
        thread.join(timeout)
    return backend, exchanges
