"""Serving a multiclass text bundle: the app and `shoal predict` answer the class and every class's probability,
equal to `bundle.predict_proba`; and a real `shoal serve --workers 2` on that bundle (both workers answer, SIGHUP
replaces them, answering every request a worker has read; `/admin/reload` answers 409)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shoal.artifacts.bundle import load_bundle
from shoal.cli import main as cli
from shoal.config import parse_config
from shoal.data.readers import BadRowSink, Chunk
from shoal.serving.app import ServeSettings, create_app
from shoal.training.loop import Trainer

with warnings.catch_warnings():  # starlette asks for httpx2 here; the client works the same
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
WORDS = {
    "World": "minister election border treaty capital troops",
    "Sports": "match goal season coach league striker",
    "Business": "shares profit market quarterly investors bank",
    "Sci/Tech": "software chip internet space research browser",
}
NOISE = ["the", "a", "of", "to", "in", "and", "said", "on", "for", "with"]
TOKEN = "test-admin-token"
PROBA_TOLERANCE = 1e-6


def _texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels = [CLASSES[int(k)] for k in rng.integers(4, size=n)]
    texts = [" ".join([*rng.choice(WORDS[c].split(), 3), *rng.choice(NOISE, 4)]).capitalize() + "." for c in labels]
    return texts, labels


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A headerless TSV: text, class."""
    path = tmp_path_factory.mktemp("serve-multiclass") / "topics.tsv"
    texts, labels = _texts(600, 0)
    path.write_text("".join(f"{t}\t{c}\n" for t, c in zip(texts, labels, strict=True)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def bundle(data: Path) -> Path:
    cfg = parse_config({
        "name": "topics",
        "data": {"train": str(data), "format": "tsv", "header": False, "columns": ["text", "class"],
                 "quoting": False, "valid_fraction": 0.2},
        "label": {"column": "class", "kind": "multiclass", "classes": CLASSES},
        "features": [{"name": "text", "kind": "text", "buckets": 4096, "ngram_min": 3, "ngram_max": 4}],
        "model": {"name": "bag", "embedding_dim": 4},
        "train": {"epochs": 2, "batch_size": 64, "lr": 0.01, "embedding_lr": 0.2, "seed": 0, "threads": 1,
                  "pictures": False},  # no PNGs: none is read
    }, source="test")
    return Trainer(cfg, data.parent / "run").fit().bundle


def _bundle_proba(bundle: Path, texts: list[str]) -> np.ndarray:
    b = load_bundle(bundle)
    chunk = Chunk(pa.table({"text": texts}), np.arange(1, len(texts) + 1), "test")
    return b.predict_proba(b.encoder.encode(chunk, BadRowSink("error"), with_label=False))


def _answers(predictions: list[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
    return [p["class"] for p in predictions], np.array([[p["probabilities"][c] for c in CLASSES]
                                                        for p in predictions])


def test_server_and_shoal_predict_answer_the_class_and_its_probabilities(bundle: Path, data: Path,
                                                                           tmp_path: Path) -> None:
    texts, _ = _texts(600, 0)
    expected = _bundle_proba(bundle, texts)
    assert expected.shape == (600, 4) and load_bundle(bundle).classes == CLASSES

    with TestClient(create_app(bundle, ServeSettings(max_rows_per_request=600))) as c:
        info = c.get("/model").json()
        assert info["output"] == {"kind": "multiclass", "classes": CLASSES}
        r = c.post("/predict", json={"rows": [{"text": t} for t in texts[:40]]})
        assert r.status_code == 200, r.text
        predictions = r.json()["predictions"]
        assert list(predictions[0]) == ["class", "probabilities"] and list(predictions[0]["probabilities"]) == CLASSES
        classes, proba = _answers(predictions)
        np.testing.assert_allclose(proba, expected[:40], atol=PROBA_TOLERANCE, rtol=0)
        assert classes == [CLASSES[k] for k in expected[:40].argmax(axis=1)]
        assert {"World", "Sports", "Business", "Sci/Tech"} >= set(classes) and len(set(classes)) > 1
        r = c.post("/predict", json={"rows": [{"text": texts[0], "class": "World"}]})  # the label is no field
        assert r.status_code == 422 and "unknown field 'class'" in r.json()["detail"][0]["msg"]

    for out in (tmp_path / "topics.parquet", tmp_path / "topics.csv"):
        result = CliRunner().invoke(cli.app, ["predict", str(bundle), str(data), "-o", str(out)])
        assert result.exit_code == 0, result.output
        table = pq.read_table(out) if out.suffix == ".parquet" else pacsv.read_csv(out)
        assert table.column_names == ["line", "class", *(f"p_{c}" for c in CLASSES)] and table.num_rows == 600
        written = np.stack([table.column(f"p_{c}").to_numpy() for c in CLASSES], axis=1)
        np.testing.assert_allclose(written, expected, atol=PROBA_TOLERANCE, rtol=0)
        assert table.column("class").to_pylist() == [CLASSES[k] for k in expected.argmax(axis=1)]


# -- a real server with two worker processes -------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _retried(call: Callable[[], httpx.Response], closed: list[int]) -> httpx.Response:
    """``call()``, once more when the server closed the connection before reading the request: uvicorn closes its
    idle connections when a worker retires, so a connection that reaches an old worker in that instant is closed
    unanswered — with a FIN (RemoteProtocolError) or, when the request's bytes sat unread in the socket, with a
    reset (ReadError, ECONNRESET). ``closed`` counts them; the client's retry reaches a live worker."""
    try:
        return call()
    except (httpx.RemoteProtocolError, httpx.ReadError) as e:
        if isinstance(e, httpx.ReadError) and "reset" not in str(e).lower():
            raise
        closed.append(1)
        return call()


def _pids(url: str, n: int = 16, closed: list[int] | None = None) -> list[int]:
    """The worker pids answering ``n`` concurrent ``GET /model`` (each on its own connection)."""
    seen = [] if closed is None else closed
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: int(_retried(lambda: httpx.get(f"{url}/model", timeout=30), seen)
                                           .json()["pid"]), range(n)))


@pytest.mark.slow  # about 20 s: three worker starts (torch, the bundle), two of them one after the other
def test_two_workers_answer_and_sighup_replaces_them(bundle: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "SHOAL_ADMIN_TOKEN": TOKEN}
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "shoal.cli", "serve", str(bundle), "--port", str(port),
                             "--workers", "2", "--threads", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    rows = {"rows": [{"text": "The striker scored a goal."}]}
    try:
        deadline = time.time() + 150  # worker starts (torch, the bundle) take 5-20 s each on 2 busy cores
        old: set[int] = set()
        while len(old) < 2:  # both workers up and answering
            assert proc.poll() is None and time.time() < deadline, log_path.read_text()
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                old |= set(_pids(url))
            time.sleep(0.2)
        r = httpx.post(f"{url}/predict", json=rows)
        assert r.status_code == 200 and r.json()["predictions"][0]["class"] in CLASSES
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 409 and "SIGHUP" in r.json()["detail"]  # it would reach one worker only

        proc.send_signal(signal.SIGHUP)  # uvicorn starts a new worker, then retires an old one, one at a time
        answered, seen, closed = 0, set(), []  # type: tuple[int, set[int], list[int]]
        deadline = time.time() + 150  # worker starts (torch, the bundle) take 5-20 s each on 2 busy cores
        while not (len(seen - old) == 2 and seen.isdisjoint(old)):
            assert time.time() < deadline, log_path.read_text()
            r = _retried(lambda: httpx.post(f"{url}/predict", json=rows, timeout=30), closed)
            assert r.status_code == 200, r.text  # every request read by a worker is answered during the swap
            answered += 1
            seen = set(_pids(url, 8, closed))  # the latest answers: only the new workers, once both are replaced
            time.sleep(0.2)  # requests all through the swap, not a busy loop that slows the workers' start
        assert answered >= 1
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        log.close()
    text = log_path.read_text()
    assert code in (0, -signal.SIGTERM) and "with 2 workers" in text and "Traceback" not in text, text
