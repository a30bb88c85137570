"""``shoal demo``: synthetic click log -> DLRM -> distilled student -> ONNX -> served, on one screen.

Also the config the demo trains on the synthetic click log (``configs/synthetic.yaml`` is the same in YAML), its
distillation step (teacher against student, side by side) and its serving step (a real server, queried).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shoal.artifacts.registry import RunRecord
from shoal.cli.common import (
    HomeOption,
    console,
    home_dir,
    split_metrics,
    train_with_progress,
    training_progress,
    user_errors,
)
from shoal.config import RunConfig, parse_config
from shoal.training.callbacks import Callbacks
from shoal.training.progress import RichCallbacks

if TYPE_CHECKING:
    from shoal.runtime.latency import BenchResult

__all__ = ["DEMO_STUDENT", "Exchange", "Side", "demo", "distil_and_compare", "register", "serve_and_query",
           "synthetic_config"]


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the ``shoal`` command line."""
    app.command()(demo)


def demo(
    rows: int = 200_000,
    home: HomeOption = None,
    workdir: Annotated[Path, typer.Option(help="Where the synthetic data goes.")] = Path("data"),
) -> None:
    """Synthetic click log -> train DLRM -> evaluate against the Bayes-optimal ceiling -> distil a student ->
    export it to ONNX -> teacher vs student, quality and latency side by side -> serve the student on
    127.0.0.1, query it (one request malformed) and shut the server down."""
    from shoal.data.synthetic import SynthSpec, generate, load_truth, truth_path
    from shoal.training import runs

    with user_errors():
        started = time.perf_counter()
        h = home_dir(home)
        data = workdir / f"synthetic-{rows}.parquet"
        if not truth_path(data).exists():
            console.rule("1. synthesize a click log")
            workdir.mkdir(parents=True, exist_ok=True)
            with Progress(TextColumn("synth"), BarColumn(), TimeElapsedColumn(), console=console) as progress:
                task = progress.add_task("synth", total=rows)
                generate(data, SynthSpec(rows=rows), progress=lambda n: progress.update(task, completed=n))
        truth = load_truth(data)
        console.print(f"{data}: {truth.rows:,} rows, base rate {truth.base_rate:.4f}")
        console.rule("2. train DLRM")
        cfg = synthetic_config(data.resolve())
        record = train_with_progress(lambda cb: runs.train(cfg, h, cb))
        console.rule("3. evaluate")
        m = split_metrics(record.metrics)["valid"]
        table = Table(title=f"DLRM on the synthetic log (run {record.run_id}), validation split")
        for col in ("metric", "DLRM", "Bayes-optimal ceiling", "base rate predictor"):
            table.add_column(col, justify="right")
        table.add_row("AUC", f"{m['auc']:.4f}", f"{truth.bayes_auc:.4f}", "0.5000")
        table.add_row("NE", f"{m['ne']:.4f}", f"{truth.bayes_ne:.4f}", "1.0000")
        table.add_row("calibration", f"{m['calibration']:.3f}", "1.000", "1.000")
        table.add_row("log loss", f"{m['logloss']:.4f}", f"{truth.bayes_logloss:.4f}", "")
        console.print(table)
        s = record.summary
        console.print(f"trained {s['rows_trained']:,} rows in {s['train_seconds']:.1f} s "
                      f"({s['train_rows_per_s']:,.0f} rows/s)")
        console.rule(f"4. distil a {DEMO_STUDENT} student, export it to ONNX")
        with training_progress() as progress:
            student, sides = distil_and_compare(record.run_id, h, RichCallbacks(progress))
        console.rule("5. teacher vs student")
        console.print(_comparison_table(record, student, sides))
        console.rule("6. serve the student on 127.0.0.1 and query it")
        backend, exchanges = serve_and_query(student.artifact_dir / "bundle", data, h)
        table = Table(title=f"shoal serve {student.run_id} ({backend}), then shut down")
        for col in ("request", "status", "answer"):
            table.add_column(col)
        for ex in exchanges:
            if "predictions" in ex.body:
                answer = f"click probability {ex.body['predictions'][0]['probability']:.4f}"
            elif isinstance(ex.body.get("detail"), list):  # 422: pydantic's errors, each naming its field
                answer = "; ".join(str(e.get("msg")) for e in ex.body["detail"])
            else:
                answer = json.dumps(ex.body.get("detail", ex.body))
            table.add_row(ex.what, str(ex.status), answer)
        console.print(table)
        console.print(f"demo took {time.perf_counter() - started:.0f} s")
        console.print(f"next: shoal show {student.run_id}   |   shoal compress {record.run_id} --budget-ms 0.1   |   "
                      "shoal runs")


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
    bench: BenchResult  # end to end: raw row -> answer (encoder included, or inside the raw graph)
    model: BenchResult | None = None  # the model call alone, on encoded rows (None: the raw graph has no such call)


def distil_and_compare(teacher_run: str, home: Path, callbacks: Callbacks | None = None,
                       student: str = DEMO_STUDENT, seconds: float = 1.0) -> tuple[RunRecord, list[Side]]:
    """Distil ``student`` from the teacher, export it to ONNX (and its raw graph), and measure teacher (PyTorch)
    against student (PyTorch, ONNX Runtime after the Python encoder, and the raw graph): p50/p99 latency at batch 1
    and rows/s at batch 256 **end to end** (a raw row in, the answer out), one thread each; the model call alone
    beside it."""
    from shoal.artifacts.bundle import load_bundle
    from shoal.artifacts.registry import Registry
    from shoal.distill import distill
    from shoal.export.onnx import export_onnx, sample_rows
    from shoal.export.raw import export_raw_onnx
    from shoal.export.raw_runtime import bench_end_to_end, raw_timing_rows
    from shoal.runtime.latency import bench_bundle

    teacher = Registry(home).get(teacher_run)
    record = distill(teacher.run_id, student, home, callbacks=callbacks)
    t_dir, s_dir = teacher.artifact_dir / "bundle", record.artifact_dir / "bundle"
    report = export_onnx(s_dir)
    export_raw_onnx(s_dir, form="auto")  # the faster id hashing, timed; parity with the encoder + PyTorch checked
    t_bundle, s_bundle = load_bundle(t_dir), load_bundle(s_dir)
    rows, _ = sample_rows(t_bundle, t_dir, rows=256)
    s_rows, _ = sample_rows(s_bundle, s_dir, rows=256)
    (t_torch,) = bench_bundle(t_dir, rows, systems=["torch"], seconds=seconds, isolate=False)
    s_torch, s_onnx = bench_bundle(s_dir, s_rows, report.dir, systems=["torch", "onnx-fp32"], seconds=seconds,
                                   isolate=False)
    raw_rows, _ = raw_timing_rows(t_bundle, t_dir, 256)
    (t_e2e,) = [r for r in bench_end_to_end(t_dir, raw_rows, seconds=seconds) if r.system == "e2e-torch"]
    s_e2e = {r.system: r for r in bench_end_to_end(s_dir, raw_rows, seconds=seconds)}
    t_name = teacher.config["model"]["name"]
    return record, [Side(f"teacher: {t_name} (PyTorch)", teacher.run_id, teacher.metrics, t_e2e, t_torch),
                    Side(f"student: {student} (PyTorch)", record.run_id, record.metrics, s_e2e["e2e-torch"], s_torch),
                    Side(f"student: {student} (ONNX)", record.run_id, record.metrics, s_e2e["e2e-onnx-fp32"], s_onnx),
                    Side(f"student: {student} (raw graph)", record.run_id, record.metrics, s_e2e["e2e-raw"])]


def _comparison_table(teacher: RunRecord, student: RunRecord, sides: list[Side]) -> Table:
    """Teacher against student: quality, latency, size, speed-up and the share of the AUC gain kept."""
    table = Table(title=f"teacher {teacher.run_id} vs student {student.run_id} (validation split; latency: "
                        "1 thread, end to end: a raw row in, the answer out)")
    table.add_column("")
    for side in sides:
        table.add_column(side.name, justify="right")
    cells = [("AUC", lambda x: f"{x.metrics['valid_auc']:.4f}"), ("NE", lambda x: f"{x.metrics['valid_ne']:.4f}"),
             ("p50 ms (batch 1)", lambda x: f"{x.bench.p50_ms:.3f}"),
             ("p99 ms (batch 1)", lambda x: f"{x.bench.p99_ms:.3f}"),
             ("rows/s (batch 256)", lambda x: f"{x.bench.rows_per_s:,.0f}"),
             ("model call alone p99 ms", lambda x: f"{x.model.p99_ms:.3f}" if x.model is not None else "-"),
             ("size MiB", lambda x: f"{x.bench.size_mib:.2f}")]
    for label, cell in cells:
        table.add_row(label, *(cell(side) for side in sides))
    base = sides[0]
    table.add_row("p99 speed-up", *(f"{base.bench.p99_ms / side.bench.p99_ms:.1f}x" for side in sides))
    gain = (base.metrics["valid_auc"] - 0.5)
    table.add_row("AUC gain kept", *(f"{(side.metrics['valid_auc'] - 0.5) / gain:.1%}" if gain > 0 else "-"
                                     for side in sides))
    return table


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
    import threading
    import urllib.error
    import urllib.request

    import pyarrow.parquet as pq
    import uvicorn

    from shoal.runtime.http_load import free_port
    from shoal.serving.app import ServeSettings, create_app

    app = create_app(bundle_dir, ServeSettings(), home)
    port = free_port()
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
