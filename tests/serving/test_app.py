"""Serving end to end: the app in-process (validation, limits, batching, hot swap, metrics, errors), `shoal predict`
and its parity with the server, and one real `shoal serve` process (SIGHUP reload, clean shutdown)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from shoal.artifacts.bundle import load_bundle, save_bundle
from shoal.cli import main as cli
from shoal.config import parse_config
from shoal.data.readers import BadRowSink
from shoal.data.stream import batches
from shoal.data.synthetic import SynthSpec, generate
from shoal.serving.app import ServeSettings, create_app
from shoal.training.loop import Trainer

with warnings.catch_warnings():  # starlette asks for httpx2 here; the client works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

T = TypeVar("T")
TOKEN = "test-admin-token"
PROBA_TOLERANCE = 1e-6  # server vs file vs bundle: float32 networks give equal results up to batch composition


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Output as on a wide terminal, so assertions see whole lines."""
    monkeypatch.setattr(cli.console, "_width", 300)


# -- a tiny bundle: 3 dense, 3 sparse ids, 1 list of ids, 1 text ------------------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("serve")
    raw = folder / "raw.parquet"
    generate(raw, SynthSpec(rows=4000, dense=3, sparse=4, base_rate=0.2, max_cardinality=300, seed=3))
    table = pq.read_table(raw)
    title = pc.binary_join_element_wise(pa.array(["ad ", "annonce ", "Anzeige für "] * 1333 + ["ad "]),
                                        pc.fill_null(table.column("s0"), "?"), "")
    path = folder / "clicks.parquet"
    pq.write_table(table.append_column("title", title), path)
    return path


def _config(data: Path, seed: int = 0) -> dict[str, Any]:
    return {
        "name": "serve-test",
        "data": {"train": str(data), "valid_fraction": 0.2, "chunk_rows": 1000},
        "label": {"column": "label"},
        "features": [{"name": f"d{i}", "kind": "dense", "transform": "log1p"} for i in range(3)]
        + [{"name": f"s{i}", "kind": "sparse", "buckets": 512} for i in range(3)]
        + [{"name": "s3", "kind": "sparse", "buckets": 512, "separator": "|"},
           {"name": "title", "kind": "text", "buckets": 1024, "max_bytes": 64}],
        "model": {"name": "dlrm", "embedding_dim": 4, "bottom_mlp": [8], "top_mlp": [8]},
        "train": {"epochs": 1, "batch_size": 256, "seed": seed, "checkpoint_every": 1000, "threads": 1,
                  "pictures": False},  # no PNGs (~1 s a fit): a served bundle never reads them
    }


@pytest.fixture(scope="module")
def bundle_v1(data: Path) -> Path:
    return Trainer(parse_config(_config(data), source="test"), data.parent / "run").fit().bundle


@pytest.fixture(scope="module")
def bundle_v2(bundle_v1: Path) -> Path:
    """A second version of the same model: the same encoder, different weights."""
    b = load_bundle(bundle_v1)
    with torch.no_grad():
        for p in b.model.parameters():
            p.add_(0.05)
    return save_bundle(bundle_v1.parent.parent / "v2" / "bundle", b.model, b.encoder, b.config, b.meta)


@pytest.fixture(scope="module")
def rows(data: Path) -> list[dict[str, Any]]:
    """The first 40 rows of the file as JSON rows (label left out)."""
    return pq.read_table(data).slice(0, 40).drop(["label"]).to_pylist()


@pytest.fixture(scope="module")
def client(bundle_v1: Path) -> Iterator[TestClient]:
    app = create_app(bundle_v1, ServeSettings(admin_token=TOKEN, max_rows_per_request=50, max_body_bytes=20_000,
                                              max_text_bytes=100, max_wait_ms=1))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _served(app: Any, fn: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run ``fn`` with an async client on the app, its lifespan (the batcher) started."""
    async def main() -> T:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shoal") as c:
                return await fn(c)

    return asyncio.run(main())


def _proba(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([p["probability"] for p in response.json()["predictions"]])


def _file_proba(bundle: Path, data: Path, n: int) -> np.ndarray:
    b = load_bundle(bundle)
    batch = next(batches(data, b.config.data, b.encoder, BadRowSink("error"), with_label=False))
    return b.predict_proba(batch)[:n]


# -- predictions and parity ------------------------------------------------------------------------------------
def test_predict_equals_bundle_and_shoal_predict(client: TestClient, rows: list[dict[str, Any]], data: Path,
                                                 bundle_v1: Path, tmp_path: Path) -> None:
    served = _proba(client.post("/predict", json={"rows": rows}))
    one_by_one = np.concatenate([_proba(client.post("/predict", json={"rows": [r]})) for r in rows[:5]])
    np.testing.assert_allclose(served, _file_proba(bundle_v1, data, len(rows)), atol=PROBA_TOLERANCE, rtol=0)
    np.testing.assert_allclose(one_by_one, served[:5], atol=PROBA_TOLERANCE, rtol=0)

    runner = CliRunner()
    for out in (tmp_path / "scores.parquet", tmp_path / "scores.csv"):
        result = runner.invoke(cli.app, ["predict", str(bundle_v1), str(data), "-o", str(out), "--keep", "s0"])
        assert result.exit_code == 0, result.output
        assert "4,000 rows predicted of 4,000 read" in result.output
        assert "probability: that label 'label' is '1' or '1.0' or 'true' or 'True'" in " ".join(result.output.split())
        table = pq.read_table(out) if out.suffix == ".parquet" else pacsv.read_csv(out)
        assert table.column_names == ["line", "s0", "probability"] and table.num_rows == 4000
        assert table.column("line").to_pylist()[:3] == [1, 2, 3]
        np.testing.assert_allclose(table.column("probability").to_numpy()[:len(rows)], served,
                                   atol=PROBA_TOLERANCE, rtol=0)
    body = client.post("/predict", json={"rows": rows[:1]}).json()
    assert body["model"] == "serve-test/dlrm" and len(body["version"]) == 12


def test_an_exported_bundle_is_served_by_onnx_runtime(bundle_v1: Path, rows: list[dict[str, Any]], data: Path,
                                                      tmp_path: Path) -> None:
    import shutil

    from shoal.export.onnx import export_onnx

    exported = shutil.copytree(bundle_v1, tmp_path / "bundle")
    export_onnx(exported, int8=True)
    expected = _file_proba(bundle_v1, data, len(rows))
    # auto used to mean "ONNX Runtime once exported"; it now times torch and ONNX Runtime (fp32) and routes each
    # batch by its size, so which one answers depends on this machine: /model names the routes and the figures,
    # and either backend is within the fp32 export's tolerance
    for backend, name, tolerance in (("auto", "auto: ", 1e-5), ("onnx-int8", "onnxruntime-int8", 0.1),
                                     ("torch", "torch", PROBA_TOLERANCE)):
        app = create_app(exported, ServeSettings(backend=backend))  # type: ignore[arg-type]
        with TestClient(app) as c:
            described = c.get("/model").json()
            assert described["backend"] == name or (backend == "auto" and described["backend"].startswith(name))
            if backend == "auto":
                choice = described["backend_choice"]
                assert choice["routes"][0]["min_rows"] == 1 and set(choice["measured_ms"]) == {"1", "256"}
                assert all(set(ms) == {"torch", "onnxruntime"} for ms in choice["measured_ms"].values())
            else:
                assert described["backend_choice"] is None
            np.testing.assert_allclose(_proba(c.post("/predict", json={"rows": rows})), expected, atol=tolerance)
    out = tmp_path / "scores.parquet"
    result = CliRunner().invoke(cli.app, ["predict", str(exported), str(data), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "backend: auto: " in result.output and "median ms per call: 1000 rows torch" in result.output
    np.testing.assert_allclose(pq.read_table(out).column("probability").to_numpy()[:len(rows)], expected, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="shoal export RUN --onnx"):
        create_app(bundle_v1, ServeSettings(backend="onnx"))


def test_shoal_predict_quarantines_bad_rows(bundle_v1: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("d0,d1,d2,s0,s1,s2,s3,title\n"
                   "1,2,3,a,b,c,x|y,hello\n"
                   "oops,2,3,a,b,c,x,hello\n"
                   ",,,,,,,\n", encoding="utf-8")
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(cli.app, ["predict", str(bundle_v1), str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 rows predicted of 3 read" in result.output and "1 bad rows quarantined" in result.output
    assert pacsv.read_csv(out).column("line").to_pylist() == [2, 4]
    (bad,) = [json.loads(line) for line in (tmp_path / "p.quarantine.jsonl").read_text().splitlines()]
    assert bad["line"] == 3 and bad["column"] == "d0" and bad["value"] == "oops" and "not a number" in bad["reason"]
    result = CliRunner().invoke(cli.app, ["predict", str(bundle_v1), str(src), "-o", str(tmp_path / "p.txt")])
    assert result.exit_code == 2 and "*.parquet or *.csv" in result.output


def test_unseen_ids_and_missing_values_are_fine(client: TestClient, rows: list[dict[str, Any]]) -> None:
    row = {**rows[0], "s0": "never-seen-in-training", "s1": 123456789, "s3": "new|ids|here", "d0": None,
           "s2": None, "title": ""}
    (p,) = _proba(client.post("/predict", json={"rows": [row]}))
    assert 0.0 < p < 1.0


def test_the_fastapi_route_answers_as_the_fast_path(client: TestClient, rows: list[dict[str, Any]]) -> None:
    """POST /predict skips FastAPI's layers; its FastAPI route (for the spec, mounted apps) gives the same answers."""
    bodies = [json.dumps({"rows": rows[:3]}).encode(), b'{"rows": [{"nope": 1}]}', b"{not json",
              b'{"rows": [' + b" " * 30_000 + b"]}"]
    headers = {"content-type": "application/json"}
    fast = [client.post("/predict", content=b, headers=headers) for b in bodies]
    app = client.app
    saved, app.fast_predict = app.fast_predict, None  # type: ignore[attr-defined]
    try:
        routed = [client.post("/predict", content=b, headers=headers) for b in bodies]
    finally:
        app.fast_predict = saved  # type: ignore[attr-defined]
    assert [r.status_code for r in fast] == [200, 422, 422, 413]
    assert [(r.status_code, r.json()) for r in routed] == [(r.status_code, r.json()) for r in fast]


# -- validation and limits -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "field", "words"), [
    ({"d1": "abc"}, "d1", "must be a number or null, not 'abc'"),
    ({"s0": True}, "s0", "must be a string, an integer or null"),
    ({"d0": float("inf")}, "d0", "must be a number"),
    ({"title": None}, "title", "must be a string"),
    ({"title": "é" * 51}, "title", "102 bytes is over the limit of 100 bytes"),
    ({"colour": "red"}, "colour", "unknown field 'colour'; this model's fields are: d0, d1, d2"),
    ({"s2": ...}, "s2", "missing field 's2' (sparse)"),
])
def test_bad_fields_are_422_naming_the_field(client: TestClient, rows: list[dict[str, Any]], change: dict[str, Any],
                                             field: str, words: str) -> None:
    row = {k: v for k, v in {**rows[0], **change}.items() if v is not ...}
    body = json.dumps({"rows": [rows[1], row]}, allow_nan=True)
    r = client.post("/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "rows", 1, field]
    assert field in err["msg"] and words in err["msg"], err["msg"]


def test_request_limits(client: TestClient, rows: list[dict[str, Any]]) -> None:
    r = client.post("/predict", json={"rows": rows * 2})  # 80 rows, limit 50 (and under the body limit)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "rows"]
    assert "at most 50" in r.json()["detail"][0]["msg"]
    r = client.post("/predict", content=b'{"rows": [' + b" " * 30_000 + b"]}")
    assert r.status_code == 413 and "over the limit of 20,000 bytes" in r.json()["detail"]
    assert client.post("/predict", json={"rows": []}).status_code == 422
    r = client.post("/predict", content=b"{not json")
    assert r.status_code == 422 and "Invalid JSON" in r.json()["detail"][0]["msg"]
    assert client.get("/healthz").json() == {"status": "ok"}  # and the server is still fine


def test_internal_error_is_500_with_an_id_and_no_trace(bundle_v1: Path, rows: list[dict[str, Any]],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(bundle_v1)

    def broken(batch: Any) -> np.ndarray:
        raise RuntimeError("secret internal detail")

    app.state.service.model.predictor.predict_proba = broken
    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR, "shoal.serving"):
        r = c.post("/predict", json={"rows": rows[:2]})
    assert r.status_code == 500
    error_id = r.json()["error_id"]
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    (record,) = [rec for rec in caplog.records if error_id in rec.getMessage()]
    assert record.exc_info is not None and "secret internal detail" in str(record.exc_info[1])


# -- admin, hot swap -------------------------------------------------------------------------------------------
def test_admin_needs_the_token(client: TestClient, bundle_v1: Path) -> None:
    assert client.post("/admin/reload").status_code == 401
    assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    r = client.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, json={"ref": "/no/such/bundle"})
    assert r.status_code == 400 and "still serving" in r.json()["detail"]
    with TestClient(create_app(bundle_v1)) as c:  # no token given at start: admin is off
        r = c.post("/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403 and "--admin-token" in r.json()["detail"]


def test_hot_swap_under_load_fails_no_request(bundle_v1: Path, bundle_v2: Path, data: Path,
                                              rows: list[dict[str, Any]]) -> None:
    app = create_app(bundle_v1, ServeSettings(admin_token=TOKEN, max_wait_ms=1))
    expected = {v: _file_proba(b, data, len(rows)) for v, b in (("v1", bundle_v1), ("v2", bundle_v2))}
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def load(c: httpx.AsyncClient) -> tuple[list[tuple[str, int, np.ndarray]], list[dict[str, Any]]]:
        seen: list[tuple[str, int, np.ndarray]] = []
        stop = asyncio.Event()

        async def user(k: int) -> None:
            while not stop.is_set():
                i = len(seen) % len(rows)
                r = await c.post("/predict", json={"rows": rows[i:i + 2]})
                seen.append((r.json().get("version", "") if r.status_code == 200 else "", i, _proba(r)))

        users = [asyncio.create_task(user(k)) for k in range(8)]
        swaps = []
        for ref in (bundle_v2, bundle_v1, bundle_v2):
            await asyncio.sleep(0.15)
            swaps.append((await c.post("/admin/reload", headers=auth, json={"ref": str(ref)})).json())
        await asyncio.sleep(0.15)
        stop.set()
        await asyncio.gather(*users)
        return seen, swaps

    seen, swaps = _served(app, load)
    v1, v2 = swaps[0]["previous"], swaps[0]["version"]
    assert v1 != v2 and [s["version"] for s in swaps] == [v2, v1, v2]
    names = {v1: "v1", v2: "v2"}
    assert len(seen) > 50 and {v for v, _, _ in seen} == {v1, v2}  # every request answered 200, by both versions
    for version, i, got in seen:  # each answer is exactly its version's
        np.testing.assert_allclose(got, expected[names[version]][i:i + 2], atol=PROBA_TOLERANCE, rtol=0)
    assert seen[-1][0] == v2


# -- batching and metrics --------------------------------------------------------------------------------------
def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_batching_merges_concurrent_requests_and_splits_big_ones(bundle_v1: Path, data: Path,
                                                                 rows: list[dict[str, Any]]) -> None:
    app = create_app(bundle_v1, ServeSettings(max_batch_rows=8, max_wait_ms=50))
    expected = _file_proba(bundle_v1, data, len(rows))

    async def burst(c: httpx.AsyncClient) -> tuple[list[httpx.Response], httpx.Response, str]:
        singles = await asyncio.gather(*(c.post("/predict", json={"rows": [r]}) for r in rows[:16]))
        big = await c.post("/predict", json={"rows": rows[:20]})
        return list(singles), big, (await c.get("/metrics")).text

    singles, big, metrics = _served(app, burst)
    np.testing.assert_allclose(np.concatenate([_proba(r) for r in singles]), expected[:16], atol=PROBA_TOLERANCE,
                               rtol=0)
    np.testing.assert_allclose(_proba(big), expected[:20], atol=PROBA_TOLERANCE, rtol=0)  # split in 8 + 8 + 4
    batches_run = _metric(metrics, "shoal_batch_rows_count")
    assert _metric(metrics, "shoal_batch_rows_sum") == 36
    assert batches_run <= 16 / 8 + 3 + 1, metrics  # 16 singles merged into ~2 batches (+1 if a burst was cut)
    assert _metric(metrics, 'shoal_batch_rows_bucket{le="8.0"}') == batches_run  # no batch over max_batch_rows
    assert _metric(metrics, "shoal_batch_requests_sum") == 16 + 3


def test_metrics_health_model_and_openapi(client: TestClient, rows: list[dict[str, Any]]) -> None:
    client.post("/predict", json={"rows": rows[:3]})
    client.post("/predict", json={"rows": [{"nope": 1}]})
    text = client.get("/metrics").text
    assert _metric(text, 'shoal_requests_total{endpoint="/predict",status="200"}') >= 1
    assert _metric(text, 'shoal_errors_total{endpoint="/predict",status="422"}') >= 1
    for name in ("shoal_request_latency_seconds_bucket", "shoal_batch_rows_bucket", "shoal_queue_rows",
                 "shoal_model_info", "shoal_predicted_rows_total"):
        assert name in text, name
    assert client.get("/readyz").json()["status"] == "ready"
    info = client.get("/model").json()
    assert info["output"] == {"kind": "binary", "field": "probability", "of": "label 'label' is '1' or "
                              "'1.0' or 'true' or 'True'"}  # what the probability is of
    assert [f["name"] for f in info["fields"]] == ["d0", "d1", "d2", "s0", "s1", "s2", "s3", "title"]
    assert info["settings"]["max_rows_per_request"] == 50 and "admin_token" not in info["settings"]
    spec = client.get("/openapi.json").json()
    request = spec["components"]["schemas"]["PredictRequest"]
    assert request["properties"]["rows"]["maxItems"] == 50
    assert set(spec["components"]["schemas"]["Row"]["properties"]) == set(info_names(info))
    assert "/admin/reload" in spec["paths"] and "/metrics" in spec["paths"]


def info_names(info: dict[str, Any]) -> list[str]:
    return [f["name"] for f in info["fields"]]


def test_docs_python_example_runs(bundle_v1: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    import re

    from shoal.artifacts.registry import Registry

    doc = (Path(__file__).resolve().parents[2] / "docs" / "serving.md").read_text(encoding="utf-8")
    (code,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    record = Registry(tmp_path / "shoal-runs").create_run("docs", {}, kind="train")  # latest run: the test bundle
    (record.artifact_dir / "bundle").symlink_to(bundle_v1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/serving.md", "exec"), {})  # noqa: S102 - our own docs
    assert len(capsys.readouterr().out.strip()) == 12


# -- one real server -------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_server_serves_reloads_on_sighup_and_stops(bundle_v1: Path, rows: list[dict[str, Any]],
                                                       tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SHOAL_ADMIN_TOKEN": TOKEN}
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", str(bundle_v1), "--port", str(port),
                             "--threads", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert _proba(httpx.post(f"{url}/predict", json={"rows": rows[:3]})).shape == (3,)
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and r.json()["reloads"] == 1  # the token came from SHOAL_ADMIN_TOKEN
        proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while httpx.get(f"{url}/model").json()["reloads"] < 2:
            assert time.time() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        assert httpx.post(f"{url}/predict", json={"rows": rows[:1]}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
        log.close()
    text = (tmp_path / "server.log").read_text()
    # uvicorn shuts down gracefully, then re-raises SIGTERM to end as a SIGTERM'd process would
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in text, text
    assert "serving serve-test/dlrm" in text and "Traceback" not in text
